"""The blocking adapter: a background thread, callbacks, and ``wait()``.

``client = connect(url, ...)`` returns at once with the session's loop running
on its own thread (python-socketio's ``Client``, Qore's ``WebSocketClient``);
``with connect(url) as client:`` closes it on exit. The loop only moves bytes,
time and events between sockets and the core: carry out the core's commands,
hand its events to handlers, the callback and :meth:`Client.events`, wait in
:mod:`selectors` until a socket is ready, the core's deadline passes or another
thread calls in, and feed the outcome back with ``time.monotonic()``. Every
protocol decision (reconnects, timeouts, login, throttle) is the core's.

Threads: every call into the core happens under one lock, with ``now`` read
inside it (see ``_common.BaseClient``). Handlers and the callback run on the
loop thread *outside* the lock, so they may call the client, or wait for a
thread that is calling it (a GUI's), without a deadlock. Other threads wake
the loop through a socketpair.

Sockets are non-blocking throughout: dialing is ``connect()`` plus a wait for
writability, TLS is :meth:`ssl.SSLSocket.do_handshake` driven by readiness,
and writes go to a per-socket buffer flushed as the socket accepts them, so no
peer can stall the loop and its timers. Only name resolution, which the OS
offers no non-blocking form of, runs on a short-lived helper thread (never for
an IP address).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import selectors
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from octoproto import (
    BatchItem,
    Channel,
    CloseTransport,
    Endpoint,
    Event,
    LocalProtocolError,
    OctoPrintClient,
    OpenTransport,
    PushMessage,
    RpcClient,
    Secret,
    SendData,
    SessionState,
    SocketIOClient,
    as_event,
)

from ._common import (
    DEFAULT_MAX_QUEUE,
    READ_SIZE,
    BaseClient,
    BaseSession,
    C,
    CallOutcome,
    TraceFile,
    Transport,
    describe_error,
    octoprint_core,
    result_of,
    tls_context,
)
from ._rpc import BlockingRpc, rpc_client
from ._socketio import BlockingSocketIO, ClientNamespace, Handlers, socketio_core

__all__ = [
    "Callback",
    "Client",
    "ClientNamespace",
    "EventIterator",
    "Handlers",
    "RpcSession",
    "Session",
    "SessionCallback",
    "SocketIOSession",
    "connect",
    "connect_rpc",
    "connect_socketio",
    "open_session",
]

#: The ``callback`` of :func:`connect`: each message, then ``None`` once closed for good.
Callback = Callable[[PushMessage | None], object]
#: The ``callback`` of :func:`open_session`: each message (a
#: :class:`~octoproto.PushMessage`, or a plain WebSocket message's ``str`` /
#: ``bytes``), then ``None`` once closed for good.
SessionCallback = Callable[[PushMessage | str | bytes | None], object]
_S = TypeVar("_S", bound="Session[Any]")

_logger = logging.getLogger("octoproto.adapters.blocking")
_clock = time.monotonic
_R, _W = selectors.EVENT_READ, selectors.EVENT_WRITE
#: Largest single write. It also keeps a TLS write retried after WANT_WRITE at
#: least as long as the first try, which OpenSSL requires.
_WRITE_CHUNK = 65536
_names = itertools.count(1)
_AddrInfo = tuple[Any, ...]


def _lookup(command: OpenTransport, flags: int = 0) -> list[_AddrInfo] | OSError:
    """``getaddrinfo`` for a transport: the addresses, or what went wrong as an OSError."""
    try:
        return socket.getaddrinfo(command.host, command.port, type=socket.SOCK_STREAM, flags=flags)
    except OSError as exc:
        return exc
    except UnicodeError as exc:  # a host IDNA cannot encode: a failed dial, not a crash
        return OSError(describe_error(exc))


class _Transport(Transport):
    """One socket the core asked for, from dial to close; touched under the lock only."""

    def __init__(self, command: OpenTransport) -> None:
        super().__init__(command)
        self.sock: socket.socket | None = None
        self.stage = "resolving"  # -> "connecting" -> ("tls" ->) "open"
        self.addresses: list[_AddrInfo] = []
        self.error: OSError | None = None  # the last address's, raised when none is left
        #: Readiness the last step waits for: connect(), the TLS handshake, or
        #: (when open) a TLS read that must write or a write that must read.
        self.wants = 0
        self.eof = False
        #: Each SendData not fully written yet: what is left of it, its size, when it came.
        self.outgoing: deque[tuple[memoryview, int, float]] = deque()


class EventIterator:
    """What :meth:`Client.events` returns: the events, buffered while it is open.

    Also a context manager that closes it on exit.
    """

    def __init__(self, client: Session[Any], timeout: float | None) -> None:
        self._client: Session[Any] | None = client
        self._timeout = timeout
        # What waited in the buffer, taken in one go (one lock, one wake-up
        # of the loop per batch rather than per event).
        self._taken: deque[BatchItem] = deque()
        client._iterating(True)

    def __iter__(self) -> EventIterator:
        return self

    def __next__(self) -> Event:
        taken = self._taken
        if not taken:
            if self._client is not None:
                taken.extend(self._client._take_events(self._timeout))
            if not taken:
                self.close()
                raise StopIteration
        return as_event(taken.popleft())

    def close(self) -> None:
        """Stop buffering for this iterator (idempotent)."""
        client, self._client = self._client, None
        if client is not None:
            client._iterating(False)

    def __enter__(self) -> EventIterator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


class Session(BaseSession[_Transport, C]):
    """A live session of any core on a background thread. Get one from :func:`open_session`.

    Every method is thread-safe. Handlers and the callback run on the loop
    thread; there, :meth:`disconnect` and :meth:`close` only start closing
    (they cannot wait for the thread they run on), and :meth:`wait` and
    :meth:`events` raise :class:`~octoproto.LocalProtocolError`.
    """

    def __init__(
        self,
        core: C,
        ssl_context: ssl.SSLContext | None,
        max_queue: int,
        callback: Callable[[Any], object] | None,
    ) -> None:
        lock = threading.RLock()  # re-entrant: the core's hooks may call back in
        super().__init__(
            core, clock=_clock, make_transport=_Transport, max_queue=max_queue, lock=lock
        )
        self._cond = threading.Condition(lock)
        self._ssl_context = ssl_context
        self._callback = callback
        self._resolvers: list[threading.Thread] = []
        self._closed = False  # closed for good, as the loop last saw it
        self._generation = 0  # bumped by reconnect(): which close "closed" is about
        self._reported = -1  # the last generation whose close the callback heard of
        self._stop_at: float | None = None
        self._finished = False
        #: The trace written as the session runs (``connect(record=...)``), closed at the end.
        self._trace: TraceFile | None = None
        self._selector = selectors.DefaultSelector()
        self._wake_r, wake_w = socket.socketpair()
        self._wake_w: socket.socket | None = wake_w
        self._wake_r.setblocking(False)
        wake_w.setblocking(False)
        self._selector.register(self._wake_r, _R)
        self._thread = threading.Thread(
            target=self._run, name=f"octoproto-blocking-{next(_names)}", daemon=False
        )

    # --- the user's surface (core, state, is_open, call, on_batch: see BaseSession)

    def reconnect(self) -> None:
        """Drop the connection and dial again at once (also after a close for good)."""
        with self._lock:
            if self._finished or self._stop_at is not None:
                raise LocalProtocolError("this client is closed; connect() a new one")
            self._generation += 1
            self._closed = False
            self._feed(self.core.reconnect)

    def disconnect(self, code: int | None = None, reason: str = "") -> None:
        """Close for good and wait until the close handshake is over.

        The wait is bounded by ``close_timeout + 1`` seconds (the core itself
        gives up after ``close_timeout``). The client stays usable:
        :meth:`reconnect` dials again.
        """
        self._disconnect(code, reason)
        if not self._on_loop_thread():
            self.wait(self.core.config.close_timeout + 1.0)

    def close(self) -> None:
        """Disconnect and stop the loop thread, leaving no thread or socket behind.

        The loop stops once the session is closed, or ``close_timeout + 1``
        seconds from now at the latest; this call then joins it (except on
        the loop thread itself, where it returns at once). Idempotent.
        """
        with self._lock:
            if not self._finished:
                if self._stop_at is None:
                    self._stop_at = _clock() + self.core.config.close_timeout + 1.0
                self._disconnect()
                self._wake()
        if not self._on_loop_thread() and self._thread.ident is not None:
            self._thread.join()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the session is closed for good; return whether it is.

        Closed for good: :meth:`disconnect` or :meth:`close` was called, or
        the core gave up reconnecting. ``timeout`` is in seconds.
        """
        self._refuse_on_loop_thread("wait()")
        with self._cond:
            return self._cond.wait_for(lambda: self._closed, timeout)

    def _request(self, method: Callable[..., int], *args: Any, **kwargs: Any) -> object:
        """Start a call with ``method(*args, now=..., **kwargs)`` and block until its outcome.

        Returns the result, or raises the :class:`~octoproto.CallError` the
        core reported (a timeout, the connection lost, the server's error).
        Refused on the loop thread (in a handler), which would wait for itself.
        """
        self._refuse_on_loop_thread("a call")
        done = threading.Event()
        outcomes: list[CallOutcome] = []

        def settle(outcome: CallOutcome) -> None:
            outcomes.append(outcome)
            done.set()

        with self._lock:
            if self._finished or self._stop_at is not None:
                raise LocalProtocolError("this client is closed; connect() a new one")
            self._start_call(settle, method, *args, **kwargs)
        done.wait()
        return result_of(outcomes[0])

    def events(self, timeout: float | None = None) -> EventIterator:
        """Every event, in order, until the session is closed for good.

        The first call also gets the events from :func:`connect` on, unless
        ``max_queue`` of them piled up before it; buffering stops when the
        last iterator ends, is closed (``close()``, or leaving ``with
        client.events() as events:``) or is collected, as after a ``break``.
        While ``max_queue`` events wait, reading from the socket pauses:
        nothing is dropped (the rule: ``_common.EventBuffer``); the iterator
        takes what waits in one go (so at most ``max_queue`` more may be in
        its hands). ``timeout``
        bounds the wait for each next event in seconds; when it passes,
        :class:`TimeoutError` is raised and the iterator stays usable.
        """
        self._refuse_on_loop_thread("events()")
        return EventIterator(self, timeout)

    def _take_events(self, timeout: float | None) -> list[BatchItem]:
        """Every buffered event, waiting for one; ``[]`` once closed for good."""
        with self._cond:
            deadline = None if timeout is None else _clock() + timeout
            was_full = self._buffer.full
            while not (items := self._buffer.take_all()):
                if self._closed:
                    return []
                remaining = None if deadline is None else deadline - _clock()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"no event within {timeout} s")
                self._cond.wait(remaining)
                was_full = self._buffer.full
            if was_full:
                self._wake()  # room again: the loop may read once more
            return items

    def _iterating(self, starts: bool) -> None:
        with self._lock:
            if starts:
                self._buffer.start()
            else:
                self._buffer.stop()
                self._wake()  # reading may have paused for this iterator

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- helpers for every thread ---------------------------------------------

    def _wake(self) -> None:
        # Called under the lock, which is also held when the socketpair is
        # closed: a closed (and perhaps reused) descriptor is never written.
        # The loop thread itself looks at what is pending before it waits.
        if self._wake_w is not None and not self._on_loop_thread():
            with contextlib.suppress(BlockingIOError):  # a full pipe: awake anyway
                self._wake_w.send(b"\0")

    def _on_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def _refuse_on_loop_thread(self, what: str) -> None:
        if self._on_loop_thread():
            raise LocalProtocolError(f"{what} would wait for the loop thread it is called on")

    def _start(self) -> None:
        self._feed(self.core.connect)
        try:
            self._thread.start()
        except BaseException:
            self._shutdown()
            raise

    # --- the loop (the loop thread only) --------------------------------------

    def _run(self) -> None:
        try:
            while self._step():
                pass
        except Exception:
            _logger.exception("the loop failed; closing the session")
        finally:
            self._shutdown()

    def _step(self) -> bool:
        """One turn: commands, events, one wait for I/O or time. False: stop."""
        with self._lock:
            self._execute()
            events = self.core.next_batch()
            closed = self.core.state is SessionState.CLOSED
            generation = self._generation
            stop = self._stop_at is not None and (closed or _clock() >= self._stop_at)
        self._deliver(events)
        if closed:
            self._report_closed(generation)
        if stop:
            return False
        if events:
            # Handlers may have called the core without waking the loop (their
            # timing moves the throttle): take another turn before waiting.
            return True
        with self._lock:
            timeout, ready, watched = self._watch()
        try:
            for key, _mask in self._selector.select(timeout):
                if key.data is None:
                    with contextlib.suppress(BlockingIOError):
                        while self._wake_r.recv(4096):
                            pass
                elif key.data not in ready:
                    ready.append(key.data)
        finally:
            for sock in watched:
                self._selector.unregister(sock)
        for transport in ready:
            with self._lock:
                if self._transports.is_current(transport):
                    self._guarded(transport, self._advance)
        self._timer_if_due()
        return True

    def _deliver(self, batch: list[BatchItem]) -> None:
        if not batch:
            return
        self._dispatch(batch)
        called = False
        if self._callback is not None:
            for item in batch:
                if isinstance(item, (PushMessage, str, bytes)):
                    called = True
                    self._call_back(item)
        with self._cond:
            if called:
                self._buffer.taken_elsewhere(_clock())
            self._buffer.extend(batch)
            self._cond.notify_all()

    def _report_closed(self, generation: int) -> None:
        # The callback hears of each close once, before wait() returns.
        with self._lock:
            first, self._reported = self._reported != generation, generation
        if first:
            self._call_back(None)
        with self._cond:
            if generation == self._generation:  # unless reconnect() came first
                self._closed = True
                self._cond.notify_all()

    def _call_back(self, message: PushMessage | str | bytes | None) -> None:
        if self._callback is None:
            return
        try:
            self._callback(message)
        except Exception:
            # The message itself is not logged: it may hold secrets.
            name = getattr(self._callback, "__qualname__", type(self._callback).__qualname__)
            _logger.exception("callback %s raised", name)

    def _watch(self) -> tuple[float | None, list[_Transport], list[socket.socket]]:
        """Register each socket for what it waits for, for one select().

        Returns the wait, what is ready already, and the sockets to unregister
        after the select (at most two, so nothing is kept in step with the
        selector from one turn to the next).
        """
        ready, watched = [], []
        for transport in self._transports.current():
            if (sock := transport.sock) is None:
                continue
            wanted = transport.wants
            if transport.stage == "open":
                # A full event buffer pauses the push socket: backpressure, not loss.
                reading = not transport.eof and not self._paused(transport)
                wanted |= (_R if reading else 0) | (_W if transport.outgoing else 0)
                # Decrypted bytes waiting inside the SSL object never make
                # the socket readable: serve them without waiting.
                if reading and isinstance(sock, ssl.SSLSocket) and sock.pending():
                    ready.append(transport)
            if wanted:
                self._selector.register(sock, wanted, transport)
                watched.append(sock)
        deadline = self.core.get_timer()
        if self._stop_at is not None:
            deadline = self._stop_at if deadline is None else min(deadline, self._stop_at)
        if ready or self._transports.pending:
            return 0.0, ready, watched
        return (None if deadline is None else max(0.0, deadline - _clock())), ready, watched

    def _paused(self, transport: _Transport) -> bool:
        return transport.channel is Channel.SOCKET and self._buffer.full

    # --- commands and sockets (under the lock) --------------------------------

    def _execute(self) -> None:
        while (entry := self._transports.next()) is not None:
            command, transport = entry
            if isinstance(command, OpenTransport):
                addresses = _lookup(command, socket.AI_NUMERICHOST)
                if isinstance(addresses, socket.gaierror):
                    # A name: resolving may take seconds and cannot be done
                    # without blocking, so a helper thread does it (joined
                    # when the loop ends).
                    self._resolvers = [thread for thread in self._resolvers if thread.is_alive()]
                    resolver = threading.Thread(
                        target=self._resolve, args=(transport,), name=f"{self._thread.name}-dns"
                    )
                    self._resolvers.append(resolver)
                    resolver.start()
                else:
                    self._dial(transport, addresses)
            elif isinstance(command, SendData):
                transport.outgoing.append((memoryview(command.data), len(command.data), _clock()))
                self._guarded(transport, self._flush)
            else:
                self._discard(transport)

    def _resolve(self, transport: _Transport) -> None:
        addresses = _lookup(transport.command)
        with self._lock:
            if self._transports.is_current(transport):  # not closed meanwhile
                self._dial(transport, addresses)
                self._wake()  # the loop watches the new socket from now on

    def _dial(self, transport: _Transport, addresses: list[_AddrInfo] | OSError) -> None:
        if isinstance(addresses, OSError):
            self._fail(transport, addresses)
            return
        transport.addresses = list(addresses)
        transport.stage = "connecting"
        self._guarded(transport, self._connect_next)

    def _connect_next(self, transport: _Transport) -> None:
        """Dial the next address without blocking; fail when none is left."""
        while transport.addresses:
            family, kind, proto, _name, address = transport.addresses.pop(0)
            sock: socket.socket | None = None
            try:
                sock = socket.socket(family, kind, proto)
                sock.setblocking(False)
                sock.connect(address)
            except (BlockingIOError, InterruptedError):
                transport.sock, transport.wants = sock, _W  # in progress: writable once done
                return
            except OSError as exc:  # refused, unreachable, no IPv6 ...: try the next
                transport.error = exc
                if sock is not None:
                    sock.close()
                continue
            transport.sock = sock
            self._connected(transport)
            return
        raise transport.error or OSError(f"no address for {transport.command.host}")

    def _connected(self, transport: _Transport) -> None:
        sock = transport.sock
        assert sock is not None
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            # Small frames should leave at once (trio's default too).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        context = tls_context(transport.command, self._ssl_context)
        if context is None:
            transport.stage = "open"
            self._report(transport, self.core.transport_opened)
            return
        transport.sock = context.wrap_socket(
            sock, server_hostname=transport.command.server_hostname, do_handshake_on_connect=False
        )
        transport.stage = "tls"
        self._handshake(transport)

    def _handshake(self, transport: _Transport) -> None:
        assert isinstance(transport.sock, ssl.SSLSocket)
        try:
            transport.sock.do_handshake()
        except ssl.SSLWantReadError:
            transport.wants = _R
            return
        except ssl.SSLWantWriteError:
            transport.wants = _W
            return
        transport.stage, transport.wants = "open", 0
        self._report(transport, self.core.transport_opened)

    def _advance(self, transport: _Transport) -> None:
        """Move a socket on after the selector found it ready."""
        sock = transport.sock
        assert sock is not None
        if transport.stage == "connecting":
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if not error:
                transport.wants = 0
                self._connected(transport)
                return
            transport.error = OSError(error, os.strerror(error))
            self._discard(transport)
            self._connect_next(transport)
        elif transport.stage == "tls":
            self._handshake(transport)
        else:
            transport.wants = 0
            self._flush(transport)
            if self._transports.is_current(transport) and not transport.eof:
                self._read(transport)

    def _read(self, transport: _Transport) -> None:
        assert transport.sock is not None
        if self._paused(transport):
            return  # (the socket was ready to write)
        try:
            data = transport.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
            return
        except ssl.SSLWantWriteError:
            transport.wants |= _W
            return
        if data:
            self._report(transport, self.core.receive_data, data)
        else:
            transport.eof = True  # stop watching: a closed socket is always readable
            self._report(transport, self.core.receive_eof)

    def _flush(self, transport: _Transport) -> None:
        """Write what the socket takes now; report each SendData once it is all out."""
        sock = transport.sock
        while transport.stage == "open" and sock is not None and transport.outgoing:
            data, size, started = transport.outgoing[0]
            try:
                sent = sock.send(data[:_WRITE_CHUNK])
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError):
                return
            except ssl.SSLWantReadError:
                transport.wants |= _R
                return
            if sent < len(data):
                transport.outgoing[0] = (data[sent:], size, started)
                continue
            transport.outgoing.popleft()
            self._completed(transport, size, _clock() - started)

    def _guarded(self, transport: _Transport, step: Callable[[_Transport], None]) -> None:
        try:
            step(transport)
        except OSError as exc:  # ssl.SSLError and certificate errors included
            self._fail(transport, exc)  # the core answers with CloseTransport

    def _discard(self, transport: _Transport) -> None:
        if transport.sock is not None:
            transport.sock.close()
            transport.sock = None

    def _shutdown(self) -> None:
        """Close every socket, tell the last events, wait for helpers (any thread, once)."""
        with self._lock:
            self._abandon()
            self._transports.retire_all()
            while (entry := self._transports.next()) is not None:
                if isinstance(entry[0], CloseTransport):
                    self._discard(entry[1])
            self._finished = True
            self._selector.close()
            self._wake_r.close()
            if self._wake_w is not None:
                self._wake_w.close()
                self._wake_w = None
            events = self.core.next_batch()
            generation = self._generation
            if self._trace is not None:
                self._trace.close()
        self._deliver(events)
        for resolver in self._resolvers:
            resolver.join()  # a lookup cannot be cancelled, only waited for
        self._report_closed(generation)


