"""The trio adapter: ``async with connect(url, ...) as client``.

The adapter only moves bytes, time and events between trio and the core:
one task runs the loop (execute the core's commands, hand its events to
handlers and to ``async for``, sleep until input or the core's deadline),
and one task per open transport dials and reads. Every protocol decision
(reconnects, timeouts, login, throttle) is the core's.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

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

_TRANSPORT_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError)


class Client(BaseClient):
    """A live OctoPrint push socket on trio. Get one from :func:`connect`."""

    def __init__(
        self,
        core: OctoPrintClient,
        nursery: trio.Nursery,
        ssl_context: ssl.SSLContext | None,
        max_queue: int,
    ) -> None:
        super().__init__(core)
        self._nursery = nursery
        self._ssl_context = ssl_context
        self._streams: dict[Channel, trio.abc.Stream] = {}
        self._transport_scopes: dict[Channel, trio.CancelScope] = {}
        self._wakeup = trio.Event()
        self._buffer = EventBuffer(max_queue)
        self._events_waiting = trio.Event()
        self._room_in_buffer = trio.Event()
        self._closed = trio.Event()

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
        if self._closed.is_set():
            self._closed = trio.Event()
        self.core.reconnect(trio.current_time())
        self._wake()

    async def disconnect(self, code: int | None = None, reason: str = "") -> None:
        """Close for good and wait until the close handshake is over."""
        if self.core.state not in (SessionState.CLOSED, SessionState.IDLE):
            self.core.disconnect(trio.current_time(), code=code, reason=reason)
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
                    await self._events_waiting.wait()
                    self._events_waiting = trio.Event()
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
        core = self.core
        core.connect(trio.current_time())
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
            deadline = core.get_timer()
            with trio.move_on_at(math.inf if deadline is None else deadline):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            core.handle_timer(trio.current_time())

    async def _execute_commands(self) -> None:
        while (command := self.core.next_command()) is not None:
            if isinstance(command, OpenTransport):
                scope = trio.CancelScope()
                self._transport_scopes[command.channel] = scope
                self._nursery.start_soon(self._transport, command, scope)
            elif isinstance(command, SendData):
                await self._send(command)
            elif isinstance(command, CloseTransport):
                await self._close(command.channel)

    async def _send(self, command: SendData) -> None:
        stream = self._streams.get(command.channel)
        if stream is None:
            return
        started = trio.current_time()
        try:
            await stream.send_all(command.data)
        except _TRANSPORT_ERRORS as exc:
            await self._close(command.channel)
            self.core.transport_failed(
                describe_error(exc), trio.current_time(), channel=command.channel
            )
            return
        finished = trio.current_time()
        if command.channel is Channel.SOCKET:
            self.core.io_completed("send", len(command.data), finished - started, finished)

    async def _close(self, channel: Channel) -> None:
        scope = self._transport_scopes.pop(channel, None)
        if scope is not None:
            scope.cancel()
        stream = self._streams.pop(channel, None)
        if stream is not None:
            await trio.aclose_forcefully(stream)

    def _deliver_events(self) -> bool:
        if not deliver_events(self.core, self._buffer, trio.current_time):
            return False
        self._events_waiting.set()
        return True

    async def _transport(self, command: OpenTransport, scope: trio.CancelScope) -> None:
        channel = command.channel
        core = self.core

        def current() -> bool:
            # A transport replaced by a newer one on the same channel must
            # not feed the core: its input would be taken for the new one's.
            return self._transport_scopes.get(channel) is scope

        with scope:
            try:
                stream = await self._dial(command)
            except _TRANSPORT_ERRORS as exc:
                if current():
                    core.transport_failed(describe_error(exc), trio.current_time(), channel=channel)
                    self._wake()
                return
            if not current():
                await trio.aclose_forcefully(stream)
                return
            self._streams[channel] = stream
            core.transport_opened(trio.current_time(), channel=channel)
            self._wake()
            while True:
                while channel is Channel.SOCKET and self._buffer.full:
                    self._room_in_buffer = trio.Event()
                    await self._room_in_buffer.wait()
                try:
                    data = await stream.receive_some(READ_SIZE)
                except _TRANSPORT_ERRORS as exc:
                    if current():
                        # The core sends no CloseTransport after a failure:
                        # let go of the broken stream here, or it stays open.
                        del self._transport_scopes[channel]
                        del self._streams[channel]
                        core.transport_failed(
                            describe_error(exc), trio.current_time(), channel=channel
                        )
                        self._wake()
                        await trio.aclose_forcefully(stream)
                    return
                if not current():
                    return
                if not data:
                    core.receive_eof(trio.current_time(), channel=channel)
                    self._wake()
                    return
                # bytes() of a bytes object is the object itself: no copy.
                core.receive_data(bytes(data), trio.current_time(), channel=channel)
                self._wake()

    async def _dial(self, command: OpenTransport) -> trio.abc.Stream:
        context = tls_context(command, self._ssl_context)
        if context is None:
            return await trio.open_tcp_stream(command.host, command.port)
        return await trio.open_ssl_over_tcp_stream(
            command.host, command.port, ssl_context=context, https_compatible=True
        )


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
    session (with the close handshake) and leaves no task or socket behind.
    """
    core = octoprint_client(
        url, api_key=api_key, username=username, password=password, endpoint=endpoint, **options
    )
    async with trio.open_nursery() as nursery:
        client = Client(core, nursery, ssl_context, max_queue)
        nursery.start_soon(client._run)
        try:
            yield client
        finally:
            with trio.move_on_after(core.config.close_timeout + 1.0) as cleanup:
                cleanup.shield = True
                await client.disconnect()
            nursery.cancel_scope.cancel()
