"""Stale input: a reader must not feed the core after the core closed its transport.

``reconnect()`` makes the core queue ``CloseTransport`` + ``OpenTransport``
at once; a reader that wakes before the loop carries them out used to hand
the old socket's bytes (or EOF, or failure) to the core, which took them for
the new transport's (``LocalProtocolError: data received before
transport_opened()``, within a few hundred reconnects on trio). Every
adapter now takes the core's commands right after each call into it and
stops counting on a closed transport at once.

The ``*_rapid_reconnects`` tests reconnect 300 times against a simulated
OctoPrint that talks all the time (heartbeats every 2 ms, ``current`` every
10 ms): on each message (when bytes are most likely waiting for the reader),
with short and varied pauses after, then check that the session comes up
again (it would not after a crash of the loop) and that the client leaves
cleanly. Without the fix the trio one fails every time. asyncio's FIFO
scheduling makes the race rare there, so a second asyncio test builds the
losing order on purpose: bytes waiting for the reader, the loop task idle,
and ``reconnect()`` called first. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import trio
from octoproto.adapters import asyncio as asyncio_adapter
from octoproto.adapters import blocking as blocking_adapter
from octoproto.adapters import trio as trio_adapter
from octoproto.adapters.simulator import SimulatorHandle, run_simulator
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from octoproto import PushMessage

RECONNECTS = 300
TIMEOUT = 60.0
#: Seconds between reconnects, drawn from this list: mostly none at all.
PAUSES = (0.0, 0.0, 0.0, 0.001, 0.003, 0.01)


@contextmanager
def chatty_simulator() -> Iterator[SimulatorHandle]:
    with run_simulator(heartbeat_interval=0.002, update_interval=0.01, tick_interval=0.01) as sim:
        yield sim


def pauses() -> list[float]:
    generator = random.Random(300)
    return [generator.choice(PAUSES) for _ in range(RECONNECTS)]


async def test_trio_rapid_reconnects() -> None:
    with chatty_simulator() as sim, trio.fail_after(TIMEOUT):
        async with trio_adapter.connect(sim.url, api_key=sim.api_key) as client:
            plan = iter(pauses())
            async for event in client:
                if isinstance(event, PushMessage):
                    if (pause := next(plan, None)) is None:
                        break
                    await client.reconnect()
                    await trio.sleep(pause)
            while not client.is_open:
                await trio.sleep(0.01)


def test_asyncio_rapid_reconnects() -> None:
    async def test(sim: SimulatorHandle) -> None:
        async with asyncio_adapter.connect(sim.url, api_key=sim.api_key) as client:
            plan = iter(pauses())
            async for event in client:
                if isinstance(event, PushMessage):
                    if (pause := next(plan, None)) is None:
                        break
                    await client.reconnect()
                    await asyncio.sleep(pause)
            while not client.is_open:
                await asyncio.sleep(0.01)

    async def bounded(sim: SimulatorHandle) -> None:
        await asyncio.wait_for(test(sim), TIMEOUT)

    with chatty_simulator() as sim:
        asyncio.run(bounded(sim))


def test_blocking_rapid_reconnects(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="octoproto.adapters.blocking")
    began = time.monotonic()
    with (
        chatty_simulator() as sim,
        blocking_adapter.connect(sim.url, api_key=sim.api_key) as client,
        client.events(timeout=TIMEOUT) as events,
    ):
        plan = iter(pauses())
        for event in events:
            if isinstance(event, PushMessage):
                if (pause := next(plan, None)) is None:
                    break
                client.reconnect()
                time.sleep(pause)
        while not client.is_open:
            assert time.monotonic() - began < TIMEOUT
            time.sleep(0.01)
    assert not caplog.records  # "the loop failed" would be logged here


def test_asyncio_reader_woken_before_the_loop() -> None:
    """The reader's wakeup is queued before the loop's: it must not feed the old bytes."""
    accepted: asyncio.Queue[tuple[WSConnection, asyncio.StreamWriter]] = asyncio.Queue()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        while data := await reader.read(65536):
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, Request):
                    writer.write(ws.send(AcceptConnection()))
                    writer.write(
                        ws.send(TextMessage("o")) + ws.send(TextMessage('a[{"connected":{}}]'))
                    )
                    accepted.put_nowait((ws, writer))
                elif isinstance(event, CloseConnection):
                    writer.write(ws.send(event.response()))
        writer.close()

    async def test() -> None:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        async with server, asyncio_adapter.connect(url) as client:
            for _ in range(20):
                ws, writer = await accepted.get()
                while not client.is_open:
                    await asyncio.sleep(0.001)
                await asyncio.sleep(0.01)  # the loop task is idle now
                writer.write(ws.send(TextMessage("h")))  # in the client's socket at once
                # asyncio runs callbacks in the order they were queued. Turn 1
                # polls the socket: its read callback runs after this task's
                # step, so this task's next step is queued before the reader's
                # wakeup, and reconnect() in turn 2 queues the loop task's
                # wakeup after the reader's.
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                await client.reconnect()
                await asyncio.sleep(0.01)
                # Not BACKOFF: the old socket's end taken for the new one's failure.
                assert client.state.value in ("connecting", "handshaking", "opening", "open")

    asyncio.run(asyncio.wait_for(test(), TIMEOUT))