class Client(Session[OctoPrintClient], BaseClient[_Transport]):
    """A live OctoPrint push socket on a background thread. Get one from :func:`connect`.

    Every method is thread-safe (see :class:`Session`).
    """

    # --- the user's surface (core, state, is_open, on, off: see BaseClient) ----

    def send_message(self, message_type: str, payload: object) -> None:
        """Send ``{message_type: payload}`` (validated; queued while disconnected)."""
        self._feed(self.core.send_message, message_type, payload)

    def send_auth(self, user: str, session: str | Secret) -> None:
        """Authenticate the socket with a session from ``POST /api/login``."""
        self._feed(self.core.send_auth, user, session)

    def subscribe(self, subscription: dict[str, object]) -> None:
        """Replace the subscription (kept for reconnects)."""
        self._call(self.core.subscribe, subscription)

    def set_throttle(self, factor: int) -> None:
        """Set the throttle factor (kept for reconnects)."""
        self._call(self.core.set_throttle, factor)


def open_session(
    core: C,
    *,
    ssl_context: ssl.SSLContext | None = None,
    callback: SessionCallback | None = None,
    max_queue: int = DEFAULT_MAX_QUEUE,
) -> Session[C]:
    """Drive any core (``WebSocketClient``, ``OctoPrintClient`` ...) on a background thread.

    The lower-level entry point under :func:`connect`: the same loop and
    thread, for a core built by the caller (``core.connect()`` is called
    for you). ``callback`` gets each message (a plain WebSocket's as its
    ``str`` / ``bytes``: Qore's message callback) and ``None`` once closed.
    The session has the surface every dialect shares: :meth:`~Session.events`,
    :meth:`~Session.on_batch`, :meth:`~Session.call` (e.g.
    ``session.call(core.send, "hi")``), ``reconnect``, ``disconnect``,
    ``wait``, ``close``, ``state``, ``is_open``, ``core``.
    """
    session = Session(core, ssl_context, max_queue, callback)
    session._start()
    return session


