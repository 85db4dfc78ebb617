"""The asyncio adapter: ``async with connect(url, ...) as client``.

The same surface and behaviour as the trio adapter, on asyncio streams. The
adapter only moves bytes, time and events between asyncio and the core: one
task runs the loop (execute the core's commands, hand its events to handlers
and to ``async for``, sleep until input or the core's deadline), and one task
per open transport dials and reads. Every protocol decision (reconnects,
timeouts, login, throttle) is the core's.

asyncio has no nursery, so the adapter keeps the same promises by hand:

* every task it starts is tracked, and leaving the block waits for all of
  them (after a bounded, graceful disconnect);
* a transport task owns its socket and closes it before it ends, so "no
  task left" means "no socket left";
* a task that crashes (a bug: remote faults never raise) cancels the block
  and its error is raised from ``async with``, as a nursery would.

Runs on Python 3.10 too: no ``asyncio.timeout`` or ``TaskGroup``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from octoproto import (
    Channel,
    CloseTransport,
    Endpoint,
    Event,
    OctoPrintClient,
    OpenTransport,
    Secret,
    SendData,
    SessionState,
)

from ._common import (
    DEFAULT_MAX_QUEUE,
    READ_SIZE,
    BaseClient,
    EventBuffer,
    deliver_events,
    describe_error,
    octoprint_client,
    tls_context,
)

__all__ = ["Client", "connect"]

# ssl.SSLError is an OSError; named for the reader.
_TRANSPORT_ERRORS = (OSError, ssl.SSLError)

# RFC 8305's "Connection Attempt Delay", which trio's open_tcp_stream uses
# too: a dead first address (often IPv6) costs 0.25 s, not a connect timeout.
_HAPPY_EYEBALLS_DELAY = 0.25

# asyncio runs a timer up to one clock tick early (it compares against
# ``time() + resolution``). Waking before the core's deadline would find no
# timer due and spin until the clock ticks (15.6 ms on Windows), so sleep
# one tick longer.
_CLOCK_RESOLUTION = time.get_clock_info("monotonic").resolution


class _Transport:
    """One transport the core asked for: the task that dials and reads it, and its writer.

    The record's identity is what the stale-transport guard compares: the
    core's current transport on a channel is the one in ``Client._transports``.
    """

    def __init__(self, client: Client, command: OpenTransport) -> None:
        self.writer: asyncio.StreamWriter | None = None
        self.task = client._spawn(client._transport(command, self))


class Client(BaseClient):
    """A live OctoPrint push socket on asyncio. Get one from :func:`connect`."""

    def __init__(
        self, core: OctoPrintClient, ssl_context: ssl.SSLContext | None, max_queue: int
    ) -> None:
        super().__init__(core)
        self._loop = asyncio.get_running_loop()
        self._ssl_context = ssl_context
        self._buffer = EventBuffer(max_queue)
        self._transports: dict[Channel, _Transport] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # The task running the ``async with`` block, cancelled if one of ours crashes.
        self._host = asyncio.current_task()
        self._exiting = False
        self._failure: Exception | None = None
        self._wakeup = asyncio.Event()
        self._events_waiting = asyncio.Event()
        self._room_in_buffer = asyncio.Event()
        self._closed = asyncio.Event()
        self._runner = self._spawn(self._run())

    # --- the user's surface (core, state, is_open, on, off: see BaseClient) ----

    async def send_message(self, message_type: str, payload: object) -> None:
        """Send ``{message_type: payload}`` (validated; queued while disconnected)."""
        self.core.send_message(message_type, payload)
        self._wake()

    async def send_auth(self, user: str, session: str | Secret) -> None:
        """Authenticate the socket with a session from ``POST /api/login``."""
        self.core.send_auth(user, session)
        self._wake()

    async def subscribe(self, subscription: dict[str, object]) -> None:
        """Replace the subscription (kept for reconnects)."""
        self.core.subscribe(subscription)
        self._wake()

    async def set_throttle(self, factor: int) -> None:
        """Set the throttle factor (kept for reconnects)."""
        self.core.set_throttle(factor)
        self._wake()

    async def reconnect(self) -> None:
        """Drop the connection and dial again at once."""
        self._closed.clear()
        self.core.reconnect(self._loop.time())
        self._wake()

    async def disconnect(self, code: int | None = None, reason: str = "") -> None:
        """Close for good and wait until the close handshake is over."""
        if self.core.state not in (SessionState.CLOSED, SessionState.IDLE):
            self.core.disconnect(self._loop.time(), code=code, reason=reason)
            self._wake()
            await self._closed.wait()

    async def __aiter__(self) -> AsyncIterator[Event]:
        """Every event, in order, until the session is closed for good."""
        self._buffer.active = True
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
        core, loop = self.core, self._loop
        core.connect(loop.time())
        while True:
            await self._execute_commands()
            while self._deliver_events():
                # Handlers may have called the core (a reply, a throttle
                # change): carry that out now, not at the next input.
                await self._execute_commands()
            if core.state is SessionState.CLOSED:
                # Closed for good (no timers are left): tell disconnect() and
                # the iterator, then sleep until the user reconnects.
                self._closed.set()
                self._events_waiting.set()
            await self._sleep_until(core.get_timer())
            core.handle_timer(loop.time())

    async def _sleep_until(self, deadline: float | None) -> None:
        # A timer on the loop's own clock (the core's clock) sets the same
        # event as any input does; no extra task, unlike wait_for.
        timer = None
        if deadline is not None:
            timer = self._loop.call_at(deadline + _CLOCK_RESOLUTION, self._wakeup.set)
        try:
            await self._wakeup.wait()
        finally:
            if timer is not None:
                timer.cancel()
        self._wakeup.clear()

    async def _execute_commands(self) -> None:
        while (command := self.core.next_command()) is not None:
            if isinstance(command, OpenTransport):
                # The core closes a transport before it opens the next one on
                # the same channel; closing here too means no path leaks one.
                self._close(command.channel)
                self._transports[command.channel] = _Transport(self, command)
            elif isinstance(command, SendData):
                await self._send(command)
            elif isinstance(command, CloseTransport):
                self._close(command.channel)

    async def _send(self, command: SendData) -> None:
        channel, core, loop = command.channel, self.core, self._loop
        transport = self._transports.get(channel)
        if transport is None or transport.writer is None:
            return
        started = loop.time()
        try:
            transport.writer.write(command.data)
            await transport.writer.drain()
        except _TRANSPORT_ERRORS as exc:
            # The reader may have reported this transport's end already.
            if self._transports.get(channel) is transport:
                self._close(channel)
                core.transport_failed(describe_error(exc), loop.time(), channel=channel)
            return
        finished = loop.time()
        if channel is Channel.SOCKET:
            core.io_completed("send", len(command.data), finished - started, finished)

    def _close(self, channel: Channel) -> None:
        # The task closes its socket as it ends (see _transport).
        transport = self._transports.pop(channel, None)
        if transport is not None:
            transport.task.cancel()

    def _deliver_events(self) -> bool:
        if not deliver_events(self.core, self._buffer, self._loop.time):
            return False
        self._events_waiting.set()
        return True

    async def _transport(self, command: OpenTransport, transport: _Transport) -> None:
        channel, core, loop = command.channel, self.core, self._loop

        def current() -> bool:
            # A transport replaced by a newer one on the same channel must
            # not feed the core: its input would be taken for the new one's.
            return self._transports.get(channel) is transport

        def failed(exc: BaseException) -> None:
            # The core sends no CloseTransport after a failure: drop it here.
            del self._transports[channel]
            core.transport_failed(describe_error(exc), loop.time(), channel=channel)
            self._wake()

        try:
            reader, writer = await self._dial(command)
        except _TRANSPORT_ERRORS as exc:
            if current():
                failed(exc)
            return
        # No await between the dial and here, so a cancellation cannot leave
        # the socket unowned; from here on it is closed whatever happens.
        transport.writer = writer
        try:
            if not current():
                return
            # drain() then returns only when everything is handed on, as
            # trio's send_all does: send times are real and nothing the core
            # sent is still buffered when the transport is aborted.
            writer.transport.set_write_buffer_limits(high=0)
            core.transport_opened(loop.time(), channel=channel)
            self._wake()
            while True:
                while channel is Channel.SOCKET and self._buffer.full:
                    self._room_in_buffer.clear()
                    await self._room_in_buffer.wait()
                try:
                    data = await reader.read(READ_SIZE)
                except _TRANSPORT_ERRORS as exc:
                    if current():
                        failed(exc)
                    return
                if not current():
                    return
                if not data:
                    # The core closes the transport on EOF; nothing more can
                    # be read, so the socket may go at once.
                    core.receive_eof(loop.time(), channel=channel)
                    self._wake()
                    return
                core.receive_data(data, loop.time(), channel=channel)
                self._wake()
        finally:
            # abort(), not close(): a TLS close_notify could wait on the peer.
            writer.transport.abort()
            # The socket itself is closed on the loop's next turn; wait for
            # it, so a finished task means a closed socket.
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _dial(
        self, command: OpenTransport
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        context = tls_context(command, self._ssl_context)
        return await asyncio.open_connection(
            command.host,
            command.port,
            ssl=context,
            server_hostname=command.server_hostname if context is not None else None,
            happy_eyeballs_delay=_HAPPY_EYEBALLS_DELAY,
        )

    # --- tasks: what a nursery would do -------------------------------------

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = self._loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        # KeyboardInterrupt and SystemExit already left the event loop.
        if not isinstance(error, Exception) or self._failure is not None:
            return
        self._failure = error
        # Release whoever waits for the loop that just died.
        self._closed.set()
        self._events_waiting.set()
        if not self._exiting and self._host is not None:
            self._host.cancel()

    async def _aclose(self) -> None:
        """Leave: a bounded graceful disconnect, then stop every task and wait for all."""
        self._exiting = True
        try:
            if self._failure is None and not self._runner.done():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.disconnect(), self.core.config.close_timeout + 1.0)
        finally:
            self._runner.cancel()
            for channel in list(self._transports):
                self._close(channel)
            await self._wait_for_tasks()

    async def _wait_for_tasks(self) -> None:
        # Every task is cancelled by now and ends within a few turns of the
        # loop (a transport task aborts its socket and waits for the close).
        # A cancellation meanwhile is kept for after: leaving earlier would
        # leave tasks and sockets behind.
        cancelled = False
        while pending := [task for task in self._tasks if not task.done()]:
            try:
                await asyncio.wait(pending)
            except asyncio.CancelledError:
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError


@asynccontextmanager
async def connect(
    url: str,
    *,
    api_key: str | Secret | None = None,
    username: str | None = None,
    password: str | Secret | None = None,
    endpoint: Endpoint | str = Endpoint.SOCKJS,
    ssl_context: ssl.SSLContext | None = None,
    max_queue: int = DEFAULT_MAX_QUEUE,
    **options: Any,
) -> AsyncIterator[Client]:
    """Connect to OctoPrint's push socket at ``url`` and keep connected.

    ``options`` are :class:`~octoproto.OctoPrintConfig` fields
    (``throttle``, ``subscription``, ``reconnect``, ``connect_timeout`` ...).
    The context manager returns at once; connection progress arrives as
    events (``async for event in client``) and messages go to handlers
    (``client.on("current", handler)``). Leaving the block closes the
    session (with the close handshake, for at most ``close_timeout + 1``
    seconds) and leaves no task or socket behind, also on an error or a
    cancellation.
    """
    core = octoprint_client(
        url, api_key=api_key, username=username, password=password, endpoint=endpoint, **options
    )
    client = Client(core, ssl_context, max_queue)
    try:
        yield client
    except asyncio.CancelledError:
        if client._failure is None:
            raise
        # The cancellation was ours (a task crashed): raise its error below
        # instead, and keep Python 3.11+'s cancellation count balanced.
        uncancel = getattr(client._host, "uncancel", None)
        if uncancel is not None:
            uncancel()
    finally:
        await client._aclose()
    if client._failure is not None:
        raise client._failure
