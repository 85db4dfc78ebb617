"""One benchmark run in a fresh interpreter: ``clients.py CLIENT WORKLOAD PORT COUNT SIZE``.

Started by ``run.py`` with the bench venv's Python (where the peers are
installed); prints one JSON object: ``seconds`` (from the request that
starts the stream to the last message handled), ``messages``, and for the
echo workload ``rtt_us`` (the median round trip).

Workloads, against ``server.js`` on 127.0.0.1:

* ``text`` / ``binary``: COUNT messages of SIZE bytes;
* ``echo``: COUNT round trips of SIZE bytes, one at a time;
* ``octoprint``: COUNT SockJS frames ``a[{"current": {...}}]``, each parsed
  and its payload handed to a handler (which reads ``state.text``).

Every client starts the stream the same way: it connects, sends one message
(``go``), starts the clock, and stops it at the COUNT-th message. Nothing
else happens in the process meanwhile. Each run is bounded: ``run.py``
kills a worker that takes longer than its time limit.
"""

# Each client is imported in its own run only (the others need not be installed).
# ruff: noqa: PLC0415

from __future__ import annotations

import asyncio
import gc
import json
import os
import socket
import statistics
import sys
import threading
from collections.abc import Callable
from time import perf_counter
from typing import Any

from octoproto import BinaryMessage, Connected, TextMessage

Result = dict[str, float]

_HANDSHAKE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
_BUFFER = 1 << 20


def _path(workload: str, count: int, size: int) -> str:
    if workload == "echo":
        return "/echo"
    if workload == "octoprint":
        return f"/octoprint/{count}"
    return f"/stream/{count}/{size}/{workload}"


def _url(port: int, workload: str, count: int, size: int) -> str:
    return f"ws://127.0.0.1:{port}{_path(workload, count, size)}"


class _Counter:
    """Counts messages; knows when the stream is complete."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.received = 0
        self.started = 0.0
        self.finished = 0.0

    def start(self) -> None:
        self.started = perf_counter()

    def done(self) -> Result:
        return {"seconds": self.finished - self.started, "messages": self.received}


def _handler(counter: _Counter) -> Callable[[object], None]:
    """The OctoPrint workload's handler: touch the payload, count it."""

    def current(payload: object) -> None:
        assert isinstance(payload, dict)
        payload["state"]["text"]  # what a real handler would read
        counter.received += 1

    return current


def _echo_payload(size: int) -> str:
    return "e" * size


def _rtt(samples: list[float]) -> Result:
    return {
        "seconds": sum(samples),
        "messages": len(samples),
        "rtt_us": statistics.median(samples) * 1e6,
    }


# --- octoproto --------------------------------------------------------------


def _octoproto_core(port: int, workload: str, count: int, size: int) -> Any:
    from octoproto import OctoPrintClient, OctoPrintConfig, SessionConfig, WebSocketClient

    if workload == "octoprint":
        return OctoPrintClient(
            OctoPrintConfig(url=f"http://127.0.0.1:{port}/octoprint/{count}", entropy=os.urandom)
        )
    config = SessionConfig(url=_url(port, workload, count, size), entropy=os.urandom)
    return WebSocketClient(config)


