"""Quick checks of the asyncio adapter against a tiny in-test SockJS server.

The server is a raw asyncio TCP server on 127.0.0.1 that answers the
WebSocket upgrade with wsproto's server role and sends SockJS frames; it is
not OctoPrint (the shared adapter suite and the integration tests cover
that). The tests are plain functions that call :func:`asyncio.run`, since
pytest runs ``async def`` tests under trio here. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from octoproto.adapters.asyncio import connect
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from octoproto import Connected, Disconnected, Event, PushMessage

TIMEOUT = 10.0


class SockJSServer:
    """Accepts WebSocket upgrades and plays ``o``, ``connected`` and ``current`` frames.

    Answers the client's close frame and then waits for the client to close
    the socket, so a finished :attr:`handlers` task proves the socket was
    closed.
    """

    def __init__(self, currents: int, interval: float) -> None:
        self.currents = currents
        self.interval = interval
        self.handlers: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> SockJSServer:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._server.close()
        await self._server.wait_closed()
        for task in self.handlers:
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)

    async def wait_for_clients_gone(self) -> None:
        """Every client closed its socket."""
        await asyncio.wait_for(asyncio.gather(*self.handlers), TIMEOUT)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._serve(reader, writer))
        self.handlers.add(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        player: asyncio.Task[None] | None = None
        try:
            while data := await reader.read(65536):
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, Request):
                        writer.write(ws.send(AcceptConnection()))
                        player = asyncio.ensure_future(self._play(ws, writer))
                    elif isinstance(event, CloseConnection):
                        if player is not None:
                            player.cancel()
                        writer.write(ws.send(event.response()))
                await writer.drain()
        finally:
            if player is not None:
                player.cancel()
            writer.close()

    async def _play(self, ws: WSConnection, writer: asyncio.StreamWriter) -> None:
        for frame in ("o", 'a[{"connected":{}}]'):
            writer.write(ws.send(TextMessage(frame)))
        for _ in range(self.currents):
            await asyncio.sleep(self.interval)
            writer.write(ws.send(TextMessage('a[{"current":{}}]')))


def run(test: Callable[[], Awaitable[None]]) -> None:
    """Run ``test`` on a fresh loop, bounded, and check that it left no task behind."""

    async def bounded() -> None:
        await asyncio.wait_for(test(), TIMEOUT)
        assert asyncio.all_tasks() == {asyncio.current_task()}

    asyncio.run(bounded())


def test_events_in_order_handler_called_nothing_left() -> None:
    async def test() -> None:
        async with SockJSServer(currents=2, interval=0.05) as server:
            handled: list[PushMessage] = []
            seen: list[Event] = []
            async with connect(server.url) as client:
                client.on("current", handled.append)
                async for event in client:
                    seen.append(event)
                    if isinstance(event, PushMessage) and event.type == "current":
                        break
            assert isinstance(seen[0], Connected)
            assert seen[1:] == [PushMessage("connected", {}), PushMessage("current", {})]
            assert [m.type for m in handled] == ["current"]
            assert client.state.value == "closed"
            await server.wait_for_clients_gone()

    run(test)


def test_disconnect_ends_iteration() -> None:
    async def test() -> None:
        async with SockJSServer(currents=0, interval=0) as server:
            async with connect(server.url) as client:
                seen: list[Event] = []
                async for event in client:
                    seen.append(event)
                    if isinstance(event, PushMessage):
                        await client.disconnect()
            assert isinstance(seen[-1], Disconnected)
            await server.wait_for_clients_gone()

    run(test)


def test_break_does_not_stall_reading() -> None:
    # With max_queue=1 an iterator that is left by ``break`` but still
    # counted as reading would pause the socket after one event.
    async def test() -> None:
        async with SockJSServer(currents=5, interval=0.05) as server:
            handled: list[PushMessage] = []
            async with connect(server.url, max_queue=1) as client:
                client.on("current", handled.append)
                async for _ in client:
                    break
                for _ in range(100):
                    if len(handled) == 5:
                        break
                    await asyncio.sleep(0.05)
            assert len(handled) == 5

    run(test)


def test_cancellation_leaves_nothing_behind() -> None:
    async def test() -> None:
        async with SockJSServer(currents=100, interval=0.05) as server:

            async def block() -> None:
                async with connect(server.url) as client:
                    async for _ in client:
                        pass

            try:
                await asyncio.wait_for(block(), 0.3)
            except asyncio.TimeoutError:
                pass
            else:
                raise AssertionError("the block should have been cancelled")
            await server.wait_for_clients_gone()

    run(test)
