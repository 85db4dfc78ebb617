"""The trio adapter: ``async with connect(url, ...) as client``.

The adapter only moves bytes, time and events between trio and the core: one
task runs the loop, and two tasks per open transport dial and read, and write
(all shared with the asyncio adapter, in ``_async.py``). Every protocol decision
(reconnects, timeouts, login, throttle) is the core's. What is trio's own is
here: streams, cancel scopes and the nursery, which also makes every task
and stream end with the ``async with`` block.
"""

from __future__ import annotations

import math
import os
import ssl
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

import trio

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

from octoproto import (
    Endpoint,
    OctoPrintClient,
    OpenTransport,
    RpcClient,
    Secret,
    SocketIOClient,
)

from ._async import AsyncClient, AsyncSession, AsyncTransport
from ._common import DEFAULT_MAX_QUEUE, READ_SIZE, C, octoprint_core, tls_context
from ._rpc import AsyncRpc, rpc_client
from ._socketio import AsyncSocketIO, ClientNamespace, Handlers, socketio_core

__all__ = [
    "Client",
    "ClientNamespace",
    "Handlers",
    "RpcSession",
    "Session",
    "SocketIOSession",
    "connect",
    "connect_rpc",
    "connect_socketio",
    "open_session",
]


class _Flag:
    """:class:`asyncio.Event`'s surface on trio, whose events cannot be cleared."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    def clear(self) -> None:
        if self._event.is_set():
            self._event = trio.Event()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()


class _Transport(AsyncTransport):
    """A transport's stream and the cancel scopes of its tasks (reader, writer)."""

    def __init__(self, command: OpenTransport) -> None:
        super().__init__(command, _Flag())
        self.stream: trio.abc.Stream | None = None
        self.scope = trio.CancelScope()
        self.write_scope = trio.CancelScope()


class Session(AsyncSession[_Transport, C]):
    """A live session of any core on trio. Get one from :func:`open_session`."""

    _errors = (OSError, trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError)

    def __init__(
        self,
        core: C,
        nursery: trio.Nursery,
        ssl_context: ssl.SSLContext | None,
        max_queue: int,
    ) -> None:
        self._nursery = nursery
        self._ssl_context = ssl_context
        super().__init__(
            core,
            clock=trio.current_time,
            make_transport=_Transport,
            max_queue=max_queue,
            flag=_Flag,
        )

    async def _sleep_until(self, deadline: float | None) -> None:
        with trio.move_on_at(math.inf if deadline is None else deadline):
            await self._wakeup.wait()

    def _start(self, transport: _Transport) -> None:
        self._nursery.start_soon(self._transport_task, transport)
        self._nursery.start_soon(self._writer_task, transport)

    def _stop(self, transport: _Transport, delay: float) -> None:
        for scope in (transport.scope, transport.write_scope):
            if delay <= 0:
                scope.cancel()
            else:
                scope.deadline = min(scope.deadline, trio.current_time() + delay)

    async def _writer_task(self, transport: _Transport) -> None:
        with transport.write_scope:
            await self._write_all(transport)

    async def _transport_task(self, transport: _Transport) -> None:
        # The task owns the stream: it is closed when the task ends, however
        # it ends (stopped, the block left, the exit forced, the loop crashed).
        with transport.scope:
            try:
                await self._serve(transport)
                await trio.sleep_forever()  # until the core's close stops it
            finally:
                if transport.stream is not None:
                    await trio.aclose_forcefully(transport.stream)

    async def _dial(self, transport: _Transport) -> None:
        command = transport.command
        context = tls_context(command, self._ssl_context)
        if context is None:
            transport.stream = await trio.open_tcp_stream(command.host, command.port)
        else:
            stream = await trio.open_ssl_over_tcp_stream(
                command.host, command.port, ssl_context=context, https_compatible=True
            )
            transport.stream = stream
            # Now, in this task: done lazily, the handshake would run in the
            # reader or in the loop's send_all, and when it failed in one the
            # other waited for it for good (the loop, with every timer).
            await stream.do_handshake()

    async def _read(self, transport: _Transport) -> bytes:
        assert transport.stream is not None
        # bytes() of a bytes object is the object itself: no copy.
        return bytes(await transport.stream.receive_some(READ_SIZE))

    async def _write(self, transport: _Transport, data: bytes) -> None:
        assert transport.stream is not None
        await transport.stream.send_all(data)


class Client(Session[OctoPrintClient], AsyncClient[_Transport]):
    """A live OctoPrint push socket on trio. Get one from :func:`connect`."""


S = TypeVar("S", bound=Session[Any])


