"""The asyncio adapter: ``async with connect(url, ...) as client``.

The same surface and behaviour as the trio adapter, on asyncio streams: the
loop task and the task per transport are the same code (``_async.py``); what
is asyncio's own is here. Every protocol decision (reconnects, timeouts,
login, throttle) is the core's.

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
import os
import ssl
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

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

# asyncio runs a timer up to one clock tick early (it compares against
# ``time() + resolution``). Waking before the core's deadline would find no
# timer due and spin until the clock ticks (15.6 ms on Windows), so sleep
# one tick longer.
_CLOCK_RESOLUTION = time.get_clock_info("monotonic").resolution


class _Transport(AsyncTransport):
    """A transport's streams and its tasks: one dials and reads, one writes."""

    def __init__(self, command: OpenTransport) -> None:
        super().__init__(command, asyncio.Event())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None
        self.write_task: asyncio.Task[None] | None = None
        self.stop_later: asyncio.TimerHandle | None = None


class Session(AsyncSession[_Transport, C]):
    """A live session of any core on asyncio. Get one from :func:`open_session`."""

    # ssl.SSLError is an OSError; named for the reader.
    _errors = (OSError, ssl.SSLError)

    def __init__(self, core: C, ssl_context: ssl.SSLContext | None, max_queue: int) -> None:
        self._loop = asyncio.get_running_loop()
        self._ssl_context = ssl_context
        self._tasks: set[asyncio.Task[None]] = set()
        # The task running the ``async with`` block, cancelled if one of ours crashes.
        self._host = asyncio.current_task()
        self._exiting = False
        self._failure: Exception | None = None
        self._timer: asyncio.TimerHandle | None = None  # the loop's wake-up for the core
        self._timer_at = 0.0
        super().__init__(
            core,
            clock=self._loop.time,
            make_transport=_Transport,
            max_queue=max_queue,
            flag=asyncio.Event,
        )
        self._runner = self._spawn(self._run())

    async def _sleep_until(self, deadline: float | None) -> None:
        # A timer on the loop's own clock (the core's clock) sets the same
        # event as any input does; no extra task, unlike wait_for. It is
        # kept while it is due no later than the core's deadline: the link
        # timers move on with every chunk received, and re-arming a timer
        # per input costs more (a heap push and a cancelled handle) than the
        # one early turn of the loop a stale timer costs (the core's
        # deadline is checked on every turn: see ``_timer_if_due``).
        timer = self._timer
        if deadline is not None and (timer is None or self._timer_at > deadline):
            if timer is not None:
                timer.cancel()
            self._timer_at = deadline
            self._timer = self._loop.call_at(deadline + _CLOCK_RESOLUTION, self._timer_fired)
        await self._wakeup.wait()

    def _timer_fired(self) -> None:
        self._timer = None
        self._wakeup.set()

    def _start(self, transport: _Transport) -> None:
        transport.task = self._spawn(self._transport_task(transport))
        transport.write_task = self._spawn(self._write_all(transport))

    def _stop(self, transport: _Transport, delay: float) -> None:
        if delay > 0:
            if transport.stop_later is None:
                transport.stop_later = self._loop.call_later(delay, self._stop, transport, 0.0)
            return
        if transport.stop_later is not None:
            transport.stop_later.cancel()
        for task in (transport.task, transport.write_task):
            if task is not None:
                task.cancel()

    async def _transport_task(self, transport: _Transport) -> None:
        # The task owns the socket: it is closed before the task ends, so
        # "no task left" means "no socket left".
        try:
            await self._serve(transport)
            await self._loop.create_future()  # until the core's close stops it
        finally:
            if transport.writer is not None:
                # abort(), not close(): a TLS close_notify could wait on the peer.
                transport.writer.transport.abort()
                # The socket itself is closed on the loop's next turn; wait
                # for it, so a finished task means a closed socket.
                with contextlib.suppress(Exception):
                    await transport.writer.wait_closed()

    async def _dial(self, transport: _Transport) -> None:
        command = transport.command
        context = tls_context(command, self._ssl_context)
        transport.reader, transport.writer = await asyncio.open_connection(
            command.host,
            command.port,
            ssl=context,
            server_hostname=command.server_hostname if context is not None else None,
            # No happy_eyeballs_delay: CPython's staggered race leaks a socket
            # when the dial is cancelled mid-way (seen 20 times in 20 here).
            # Addresses are then tried one after the other.
        )
        # drain() then returns only when everything is handed on, as trio's
        # send_all does: send times are real and nothing the core sent is
        # still buffered when the transport is aborted.
        transport.writer.transport.set_write_buffer_limits(high=0)

    async def _read(self, transport: _Transport) -> bytes:
        assert transport.reader is not None
        return await transport.reader.read(READ_SIZE)

    async def _write(self, transport: _Transport, data: bytes) -> None:
        assert transport.writer is not None
        transport.writer.write(data)
        await transport.writer.drain()

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
        if not self._exiting and self._host is not None:
            self._host.cancel()

    async def _aclose(self) -> None:
        """Leave: a bounded graceful disconnect, then stop every task and wait for all."""
        self._exiting = True
        try:
            # disconnect() returns at once if the loop is gone.
            if self._failure is None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.disconnect(), self.core.config.close_timeout + 1.0)
        finally:
            for task in list(self._tasks):
                task.cancel()
            if self._timer is not None:
                self._timer.cancel()
            self._abandon()
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


