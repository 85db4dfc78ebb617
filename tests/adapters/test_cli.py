"""The ``octoproto`` command line: ``demo`` and ``watch``, ``--json``, exit codes, secrets.

Almost everything calls :func:`octoproto.adapters.cli.main` in-process with
``out=`` a buffer (stderr is captured by ``capsys``); ``python -m octoproto``
and the ``octoproto`` console script each run once as a subprocess. Every
server is on 127.0.0.1: the simulated OctoPrint, a TLS listener with a
self-signed certificate made here with ``openssl``, or a port that was just
closed. Every wait is bounded: subprocesses by their timeouts, in-process
runs by ``--seconds`` and a faulthandler watchdog.
"""

from __future__ import annotations

import faulthandler
import io
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from octoproto.adapters import cli
from octoproto.adapters.simulator import SimulatorHandle, run_simulator

from octoproto import ReconnectSchedule

ADAPTERS = cli.ADAPTERS
ENV_VARS = (cli.ENV_API_KEY, cli.ENV_USER, cli.ENV_PASSWORD)

#: Secrets that must never show up in any output.
API_KEY = "key-" + secrets.token_hex(12)
PASSWORD = "pw-" + secrets.token_hex(12)
USER = "octo-cli"

#: ``current`` every 0.05 s instead of 0.5 s, so a watch sees plenty in a fraction of a second.
FAST: dict[str, Any] = {"tick_interval": 0.05, "update_interval": 0.05}

#: The longest any single in-process run may take before the watchdog kills the run.
WATCHDOG = 30.0
#: The longest a subprocess may take.
SUBPROCESS_TIMEOUT = 20.0

#: ``--seconds`` for runs that should fail at once: a hang ends in a failed test, not a stuck run.
BOUND = "2"
#: The same for the TLS failures, which fail within milliseconds.
TLS_BOUND = "1"

#: A human-view line: seconds since start, then the text.
LINE = re.compile(r"^ *\d+\.\d\ds  (?P<text>.*)$")


# --- fixtures and helpers --------------------------------------------------------


