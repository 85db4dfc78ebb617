"""Waiting for a call's outcome in each adapter (``_request``, ``_start_call``), with a toy dialect.

The toy dialect (:mod:`harness.toycalls`) against a threaded wsproto server
on 127.0.0.1 that answers ``"<id> <payload>"`` by the payload: ``slow`` gets
no answer, ``fail`` an error, ``drop`` a closed TCP connection, anything
else ``"ok <id> <PAYLOAD>"``. Every adapter must return the result, raise
the error, the timeout and the lost connection, run reply callbacks on its
loop, and release a caller still waiting when the session ends. Every wait
is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trio
from harness.toycalls import Refused, ToyCalls
from octoproto.adapters import asyncio as asyncio_adapter
from octoproto.adapters import blocking
from octoproto.adapters import trio as trio_adapter
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from octoproto import (
    CallFailed,
    CallSucceeded,
    CallTimeoutError,
    ConnectionLostError,
    LocalProtocolError,
    ReconnectSchedule,
    SessionConfig,
)

TIMEOUT = 10.0


class _Server:
    """Serves each connection on a thread of its own; answers calls by their payload."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(TIMEOUT)
        self.url = f"ws://127.0.0.1:{self._listener.getsockname()[1]}/"
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                sock, _ = self._listener.accept()
                thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
                self._threads.append(thread)
                thread.start()

    def _serve(self, sock: socket.socket) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        with sock, contextlib.suppress(OSError):
            sock.settimeout(TIMEOUT)
            while data := sock.recv(65536):
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, Request):
                        sock.sendall(ws.send(AcceptConnection()))
                    elif isinstance(event, TextMessage):
                        call_id, payload = event.data.split(" ", 1)
                        if payload == "drop":
                            return
                        if payload == "fail":
                            sock.sendall(ws.send(TextMessage(data=f"err {call_id} no")))
                        elif payload != "slow":
                            answer = f"ok {call_id} {payload.upper()}"
                            sock.sendall(ws.send(TextMessage(data=answer)))
                    elif isinstance(event, CloseConnection):
                        sock.sendall(ws.send(event.response()))
                        return

    def close(self) -> None:
        with contextlib.suppress(OSError):  # shutdown wakes the blocked accept() (Linux)
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._accepting.join(TIMEOUT)
        for thread in self._threads:
            thread.join(TIMEOUT)


@pytest.fixture
def server() -> Iterator[_Server]:
    server = _Server()
    yield server
    server.close()


def _core(server: _Server) -> ToyCalls:
    schedule = ReconnectSchedule.fixed(0.05, None)
    return ToyCalls(SessionConfig(url=server.url, entropy=os.urandom, reconnect=schedule))


def _outcome(call: Callable[[], object]) -> object:
    try:
        return call()
    except Exception as exc:  # the outcome under test may be any error
        return exc


def _run_async(flavour: str, server: _Server, script: Callable[[Any], Any]) -> Any:
    """Run ``script(session)`` (a coroutine function) in an ``open_session`` block."""

    async def main() -> Any:
        adapter = trio_adapter if flavour == "trio" else asyncio_adapter
        async with adapter.open_session(_core(server)) as session:
            return await script(session)

    if flavour == "trio":
        return trio.run(main)
    return asyncio.run(main())


@pytest.mark.parametrize("flavour", ["trio", "asyncio"])
def test_async_calls_return_raise_and_time_out(flavour: str, server: _Server) -> None:
    async def script(session: Any) -> list[object]:
        core = session.core
        outcomes: list[object] = []
        for payload, timeout in (("hello", None), ("fail", None), ("slow", 0.2), ("drop", 5)):
            try:
                outcomes.append(await session._request(core.call, payload, timeout=timeout))
            except Exception as exc:
                outcomes.append(exc)
        # After the drop the core reconnects; a call made meanwhile waits for it.
        outcomes.append(await session._request(core.call, "again", timeout=5))
        return outcomes

    outcomes = _run_async(flavour, server, script)
    assert outcomes[:2] == ["HELLO", Refused("no")]
    assert outcomes[2] == CallTimeoutError("reply timeout")
    assert outcomes[3] == ConnectionLostError("the connection was lost before the reply")
    assert outcomes[4] == "AGAIN"


@pytest.mark.parametrize("flavour", ["trio", "asyncio"])
def test_async_reply_callbacks_run_once_on_the_loop(flavour: str, server: _Server) -> None:
    async def script(session: Any) -> list[object]:
        seen: list[object] = []
        session._start_call(seen.append, session.core.call, "cb")
        iterated = []
        async for event in session:  # the outcome reaches the iterator too
            if isinstance(event, (CallSucceeded, CallFailed)):
                iterated.append(event)
                break
        return [seen, iterated]

    seen, iterated = _run_async(flavour, server, script)
    assert seen == iterated == [CallSucceeded(1, "CB")]


def test_trio_a_caller_still_waiting_is_released_when_the_block_is_left(server: _Server) -> None:
    outcome: list[object] = []

    async def main() -> None:
        async with trio_adapter.open_session(_core(server)) as session:

            async def wait_forever() -> None:
                try:
                    await session._request(session.core.call, "slow")
                except ConnectionLostError as exc:
                    outcome.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait_forever)
                await trio.sleep(0.2)
                await session.disconnect()
        with pytest.raises(LocalProtocolError, match="closed"):
            await session._request(session.core.call, "late")

    trio.run(main)
    assert outcome == [ConnectionLostError("the session closed: disconnect() was called")]


def test_asyncio_cancelling_the_caller_stops_its_wait(server: _Server) -> None:
    async def main() -> int:
        async with asyncio_adapter.open_session(_core(server)) as session:
            waiting = asyncio.ensure_future(session._request(session.core.call, "slow"))
            await asyncio.sleep(0.2)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            return len(session._replies)

    assert asyncio.run(main()) == 0


def test_blocking_calls_return_raise_and_time_out(server: _Server) -> None:
    with blocking.open_session(_core(server)) as session:
        core = session.core
        assert session._request(core.call, "hello") == "HELLO"
        with pytest.raises(Refused):
            session._request(core.call, "fail")
        with pytest.raises(CallTimeoutError):
            session._request(core.call, "slow", timeout=0.2)
        with pytest.raises(ConnectionLostError):
            session._request(core.call, "drop", timeout=5)
        assert session._request(core.call, "again", timeout=5) == "AGAIN"
    with pytest.raises(LocalProtocolError, match="closed"):
        session._request(core.call, "late")


def test_blocking_refuses_to_wait_on_its_own_loop_thread(server: _Server) -> None:
    refused: list[object] = []
    done = threading.Event()
    with blocking.open_session(_core(server)) as session:

        def on_reply(outcome: object) -> None:
            refused.append(_outcome(lambda: session._request(session.core.call, "x")))
            done.set()

        session._start_call(on_reply, session.core.call, "first")
        assert done.wait(TIMEOUT)
    assert len(refused) == 1 and isinstance(refused[0], LocalProtocolError)


def test_blocking_a_caller_still_waiting_is_released_by_close(server: _Server) -> None:
    outcome: list[object] = []
    session = blocking.open_session(_core(server))
    waiter = threading.Thread(
        target=lambda: outcome.append(_outcome(lambda: session._request(session.core.call, "slow")))
    )
    waiter.start()
    for _ in range(500):  # bounded: the waiter registers within a few ms
        if session._replies:
            break
        threading.Event().wait(0.01)
    session.close()
    waiter.join(TIMEOUT)
    assert outcome == [ConnectionLostError("the session closed: disconnect() was called")]