class _OctoprotoRun:
    """What every octoproto variant does with the events; the adapter differs."""

    def __init__(self, workload: str, count: int, size: int) -> None:
        self.workload = workload
        self.counter = _Counter(count)
        self.size = size
        self.samples: list[float] = []
        self.sent_at = 0.0
        self.finished: Callable[[], None] = lambda: None
        self.send: Callable[[str], None] = lambda text: None

    def connected(self) -> None:
        if self.workload == "echo":
            self.sent_at = perf_counter()
            self.send(_echo_payload(self.size))
        else:
            self.counter.start()
            self.send("go")

    def batch(self, batch: list[Any]) -> None:
        """The batch path: every input's output in one list (messages as str / bytes)."""
        counter = self.counter
        for item in batch:
            kind = type(item)
            if kind is str or kind is bytes:
                counter.received += 1
                if self.workload == "echo":
                    self._echoed()
                elif counter.received == counter.count:
                    counter.finished = perf_counter()
                    self.finished()
            elif kind is Connected:
                self.connected()

    def event(self, event: object) -> None:
        """The iterator path: one event at a time."""
        kind = type(event)
        if kind is TextMessage or kind is BinaryMessage:
            counter = self.counter
            counter.received += 1
            if self.workload == "echo":
                self._echoed()
            elif counter.received == counter.count:
                counter.finished = perf_counter()
                self.finished()
        elif kind is Connected:
            self.connected()

    def _echoed(self) -> None:
        now = perf_counter()
        self.samples.append(now - self.sent_at)
        if len(self.samples) == self.counter.count:
            self.finished()
            return
        self.sent_at = perf_counter()
        self.send(_echo_payload(self.size))

    def octoprint_handler(self) -> Callable[[object], None]:
        handle = _handler(self.counter)
        counter = self.counter

        def current(message: Any) -> None:
            handle(message.data)
            if counter.received == counter.count:
                counter.finished = perf_counter()
                self.finished()

        return current

    def result(self) -> Result:
        if self.workload == "echo":
            return _rtt(self.samples)
        return self.counter.done()


def octoproto_asyncio(port: int, workload: str, count: int, size: int, path: str) -> Result:
    from octoproto.adapters import asyncio as adapter

    run = _OctoprotoRun(workload, count, size)

    async def main() -> None:
        done = asyncio.Event()
        run.finished = done.set
        if workload == "octoprint":
            url = f"http://127.0.0.1:{port}/octoprint/{count}"
            async with adapter.connect(url) as client:
                client.on("current", run.octoprint_handler())
                run.send = lambda text: client.feed(client.core.send_message, "go", {})
                async for event in client:
                    if isinstance(event, Connected):
                        run.connected()
                        break
                await done.wait()
                return
        core = _octoproto_core(port, workload, count, size)
        async with adapter.open_session(core) as session:
            run.send = lambda text: session.call(core.send, text)
            if path == "batch":
                session.on_batch(run.batch)
                await done.wait()
                return
            async for event in session:
                run.event(event)
                if done.is_set():
                    break

    asyncio.run(main())
    return run.result()


def octoproto_trio(port: int, workload: str, count: int, size: int, path: str) -> Result:
    import trio
    from octoproto.adapters import trio as adapter

    run = _OctoprotoRun(workload, count, size)

    async def main() -> None:
        done = trio.Event()
        run.finished = done.set
        if workload == "octoprint":
            url = f"http://127.0.0.1:{port}/octoprint/{count}"
            async with adapter.connect(url) as client:
                client.on("current", run.octoprint_handler())
                run.send = lambda text: client.feed(client.core.send_message, "go", {})
                async for event in client:
                    if isinstance(event, Connected):
                        run.connected()
                        break
                await done.wait()
                return
        core = _octoproto_core(port, workload, count, size)
        async with adapter.open_session(core) as session:
            run.send = lambda text: session.call(core.send, text)
            if path == "batch":
                session.on_batch(run.batch)
                await done.wait()
                return
            async for event in session:
                run.event(event)
                if done.is_set():
                    break

    trio.run(main)
    return run.result()


def octoproto_blocking(port: int, workload: str, count: int, size: int, path: str) -> Result:
    from octoproto.adapters import blocking as adapter

    run = _OctoprotoRun(workload, count, size)
    done = threading.Event()
    run.finished = done.set
    if workload == "octoprint":
        with adapter.connect(f"http://127.0.0.1:{port}/octoprint/{count}") as client:
            client.on("current", run.octoprint_handler())
            run.send = lambda text: client.send_message("go", {})
            with client.events() as events:
                for event in events:
                    if isinstance(event, Connected):
                        run.connected()
                        break
            done.wait(120)
        return run.result()
    core = _octoproto_core(port, workload, count, size)
    with adapter.open_session(core) as session:
        run.send = lambda text: session.call(core.send, text)
        if path == "batch":
            session.on_batch(run.batch)
        else:
            with session.events() as events:
                for event in events:
                    run.event(event)
                    if done.is_set():
                        break
        done.wait(120)
    return run.result()


# --- the peers ----------------------------------------------------------------


