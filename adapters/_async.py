"""What the trio and asyncio adapters share: the ``async`` surface, the loop, the transport tasks.

Both adapters run the same loop (carry out the core's commands, hand its
events to handlers and to ``async for``, sleep until input or the core's
deadline) and the same two tasks per transport: one dials, reports and
reads; one writes what the loop queued for it. The loop never waits for a
write: a server that stops reading stalls a transport's writer, never the
loop and the core's timers (which then find the dead link). Neither is tied
to an event loop library: each adapter supplies the few primitives that
differ, a clearable :class:`Flag`, sleeping until a deadline, starting and
stopping a transport's tasks, and dialling, reading and writing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, TypeVar

from octoproto import (
    Channel,
    Event,
    LocalProtocolError,
    OctoPrintClient,
    OpenTransport,
    Secret,
    SendData,
    SessionState,
)

from ._common import BaseClient, BaseSession, C, CallOutcome, Transport, result_of

#: Seconds a transport the core closed may still take to write what was queued
#: before the close (a close frame) to a server that does not read; then it is
#: dropped with what is left.
CLOSE_GRACE = 1.0


class Flag(Protocol):
    """What the loop needs of an event: :class:`asyncio.Event`'s surface."""

    def set(self) -> None: ...
    def clear(self) -> None: ...
    def is_set(self) -> bool: ...
    async def wait(self) -> object: ...


class AsyncTransport(Transport):
    """A transport of the async adapters, with the writes queued for its writer task."""

    def __init__(self, command: OpenTransport, flag: Flag) -> None:
        super().__init__(command)
        #: Each ``SendData``'s bytes, in order, until written.
        self.outgoing: deque[bytes] = deque()
        #: Set when something is queued, or the transport is closing.
        self.has_output = flag
        #: The core closed it: the writer stops it once ``outgoing`` is out.
        self.closing = False


T = TypeVar("T", bound=AsyncTransport)


