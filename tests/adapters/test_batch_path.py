"""The lower-level entry point (``open_session(core)``) and the batch path, on every adapter.

A plain WebSocket core (``WebSocketClient``) driven by each adapter against a
tiny threaded wsproto server on 127.0.0.1: after the client's first message
it sends a few text and binary messages, then echoes what it gets. Checked:
``on_batch`` gets the core's ``next_batch()`` (messages as bare ``str`` /
``bytes``, in order, with the events), iterators get ``TextMessage`` /
``BinaryMessage`` events, ``call()`` reaches the core, the blocking
callback gets each message's payload and ``None``; and the event buffer's
rule for clients that take their messages elsewhere. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import trio
from octoproto.adapters import asyncio as asyncio_adapter
from octoproto.adapters import blocking
from octoproto.adapters import trio as trio_adapter
from octoproto.adapters._common import ELSEWHERE_GRACE, EventBuffer
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Request,
)
from wsproto.events import (
    TextMessage as WsText,
)

from octoproto import (
    BatchItem,
    BinaryMessage,
    Connected,
    Disconnected,
    SessionConfig,
    TextMessage,
    WebSocketClient,
)

TIMEOUT = 10.0
GREETING: list[str | bytes] = ["one", b"two", "three"]


class _Server:
    """One connection at a time: upgrade, greet after the first message, then echo."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(TIMEOUT)
        self.url = f"ws://127.0.0.1:{self._listener.getsockname()[1]}/"
        self.received: list[str | bytes] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(OSError):
            sock, _ = self._listener.accept()
            with sock:
                sock.settimeout(TIMEOUT)
                self._serve(sock)

    def _serve(self, sock: socket.socket) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        greeted = False
        while data := sock.recv(65536):
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, Request):
                    sock.sendall(ws.send(AcceptConnection()))
                elif isinstance(event, Message):
                    self.received.append(event.data)
                    if not greeted:
                        greeted = True
                        for message in GREETING:
                            kind = WsText if isinstance(message, str) else BytesMessage
                            sock.sendall(ws.send(kind(data=message)))  # type: ignore[arg-type]
                    else:
                        sock.sendall(ws.send(type(event)(data=event.data)))
                elif isinstance(event, CloseConnection):
                    sock.sendall(ws.send(event.response()))
                    return

    def close(self) -> None:
        self._listener.close()
        self._thread.join(TIMEOUT)


@pytest.fixture
def server() -> Iterator[_Server]:
    server = _Server()
    yield server
    server.close()


def _core(server: _Server) -> WebSocketClient:
    return WebSocketClient(SessionConfig(url=server.url, entropy=os.urandom))


def _messages(batches: list[list[BatchItem]]) -> list[BatchItem]:
    return [item for batch in batches for item in batch if isinstance(item, (str, bytes))]


def test_asyncio_batch_callback_and_iterator(server: _Server) -> None:
    async def main() -> tuple[list[list[BatchItem]], list[object]]:
        core = _core(server)
        batches: list[list[BatchItem]] = []
        events: list[object] = []
        async with asyncio_adapter.open_session(core) as session:
            assert session.core is core
            session.on_batch(batches.append)
            async for event in session:
                events.append(event)
                if isinstance(event, Connected):
                    session.call(core.send, "go")
                elif len(events) == 1 + len(GREETING):
                    session.call(core.send, b"echo")
                elif len(events) == 2 + len(GREETING):
                    break
        return batches, events

    batches, events = asyncio.run(asyncio.wait_for(main(), TIMEOUT))
    assert _messages(batches) == [*GREETING, b"echo"]
    assert type(batches[0][0]) is Connected
    greeting = [TextMessage("one"), BinaryMessage(b"two"), TextMessage("three")]
    assert events[1:] == [*greeting, BinaryMessage(b"echo")]
    assert server.received == ["go", b"echo"]