@pytest.fixture(autouse=True)
def _bounded_and_clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No credentials from the test runner's environment; a hung run dies with a traceback."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    faulthandler.dump_traceback_later(WATCHDOG, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def simulator() -> Iterator[SimulatorHandle]:
    """A fast simulated OctoPrint with known (secret) credentials."""
    with run_simulator(api_key=API_KEY, username=USER, password=PASSWORD, **FAST) as sim:
        yield sim


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def quick_reconnects(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reconnect after 0.1 s and give up after 2 attempts (OctoPrint's schedule takes 193 s)."""
    client_options = cli._client_options

    def patched(*args: Any, **kwargs: Any) -> dict[str, Any]:
        options = client_options(*args, **kwargs)
        options["reconnect"] = ReconnectSchedule(delays=(0.1,), attempts=2)
        return options

    monkeypatch.setattr(cli, "_client_options", patched)


class Output(io.StringIO):
    """What ``main`` writes to ``out``; ``on_line`` sees each line as it is written."""

    def __init__(self, on_line: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self._on_line = on_line

    def write(self, text: str) -> int:
        written = super().write(text)
        if self._on_line is not None:
            for line in text.splitlines():
                self._on_line(line)
        return written

    @property
    def lines(self) -> list[str]:
        return self.getvalue().splitlines()


@dataclass
class Result:
    code: int
    lines: list[str]
    err: str
    seconds: float

    @property
    def records(self) -> list[dict[str, Any]]:
        """The ``--json`` lines, parsed (each must be one JSON object)."""
        records = [json.loads(line) for line in self.lines]
        assert all(isinstance(record, dict) for record in records)
        return records

    @property
    def kinds(self) -> list[str]:
        return [record["kind"] for record in self.records]

    @property
    def texts(self) -> list[str]:
        """The human view's event lines without their time stamps."""
        return [m["text"] for line in self.lines if (m := LINE.match(line))]

    def assert_one_line_error(self, code: int, *fragments: str) -> None:
        assert self.code == code, (self.code, self.err, self.lines)
        assert "Traceback" not in self.err
        assert self.err.startswith("octoproto: ")
        assert self.err.count("\n") == 1 and self.err.endswith("\n"), self.err
        for fragment in fragments:
            assert fragment in self.err, (fragment, self.err)


def run_cli(
    capsys: pytest.CaptureFixture[str],
    *argv: str,
    on_line: Callable[[str], None] | None = None,
) -> Result:
    """``main(argv, out=...)`` in-process; the captured output must not leak a secret."""
    out = Output(on_line)
    started = time.monotonic()
    try:
        code = cli.main(list(argv), out=out)
    except KeyboardInterrupt:  # pragma: no cover - would end the whole pytest run
        pytest.fail("Ctrl-C escaped main()")
    seconds = time.monotonic() - started
    captured = capsys.readouterr()
    result = Result(code, out.lines, captured.err, seconds)
    assert_no_secret(out.getvalue() + captured.out + captured.err)
    return result


def assert_no_secret(text: str) -> None:
    assert API_KEY not in text
    assert PASSWORD not in text


def current_times(records: list[dict[str, Any]]) -> list[float]:
    return [r["t"] for r in records if r["kind"] == "message" and r["type"] == "current"]


def assert_stream(records: list[dict[str, Any]], *, currents: int) -> None:
    """connected, login_succeeded, authenticated in that order, then ``current`` messages."""
    for record in records:
        assert isinstance(record["t"], (int, float)) and record["t"] >= 0
        assert isinstance(record["kind"], str) and record["kind"]
        if record["kind"] == "message":
            assert isinstance(record["type"], str)
            assert "data" in record
    kinds = [record["kind"] for record in records]
    first = {kind: kinds.index(kind) for kind in ("connected", "login_succeeded", "authenticated")}
    assert first["connected"] < first["login_succeeded"] < first["authenticated"], kinds
    times = [record["t"] for record in records]
    assert times == sorted(times), "t goes back"
    currents_after_auth = [
        r
        for r in records[first["authenticated"] :]
        if r["kind"] == "message" and r["type"] == "current"
    ]
    assert len(currents_after_auth) >= currents, kinds
    current_t = current_times(records)
    assert all(a < b for a, b in itertools.pairwise(current_t)), current_t
    state = currents_after_auth[0]["data"]["state"]["text"]
    assert state in ("Operational", "Printing"), state


def status_lines(result: Result) -> list[str]:
    """The human view's lines for ``current`` messages."""
    return [text for text in result.texts if "throttle x" in text]


# --- demo --------------------------------------------------------------------------


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_demo_json_streams_login_then_currents(
    capsys: pytest.CaptureFixture[str], adapter: str
) -> None:
    result = run_cli(capsys, "demo", "--seconds", "1.3", "--json", "--adapter", adapter)
    assert result.code == 0, result.err
    assert result.err == ""
    assert_stream(result.records, currents=2)
    assert result.records[0]["kind"] == "connected"
    login = result.records[result.kinds.index("login_succeeded")]
    assert login["mechanism"] == "apikey"
    assert result.seconds < 1.3 + 1.5  # stops at --seconds, and closes promptly


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_demo_human_view_shows_state_temperatures_throttle(
    capsys: pytest.CaptureFixture[str], adapter: str
) -> None:
    result = run_cli(capsys, "demo", "--seconds", "0.8", "--adapter", adapter)
    assert result.code == 0, result.err
    assert result.err == ""
    assert result.lines[0].startswith("watching a simulated OctoPrint at http://127.0.0.1:")
    texts = result.texts
    assert texts[0] == "connected"
    assert any(t.startswith("logged in as octo-") for t in texts), texts
    assert any(t.startswith("authenticated as octo-") for t in texts), texts
    (status, *_) = status_lines(result)
    assert re.fullmatch(
        r"(Operational|Printing) +.*tool0 \d+\.\d°C.*  bed \d+\.\d°C.*  throttle x1  reconnects 0",
        status,
    ), status
    assert re.search(r"stopped: \d+ messages, 0 reconnects$", result.lines[-1])


def test_python_m_octoproto_demo_json() -> None:
    process = subprocess.run(
        [sys.executable, "-m", "octoproto", "demo", "--seconds", "0.8", "--json"],
        check=False,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        env=clean_env(),
    )
    assert process.returncode == 0, process.stderr
    assert process.stderr == ""
    records = [json.loads(line) for line in process.stdout.splitlines()]
    assert_stream(records, currents=1)


def test_console_script_demo_stops_cleanly_on_ctrl_c() -> None:
    """The README's first command; Ctrl-C ends it with 0, a summary and no traceback."""
    script = Path(sys.executable).parent / "octoproto"
    assert script.exists(), "the octoproto console script is not installed"
    started = time.monotonic()
    process = subprocess.Popen(
        [str(script), "demo"],  # 10 s by default
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:  # the first status line comes after 0.5 s
            lines.append(line.rstrip("\n"))
            if "throttle x1" in line:
                break
        process.send_signal(signal.SIGINT)
        rest, err = process.communicate(timeout=SUBPROCESS_TIMEOUT)
    finally:
        if process.poll() is None:  # pragma: no cover - only if the test failed
            process.kill()
            process.wait()
    lines += rest.splitlines()
    assert process.returncode == 0, err
    assert err == ""
    assert time.monotonic() - started < 8.0, "did not stop on Ctrl-C"
    assert any(LINE.match(line) and "authenticated as" in line for line in lines), lines
    assert "stopped:" in lines[-1]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ENV_VARS}


# --- watch: a working session ------------------------------------------------------


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_watch_with_credentials_from_the_environment(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    simulator: SimulatorHandle,
    adapter: str,
) -> None:
    monkeypatch.setenv(cli.ENV_API_KEY, API_KEY)
    for as_json in (True, False):
        json_flag = ("--json",) if as_json else ()
        result = run_cli(
            capsys, "watch", simulator.url, "--seconds", "0.2", "--adapter", adapter, *json_flag
        )
        assert result.code == 0, result.err
        assert result.err == ""
        if as_json:
            assert_stream(result.records, currents=2)
        else:
            assert f"authenticated as {USER}" in result.texts
            assert status_lines(result)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_watch_user_and_password_from_the_environment(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    simulator: SimulatorHandle,
    adapter: str,
) -> None:
    monkeypatch.setenv(cli.ENV_USER, USER)
    monkeypatch.setenv(cli.ENV_PASSWORD, PASSWORD)
    result = run_cli(
        capsys, "watch", simulator.url, "--seconds", "0.25", "--json", "--adapter", adapter
    )
    assert result.code == 0, result.err
    assert_stream(result.records, currents=2)
    login = result.records[result.kinds.index("login_succeeded")]
    assert login == {**login, "user": USER, "mechanism": "password"}


def test_the_command_line_wins_over_the_environment(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    simulator: SimulatorHandle,
) -> None:
    # --user on the command line, its password from the environment; the
    # environment's (wrong) API key is not used then.
    monkeypatch.setenv(cli.ENV_API_KEY, "not-the-key")
    monkeypatch.setenv(cli.ENV_PASSWORD, PASSWORD)
    result = run_cli(capsys, "watch", simulator.url, "--user", USER, "--seconds", "0.2", "--json")
    assert result.code == 0, result.err
    assert result.records[result.kinds.index("login_succeeded")]["mechanism"] == "password"
    # --api-key on the command line beats user and password in the environment.
    monkeypatch.delenv(cli.ENV_API_KEY)
    monkeypatch.setenv(cli.ENV_USER, "nobody")
    result = run_cli(
        capsys, "watch", simulator.url, "--api-key", API_KEY, "--seconds", "0.2", "--json"
    )
    assert result.code == 0, result.err
    assert result.records[result.kinds.index("login_succeeded")]["mechanism"] == "apikey"


def test_help_names_the_environment_variables_and_shows_no_secret(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(cli.ENV_API_KEY, API_KEY)
    monkeypatch.setenv(cli.ENV_PASSWORD, PASSWORD)
    assert cli.main(["watch", "--help"]) == 0
    captured = capsys.readouterr()
    assert_no_secret(captured.out + captured.err)
    help_text = " ".join(captured.out.split())
    for name in ENV_VARS:
        assert name in help_text
    assert "never printed" in help_text


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_throttle_is_applied_and_kept(
    capsys: pytest.CaptureFixture[str], simulator: SimulatorHandle, adapter: str
) -> None:
    # FAST sends `current` every 0.05 s × factor: factor 4 spaces them 0.2 s.
    result = run_cli(
        capsys,
        "watch",
        simulator.url,
        "--api-key",
        API_KEY,
        "--throttle",
        "4",
        "--seconds",
        "0.6",
        "--json",
        "--adapter",
        adapter,
    )
    assert result.code == 0, result.err
    records = result.records
    changes = [r for r in records if r["kind"] == "throttle_changed"]
    # Once, to 4, and never lowered again by the automatic throttle.
    assert [(r["factor"], r["previous"]) for r in changes] == [(4, 1)], changes
    authenticated = result.kinds.index("authenticated")
    times = [t for t in current_times(records) if t > records[authenticated]["t"]]
    assert len(times) >= 2, times
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) > 0.15, gaps  # unthrottled they come every 0.05 s
    assert len(times) <= 4, times  # 0.6 s / 0.2 s, plus one at the start


def test_throttle_in_the_human_view(
    capsys: pytest.CaptureFixture[str], simulator: SimulatorHandle
) -> None:
    result = run_cli(
        capsys, "watch", simulator.url, "--api-key", API_KEY, "--throttle", "2", "--seconds", "0.3"
    )
    assert result.code == 0, result.err
    assert "throttle factor 1 -> 2 (current at most every 1 s)" in result.texts
    statuses = status_lines(result)
    assert statuses
    assert all("throttle x2" in status for status in statuses), statuses


def test_subscription_is_applied(
    capsys: pytest.CaptureFixture[str], simulator: SimulatorHandle
) -> None:
    result = run_cli(
        capsys,
        "watch",
        simulator.url,
        "--api-key",
        API_KEY,
        "--subscribe",
        '{"state": false, "events": true}',
        "--seconds",
        "0.3",
        "--json",
    )
    assert result.code == 0, result.err
    events = [r["data"]["type"] for r in result.records if r.get("type") == "event"]
    assert "ClientAuthed" in events
    # No state: no `current`, and no `history`, which is what makes the core
    # report `authenticated`.
    assert current_times(result.records) == []
    assert "authenticated" not in result.kinds


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_reconnects_show_in_the_live_view(
    capsys: pytest.CaptureFixture[str],
    simulator: SimulatorHandle,
    quick_reconnects: None,
    adapter: str,
) -> None:
    dropped: list[str] = []

    def drop_once(line: str) -> None:
        if "throttle x" in line and not dropped:
            dropped.append(line)
            simulator.drop_connections()

    result = run_cli(
        capsys,
        "watch",
        simulator.url,
        "--api-key",
        API_KEY,
        "--seconds",
        "0.45",
        "--adapter",
        adapter,
        on_line=drop_once,
    )
    assert result.code == 0, result.err
    texts = result.texts
    dropped_at = texts.index(dropped[0].split("s  ", 1)[1])
    after = texts[dropped_at + 1 :]
    assert after[0].startswith("disconnected: 1006"), after
    assert after[1] == "reconnecting in 0.1 s (attempt 1)", after
    assert "connected again (reconnect 1)" in after
    assert any(t.endswith("reconnects 1") for t in after if "throttle x" in t), after
    assert result.lines[-1].endswith(" 1 reconnects")


# --- watch: ends --------------------------------------------------------------------


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_ctrl_c_exits_0_cleanly(
    capsys: pytest.CaptureFixture[str], simulator: SimulatorHandle, adapter: str
) -> None:
    """A real SIGINT while the adapter waits for input, as from a terminal."""
    timers: list[threading.Timer] = []

    def interrupt_soon(line: str) -> None:
        if "throttle x" in line and not timers:
            timers.append(threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)))
            timers[0].start()

    result = run_cli(
        capsys,
        "watch",
        simulator.url,
        "--api-key",
        API_KEY,
        "--seconds",
        "10",
        "--adapter",
        adapter,
        on_line=interrupt_soon,
    )
    timers[0].join()
    assert result.code == 0, result.err
    assert result.err == ""
    assert result.seconds < 5.0, "Ctrl-C did not stop the watch"
    assert "stopped:" in result.lines[-1]
    # Closed with the close handshake, not abandoned: the server let go too.
    deadline = time.monotonic() + 1.0
    while simulator.connection_count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert simulator.connection_count == 0


def test_output_reader_going_away_ends_quietly(
    capsys: pytest.CaptureFixture[str], simulator: SimulatorHandle
) -> None:
    """``octoproto watch ... --json | head -3``: exit 0, nothing on stderr."""

    class Pipe(Output):
        def write(self, text: str) -> int:
            if len(self.lines) >= 3:
                raise BrokenPipeError(32, "Broken pipe")
            return super().write(text)

    out = Pipe()
    started = time.monotonic()
    code = cli.main(["watch", simulator.url, "--api-key", API_KEY, "--json"], out=out)
    assert code == 0
    assert capsys.readouterr().err == ""
    assert len(out.lines) == 3
    assert time.monotonic() - started < 5.0


# --- exit codes: usage errors (2) -----------------------------------------------------


USAGE_ERRORS = {
    "bad scheme": (["watch", "ftp://127.0.0.1/"], "scheme"),
    "no host": (["watch", "http://"], "no host"),
    "bad port": (["watch", "http://127.0.0.1:99999"], "invalid URL"),
    "bad IPv6": (["watch", "http://[::1"], "invalid URL"),
    "credentials in the URL": (
        ["watch", f"http://{USER}:{PASSWORD}@127.0.0.1:1/"],
        "credentials in the URL",
    ),
    "credentials in a broken URL": (
        ["watch", f"ftp://{USER}:{PASSWORD}@[::1:99999"],
        "credentials in the URL",
    ),
    "api key and user": (
        ["watch", "http://127.0.0.1:1", "--api-key", API_KEY, "--user", USER],
        "not both",
    ),
    "api key, user and password": (
        [
            "watch",
            "http://127.0.0.1:1",
            "--api-key",
            API_KEY,
            "--user",
            USER,
            "--password",
            PASSWORD,
        ],
        "not both",
    ),
    "user without password": (["watch", "http://127.0.0.1:1", "--user", USER], "--password"),
    "password without user": (["watch", "http://127.0.0.1:1", "--password", PASSWORD], "--user"),
    "subscribe not JSON": (["watch", "http://127.0.0.1:1", "--subscribe", "{state: 1"], "JSON"),
    "subscribe not an object": (["watch", "http://127.0.0.1:1", "--subscribe", "[1]"], "object"),
    "subscribe refused": (
        ["watch", "http://127.0.0.1:1", "--subscribe", '{"state": 5}'],
        "subscribe",
    ),
    "throttle 0": (["watch", "http://127.0.0.1:1", "--throttle", "0"], "--throttle"),
    "throttle not a number": (["watch", "http://127.0.0.1:1", "--throttle", "x"], "--throttle"),
    "negative seconds": (["demo", "--seconds", "-1"], "--seconds"),
    "seconds not finite": (["demo", "--seconds", "nan"], "--seconds"),
    "unknown adapter": (["demo", "--adapter", "curio"], "--adapter"),
    "unknown endpoint": (["demo", "--endpoint", "socketio"], "--endpoint"),
    "no URL": (["watch"], "url"),
    "no command": ([], "demo,watch"),
    "unknown command": (["print"], "invalid choice"),
    "unknown option": (["demo", "--fast"], "unrecognized arguments"),
}


@pytest.mark.parametrize("case", USAGE_ERRORS)
def test_usage_errors_exit_2_with_one_line(capsys: pytest.CaptureFixture[str], case: str) -> None:
    argv, fragment = USAGE_ERRORS[case]
    result = run_cli(capsys, *argv)
    result.assert_one_line_error(2, fragment)
    assert result.lines == []  # refused before anything was printed or dialled


@pytest.mark.parametrize(
    ("environment", "fragment"),
    [
        ({cli.ENV_API_KEY: API_KEY, cli.ENV_USER: USER, cli.ENV_PASSWORD: PASSWORD}, "not both"),
        ({cli.ENV_USER: USER}, "go together"),
        ({cli.ENV_PASSWORD: PASSWORD}, "go together"),
    ],
)
def test_usage_errors_from_the_environment(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    environment: dict[str, str],
    fragment: str,
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    result = run_cli(capsys, "watch", "http://127.0.0.1:1", "--json")
    result.assert_one_line_error(2, fragment)


# --- exit codes: could not connect, gave up (1) ------------------------------------


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_refused_connection_exits_1(
    capsys: pytest.CaptureFixture[str], closed_port: int, adapter: str
) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    result = run_cli(
        capsys,
        "watch",
        url,
        "--api-key",
        API_KEY,
        "--json",
        "--adapter",
        adapter,
        "--seconds",
        BOUND,
    )
    result.assert_one_line_error(1, "could not connect")
    assert result.kinds == ["connect_failed"]
    assert result.seconds < 5.0


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_login_refused_wrong_api_key_exits_1(
    capsys: pytest.CaptureFixture[str], simulator: SimulatorHandle, adapter: str
) -> None:
    wrong = "wrong-" + API_KEY[::-1]
    result = run_cli(
        capsys, "watch", simulator.url, "--api-key", wrong, "--adapter", adapter, "--seconds", BOUND
    )
    # OctoPrint answers a key it does not know with 400 (CSRF), as the simulator does.
    result.assert_one_line_error(1, "login refused (400)")
    assert "login failed (400): wrong credentials" in result.texts
    assert wrong not in "\n".join(result.lines) + result.err


def test_login_refused_403_with_a_password_from_the_environment_exits_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, simulator: SimulatorHandle
) -> None:
    wrong = "wrong-" + PASSWORD[::-1]
    monkeypatch.setenv(cli.ENV_USER, USER)
    monkeypatch.setenv(cli.ENV_PASSWORD, wrong)
    result = run_cli(capsys, "watch", simulator.url, "--json", "--seconds", BOUND)
    result.assert_one_line_error(1, "login refused (403)")
    assert wrong not in "\n".join(result.lines) + result.err
    assert result.kinds[-1] == "login_failed"


TLS_ADAPTERS = ["trio", "asyncio", "blocking"]


@pytest.mark.parametrize("adapter", TLS_ADAPTERS)
def test_tls_to_a_plain_http_server_exits_1(
    capsys: pytest.CaptureFixture[str], simulator: SimulatorHandle, adapter: str
) -> None:
    url = simulator.url.replace("http://", "https://")
    result = run_cli(
        capsys, "watch", url, "--api-key", API_KEY, "--adapter", adapter, "--seconds", TLS_BOUND
    )
    result.assert_one_line_error(1, "could not connect")
    assert result.seconds < 5.0


@pytest.fixture(scope="module")
def self_signed_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that nobody trusts, made with ``openssl`` (no ``cryptography``
    in the venv; Python's ``ssl`` cannot make one)."""
    openssl = shutil.which("openssl")
    if openssl is None:  # pragma: no cover - depends on the machine
        pytest.skip("no openssl command to make a self-signed certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    return cert, key


@contextmanager
def tls_listener(cert: Path, key: Path) -> Iterator[int]:
    """A TLS server on 127.0.0.1 that presents ``cert``; yields its port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2.0)
                try:
                    with context.wrap_socket(conn, server_side=True) as tls:
                        tls.recv(1)
                except OSError:  # the client refused our certificate
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stopping.set()
        thread.join(5.0)
        listener.close()


@pytest.mark.parametrize("adapter", TLS_ADAPTERS)
def test_tls_certificate_failure_exits_1(
    capsys: pytest.CaptureFixture[str], self_signed_certificate: tuple[Path, Path], adapter: str
) -> None:
    with tls_listener(*self_signed_certificate) as port:
        url = f"https://127.0.0.1:{port}/"
        result = run_cli(
            capsys, "watch", url, "--api-key", API_KEY, "--adapter", adapter, "--seconds", TLS_BOUND
        )
    result.assert_one_line_error(1, "could not connect")
    assert "certificate" in result.err.lower(), result.err
    assert result.seconds < 5.0


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_gave_up_when_the_first_attempts_fail_with_keep_trying(
    capsys: pytest.CaptureFixture[str], closed_port: int, quick_reconnects: None, adapter: str
) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    result = run_cli(
        capsys, "watch", url, "--keep-trying", "--json", "--adapter", adapter, "--seconds", BOUND
    )
    result.assert_one_line_error(1, "gave up after 2 reconnect attempts")
    assert result.kinds == [
        "connect_failed",
        "reconnect_scheduled",
        "connect_failed",
        "reconnect_scheduled",
        "connect_failed",
        "reconnect_failed",
    ]


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_gave_up_after_the_server_went_away(
    capsys: pytest.CaptureFixture[str],
    simulator: SimulatorHandle,
    quick_reconnects: None,
    adapter: str,
) -> None:
    """Once connected, a failure is not the end: the schedule runs out first."""

    def stop_server_once(line: str) -> None:
        if '"current"' in line and simulator.connection_count:
            simulator.restart(downtime=60.0)  # down for longer than the test

    result = run_cli(
        capsys,
        "watch",
        simulator.url,
        "--api-key",
        API_KEY,
        "--json",
        "--adapter",
        adapter,
        "--seconds",
        BOUND,
        on_line=stop_server_once,
    )
    result.assert_one_line_error(1, "gave up after 2 reconnect attempts")
    kinds = result.kinds
    lost = kinds.index("disconnected")
    assert kinds[:lost].count("authenticated") == 1
    assert [k for k in kinds[lost:] if k != "message"] == [
        "disconnected",
        "reconnect_scheduled",
        "connect_failed",
        "reconnect_scheduled",
        "connect_failed",
        "reconnect_failed",
    ]
    assert result.records[lost]["code"] == 1006
    assert result.seconds < 5.0