class AsyncSession(BaseSession[T, C]):
    """The part of the trio and asyncio ``Session`` that is the same on both (any core)."""

    #: What a failed dial, read or write raises (the adapter names its own).
    _errors: tuple[type[BaseException], ...] = (OSError,)

    def __init__(self, core: C, *, flag: Callable[[], Flag], **plumbing: Any) -> None:
        """``flag`` makes the adapter's :class:`Flag`; ``plumbing``: see :class:`BaseClient`."""
        super().__init__(core, **plumbing)
        self._flag = flag
        self._wakeup = flag()
        self._events_waiting = flag()
        self._room_in_buffer = flag()
        self._closed = flag()  # closed for good, as the loop last saw it (or the loop ended)
        self._ended = False  # the loop has ended: left, cancelled or crashed
        # The deadline the loop task sleeps until (None: no timer), so that a
        # reader's turn wakes it only when the core's deadline came earlier.
        self._sleeping_until: float | None = None
        self._feed(core.connect)

    # --- the user's surface (core, state, is_open, call, on_batch: see BaseSession)

    async def reconnect(self) -> None:
        """Drop the connection and dial again at once (also after a close for good)."""
        if self._ended:
            raise LocalProtocolError("this client is closed; connect() a new one")
        self._closed.clear()
        self._feed(self.core.reconnect)

    async def disconnect(self, code: int | None = None, reason: str = "") -> None:
        """Close for good and wait until the close handshake is over.

        Returns at once when there is nothing to close, or no loop left to
        close it (it was cancelled or crashed): then the session ends at once.
        """
        if not self._ended and self._disconnect(code, reason):
            await self._closed.wait()
        if self._ended:
            self._abandon()

    async def _request(self, method: Callable[..., int], *args: Any, **kwargs: Any) -> object:
        """Start a call with ``method(*args, now=..., **kwargs)`` and wait for its outcome.

        Returns the result, or raises the :class:`~octoproto.CallError` the
        core reported (a timeout, the connection lost, the server's error).
        Cancelled, it stops waiting; the call itself runs on in the core
        (its outcome still reaches the iterators).
        """
        if self._ended:
            raise LocalProtocolError("this client is closed; connect() a new one")
        done = self._flag()
        outcomes: list[CallOutcome] = []

        def settle(outcome: CallOutcome) -> None:
            outcomes.append(outcome)
            done.set()

        call_id = self._start_call(settle, method, *args, **kwargs)
        try:
            await done.wait()
        finally:
            self._replies.pop(call_id, None)
        return result_of(outcomes[0])

    async def __aiter__(self) -> AsyncIterator[Event]:
        """Every event, in order, until the session is closed for good.

        The first iterator also gets the events from ``connect()`` on (see
        :class:`~octoproto.adapters._common.EventBuffer` for the rule).
        """
        self._buffer.start()
        try:
            while True:
                event = self._buffer.pop()
                if event is None:
                    if self._closed.is_set():
                        return
                    # Nothing can be pushed between pop() and clear(): no await.
                    self._events_waiting.clear()
                    await self._events_waiting.wait()
                    continue
                self._room_in_buffer.set()
                yield event
        finally:
            # Also after a ``break``: an iterator that is gone must not leave
            # the buffer full and reading paused.
            self._buffer.stop()
            self._room_in_buffer.set()

    # --- the loop -------------------------------------------------------------

    def _wake(self) -> None:
        self._wakeup.set()

    async def _run(self) -> None:
        try:
            while True:
                self._turn()
                # No command or event is waiting, and nothing could feed the
                # core since that was checked (no await): no input is missed.
                self._wakeup.clear()
                self._sleeping_until = self.core.get_timer()
                await self._sleep_until(self._sleeping_until)
                self._timer_if_due()
        finally:
            # Release whoever waits for the loop: it is gone.
            self._ended = True
            self._closed.set()
            self._events_waiting.set()

    def _turn(self) -> None:
        """Carry out the core's commands and deliver its events until none are left.

        The loop's work between two waits, with no await: run by the loop
        task, and by a reader task right after the input it fed (see
        :meth:`_received`).
        """
        while True:
            self._execute()
            if not self._deliver():
                break
            # Handlers may have called the core (a reply, a throttle
            # change): carry that out now, not at the next input.
        if self.core.state is SessionState.CLOSED:
            # Closed for good (no timers are left): tell disconnect() and
            # the iterators; the loop sleeps until the user reconnects.
            self._closed.set()
            self._events_waiting.set()

    def _received(self, transport: T, data: bytes) -> bool:
        """Feed ``data`` from the socket and take the loop's turn here, in the reader's task.

        Waking the loop task for it would cost a task switch per read; the
        turn is the same code either way, and no other task runs in between
        (no await). The loop task is woken only if the core's next deadline
        is now earlier than the one it sleeps until. Returns whether
        ``transport`` is still current.
        """
        with self._lock:
            if not self._transports.is_current(transport):
                return False
            self.core.receive_data(data, self._clock(), channel=transport.channel)
            self._transports.take()
        if self._ended:
            return True
        self._turn()
        deadline = self.core.get_timer()
        if deadline is not None and (
            self._sleeping_until is None or deadline < self._sleeping_until
        ):
            self._wake()
        return True

    def _execute(self) -> None:
        while (entry := self._transports.next()) is not None:
            command, transport = entry
            if isinstance(command, OpenTransport):
                self._start(transport)
            elif isinstance(command, SendData):
                transport.outgoing.append(command.data)
                transport.has_output.set()
            else:
                # The writer stops the transport once what was queued before
                # the close is out (a close frame goes out); a server that
                # does not read gets CLOSE_GRACE seconds.
                transport.closing = True
                transport.has_output.set()
                self._stop(transport, CLOSE_GRACE)

    def _deliver(self) -> bool:
        """Hand every event to the batch callback, handlers and iterators; whether there was any."""
        batch = self._next_batch()
        if not batch:
            return False
        self._dispatch(batch)
        self._buffer.extend(batch)
        self._events_waiting.set()
        return True

    async def _write_all(self, transport: T) -> None:
        """A transport's writer task: what the loop queued, in order; then stop the transport.

        It stops the transport (:meth:`_stop`) once the core has closed it
        and everything queued before the close is written. After a failed
        write it drops what is queued: the core closes the transport.
        """
        while True:
            if not transport.outgoing:
                if transport.closing:
                    break
                transport.has_output.clear()  # no await since the check
                await transport.has_output.wait()
                continue
            data = transport.outgoing[0]
            started = self._clock()
            try:
                await self._write(transport, data)
            except self._errors as exc:
                transport.outgoing.clear()
                self._fail(transport, exc)
                continue
            transport.outgoing.popleft()
            self._completed(transport, len(data), self._clock() - started)
        self._stop(transport, 0.0)

    async def _serve(self, transport: T) -> None:
        """A transport's task: dial, then read, until there is nothing more to report.

        When this returns the core no longer counts on the transport (it was
        closed, failed or ended), so its ``CloseTransport`` is queued: the
        adapter's task waits for it and closes the stream as it ends.
        """
        try:
            await self._dial(transport)
        except self._errors as exc:
            self._fail(transport, exc)
            return
        if not self._report(transport, self.core.transport_opened):
            return
        while True:
            while transport.channel is Channel.SOCKET and self._buffer.full:
                self._room_in_buffer.clear()
                await self._room_in_buffer.wait()
            try:
                data = await self._read(transport)
            except self._errors as exc:
                self._fail(transport, exc)
                return
            if not data:
                self._report(transport, self.core.receive_eof)
                return
            if not self._received(transport, data):
                return

    # --- what each adapter supplies -------------------------------------------

    async def _sleep_until(self, deadline: float | None) -> None:
        """Wait until :attr:`_wakeup` is set or ``deadline`` (the core's clock) passes."""
        raise NotImplementedError

    def _start(self, transport: T) -> None:
        """Start the transport's tasks.

        One runs :meth:`_serve`, then waits to be stopped, and closes the
        stream as it ends; the other runs :meth:`_write_all`.
        """
        raise NotImplementedError

    def _stop(self, transport: T, delay: float) -> None:
        """Stop the transport's tasks ``delay`` seconds from now at the latest; never blocks."""
        raise NotImplementedError

    async def _dial(self, transport: T) -> None:
        """Open the transport's stream and keep it on the record, with no await in between."""
        raise NotImplementedError

    async def _read(self, transport: T) -> bytes:
        """Up to ``READ_SIZE`` bytes; ``b""`` at EOF."""
        raise NotImplementedError

    async def _write(self, transport: T, data: bytes) -> None:
        """All of ``data``, returning once it is handed on to the OS."""
        raise NotImplementedError


class AsyncClient(AsyncSession[T, OctoPrintClient], BaseClient[T]):
    """The part of the trio and asyncio ``Client`` (OctoPrint) that is the same on both."""

    # --- the user's surface (core, state, is_open, on, off: see BaseClient) ----

    async def send_message(self, message_type: str, payload: object) -> None:
        """Send ``{message_type: payload}`` (validated; queued while disconnected)."""
        self._feed(self.core.send_message, message_type, payload)

    async def send_auth(self, user: str, session: str | Secret) -> None:
        """Authenticate the socket with a session from ``POST /api/login``."""
        self._feed(self.core.send_auth, user, session)

    async def subscribe(self, subscription: dict[str, object]) -> None:
        """Replace the subscription (kept for reconnects)."""
        self._call(self.core.subscribe, subscription)

    async def set_throttle(self, factor: int) -> None:
        """Set the throttle factor (kept for reconnects)."""
        self._call(self.core.set_throttle, factor)