class Client(Session[OctoPrintClient], AsyncClient[_Transport]):
    """A live OctoPrint push socket on asyncio. Get one from :func:`connect`."""


S = TypeVar("S", bound=Session[Any])


@asynccontextmanager
async def _run(make: Callable[[], S]) -> AsyncIterator[S]:
    """Start the session ``make()`` builds, and close it when the block is left."""
    client = make()
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


def open_session(
    core: C, *, ssl_context: ssl.SSLContext | None = None, max_queue: int = DEFAULT_MAX_QUEUE
) -> AbstractAsyncContextManager[Session[C]]:
    """Drive any core (``WebSocketClient``, ``OctoPrintClient`` ...) on asyncio's loop.

    The lower-level entry point under :func:`connect`: the same loop, the
    same guarantees on leaving the block, for a core built by the caller
    (``core.connect()`` is called for you). The session has the surface
    every dialect shares: ``async for``, :meth:`~Session.on_batch`,
    :meth:`~Session.call` (e.g. ``session.call(core.send, "hi")``),
    ``reconnect``, ``disconnect``, ``state``, ``is_open``, ``core``.
    """
    return _run(lambda: Session(core, ssl_context, max_queue))


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
    try:
        async with _run(lambda: Client(core, ssl_context, max_queue)) as client:
            yield client
    finally:
        if trace is not None:
            trace.close()


class RpcSession(Session[RpcClient], AsyncRpc[_Transport]):
    """A live RPC client (rpc-websockets) on asyncio. Get one from :func:`connect_rpc`."""


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
    async with _run(lambda: RpcSession(core, ssl_context, max_queue)) as client:
        yield client


class SocketIOSession(Session[SocketIOClient], AsyncSocketIO[_Transport]):
    """A live Socket.IO client on asyncio. Get one from :func:`connect_socketio`."""

    _connect_done: asyncio.Event  # what connect_socketio waits on

    def __init__(
        self,
        core: SocketIOClient,
        ssl_context: ssl.SSLContext | None,
        max_queue: int,
        handlers: Handlers | None,
    ) -> None:
        self._setup_socketio(handlers, asyncio.Event())
        super().__init__(core, ssl_context, max_queue)

    def _start_task(self, target: Callable[[], Any]) -> None:
        self._spawn(target())

    async def sleep(self, seconds: float = 0) -> None:
        """Sleep on asyncio."""
        await asyncio.sleep(seconds)


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
    async with _run(lambda: SocketIOSession(core, ssl_context, max_queue, handlers)) as client:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(client._connect_done.wait(), wait_timeout)
        error = client._first_connect_error(wait_timeout)
        if error is not None:
            raise error
        yield client