@asynccontextmanager
async def _run(close_timeout: float, make: Callable[[trio.Nursery], S]) -> AsyncIterator[S]:
    """Start the session ``make(nursery)`` builds, and close it when the block is left."""
    try:
        async with trio.open_nursery() as nursery:
            client = make(nursery)
            nursery.start_soon(client._run)
            try:
                yield client
            finally:
                # disconnect() returns at once if the loop is gone (it crashed).
                with trio.move_on_after(close_timeout + 1.0) as cleanup:
                    cleanup.shield = True
                    await client.disconnect()
                # Every transport task closes its stream as it is cancelled.
                nursery.cancel_scope.cancel()
                client._abandon()
    except BaseExceptionGroup as group:
        # The nursery is ours, not the user's: an error raised in the block
        # comes out as it is (``except MyError:`` works), as on asyncio.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


def open_session(
    core: C, *, ssl_context: ssl.SSLContext | None = None, max_queue: int = DEFAULT_MAX_QUEUE
) -> AbstractAsyncContextManager[Session[C]]:
    """Drive any core (``WebSocketClient``, ``OctoPrintClient`` ...) in a trio nursery.

    The lower-level entry point under :func:`connect`: the same loop, the
    same guarantees on leaving the block, for a core built by the caller
    (``core.connect()`` is called for you). The session has the surface
    every dialect shares: ``async for``, :meth:`~Session.on_batch`,
    :meth:`~Session.call` (e.g. ``session.call(core.send, "hi")``),
    ``reconnect``, ``disconnect``, ``state``, ``is_open``, ``core``.
    """
    close_timeout = core.config.close_timeout
    return _run(close_timeout, lambda nursery: Session(core, nursery, ssl_context, max_queue))


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
    record: str | os.PathLike[str] | None = None,
    record_secrets: bool = False,
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
    cancellation. ``record=path`` writes the session's trace to ``path`` as
    it runs (secrets redacted unless ``record_secrets``), for
    :func:`octoproto.replay`.
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
    make = lambda nursery: Client(core, nursery, ssl_context, max_queue)  # noqa: E731
    try:
        async with _run(core.config.close_timeout, make) as client:
            yield client
    finally:
        if trace is not None:
            trace.close()


class RpcSession(Session[RpcClient], AsyncRpc[_Transport]):
    """A live RPC client (rpc-websockets) on trio. Get one from :func:`connect_rpc`."""


@asynccontextmanager
async def connect_rpc(
    url: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    max_queue: int = DEFAULT_MAX_QUEUE,
    **options: Any,
) -> AsyncIterator[RpcSession]:
    """Connect to an rpc-websockets (or msgpack-rpc-websockets) server at ``url``.

    The URL's path is the namespace, its query (``?socket_id=``) passes
    through. ``options``: ``encoding`` (``"json"`` or ``"msgpack"``),
    ``reconnect``, ``reconnect_interval``, ``max_reconnects`` (rpc-websockets'
    meaning and defaults; ``reconnect=`` also takes a
    :class:`~octoproto.ReconnectSchedule`), ``generate_request_id`` and any
    :class:`~octoproto.RpcConfig` field. See :doc:`/howto/rpc`.
    Leaving the block closes the session, as :func:`connect` does.
    """
    core = rpc_client(url, **options)
    make = lambda nursery: RpcSession(core, nursery, ssl_context, max_queue)  # noqa: E731
    async with _run(core.config.close_timeout, make) as client:
        yield client


class SocketIOSession(Session[SocketIOClient], AsyncSocketIO[_Transport]):
    """A live Socket.IO client on trio. Get one from :func:`connect_socketio`."""

    _connect_done: trio.Event  # what connect_socketio waits on

    def __init__(
        self,
        core: SocketIOClient,
        nursery: trio.Nursery,
        ssl_context: ssl.SSLContext | None,
        max_queue: int,
        handlers: Handlers | None,
    ) -> None:
        super().__init__(core, nursery, ssl_context, max_queue)
        self._setup_socketio(handlers, trio.Event())

    def _start_task(self, target: Callable[[], Any]) -> None:
        self._nursery.start_soon(target)

    async def sleep(self, seconds: float = 0) -> None:
        """Sleep on trio."""
        await trio.sleep(seconds)


@asynccontextmanager
async def connect_socketio(
    url: str,
    *,
    handlers: Handlers | None = None,
    wait_timeout: float = 5.0,
    ssl_context: ssl.SSLContext | None = None,
    max_queue: int = DEFAULT_MAX_QUEUE,
    **options: Any,
) -> AsyncIterator[SocketIOSession]:
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
    Leaving the block disconnects, as :func:`connect` does.
    """
    core = socketio_core(url, handlers=handlers, **options)
    make = lambda nursery: SocketIOSession(core, nursery, ssl_context, max_queue, handlers)  # noqa: E731
    async with _run(core.config.close_timeout, make) as client:
        with trio.move_on_after(wait_timeout):
            await client._connect_done.wait()
        error = client._first_connect_error(wait_timeout)
        if error is not None:
            raise error
        yield client