def test_trio_batch_callback(server: _Server) -> None:
    async def main() -> list[list[BatchItem]]:
        core = _core(server)
        batches: list[list[BatchItem]] = []
        done = trio.Event()

        def on_batch(batch: list[BatchItem]) -> None:
            batches.append(batch)
            if any(isinstance(item, Connected) for item in batch):
                session.call(core.send, "go")
            if len(_messages(batches)) == len(GREETING):
                done.set()

        with trio.fail_after(TIMEOUT):
            async with trio_adapter.open_session(core) as session:
                session.on_batch(on_batch)
                await done.wait()
                await session.disconnect()
        return batches

    batches = trio.run(main)
    assert _messages(batches) == GREETING
    assert isinstance(batches[-1][-1], Disconnected)


def test_blocking_callback_gets_payloads_then_none(server: _Server) -> None:
    calls: list[object] = []
    got = threading.Event()

    def callback(message: object) -> None:
        calls.append(message)
        if len(calls) == len(GREETING):
            got.set()

    core = _core(server)
    with blocking.open_session(core, callback=callback) as session:
        with session.events(timeout=TIMEOUT) as events:
            assert type(next(events)) is Connected
            session.call(core.send, "go")
            assert [next(events) for _ in GREETING] == [
                TextMessage("one"),
                BinaryMessage(b"two"),
                TextMessage("three"),
            ]
        assert got.wait(TIMEOUT)
        session.disconnect()
    assert calls == [*GREETING, None]


def test_a_raising_batch_callback_is_logged(
    server: _Server, caplog: pytest.LogCaptureFixture
) -> None:
    def on_batch(batch: list[BatchItem]) -> None:
        raise RuntimeError("boom")

    core = _core(server)
    # The iterator first: a batch callback registered before any iterator
    # would end the keeping of events for one, and the loop runs already.
    with (
        caplog.at_level(logging.ERROR, "octoproto.handlers"),
        blocking.open_session(core) as s,
        s.events(timeout=TIMEOUT) as events,
    ):
        s.on_batch(on_batch)
        assert type(next(events)) is Connected  # the loop goes on
    assert "batch callback" in caplog.text
    with pytest.raises(TypeError):
        s.on_batch("not callable")  # type: ignore[arg-type]


def test_the_buffer_stops_for_a_client_that_takes_its_messages_elsewhere() -> None:
    buffer = EventBuffer(max_queue=100)
    buffer.extend(["a"])
    buffer.taken_elsewhere(10.0)
    buffer.extend(["b"])
    buffer.taken_elsewhere(10.0 + ELSEWHERE_GRACE / 2)  # within the grace: kept
    assert buffer.take_all() == ["a", "b"]
    buffer.extend(["c"])
    buffer.taken_elsewhere(10.0 + ELSEWHERE_GRACE)
    buffer.extend(["d"])
    assert buffer.take_all() == []  # no iterator came: nothing is kept any more
    buffer.start()  # an iterator: buffering again, and for good
    buffer.taken_elsewhere(100.0)
    buffer.taken_elsewhere(None)
    buffer.extend(["e"])
    assert buffer.pop() == TextMessage("e")


def test_a_batch_callback_ends_the_keeping_for_a_first_iterator_at_once() -> None:
    buffer = EventBuffer(max_queue=100)
    buffer.extend(["a"])
    buffer.taken_elsewhere(None)  # what on_batch() does before any iterator
    buffer.extend(["b"])
    assert buffer.take_all() == []


def test_a_late_iterator_after_the_grace_misses_what_went_elsewhere(server: _Server) -> None:
    core = _core(server)
    seen: list[list[BatchItem]] = []
    with blocking.open_session(core) as session:
        session.on_batch(seen.append)
        deadline = time.monotonic() + TIMEOUT
        while not session.is_open and time.monotonic() < deadline:
            time.sleep(0.01)
        session.call(core.send, "go")
        while len(_messages(seen)) < len(GREETING) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(ELSEWHERE_GRACE + 0.1)
        session.call(core.send, "after the grace")  # its echo stops the buffering
        while len(_messages(seen)) < len(GREETING) + 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        with session.events(timeout=TIMEOUT) as events:
            session.call(core.send, "late")
            assert next(events) == TextMessage("late")  # nothing older was kept
