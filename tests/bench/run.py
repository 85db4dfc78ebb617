"""octoproto against the WebSocket clients people would pick instead, in one run.

Run it from the checkout (not collected by pytest: no ``test_*.py`` here)::

    python tests/bench/run.py            # 5 interleaved rounds, full counts
    python tests/bench/run.py --quick    # 3 rounds, a tenth of the counts
    python tests/bench/run.py --core     # also the core-only speed (core_speed.py)
    python tests/bench/run.py --fleet    # also the fleet test (fleet.py, a few minutes)

It installs what it needs on first use: a venv in ``.servers/bench-venv``
(this checkout, editable, with its ``fast`` extra (msgspec), plus the peers
from PyPI: websockets, aiohttp, picows, websocket-client, trio-websocket,
and orjson for the by-hand OctoPrint reference) and Node's ``ws`` in
``.servers/bench-node``; then starts ``server.js`` (Node + ``ws``, frames
built in advance and written in ~1 MiB batches) on 127.0.0.1 and runs every
client on every workload, each run a fresh process (``clients.py``), the
rounds interleaved (every client once per workload per round, in a rotated
order). It prints the medians and their ratios to websockets' asyncio client
and to the best peer, as a Markdown table, and keeps every sample in
``build/bench/results.json``.

Workloads: (a) 100k × 64 B text, (b) 20k × 4 KiB text, (c) 200 × 1 MiB
binary, (d) 10k echo round trips of 32 B (median RTT), (e) 20k OctoPrint
``current`` messages (SockJS ``a[{"current": {...}}]``, ~1.3 KB of JSON each)
parsed and handed to a handler. Every run is bounded in count and time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SERVERS = ROOT / ".servers"
VENV = SERVERS / "bench-venv"
NODE_DIR = SERVERS / "bench-node"
PYTHON = VENV / "bin" / "python"
PEERS = ["websockets", "aiohttp", "picows", "websocket-client", "trio-websocket", "orjson"]
RUN_TIMEOUT = 120.0  # seconds one run may take before it is killed (and fails)


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    kind: str  # the server path's kind: text, binary, echo, octoprint
    count: int
    size: int
    unit: str  # msgs/s, MiB/s or µs

    def value(self, result: dict[str, float]) -> float:
        if self.unit == "µs":
            return result["rtt_us"]
        if self.unit == "MiB/s":
            return self.count * self.size / result["seconds"] / 2**20
        return self.count / result["seconds"]


@dataclass(frozen=True)
class Row:
    label: str
    client: str
    path: str = "-"
    ours: bool = False
    reference: bool = False  # not a WebSocket client (raw TCP): not a peer


WORKLOADS = [
    Workload("a", "(a) 100k × 64 B text", "text", 100_000, 64, "msgs/s"),
    Workload("b", "(b) 20k × 4 KiB text", "text", 20_000, 4096, "MiB/s"),
    Workload("c", "(c) 200 × 1 MiB binary", "binary", 200, 1 << 20, "MiB/s"),
    Workload("d", "(d) echo RTT 32 B", "echo", 10_000, 32, "µs"),
    Workload("e", "(e) OctoPrint current", "octoprint", 20_000, 0, "msgs/s"),
]

OURS_STREAM = [
    Row("octoproto asyncio, batch callback", "octoproto-asyncio", "batch", ours=True),
    Row("octoproto asyncio, async for", "octoproto-asyncio", "iter", ours=True),
    Row("octoproto trio, batch callback", "octoproto-trio", "batch", ours=True),
    Row("octoproto trio, async for", "octoproto-trio", "iter", ours=True),
    Row("octoproto blocking, batch callback", "octoproto-blocking", "batch", ours=True),
    Row("octoproto blocking, events()", "octoproto-blocking", "iter", ours=True),
]
PEER_STREAM = [
    Row("picows", "picows"),
    Row("aiohttp", "aiohttp"),
    Row("websockets asyncio", "websockets-asyncio"),
    Row("websockets sync", "websockets-sync"),
    Row("websocket-client", "websocket-client"),
    Row("trio-websocket", "trio-websocket"),
]
RAW = Row("raw TCP recv_into (no WebSocket)", "raw-tcp", reference=True)
OURS_OCTOPRINT = [
    Row("octoproto asyncio, handler", "octoproto-asyncio", "handler", ours=True),
    Row("octoproto asyncio, handler, stdlib json", "octoproto-asyncio", "stdlib-json", ours=True),
    Row("octoproto trio, handler", "octoproto-trio", "handler", ours=True),
    Row("octoproto blocking, handler", "octoproto-blocking", "handler", ours=True),
]
PEER_OCTOPRINT = [
    Row("websockets asyncio + json.loads by hand", "websockets-asyncio", "json"),
    Row("websockets asyncio + orjson by hand", "websockets-asyncio", "orjson"),
]


def plan() -> dict[str, list[Row]]:
    """Which rows run on which workload."""
    echo = [row for row in OURS_STREAM if row.path == "batch"] + PEER_STREAM
    return {
        "a": OURS_STREAM + PEER_STREAM,
        "b": [*OURS_STREAM, *PEER_STREAM, RAW],
        "c": [*OURS_STREAM, *PEER_STREAM, RAW],
        "d": echo,
        "e": OURS_OCTOPRINT + PEER_OCTOPRINT,
    }


# --- environment ------------------------------------------------------------------


def ensure_environment() -> None:
    """The bench venv and Node's ws, installed once (a marker records what was)."""
    marker = VENV / "octoproto-bench.json"
    wanted = {"peers": PEERS, "root": str(ROOT)}
    if not (marker.exists() and json.loads(marker.read_text()) == wanted):
        print(f"installing the bench venv in {VENV} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pip = [str(PYTHON), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "-e", f"{ROOT}[fast]", *PEERS], check=True)
        marker.write_text(json.dumps(wanted))
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise SystemExit(
            "node and npm are needed for the benchmark server (apt-get install nodejs npm)"
        )
    if not (NODE_DIR / "node_modules" / "ws" / "package.json").exists():
        print(f"installing ws from npm in {NODE_DIR} ...", flush=True)
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "npm",
                "install",
                "--silent",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(NODE_DIR),
                "ws@8",
            ],
            check=True,
        )


