"""Core-only speed: messages/s through the pure core, no I/O (replay speed).

Run it in the project's venv (or the bench venv)::

    python tests/bench/core_speed.py [--quick] [--repeat 5]

A session is opened in memory (the client's own upgrade request answered
with a 101), then a long server stream is fed to ``receive_data`` in 64 KiB
chunks, sliced in advance, and everything the core makes is drained after
each chunk. Timed: ``receive_data`` + the drain, nothing else.

* OctoPrint: SockJS frames ``a[{"current": {...}}]`` made from the simulated
  server's payloads (``stream.py``), scaled to several sizes by the number
  of terminal lines they carry; drained with ``next_events()`` (a
  ``PushMessage`` each), with msgspec and with the stdlib's ``json``.
* Plain WebSocket: text messages of several sizes, drained with
  ``next_batch()`` (bare payloads) and ``next_events()`` (an event each).

Each case runs ``--repeat`` times, interleaved; the median is reported.
"""

from __future__ import annotations

import argparse
import base64
import gc
import hashlib
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from time import perf_counter

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stream import current_payloads, server_frame

from octoproto import (
    OctoPrintClient,
    OctoPrintConfig,
    SeededEntropy,
    SendData,
    SessionConfig,
    SessionEngine,
    WebSocketClient,
    _util,
)

CHUNK = 64 * 1024
_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _open(client: SessionEngine) -> None:
    """Connect ``client`` in memory and answer its upgrade with a 101."""
    client.connect(0.0)
    client.next_command()  # OpenTransport
    client.transport_opened(0.0)
    command = client.next_command()
    assert isinstance(command, SendData)
    key = next(
        line.split(b":", 1)[1].strip()
        for line in command.data.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    accept = base64.b64encode(hashlib.sha1(key + _GUID.encode()).digest()).decode()
    response = (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
    ).encode()
    client.receive_data(response, 0.0)


def _chunks(data: bytes) -> list[bytes]:
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


def _time(
    make: Callable[[], SessionEngine], head: bytes, chunks: list[bytes], drain: str, count: int
) -> float:
    client = make()
    _open(client)
    client.receive_data(head, 0.0)
    client.next_events()
    while client.next_command() is not None:
        pass
    receive = client.receive_data
    take = client.next_batch if drain == "next_batch" else client.next_events
    got = 0
    gc.disable()
    try:
        started = perf_counter()
        for chunk in chunks:
            receive(chunk, 1.0)
            got += len(take())
        seconds = perf_counter() - started
    finally:
        gc.enable()
    assert got == count, (got, count)
    return seconds


Case = tuple[str, int, Callable[[], float]]


def octoprint_cases(scale: float) -> list[Case]:
    """(label, size, run) for each OctoPrint message size and JSON decoder."""
    payloads = current_payloads()
    cases: list[Case] = []
    for lines in (0, 3, 40, 200, 1200):
        scaled = []
        for payload in payloads:
            logs = list(payload.get("logs", [])) or ["Recv: ok"]  # type: ignore[call-overload]
            scaled.append(payload | {"logs": (logs * (lines // len(logs) + 1))[:lines]})
        frames = [server_frame(("a" + json.dumps([{"current": p}])).encode()) for p in scaled]
        size = sum(len(f) for f in frames) // len(frames)
        count = max(200, int(min(100_000, 60_000_000 // size) * scale))
        stream = b"".join(frames[i % len(frames)] for i in range(count))
        head = server_frame(b"o") + server_frame(b'a[{"connected": {"version": "1.11.8"}}]')
        chunks = _chunks(stream)

        def make() -> SessionEngine:
            config = OctoPrintConfig(url="http://octopi.local", entropy=SeededEntropy(1))
            return OctoPrintClient(config)

        for decoder in ("msgspec", "json"):

            def run(
                chunks: list[bytes] = chunks,
                count: int = count,
                decoder: str = decoder,
                head: bytes = head,
            ) -> float:
                saved = _util.fast_json_loads
                if decoder == "json":
                    _util.fast_json_loads = None
                try:
                    return count / _time(make, head, chunks, "next_events", count)
                finally:
                    _util.fast_json_loads = saved

            cases.append((f"OctoPrint current, {decoder}", size, run))
    return cases


def plain_cases(scale: float) -> list[Case]:
    cases: list[Case] = []
    for size in (64, 1024, 4096, 65536, 1 << 20):
        count = max(20, int(min(200_000, 400_000_000 // size) * scale))
        chunks = _chunks(server_frame(b"x" * size) * count)

        def make() -> SessionEngine:
            return WebSocketClient(SessionConfig(url="ws://localhost/", entropy=SeededEntropy(1)))

        for drain in ("next_batch", "next_events"):

            def run(chunks: list[bytes] = chunks, count: int = count, drain: str = drain) -> float:
                return count / _time(make, b"", chunks, drain, count)

            cases.append((f"plain text, {drain}()", size, run))
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the messages")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0
    if _util.fast_json_loads is None:
        print("note: msgspec is not installed; both OctoPrint rows use json.loads")
    cases = octoprint_cases(scale) + plain_cases(scale)
    rates: dict[int, list[float]] = {i: [] for i in range(len(cases))}
    for _ in range(args.repeat):
        for i, (_label, _size, run) in enumerate(cases):  # interleaved
            rates[i].append(run())
    print(f"core only, {CHUNK // 1024} KiB chunks, median of {args.repeat}")
    print("| stream | message bytes | msgs/s | MiB/s | µs/msg |")
    print("|---|--:|--:|--:|--:|")
    for i, (label, size, _run) in enumerate(cases):
        rate = statistics.median(rates[i])
        print(
            f"| {label} | {size:,} | {rate:,.0f} | {rate * size / 2**20:,.0f} | {1e6 / rate:.2f} |"
        )


if __name__ == "__main__":
    main()
