"""The pytest example of ``docs/replay.md`` works as printed: it passes, and fails usefully.

The example is taken from the page, written into a fresh project with one
trace recorded from the simulated OctoPrint (the blocking adapter,
``record=``), and run by pytest in a subprocess; then the trace is damaged
and the example must fail, naming the step.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from octoproto.adapters import blocking
from octoproto.adapters.simulator import run_simulator

from octoproto import Authenticated

PAGE = Path(__file__).resolve().parent.parent / "docs" / "replay.md"


def the_example() -> str:
    section = PAGE.read_text().split("## A regression test from recordings", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None
    return match.group(1)


def run_pytest(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_pytest_example_of_the_replay_page(tmp_path: Path) -> None:
    tests = tmp_path / "tests"
    (tests / "traces").mkdir(parents=True)
    (tests / "test_recorded_sessions.py").write_text(the_example())
    trace = tests / "traces" / "login.trace"
    with run_simulator(tick_interval=0.05, update_interval=0.05) as sim:
        with blocking.connect(sim.url, api_key=sim.api_key, record=trace) as client:
            events = client.events(timeout=5.0)
            assert any(isinstance(event, Authenticated) for event in events)
            events.close()
        user = sim.username
    done = run_pytest(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout

    lines = trace.read_text().splitlines()
    authenticated = json.dumps({"Authenticated": {"user": user}}, separators=(",", ":"))
    index = next(i for i, line in enumerate(lines) if authenticated in line)
    lines[index] = lines[index].replace(authenticated, authenticated.replace(user, "someone-else"))
    trace.write_text("\n".join(lines) + "\n")
    done = run_pytest(tmp_path)
    assert done.returncode == 1
    assert f"ReplayMismatch: step {index} (line {index + 1}) differs" in done.stdout
    assert '"user":"someone-else"' in done.stdout