def load() -> str:
    """The load averages, as ``uptime`` shows them."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} cores"


@contextmanager
def node_server(messages: Path) -> Iterator[int]:
    """server.js on 127.0.0.1; yields its port, and stops it at the end."""
    process = subprocess.Popen(
        ["node", str(HERE / "server.js"), "--messages", str(messages)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("listening "):
            raise SystemExit(f"the benchmark server did not start: {line!r}")
        yield int(line.split()[1])
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_once(port: int, workload: Workload, row: Row, scale: float) -> dict[str, float] | None:
    count = max(10, int(workload.count * scale))
    argv = [str(PYTHON), str(HERE / "clients.py"), row.client, workload.kind, str(port)]
    argv += [str(count), str(workload.size), row.path]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        print(f"  {row.label} {workload.key}: timed out after {RUN_TIMEOUT:.0f} s", flush=True)
        return None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
        print(f"  {row.label} {workload.key}: failed: {tail[0]}", flush=True)
        return None
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    result["count"] = count
    return result


# --- the table ----------------------------------------------------------------------


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "msgs/s":
        return f"{value / 1e6:.2f}M" if value >= 1e6 else f"{value / 1e3:.0f}k"
    if unit == "µs":
        return f"{value:.0f}"
    return f"{value:,.0f}"


def _ratio(value: float | None, other: float | None, unit: str) -> str:
    if value is None or other is None:
        return "—"
    # Higher is better except for RTT: a ratio > 1 always means "better than".
    ratio = other / value if unit == "µs" else value / other
    return f"{ratio:.2f}×"


def table(medians: dict[tuple[str, str], float], rows: list[Row]) -> str:
    """Medians, then ratios to websockets asyncio and to the best peer, per workload."""
    lines = []
    header = "| client | " + " | ".join(f"{w.title} {w.unit}" for w in WORKLOADS) + " |"
    lines += [header, "|---|" + "--:|" * len(WORKLOADS)]
    baseline: dict[str, float | None] = {}
    best: dict[str, tuple[float, str] | None] = {}
    for w in WORKLOADS:
        base_row = (
            "websockets asyncio + json.loads by hand" if w.key == "e" else "websockets asyncio"
        )
        baseline[w.key] = medians.get((base_row, w.key))
        peers = [
            (medians[row.label, w.key], row.label)
            for row in rows
            if not row.ours and not row.reference and (row.label, w.key) in medians
        ]
        if w.unit == "µs":
            best[w.key] = min(peers) if peers else None
        else:
            best[w.key] = max(peers) if peers else None
    for row in rows:
        cells = []
        for w in WORKLOADS:
            value = medians.get((row.label, w.key))
            if value is None:
                cells.append("")
                continue
            cell = _fmt(value, w.unit)
            if row.ours:
                best_peer = best[w.key]
                best_value = best_peer[0] if best_peer is not None else None
                cell += (
                    f" ({_ratio(value, baseline[w.key], w.unit)} ws,"
                    f" {_ratio(value, best_value, w.unit)} best)"
                )
            cells.append(cell)
        name = f"**{row.label}**" if row.ours else row.label
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    notes = []
    for w in WORKLOADS:
        best_peer = best[w.key]
        if best_peer is not None:
            notes.append(f"{w.key}: {best_peer[1]}")
    lines.append("")
    lines.append(
        "Ratios: (× ws) against websockets asyncio (for (e): websockets + json.loads by hand),"
        " (× best) against the best peer on that workload; above 1 is better"
        " (for RTT: lower time). Best peers: " + "; ".join(notes) + "."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds, a tenth of the counts")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 5, quick 3)")
    parser.add_argument("--only", default="abcde", help="workloads to run, e.g. 'ae'")
    parser.add_argument("--core", action="store_true", help="also run core_speed.py")
    parser.add_argument("--fleet", action="store_true", help="also run fleet.py (minutes)")
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 5)
    scale = 0.1 if args.quick else 1.0

    ensure_environment()
    sys.path.insert(0, str(HERE))
    from stream import current_payloads  # noqa: PLC0415 (beside this file)

    out = ROOT / "build" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    samples: dict[tuple[str, str], list[float]] = {}
    started_load = load()
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, python {sys.version.split()[0]}, {started_load}")
    with tempfile.TemporaryDirectory() as directory:
        messages = Path(directory) / "current.json"
        messages.write_text(json.dumps(current_payloads()))
        with node_server(messages) as port:
            runs = plan()
            workloads = [w for w in WORKLOADS if w.key in args.only]
            for round_number in range(rounds):
                print(f"round {round_number + 1}/{rounds} ({load()})", flush=True)
                for w in workloads:
                    rows = runs[w.key]
                    shift = round_number % len(rows)
                    for row in rows[shift:] + rows[:shift]:  # a rotated order each round
                        result = run_once(port, w, row, scale)
                        if result is not None:
                            samples.setdefault((row.label, w.key), []).append(w.value(result))
    medians = {key: statistics.median(values) for key, values in samples.items()}
    all_rows = list(dict.fromkeys(r for rows in plan().values() for r in rows))
    all_rows.sort(key=lambda r: (not r.ours, r.reference))
    report = table(medians, all_rows)
    print()
    print(
        f"medians of {rounds} interleaved rounds; at the end {load()}; at the start {started_load}"
    )
    print()
    print(report)
    (out / "results.json").write_text(
        json.dumps(
            {
                "rounds": rounds,
                "scale": scale,
                "load_start": started_load,
                "load_end": load(),
                "samples": {f"{k[0]} | {k[1]}": v for k, v in samples.items()},
                "medians": {f"{k[0]} | {k[1]}": v for k, v in medians.items()},
                "table": report,
            },
            indent=1,
        )
    )
    quick = ["--quick"] if args.quick else []
    if args.core:
        subprocess.run([str(PYTHON), str(HERE / "core_speed.py"), *quick], check=True)
    if args.fleet:
        subprocess.run([str(PYTHON), str(HERE / "fleet.py"), *quick], check=True)


if __name__ == "__main__":
    main()