def connect(
    url: str,
    *,
    api_key: str | Secret | None = None,
    username: str | None = None,
    password: str | Secret | None = None,
    endpoint: Endpoint | str = Endpoint.SOCKJS,
    ssl_context: ssl.SSLContext | None = None,
    callback: Callback | None = None,
    max_queue: int = DEFAULT_MAX_QUEUE,
    record: str | os.PathLike[str] | None = None,
    record_secrets: bool = False,
    **options: Any,
) -> Client:
    """Connect to OctoPrint's push socket at ``url`` and keep connected, on a background thread.

    ``options`` are :class:`~octoproto.OctoPrintConfig` fields
    (``throttle``, ``subscription``, ``reconnect``, ``connect_timeout`` ...).
    Returns at once with the loop thread started. Progress arrives as events
    (``for event in client.events()``), messages go to handlers
    (``client.on("current", handler)``) and to ``callback``, which is called
    on the loop thread with each :class:`~octoproto.PushMessage` and with
    ``None`` once each time the session is closed for good (Qore's message
    callback); an exception it raises is logged on
    ``octoproto.adapters.blocking`` and the loop goes on. ``ssl_context``
    replaces the verifying default for ``https``/``wss`` URLs.

    The thread is not a daemon: call :meth:`Client.close`, or use
    ``with connect(url) as client:``, which closes on exit. ``record=path``
    writes the session's trace to ``path`` as it runs (secrets redacted
    unless ``record_secrets``), for :func:`octoproto.replay`.
    """
    core, trace = octoprint_core(
        url,
        api_key=api_key,
        username=username,
        password=password,
        endpoint=endpoint,
        record=record,
        record_secrets=record_secrets,
        **options,
    )
    try:
        client = Client(core, ssl_context, max_queue, callback)
    except BaseException:
        if trace is not None:
            trace.close()
        raise
    client._trace = trace
    client._start()
    return client


