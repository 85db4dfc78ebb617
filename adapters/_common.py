"""What the three adapters share: configuration, the client's plumbing, transports, events.

None of this is protocol logic (that is all in the core) and none of it does
I/O; it is the glue every adapter would otherwise write three times. What
differs between adapters (how to wait, how to dial, how to cancel) stays in
each adapter.

Two rules hold in every adapter, because they are written once, here:

* **Commands are taken at once.** Right after every call into the core, from
  any task or thread, :meth:`Transports.take` moves the core's commands to
  the adapter's own queue, and a transport the core closed stops being
  *current* there and then. Every transport input goes through
  :meth:`BaseClient._report`, which feeds the core only for the current
  transport. So a reader that wakes between a ``reconnect()`` and the loop
  carrying out its ``CloseTransport`` + ``OpenTransport`` cannot hand the old
  socket's bytes to the core, which would take them for the new one's.
  The loop then carries the queue out in order (sends, closes, opens).
* **One event buffer** (:class:`EventBuffer`) for iterators, with one rule
  for buffering, dropping and backpressure.
* **One delivery** (:meth:`BaseSession._dispatch`): everything the core has
  after an input is taken in one call (``next_batch()``) and goes, in order,
  to the callers waiting for a call's reply (:meth:`BaseSession._start_call`),
  the batch callback (:meth:`BaseSession.on_batch`), the dialect's handlers
  and the event buffer.

:class:`BaseSession` drives any core (a ``SessionEngine``: plain WebSocket,
OctoPrint ...); :class:`BaseClient` adds OctoPrint's handlers on top. Each
adapter's ``open_session(core)`` is the entry point for any core, and its
``connect(url)`` the OctoPrint one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from octoproto import (
    BatchItem,
    CallFailed,
    CallSucceeded,
    Channel,
    CloseTransport,
    Command,
    ConnectionLostError,
    Endpoint,
    Event,
    OctoPrintClient,
    OctoPrintConfig,
    OpenTransport,
    PushMessage,
    Recorder,
    Secret,
    SessionEngine,
    SessionState,
    as_event,
)

#: Bytes asked of the OS per read.
READ_SIZE = 65536
#: Events kept for ``async for`` / ``events()`` before reading pauses.
DEFAULT_MAX_QUEUE = 1024
#: Seconds events are still kept for a first iterator once messages go to
#: handlers or callbacks (see :class:`EventBuffer`).
ELSEWHERE_GRACE = 1.0
#: The core's ``max_send_backlog`` unless given: every adapter here reports
#: each write (``io_completed``), so the core can tell a server that stopped reading.
DEFAULT_MAX_SEND_BACKLOG = 1 << 20

H = TypeVar("H", bound=Callable[[PushMessage], object])
R = TypeVar("R")
#: The core an adapter drives: any dialect.
C = TypeVar("C", bound=SessionEngine)
#: What :meth:`BaseSession.on_batch` registers.
BatchCallback = Callable[[list[BatchItem]], object]
#: The outcome of a call (an RPC request, a Socket.IO ack).
CallOutcome = CallSucceeded | CallFailed
#: What :meth:`BaseSession._start_call` runs with a call's outcome.
ReplyCallback = Callable[[CallOutcome], object]

# A batch callback is a handler: its errors go where the handlers' do.
_logger = logging.getLogger("octoproto.handlers")
_adapter_logger = logging.getLogger("octoproto.adapters")


def octoprint_client(
    url: str,
    *,
    api_key: str | Secret | None = None,
    username: str | None = None,
    password: str | Secret | None = None,
    endpoint: Endpoint | str = Endpoint.SOCKJS,
    **options: Any,
) -> OctoPrintClient:
    """Build the core client an adapter drives; ``options`` are :class:`OctoPrintConfig` fields.

    The entropy source is :func:`os.urandom` unless ``entropy=`` is given.
    """
    return OctoPrintClient(
        octoprint_config(
            url, api_key=api_key, username=username, password=password, endpoint=endpoint, **options
        )
    )


def octoprint_config(
    url: str,
    *,
    api_key: str | Secret | None = None,
    username: str | None = None,
    password: str | Secret | None = None,
    endpoint: Endpoint | str = Endpoint.SOCKJS,
    **options: Any,
) -> OctoPrintConfig:
    """The config :func:`octoprint_client` builds its client with.

    The entropy source is :func:`os.urandom` and ``max_send_backlog`` is
    :data:`DEFAULT_MAX_SEND_BACKLOG` unless given.
    """
    options.setdefault("entropy", os.urandom)
    options.setdefault("max_send_backlog", DEFAULT_MAX_SEND_BACKLOG)
    return OctoPrintConfig(
        url=url,
        api_key=api_key,
        username=username,
        password=password,
        endpoint=Endpoint(endpoint),
        **options,
    )


class TraceFile:
    """A session's trace (:class:`~octoproto.Recorder`) written to a file as it runs.

    Each line is flushed as soon as the recorder completes it; :meth:`close`
    writes the last ones and the end line, and closes the file. A write
    that fails (disk full) stops the recording with a warning on
    ``octoproto.adapters``; the session goes on.
    """

    def __init__(self, path: str | os.PathLike[str], config: OctoPrintConfig, *, secrets: bool):
        # Opened first: a bad path fails connect() before anything starts.
        self._file: Any = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed by close())
        self._path = os.fspath(path)
        try:
            self.recorder = Recorder(OctoPrintClient, config, redact=not secrets, write=self._write)
        except BaseException:
            self._file.close()
            raise

    def _write(self, line: str) -> None:
        if self._file is None:
            return
        try:
            self._file.write(line + "\n")
            self._file.flush()
        except OSError as exc:
            _adapter_logger.warning("recording to %s stopped: %s", self._path, describe_error(exc))
            self._file = None

    def close(self) -> None:
        """Write the rest and close the file (idempotent)."""
        if self.recorder.closed:
            return
        self.recorder.close()
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.recorder.divergence is not None:
            _adapter_logger.warning(
                "the recording in %s replays, but redaction changed its course at %s",
                self._path,
                self.recorder.divergence,
            )


def octoprint_core(
    url: str,
    *,
    record: str | os.PathLike[str] | None = None,
    record_secrets: bool = False,
    **options: Any,
) -> tuple[OctoPrintClient, TraceFile | None]:
    """:func:`octoprint_client`, recorded to the file ``record`` when one is given.

    The trace is redacted unless ``record_secrets`` is true; close it (the
    returned :class:`TraceFile`) when the session is over.
    """
    config = octoprint_config(url, **options)
    if record is None:
        return OctoPrintClient(config), None
    trace = TraceFile(record, config, secrets=record_secrets)
    return trace.recorder.client, trace


def describe_error(exc: BaseException) -> str:
    """A transport error as the reason given to the core: ``"Type: message"``.

    An explicit cause is added in parentheses: trio reports a failed TLS
    handshake as a ``BrokenResourceError`` whose cause says why. A cause
    that is an exception group is told by what is in it: trio's failed dial
    is an ``OSError`` caused by a group of each address's error (the
    refusal), and the group's own message says only how many there were.
    """
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    cause = exc.__cause__
    if cause is None:
        return text
    inner = getattr(cause, "exceptions", None)  # an exception group (no 3.10 builtin)
    if isinstance(inner, tuple) and inner:
        return f"{text} ({'; '.join(dict.fromkeys(describe_error(error) for error in inner))})"
    return f"{text} ({describe_error(cause)})"


def tls_context(
    command: OpenTransport, user_context: ssl.SSLContext | None
) -> ssl.SSLContext | None:
    """The TLS context for a transport: the user's, or a verifying default.

    ``None`` for plain TCP.
    """
    if not command.tls:
        return None
    return user_context if user_context is not None else ssl.create_default_context()


class Transport:
    """One transport the core asked for, from its ``OpenTransport`` to its close.

    Each adapter subclasses it with what its I/O needs (a stream, a task, a
    socket). The record's identity is what :meth:`Transports.is_current`
    compares.
    """

    def __init__(self, command: OpenTransport) -> None:
        self.command = command
        self.channel = command.channel


T = TypeVar("T", bound=Transport)


class Transports(Generic[T]):
    """The core's transports as the adapter sees them, kept in step with its commands.

    :meth:`take` is called right after every call into the core. Each
    command becomes an entry ``(command, transport)`` of the adapter's queue,
    bound to the transport it is about *when the core issued it*:

    * ``OpenTransport`` makes a new record (``make``), current at once;
    * ``SendData`` goes to the channel's current transport;
    * ``CloseTransport`` makes the channel's transport no longer current at
      once; it is carried out after the sends queued before it (a close
      frame still goes out).

    Every transport that stops being current has a ``CloseTransport`` queued
    for it, so an adapter that carries out the queue releases every one.
    """

    def __init__(self, core: SessionEngine, make: Callable[[OpenTransport], T]) -> None:
        self._core = core
        self._make = make
        self._current: dict[Channel, T] = {}
        self._queue: deque[tuple[Command, T]] = deque()

    def take(self) -> None:
        """Move every command the core has to the queue (no I/O, never blocks)."""
        while (command := self._core.next_command()) is not None:
            channel = command.channel
            if isinstance(command, OpenTransport):
                # The core closes a transport before it opens the next one on
                # the same channel; retiring here too means no path leaks one.
                self._retire(channel)
                transport = self._current[channel] = self._make(command)
                self._queue.append((command, transport))
            elif isinstance(command, CloseTransport):
                self._retire(channel)
            elif (current := self._current.get(channel)) is not None:
                self._queue.append((command, current))

    def _retire(self, channel: Channel) -> None:
        transport = self._current.pop(channel, None)
        if transport is not None:
            self._queue.append((CloseTransport(channel), transport))

    def next(self) -> tuple[Command, T] | None:
        """The oldest command not carried out yet, with its transport, or ``None``."""
        return self._queue.popleft() if self._queue else None

    @property
    def pending(self) -> bool:
        """Whether commands wait to be carried out."""
        return bool(self._queue)

    def is_current(self, transport: T) -> bool:
        """Whether the core still counts ``transport`` as its transport on that channel."""
        return self._current.get(transport.channel) is transport

    def current(self) -> list[T]:
        """The transports the core counts on now."""
        return list(self._current.values())

    def retire_all(self) -> None:
        """Queue a close for every current transport (an adapter's own shutdown)."""
        for channel in list(self._current):
            self._retire(channel)


class EventBuffer:
    """Events waiting for the user's iterators, bounded: one rule for every adapter.

    * Buffering starts with the client (at ``connect()``), so an iterator
      started a moment later, or after an early failure, still gets every
      event from the first one on.
    * While no iterator has ever started, at most ``max_queue`` events are
      kept: when that many pile up, they are dropped and buffering stops
      until an iterator starts (a handler-only user never pays for it).
      Handlers see every event whatever the buffer does.
    * Also while no iterator has ever started, buffering stops (and what
      was kept is dropped) :data:`ELSEWHERE_GRACE` seconds after messages
      were first handed to the user elsewhere (:meth:`taken_elsewhere`): a
      handler, the callback or the batch callback. Such a client takes its
      messages there; keeping up to ``max_queue`` parsed messages per
      connection for an iterator that never comes would cost a fleet of
      sockets megabytes each. An iterator started within that second
      still gets every event from ``connect()`` on.
    * While an iterator is active, nothing is dropped: :attr:`full` is true
      once ``max_queue`` events wait, and the adapter then stops reading the
      push socket until the user catches up (the kernel's buffers and the
      server's throttle take the pressure).
    * When the last iterator ends (:meth:`stop`), buffering stops and what
      is left is dropped; the next iterator gets the events from its start.

    Iterators share the buffer: each event goes to one of them.
    """

    def __init__(self, max_queue: int) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be >= 1")
        self.max_queue = max_queue
        self._buffering = True
        self._iterators = 0
        self._started = False  # whether an iterator ever started
        self._elsewhere_since: float | None = None  # when messages first went elsewhere
        # Events, and a plain WebSocket's messages as bare payloads (see
        # ``next_batch()``): each becomes its event when an iterator takes it.
        self._events: deque[BatchItem] = deque()

    def start(self) -> None:
        """An iterator starts: buffer (again) from now on."""
        self._iterators += 1
        self._started = True
        self._buffering = True

    def taken_elsewhere(self, now: float | None) -> None:
        """Messages went to handlers or callbacks at ``now`` (the adapter's clock).

        With no iterator ever started, buffering stops once that has gone
        on for :data:`ELSEWHERE_GRACE` seconds; at once for ``now=None``
        (a batch callback was registered).
        """
        if self._started:
            return
        if now is not None:
            if self._elsewhere_since is None:
                self._elsewhere_since = now
            if now - self._elsewhere_since < ELSEWHERE_GRACE:
                return
        self._buffering = False
        self._events.clear()

    def stop(self) -> None:
        """An iterator ends; after the last one, stop buffering and drop what none will read.

        Otherwise a user who leaves the loop early (``break``) and goes on
        with handlers alone would fill the buffer and pause reading for good.
        """
        self._iterators -= 1
        if not self._iterators:
            self._buffering = False
            self._events.clear()

    def push(self, event: Event) -> None:
        """Keep ``event`` for an iterator, under the rule above."""
        if not self._buffering:
            return
        self._events.append(event)
        if not self._iterators and len(self._events) >= self.max_queue:
            self._buffering = False  # no iterator came: never pause reading for none
            self._events.clear()

    def extend(self, items: list[BatchItem]) -> None:
        """:meth:`push` each of ``items``, in one step."""
        if not self._buffering:
            return
        self._events.extend(items)
        if not self._iterators and len(self._events) >= self.max_queue:
            self._buffering = False
            self._events.clear()

    def pop(self) -> Event | None:
        """The oldest waiting event, or ``None``."""
        return as_event(self._events.popleft()) if self._events else None

    def take_all(self) -> list[BatchItem]:
        """Every waiting item, oldest first (``as_event`` makes each an event)."""
        items = list(self._events)
        self._events.clear()
        return items

    @property
    def full(self) -> bool:
        """Whether reading should pause: an iterator is active and ``max_queue`` events wait."""
        return bool(self._iterators) and len(self._events) >= self.max_queue


class BaseSession(Generic[T, C]):
    """The part of every adapter's session that needs no I/O: the core, its state, delivery.

    It drives any core (a :class:`~octoproto.SessionEngine`). It also holds
    the plumbing every call into the core goes through (:meth:`call`,
    :meth:`_feed`, :meth:`_report`): under the adapter's lock if it has one
    (the blocking adapter's), each is followed by :meth:`Transports.take`
    and :meth:`_wake`. The methods that send or wait differ per adapter
    (``async`` or not), so each adapter's ``Session`` adds them.
    """

    def __init__(
        self,
        core: C,
        *,
        clock: Callable[[], float],
        make_transport: Callable[[OpenTransport], T],
        max_queue: int,
        lock: contextlib.AbstractContextManager[Any] | None = None,
    ) -> None:
        self._buffer = EventBuffer(max_queue)  # first: it validates max_queue
        #: The sans-I/O core this adapter drives (for state, usage, and anything not wrapped here).
        self.core = core
        self._clock = clock
        self._lock: contextlib.AbstractContextManager[Any] = lock or contextlib.nullcontext()
        # Handler registration has a lock of its own: the core's may be held
        # by the loop for a while, and a handler registered right after
        # connect() should be in place before the first message arrives.
        # (Dispatch needs neither: the registry copies its lists first.)
        self._handlers_lock: contextlib.AbstractContextManager[Any] = (
            contextlib.nullcontext() if lock is None else threading.Lock()
        )
        self._transports = Transports(core, make_transport)
        self._on_batch: BatchCallback | None = None
        # Who waits for which call's outcome. Registered under the lock in the
        # same step as the call (see _start_call); taken by the loop as the
        # outcome passes by (dict operations are atomic: no lock needed there).
        self._replies: dict[int, ReplyCallback] = {}

    @property
    def state(self) -> SessionState:
        """The core's connection state."""
        return self.core.state

    @property
    def is_open(self) -> bool:
        """Whether the session is up."""
        return self.core.is_open

    def on_batch(self, callback: BatchCallback | None) -> None:
        """Hand everything the core has after each input to ``callback``, as one list.

        The fast path, beside iteration and handlers: ``callback(batch)`` is
        called on the loop (the loop thread, for the blocking adapter) with
        the core's ``next_batch()``, that is every event in order, with a
        plain WebSocket's messages as their bare ``str`` / ``bytes`` (no
        object per message; :func:`~octoproto.as_event` makes the event of
        an item). An exception it raises is logged on ``octoproto.handlers``
        (not the batch). Iterators and handlers still get everything, but
        registered before any iterator started, it ends the keeping of
        events for a first iterator at once (it is where they go now; an
        iterator started later gets the events from its start).
        ``None`` removes it.
        """
        if callback is not None and not callable(callback):
            raise TypeError("the batch callback must be callable")
        with self._lock:
            self._on_batch = callback
            if callback is not None:
                self._buffer.taken_elsewhere(None)

    def call(self, method: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """Call an input method of :attr:`core` (``send``, ``subscribe`` ...) and carry it out.

        Every call into the core from the user's side goes through here (or
        a method that wraps it): the core's commands are taken at once and
        the loop wakes to carry them out. Never blocks. For a method that
        takes ``now``, see :meth:`feed`.
        """
        return self._call(method, *args, **kwargs)

    def feed(self, method: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """:meth:`call` with ``now=`` the adapter's clock (``login``, ``reconnect`` ...)."""
        return self._feed(method, *args, **kwargs)

    def _dispatch(self, batch: list[BatchItem]) -> None:
        """Deliver one batch (outside the lock) to the batch callback and the handlers.

        The caller then hands it to the iterators' buffer, which stops
        keeping events for an iterator that never started once messages
        went here (see :class:`EventBuffer`).
        """
        if self._replies:
            self._settle_replies(batch)
        callback = self._on_batch
        if callback is not None:
            try:
                callback(batch)
            except Exception:
                name = getattr(callback, "__qualname__", type(callback).__qualname__)
                _logger.exception("batch callback %s raised", name)
        if self._run_handlers(batch) or callback is not None:
            with self._lock:
                self._buffer.taken_elsewhere(self._clock())

    def _settle_replies(self, batch: list[BatchItem]) -> None:
        """Hand each call outcome in ``batch`` to whoever waits for it."""
        replies = self._replies
        for item in batch:
            if isinstance(item, (CallSucceeded, CallFailed)):
                callback = replies.pop(item.call_id, None)
                if callback is not None:
                    _run_reply_callback(callback, item)

    def _start_call(
        self, on_reply: ReplyCallback, method: Callable[..., int], *args: Any, **kwargs: Any
    ) -> int:
        """:meth:`_feed` a core method that starts a call; ``on_reply`` gets its outcome.

        The method returns the call's id. ``on_reply`` is registered in the
        same locked step, so the outcome cannot pass by before it (not even
        one the method emitted itself); it runs on the loop (the loop thread,
        for the blocking adapter), once, with the call's
        :class:`~octoproto.CallSucceeded` or :class:`~octoproto.CallFailed`,
        which the iterators still get too. A session that ends first fails
        it with :class:`~octoproto.ConnectionLostError`.
        """
        with self._lock:
            call_id = self._feed(method, *args, **kwargs)
            self._replies[call_id] = on_reply
        return call_id

    def _fail_replies(self) -> None:
        """The session is gone: every caller still waiting gets a ConnectionLostError."""
        while self._replies:
            call_id, callback = self._replies.popitem()
            error = ConnectionLostError("the client is closed")
            _run_reply_callback(callback, CallFailed(call_id, error))

    def _run_handlers(self, batch: list[BatchItem]) -> bool:
        """Run the user's handlers for each push message and report their time to the throttle.

        Only an OctoPrint core has handlers (``core.handlers``; ``on``/``off``
        of :class:`BaseClient` register them). Handler errors are logged by
        the registry and do not stop the others. The handlers run outside
        the adapter's lock, so they may call the client, or wait for a
        thread that does; only the report takes it, once per batch. Returns
        whether push messages met a registered handler.
        """
        core = self.core
        if not isinstance(core, OctoPrintClient):
            return False
        clock = self._clock
        dispatch = core.handlers.dispatch
        times = []
        for event in batch:
            if isinstance(event, PushMessage):
                started = clock()
                dispatch(event.type, event)
                times.append(clock() - started)
        if not times:
            return False
        # One report for the batch: the same measurements, in order, at the
        # time the last handler returned (one lock, one take of commands).
        with self._lock:
            now = clock()
            for seconds in times:
                core.message_processed(seconds, now)
            self._transports.take()
            self._wake()
        return bool(core.handlers)

    # --- every call into the core goes through these -------------------------

    def _wake(self) -> None:
        """Make the loop take another turn (the adapter's own way)."""
        raise NotImplementedError

    def _call(self, method: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """Call the core, then take its commands and wake the loop."""
        with self._lock:
            result = method(*args, **kwargs)
            self._transports.take()
            self._wake()
        return result

    def _feed(self, method: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """:meth:`_call` with ``now=``, read inside the lock.

        Another thread may have fed the core a later time meanwhile, and the
        core refuses time going backwards.
        """
        with self._lock:
            return self._call(method, *args, now=self._clock(), **kwargs)

    def _report(self, transport: T, method: Callable[..., object], *args: Any) -> bool:
        """Feed a transport input (``transport_opened``, ``receive_data`` ...) about ``transport``.

        Only while it is the current transport on its channel: after the core
        closed it, nothing more about it may reach the core. Returns whether
        it was fed.
        """
        with self._lock:
            if not self._transports.is_current(transport):
                return False
            self._feed(method, *args, channel=transport.channel)
            return True

    def _timer_if_due(self) -> None:
        """``handle_timer`` once the core's deadline has passed (not on every wake-up)."""
        with self._lock:
            deadline = self.core.get_timer()
            if deadline is not None and self._clock() >= deadline:
                self._feed(self.core.handle_timer)

    def _fail(self, transport: T, exc: BaseException) -> bool:
        """Report that ``transport`` could not be opened or broke."""
        return self._report(transport, self.core.transport_failed, describe_error(exc))

    def _completed(self, transport: T, nbytes: int, seconds: float) -> None:
        """Report one ``SendData`` of the push socket written (``io_completed``).

        Only while the transport is current, like every transport input: a
        write the old socket finishes must not count for the new one.
        """
        with self._lock:
            if transport.channel is Channel.SOCKET and self._transports.is_current(transport):
                self._feed(self.core.io_completed, "send", nbytes, seconds)

    def _disconnect(self, code: int | None = None, reason: str = "") -> bool:
        """Start closing for good, if there is anything to close; return whether there was."""
        with self._lock:
            if self.core.state in (SessionState.CLOSED, SessionState.IDLE):
                return False
            self._feed(self.core.disconnect, code=code, reason=reason)
            return True

    def _next_batch(self) -> list[BatchItem]:
        """Everything the core has for the user, in order (see ``next_batch()``)."""
        with self._lock:
            return self.core.next_batch()

    def _abandon(self) -> None:
        """The client is leaving and its transports are gone (or going): tell the core.

        After a graceful disconnect this does nothing. Otherwise (the loop was
        cancelled or crashed, or the close bound passed) the core hears of
        the disconnect and of each transport's end, and so ends closed.
        """
        self._disconnect()
        for transport in self._transports.current():
            self._report(transport, self.core.transport_failed, "the client is leaving")
        self._fail_replies()


def result_of(outcome: CallOutcome) -> object:
    """A call's result, or its error raised."""
    if isinstance(outcome, CallFailed):
        raise outcome.error
    return outcome.result


def _run_reply_callback(callback: ReplyCallback, outcome: CallOutcome) -> None:
    try:
        callback(outcome)
    except Exception:
        name = getattr(callback, "__qualname__", type(callback).__qualname__)
        _logger.exception("reply callback %s raised", name)


class BaseClient(BaseSession[T, OctoPrintClient]):
    """:class:`BaseSession` on an OctoPrint core, with its handlers (``on``/``off``)."""

    def on(self, message_type: str, handler: H | None = None) -> Any:
        """Register a handler for ``message_type`` (or ``"*"``); also a decorator.

        Handlers are plain functions called with each :class:`~octoproto.PushMessage`
        by the adapter (on its loop or its thread), one message at a time;
        how long they take drives the throttle.
        """
        with self._handlers_lock:
            if handler is not None:
                return self.core.handlers.on(message_type, handler)
            self.core.handlers.on(message_type)  # refuses a bad name now, not at decoration

        def register(function: H) -> H:
            self.on(message_type, function)
            return function

        return register

    def off(
        self, message_type: str, handler: Callable[[PushMessage], object] | None = None
    ) -> None:
        """Remove a handler (or all handlers of ``message_type``)."""
        with self._handlers_lock:
            self.core.handlers.off(message_type, handler)
