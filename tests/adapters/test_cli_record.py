"""``octoproto record URL ... --out FILE`` and ``octoproto replay FILE``: traces and exit codes.

``record`` runs against the simulated OctoPrint on 127.0.0.1 with every
adapter; ``replay`` gets the files it wrote, damaged copies of them, and
files that are no trace at all. Exit codes: replay 0 identical, 1 a step
differs (described on stderr), 2 a file it cannot replay (one line, never a
traceback).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from octoproto.adapters import cli
from octoproto.adapters.simulator import SimulatorHandle, run_simulator
from test_cli import API_KEY, FAST, PASSWORD, USER, Result, run_cli

ADAPTERS = cli.ADAPTERS


@pytest.fixture(autouse=True)
def _no_credentials_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (cli.ENV_API_KEY, cli.ENV_USER, cli.ENV_PASSWORD):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def sim() -> Iterator[SimulatorHandle]:
    with run_simulator(api_key=API_KEY, username=USER, password=PASSWORD, **FAST) as handle:
        yield handle


def decoded(path: Path) -> str:
    """The file's text and every byte string in it, decoded (to look for secrets)."""
    text = path.read_text()
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


def record(
    capsys: pytest.CaptureFixture[str], sim: SimulatorHandle, path: Path, *options: str
) -> Result:
    result = run_cli(capsys, "record", sim.url, "--out", str(path), "--seconds", "1", *options)
    assert result.code == 0, (result.err, result.lines)
    return result


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_record_then_replay_on_every_adapter(
    capsys: pytest.CaptureFixture[str], sim: SimulatorHandle, tmp_path: Path, adapter: str
) -> None:
    path = tmp_path / "session.trace"
    result = record(capsys, sim, path, "--api-key", API_KEY, "--adapter", adapter)
    assert result.lines[1] == f"recording to {path}"
    assert any("authenticated as" in text for text in result.texts)
    assert API_KEY not in decoded(path)

    replayed = run_cli(capsys, "replay", str(path))
    steps = len(path.read_text().splitlines()) - 2
    assert (replayed.code, replayed.err) == (0, "")
    assert replayed.lines == [f"{path}: identical: {steps} steps replayed"]


def test_record_a_password_login_as_json(
    capsys: pytest.CaptureFixture[str], sim: SimulatorHandle, tmp_path: Path
) -> None:
    path = tmp_path / "session.trace"
    result = record(capsys, sim, path, "--user", USER, "--password", PASSWORD, "--json")
    assert "login_succeeded" in result.kinds  # --json: nothing but events on stdout
    text = decoded(path)
    assert PASSWORD not in text and "redacted-password-1" in text
    assert run_cli(capsys, "replay", str(path)).code == 0


def test_record_secrets_keeps_them_in_the_file_only(
    capsys: pytest.CaptureFixture[str], sim: SimulatorHandle, tmp_path: Path
) -> None:
    path = tmp_path / "session.trace"
    record(capsys, sim, path, "--api-key", API_KEY, "--record-secrets")  # run_cli: not printed
    assert f"X-Api-Key: {API_KEY}" in decoded(path)
    assert run_cli(capsys, "replay", str(path)).code == 0


def test_record_needs_a_file(capsys: pytest.CaptureFixture[str], sim: SimulatorHandle) -> None:
    run_cli(capsys, "record", sim.url).assert_one_line_error(
        2, "the following arguments are required: --out"
    )


def test_record_to_a_file_that_cannot_be_written(
    capsys: pytest.CaptureFixture[str], sim: SimulatorHandle, tmp_path: Path
) -> None:
    path = tmp_path / "no" / "such.trace"
    result = run_cli(capsys, "record", sim.url, "--out", str(path), "--seconds", "1")
    result.assert_one_line_error(2, f"cannot write {path}: No such file or directory")
    assert result.lines == []  # refused before anything started


@pytest.fixture
def good(capsys: pytest.CaptureFixture[str], sim: SimulatorHandle, tmp_path: Path) -> Path:
    path = tmp_path / "good.trace"
    record(capsys, sim, path, "--api-key", API_KEY, "--adapter", "blocking")
    return path


def test_a_step_that_differs_exits_1_and_says_which(
    capsys: pytest.CaptureFixture[str], good: Path, tmp_path: Path
) -> None:
    lines = good.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if '"timer",' in line and i > 3)
    step = json.loads(lines[index])
    step["out"] = [
        ["timer", value + 1.0] if kind == "timer" and value else [kind, value]
        for kind, value in step["out"]
    ]
    lines[index] = json.dumps(step)
    bad = tmp_path / "bad.trace"
    bad.write_text("\n".join(lines) + "\n")
    result = run_cli(capsys, "replay", str(bad))
    assert result.code == 1 and result.lines == []
    assert result.err.startswith(f"octoproto: {bad}: step {index} (line {index + 1}) differs: ")
    assert "get_timer() (output" in result.err and "^ first difference" in result.err
    assert "Traceback" not in result.err


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda text: text[: len(text) // 2], "line "),  # cut in the middle of a line
        (lambda text: text.rsplit("\n", 2)[0] + "\n", "without its end line: it was cut short"),
        (lambda text: text.replace('"octoproto-trace":1', '"octoproto-trace":9', 1), "version 9"),
        (lambda text: "", "the trace is empty"),
        (lambda text: "hello\n", "line 1: not JSON"),
        (lambda text: text.replace('"now":', '"now":"soon","x":', 1), "line 2: unknown key 'x'"),
    ],
)
def test_a_file_that_is_no_trace_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], good: Path, tmp_path: Path, damage: object, message: str
) -> None:
    bad = tmp_path / "bad.trace"
    bad.write_text(damage(good.read_text()))  # type: ignore[operator]
    result = run_cli(capsys, "replay", str(bad))
    result.assert_one_line_error(2, f"octoproto: {bad} cannot be replayed: ", message)


def test_a_file_that_cannot_be_read_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run_cli(capsys, "replay", str(tmp_path / "missing")).assert_one_line_error(
        2, "cannot read", "No such file or directory"
    )
    run_cli(capsys, "replay", str(tmp_path)).assert_one_line_error(2, "cannot read")
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    run_cli(capsys, "replay", str(binary)).assert_one_line_error(2, "line 1: not UTF-8 text")


def test_python_m_octoproto_replay(good: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "octoproto", "replay", str(good)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith(f"{good}: identical: ")