class RpcSession(Session[RpcClient], BlockingRpc[_Transport]):
    """A live RPC client (rpc-websockets) on a background thread. Get one from :func:`connect_rpc`.

    Every method is thread-safe; calls block their thread until the reply.
    """

    def close(self, code: int = 1000, data: str | None = None) -> None:
        """Close for good with ``code`` and reason ``data``, then stop the loop thread."""
        self._disconnect(code, data or "")
        super().close()


def connect_rpc(
    url: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    max_queue: int = DEFAULT_MAX_QUEUE,
    **options: Any,
) -> RpcSession:
    """Connect to an rpc-websockets (or msgpack-rpc-websockets) server at ``url``.

    The URL's path is the namespace, its query (``?socket_id=``) passes
    through. ``options``: ``encoding`` (``"json"`` or ``"msgpack"``),
    ``reconnect``, ``reconnect_interval``, ``max_reconnects`` (rpc-websockets'
    meaning and defaults; ``reconnect=`` also takes a
    :class:`~octoproto.ReconnectSchedule`), ``generate_request_id`` and any
    :class:`~octoproto.RpcConfig` field. See :doc:`/howto/rpc`. Returns at
    once with the loop thread started; use it in a ``with`` block, or
    :meth:`~RpcSession.close` it.
    """
    session = RpcSession(rpc_client(url, **options), ssl_context, max_queue, None)
    session._start()
    return session


