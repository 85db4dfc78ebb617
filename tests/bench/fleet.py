"""Fleet scale: one process watching N OctoPrint sockets, each with ``current`` every 0.5 s.

    python tests/bench/fleet.py [--quick] [--counts 100,1000,5000] [--seconds 20]

(``run.py --fleet`` runs it with the bench venv's Python.) The server is
``server.js`` in its fleet mode (Node + ``ws``): every socket gets SockJS
``o``, ``connected``, then one pre-built ``a[{"current": {...}}]`` frame
(~1.3 KB, the simulated printer's) every 0.5 s, all sockets on one timer,
and ``h`` every 25 s. The Python simulator would serve the same bytes, but
at 5,000 sockets it would need more CPU than the client under test, on the
same two cores.

For each N and each client, a fresh worker process: it notes its RSS,
opens N sockets (200 at a time), waits until all are up, lets 2 s pass,
then measures for ``--seconds``: CPU time used (user + system, as a % of
one core) and RSS, whose growth over the baseline divided by N is the cost
per connection. The clients:

* ``octoproto``: ``octoproto.adapters.asyncio.connect()`` per socket (the
  OctoPrint dialect, SockJS endpoint, anonymous), a handler on ``current``;
* ``websockets``: ``websockets.asyncio.client.connect()`` per socket, the
  SockJS frame parsed and ``json.loads``-ed by hand, the same handler.

Every run is bounded: a worker that has not reported after its time limit
is killed, and a worker exits (without closing each socket) once it has.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BATCH = 200  # sockets dialled at once
WARMUP = 2.0


def _rss() -> int:
    """Resident set size in bytes (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        wanted = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < needed:
        raise SystemExit(f"need {needed} file descriptors; raise the hard limit (ulimit -Hn)")


class _Stats:
    def __init__(self) -> None:
        self.messages = 0

    def current(self, payload: object) -> None:
        assert isinstance(payload, dict)
        payload["state"]["text"]  # what a real handler would read
        self.messages += 1


async def _measure(stats: _Stats, count: int, seconds: float, base_rss: int) -> dict[str, Any]:
    await asyncio.sleep(WARMUP)
    messages, cpu, started = stats.messages, _cpu(), time.monotonic()
    await asyncio.sleep(seconds)
    wall = time.monotonic() - started
    rss = _rss()
    return {
        "count": count,
        "seconds": wall,
        "cpu_percent": 100 * (_cpu() - cpu) / wall,
        "rss_mib": rss / 2**20,
        "rss_per_connection_kib": (rss - base_rss) / count / 1024,
        "messages_per_second": (stats.messages - messages) / wall,
        "expected_per_second": count * 2,
    }


async def _wait_for(predicate: Any, limit: float, what: str) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def octoproto_worker(port: int, count: int, seconds: float) -> dict[str, Any]:
    from octoproto.adapters import asyncio as adapter  # noqa: PLC0415

    stats = _Stats()
    base_rss = _rss()
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for start in range(0, count, BATCH):
            for _ in range(start, min(count, start + BATCH)):
                client = await stack.enter_async_context(
                    adapter.connect(f"http://127.0.0.1:{port}/fleet")
                )
                client.on("current", lambda message: stats.current(message.data))
                clients.append(client)
            await _wait_for(lambda: all(c.is_open for c in clients), 60, f"{len(clients)} sockets")
        result = await _measure(stats, count, seconds, base_rss)
        result["open_at_end"] = sum(c.is_open for c in clients)
        return result


async def websockets_worker(port: int, count: int, seconds: float) -> dict[str, Any]:
    from websockets.asyncio.client import connect  # noqa: PLC0415

    stats = _Stats()
    base_rss = _rss()
    opened = 0

    async def watch(index: int) -> None:
        nonlocal opened
        url = f"ws://127.0.0.1:{port}/fleet/sockjs/{index % 1000:03d}/w{index}/websocket"
        async with connect(url, compression=None) as ws:
            opened += 1
            async for text in ws:
                if isinstance(text, str) and text[0] == "a":
                    for message in json.loads(text[1:]):
                        for key, payload in message.items():
                            if key == "current":
                                stats.current(payload)

    tasks = []
    for start in range(0, count, BATCH):
        for index in range(start, min(count, start + BATCH)):
            tasks.append(asyncio.create_task(watch(index)))
        await _wait_for(lambda: opened >= len(tasks), 60, f"{len(tasks)} sockets")
    result = await _measure(stats, count, seconds, base_rss)
    result["open_at_end"] = sum(not task.done() for task in tasks)
    return result


def worker(client: str, port: int, count: int, seconds: float) -> None:
    _raise_fd_limit(count + 256)
    run = octoproto_worker if client == "octoproto" else websockets_worker
    result = asyncio.run(asyncio.wait_for(run(port, count, seconds), seconds + 180))
    print(json.dumps(result), flush=True)
    os._exit(0)  # bounded exit: no per-socket close handshake for thousands of sockets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 100 and 1,000, 5 s each")
    parser.add_argument("--counts", default="100,1000,5000")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--worker", nargs=4, metavar=("CLIENT", "PORT", "COUNT", "SECONDS"))
    args = parser.parse_args()
    if args.worker:
        client, port, count, seconds = args.worker
        worker(client, int(port), int(count), float(seconds))
        return
    counts = [100, 1000] if args.quick else [int(n) for n in args.counts.split(",")]
    seconds = 5.0 if args.quick else args.seconds
    sys.path.insert(0, str(HERE))
    from run import load, node_server  # noqa: PLC0415
    from stream import current_payloads  # noqa: PLC0415

    _raise_fd_limit(max(counts) + 256)  # the server inherits it
    rows = []
    print(f"fleet: {load()}", flush=True)
    with tempfile.TemporaryDirectory() as directory:
        messages = Path(directory) / "current.json"
        messages.write_text(json.dumps(current_payloads()))
        with node_server(messages) as port:
            for count in counts:
                for client in ("octoproto", "websockets"):
                    argv = [sys.executable, __file__, "--worker", client, str(port), str(count)]
                    argv.append(str(seconds))
                    try:
                        done = subprocess.run(
                            argv, capture_output=True, text=True, timeout=seconds + 240, check=False
                        )
                    except subprocess.TimeoutExpired:
                        print(f"  {client} N={count}: timed out", flush=True)
                        continue
                    if done.returncode != 0:
                        print(f"  {client} N={count}: failed: {done.stderr[-500:]}", flush=True)
                        continue
                    result = json.loads(done.stdout.strip().splitlines()[-1])
                    result["client"] = client
                    rows.append(result)
                    print(f"  {client} N={count}: {result} ({load()})", flush=True)
                    time.sleep(2)  # let the server drop the last worker's sockets
    print()
    print(f"fleet, {seconds:.0f} s measured per run after a {WARMUP:.0f} s warm-up; {load()}")
    print(
        "| client | N | CPU % of one core | RSS MiB | RSS per connection KiB | msgs/s (expected) |"
    )
    print("|---|--:|--:|--:|--:|--:|")
    for r in rows:
        print(
            f"| {r['client']} | {r['count']:,} | {r['cpu_percent']:.1f} | {r['rss_mib']:.0f}"
            f" | {r['rss_per_connection_kib']:.1f} | {r['messages_per_second']:,.0f}"
            f" ({r['expected_per_second']:,}) |"
        )
    out = HERE.parent.parent / "build" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "fleet.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