def _octoprint_frame(counter: _Counter, text: str, loads: Callable[[str], Any]) -> None:
    """What a user writes today: SockJS framing and dispatch by hand."""
    handle = _current_handlers[0]
    if text[0] == "a":
        for message in loads(text[1:]):
            for key, payload in message.items():
                if key == "current":
                    handle(payload)


_current_handlers: list[Callable[[object], None]] = []


def websockets_asyncio(port: int, workload: str, count: int, size: int, path: str) -> Result:
    from websockets.asyncio.client import connect

    counter = _Counter(count)
    loads = _json_loads(path)
    _current_handlers.append(_handler(counter))

    async def main() -> Result:
        async with connect(
            _url(port, workload, count, size), max_size=64 << 20, compression=None
        ) as ws:
            if workload == "echo":
                payload = _echo_payload(size)
                samples = []
                for _ in range(count):
                    started = perf_counter()
                    await ws.send(payload)
                    await ws.recv()
                    samples.append(perf_counter() - started)
                return _rtt(samples)
            if workload == "octoprint":
                await ws.recv()  # o
                await ws.recv()  # a[{"connected": ...}]
                await ws.send('["{\\"go\\":{}}"]')
                counter.start()
                async for message in ws:
                    _octoprint_frame(counter, message, loads)
                    if counter.received == count:
                        break
            else:
                await ws.send("go")
                counter.start()
                async for _message in ws:
                    counter.received += 1
                    if counter.received == count:
                        break
            counter.finished = perf_counter()
            return counter.done()

    return asyncio.run(main())


def websockets_sync(port: int, workload: str, count: int, size: int, path: str) -> Result:
    from websockets.sync.client import connect

    counter = _Counter(count)
    with connect(_url(port, workload, count, size), max_size=64 << 20, compression=None) as ws:
        if workload == "echo":
            payload = _echo_payload(size)
            samples = []
            for _ in range(count):
                started = perf_counter()
                ws.send(payload)
                ws.recv()
                samples.append(perf_counter() - started)
            return _rtt(samples)
        ws.send("go")
        counter.start()
        for _message in ws:
            counter.received += 1
            if counter.received == count:
                break
        counter.finished = perf_counter()
    return counter.done()


def aiohttp_client(port: int, workload: str, count: int, size: int, path: str) -> Result:
    import aiohttp

    counter = _Counter(count)

    async def main() -> Result:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(_url(port, workload, count, size), max_msg_size=64 << 20) as ws,
        ):
            if workload == "echo":
                payload = _echo_payload(size)
                samples = []
                for _ in range(count):
                    started = perf_counter()
                    await ws.send_str(payload)
                    await ws.receive()
                    samples.append(perf_counter() - started)
                return _rtt(samples)
            await ws.send_str("go")
            counter.start()
            async for _message in ws:
                counter.received += 1
                if counter.received == count:
                    break
            counter.finished = perf_counter()
            return counter.done()

    return asyncio.run(main())


def picows_client(port: int, workload: str, count: int, size: int, path: str) -> Result:
    from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

    counter = _Counter(count)
    samples: list[float] = []
    payload = _echo_payload(size)

    class Listener(WSListener):  # type: ignore[misc]
        def __init__(self) -> None:
            self.done = asyncio.get_running_loop().create_future()
            self.sent_at = 0.0

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type == WSMsgType.TEXT:
                frame.get_payload_as_utf8_text()
            elif frame.msg_type == WSMsgType.BINARY:
                frame.get_payload_as_bytes()
            else:
                return
            if workload == "echo":
                samples.append(perf_counter() - self.sent_at)
                if len(samples) == count:
                    self.done.set_result(None)
                    return
                self.sent_at = perf_counter()
                transport.send(WSMsgType.TEXT, payload.encode())
                return
            counter.received += 1
            if counter.received == count:
                counter.finished = perf_counter()
                self.done.set_result(None)

    async def main() -> Result:
        transport, listener = await ws_connect(
            Listener, _url(port, workload, count, size), max_frame_size=64 << 20
        )
        if workload == "echo":
            listener.sent_at = perf_counter()
            transport.send(WSMsgType.TEXT, payload.encode())
        else:
            transport.send(WSMsgType.TEXT, b"go")
            counter.start()
        await listener.done
        transport.send_close(WSCloseCode.OK)
        transport.disconnect()
        await transport.wait_disconnected()
        return _rtt(samples) if workload == "echo" else counter.done()

    return asyncio.run(main())


