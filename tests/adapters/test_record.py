"""``connect(url, record=path)`` on every adapter: the trace replays, and holds no secret.

Each test records a live session against the simulated OctoPrint on
loopback (real sockets, real clocks), then replays the file in-process with
:func:`octoproto.check_replay`. The fixtures check that nothing is left
running or open afterwards: the trace file included.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from harness.facade import Facade, is_event, is_message
from octoproto.adapters import _common, blocking
from octoproto.adapters.simulator import SimulatorHandle

from octoproto import (
    Authenticated,
    Connected,
    Disconnected,
    OctoPrintConfig,
    ReconnectSchedule,
    Recorder,
    SeededEntropy,
    SessionConfig,
    TextMessage,
    WebSocketClient,
    assert_replays,
    check_replay,
)

Simulator = Callable[..., SimulatorHandle]

#: Seconds for anything that takes a few round trips on loopback.
SOON = 3.0
FAST_RECONNECT = ReconnectSchedule(delays=(0.05,), attempts=None)


def decoded(text: str) -> str:
    """The trace's text and every byte string in it, decoded (to look for secrets)."""
    parts = [text]

    def walk(value: object) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key in {"$b", "data"} and isinstance(item, str):
                    parts.append(base64.b64decode(item).decode("latin-1"))
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for line in text.splitlines():
        walk(json.loads(line))
    return "\n".join(parts)


def sessions(sim: SimulatorHandle) -> list[str]:
    """The login sessions the server handed out and still knows."""
    return sim.call(lambda server, now: list(server._sessions))


@pytest.mark.parametrize("login", ["apikey", "password"])
def test_a_session_recorded_by_each_adapter_replays_identically(
    adapter: Facade, simulator: Simulator, tmp_path: Path, login: str
) -> None:
    sim = simulator()
    path = tmp_path / "session.trace"
    credentials: dict[str, Any] = (
        {"api_key": sim.api_key}
        if login == "apikey"
        else {"username": sim.username, "password": sim.password}
    )
    adapter.start(sim.url, record=path, reconnect=FAST_RECONNECT, **credentials)
    adapter.events_until(is_message("current"), SOON)
    sim.drop_connections()  # a loss, a reconnect and a second login
    adapter.events_until(is_event(Disconnected), SOON)
    adapter.events_until(is_event(Authenticated), SOON)
    adapter.send_message("gcode", {"command": "M105"})
    adapter.events_until(is_message("current"), SOON)
    handed_out = sessions(sim)
    adapter.close()

    text = path.read_text()
    lines = text.splitlines()
    header, end = json.loads(lines[0]), json.loads(lines[-1])
    assert header["octoproto-trace"] == 1 and header["redacted"] is True
    assert end == {"end": {"steps": len(lines) - 2}}  # closed on exit, with its end line
    result = assert_replays(text)
    assert result.steps == len(lines) - 2 > 30
    # Not a single secret, in the text or in any bytes written as base64.
    everything = decoded(text)
    assert len(handed_out) == 2
    for secret in (sim.api_key, sim.password, *handed_out):
        assert secret not in everything
    assert "redacted-session-2" in everything


def test_keeping_the_secrets_is_a_choice(
    adapter: Facade, simulator: Simulator, tmp_path: Path
) -> None:
    sim = simulator()
    path = tmp_path / "session.trace"
    adapter.start(sim.url, api_key=sim.api_key, record=str(path), record_secrets=True)
    adapter.events_until(is_event(Authenticated), SOON)
    adapter.close()
    text = path.read_text()
    assert f"X-Api-Key: {sim.api_key}" in decoded(text)
    assert check_replay(text)


def test_a_trace_that_cannot_be_created_fails_connect(
    adapter: Facade, simulator: Simulator, tmp_path: Path
) -> None:
    sim = simulator()
    with pytest.raises(FileNotFoundError):
        adapter.start(sim.url, api_key=sim.api_key, record=tmp_path / "no" / "such.trace")


def test_a_failing_disk_stops_the_recording_not_the_session(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = OctoPrintConfig(url="http://127.0.0.1:1/", entropy=SeededEntropy(1))
    trace = _common.TraceFile(tmp_path / "full.trace", config, secrets=False)

    class Full:
        def write(self, text: str) -> None:
            raise OSError(28, "No space left on device")

        def close(self) -> None:
            pass

    real, trace._file = trace._file, Full()
    real.close()
    with caplog.at_level(logging.WARNING, logger="octoproto.adapters"):
        trace.recorder.client.connect(0.0)
        trace.recorder.client.handle_timer(0.1)
        trace.close()
        trace.close()
    assert "stopped: OSError: [Errno 28] No space left on device" in caplog.text


def test_any_core_records_through_open_session(
    simulator: Simulator, nothing_left_running: None
) -> None:
    """As docs/replay.md shows: a Recorder's client driven by ``open_session``."""
    sim = simulator()
    config = SessionConfig(
        url=sim.url.replace("http", "ws") + "/sockjs/websocket", entropy=os.urandom
    )
    lines: list[str] = []
    recorder = Recorder(WebSocketClient, config, write=lines.append)
    with blocking.open_session(recorder.client) as session:
        events = session.events(timeout=5.0)
        assert isinstance(next(events), Connected)
        session.call(recorder.client.send, '{"throttle": 2}')
        assert isinstance(next(events), TextMessage)
        events.close()
    recorder.close()
    assert check_replay(lines).steps > 5
