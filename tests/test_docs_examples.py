"""Every example in docs/examples runs, so the documentation's code never rots.

Each example runs as its users run it, in a subprocess: once on its own
(it starts the simulated OctoPrint itself) and once given a URL and
credentials, as against a real OctoPrint (here: a simulator this test
starts). All of them run at once, each bounded by ``TIMEOUT``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
from octoproto.adapters.simulator import run_simulator

from octoproto import (
    Authenticated,
    OctoPrintClient,
    OctoPrintConfig,
    PushMessage,
    SeededEntropy,
    WebSocketClient,
)
from octoproto.testing import SimulatedOctoPrint, SimulatorConfig

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
TIMEOUT = 60.0  # seconds for each example; they take 0.3-3 s

# example -> what its output must contain, whichever way it ran
EXPECTED = {
    # (the printer's state depends on when a run starts: Operational, then Printing)
    "quickstart": ["authenticated as", "hotend"],
    "octoprint_dialect": ["authenticated as", "messages by type:", "'current': 3"],
    "trio_adapter": ["event: Authenticated", "throttle factor 2", "state closed"],
    "asyncio_adapter": ["authenticated as", "progress", "closed: closed"],
    "blocking_adapter": ["authenticated as", "closed for good", "states: "],
    "websocket_client": ["connected: HTTP 101", 'text message: {"connected"', "disconnected: 1000"],
    "memory_transport": ["Authenticated(user='octo')", "message current"],
}

# the examples that take a URL (and credentials from the environment), as for a real server
WITH_URL = [name for name in EXPECTED if name != "memory_transport"]


@dataclass
class Run:
    returncode: int
    out: str
    err: str


def _start(name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(EXAMPLES / f"{name}.py"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


def _finish(process: subprocess.Popen[str]) -> Run:
    try:
        out, err = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        return Run(-1, out, err + f"\n(killed after {TIMEOUT} s)")
    return Run(process.returncode, out, err)


@pytest.fixture(scope="module")
def runs() -> Iterator[dict[tuple[str, str], Run]]:
    """Every example both ways, all at once: ``(name, "own" | "url") -> Run``."""
    with run_simulator() as server:
        api_key = {"OCTOPROTO_API_KEY": server.api_key}
        login = {"OCTOPROTO_USER": server.username, "OCTOPROTO_PASSWORD": server.password}
        ws_url = server.url.replace("http://", "ws://") + "/sockjs/websocket"
        url_args = {"websocket_client": ([ws_url], {}), "octoprint_dialect": ([server.url], login)}
        started = {(name, "own"): _start(name, [], {}) for name in EXPECTED}
        for name in WITH_URL:
            args, env = url_args.get(name, ([server.url], api_key))
            started[(name, "url")] = _start(name, args, env)
        yield {key: _finish(process) for key, process in started.items()}


def test_every_example_is_tested() -> None:
    assert sorted(path.stem for path in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize(
    ("name", "how"),
    [(name, "own") for name in EXPECTED] + [(name, "url") for name in WITH_URL],
)
def test_example_runs(runs: dict[tuple[str, str], Run], name: str, how: str) -> None:
    run = runs[(name, how)]
    assert run.returncode == 0, run.err
    for text in EXPECTED[name]:
        assert text in run.out, run.out
    assert "Traceback" not in run.err, run.err


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_memory_transport_is_under_50_lines() -> None:
    source = (EXAMPLES / "memory_transport.py").read_text()
    transport = source.split('if __name__ == "__main__":')[0].rstrip()
    assert len(transport.splitlines()) < 50


def test_the_memory_transport_drives_a_whole_session() -> None:
    run = _load("memory_transport").run

    def session() -> list[object]:
        server = SimulatedOctoPrint(SimulatorConfig(api_key="KEY"))
        config = OctoPrintConfig(url="http://octopi", api_key="KEY", entropy=SeededEntropy(1))
        return list(run(OctoPrintClient(config), server, until=5.0))

    events = session()
    assert Authenticated("octo") in events
    currents = [e for e in events if isinstance(e, PushMessage) and e.type == "current"]
    assert 8 <= len(currents) <= 11  # every 0.5 s of fake time
    assert session() == events  # deterministic: the same inputs give the same events


def test_the_memory_transport_drives_any_dialect() -> None:
    run = _load("memory_transport").run
    server = SimulatedOctoPrint(SimulatorConfig())
    config = OctoPrintConfig(url="ws://octopi.local/sockjs/websocket", entropy=SeededEntropy(2))
    client = WebSocketClient(config)
    events = list(run(client, server, until=1.0))
    assert client.is_open
    assert any(type(event).__name__ == "TextMessage" for event in events)