def websocket_client(port: int, workload: str, count: int, size: int, path: str) -> Result:
    import websocket

    counter = _Counter(count)
    ws = websocket.create_connection(_url(port, workload, count, size))
    try:
        if workload == "echo":
            payload = _echo_payload(size)
            samples = []
            for _ in range(count):
                started = perf_counter()
                ws.send(payload)
                ws.recv()
                samples.append(perf_counter() - started)
            return _rtt(samples)
        ws.send("go")
        counter.start()
        while counter.received < count:
            ws.recv()
            counter.received += 1
        counter.finished = perf_counter()
    finally:
        ws.close()
    return counter.done()


def trio_websocket(port: int, workload: str, count: int, size: int, path: str) -> Result:
    import trio
    from trio_websocket import open_websocket_url

    counter = _Counter(count)

    async def main() -> Result:
        async with open_websocket_url(
            _url(port, workload, count, size), max_message_size=64 << 20
        ) as ws:
            if workload == "echo":
                payload = _echo_payload(size)
                samples = []
                for _ in range(count):
                    started = perf_counter()
                    await ws.send_message(payload)
                    await ws.get_message()
                    samples.append(perf_counter() - started)
                return _rtt(samples)
            await ws.send_message("go")
            counter.start()
            while counter.received < count:
                await ws.get_message()
                counter.received += 1
            counter.finished = perf_counter()
            return counter.done()

    result: Result = trio.run(main)
    return result


def raw_tcp(port: int, workload: str, count: int, size: int, path: str) -> Result:
    """No WebSocket at all: the same stream's bytes into one buffer (``recv_into``)."""
    header = 2 if size < 126 else 4 if size < 65536 else 10
    expected = count * (header + size)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    request = (
        f"GET {_path(workload, count, size)} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {_HANDSHAKE_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    sock.sendall(request.encode())
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(4096)
    assert response.startswith(b"HTTP/1.1 101"), response[:40]
    buffer = bytearray(_BUFFER)
    view = memoryview(buffer)
    counter = _Counter(count)
    sock.sendall(b"\x81\x82\x00\x00\x00\x00go")  # "go", masked with zeros
    counter.start()
    received = len(response) - response.index(b"\r\n\r\n") - 4
    recv_into = sock.recv_into
    while received < expected:
        n = recv_into(view)
        if not n:
            break
        received += n
    counter.finished = perf_counter()
    sock.close()
    counter.received = count if received >= expected else 0
    return counter.done()


def _json_loads(path: str) -> Callable[[str], Any]:
    if path == "orjson":
        import orjson

        return orjson.loads  # type: ignore[no-any-return]
    return json.loads


def websockets_octoprint(port: int, workload: str, count: int, size: int, path: str) -> Result:
    return websockets_asyncio(port, workload, count, size, path)


CLIENTS: dict[str, Callable[[int, str, int, int, str], Result]] = {
    "octoproto-asyncio": octoproto_asyncio,
    "octoproto-trio": octoproto_trio,
    "octoproto-blocking": octoproto_blocking,
    "websockets-asyncio": websockets_asyncio,
    "websockets-sync": websockets_sync,
    "aiohttp": aiohttp_client,
    "picows": picows_client,
    "websocket-client": websocket_client,
    "trio-websocket": trio_websocket,
    "raw-tcp": raw_tcp,
}


def main(argv: list[str]) -> None:
    client, workload, port, count, size, path = argv
    if path == "stdlib-json":
        # The OctoPrint dialect without orjson: what it does with the stdlib alone.
        import octoproto._util

        octoproto._util.fast_json_loads = None
    gc.collect()
    result = CLIENTS[client](int(port), workload, int(count), int(size), path)
    if result["messages"] != int(count):
        raise SystemExit(f"{client} {workload}: {result['messages']} of {count} messages")
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