class SocketIOSession(Session[SocketIOClient], BlockingSocketIO[_Transport]):
    """A live Socket.IO client on a background thread. Get one from :func:`connect_socketio`.

    Every method is thread-safe; handlers run on the loop thread, where
    :meth:`call` is refused (it would wait for itself).
    """

    _connect_done: threading.Event  # what connect_socketio waits on

    def __init__(
        self,
        core: SocketIOClient,
        ssl_context: ssl.SSLContext | None,
        max_queue: int,
        handlers: Handlers | None,
    ) -> None:
        super().__init__(core, ssl_context, max_queue, None)
        self._setup_socketio(handlers, threading.Event())

    def start_background_task(self, target: Callable[..., object], *args: Any) -> threading.Thread:
        """Run ``target(*args)`` on a new daemon thread (python-socketio's way); the thread."""
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        return thread

    def sleep(self, seconds: float = 0) -> None:
        """Sleep the calling thread."""
        time.sleep(seconds)


def connect_socketio(
    url: str,
    *,
    handlers: Handlers | None = None,
    wait_timeout: float = 5.0,
    ssl_context: ssl.SSLContext | None = None,
    max_queue: int = DEFAULT_MAX_QUEUE,
    **options: Any,
) -> SocketIOSession:
    """Connect to a Socket.IO server (v5, python-socketio or socket.io) at ``url``.

    python-socketio's ``connect()`` options: ``headers``, ``auth`` (sent with
    every namespace's CONNECT, on every connection), ``namespaces`` (default:
    those ``handlers`` has handlers for, else ``"/"``), ``socketio_path``,
    ``wait_timeout`` (seconds for the first connection, namespaces
    included), and the ``reconnection*`` options; also any
    :class:`~octoproto.SocketIOConfig` field. Pass ``handlers`` (a
    :class:`Handlers`) to have handlers in place
    before the first event. Raises :class:`ConnectionError` when the first
    attempt fails (as python-socketio's ``connect()``); later losses are
    redialled. See :doc:`/howto/socketio`.
    Returns once connected, with the loop thread running; use it in a
    ``with`` block, or :meth:`~SocketIOSession.disconnect` it.
    """
    core = socketio_core(url, handlers=handlers, **options)
    session = SocketIOSession(core, ssl_context, max_queue, handlers)
    session._start()
    session._connect_done.wait(wait_timeout)
    error = session._first_connect_error(wait_timeout)
    if error is not None:
        session.close()
        raise error
    return session
