"""Secrets stay secret (design must 8), on every adapter and in the command line.

A full session against the simulated OctoPrint with known secrets (an API
key, or a user's password) and every session id the server hands out
(recorded as it makes them): login, a stale session and the re-login, a
dropped connection and the login after the reconnect, a failed login and
its retry, an ``auth`` sent by hand, a handler that raises, a recording of
it all (``record=``). Then every place a secret could leak is scanned:

* every log record of any logger, at DEBUG, with its traceback;
* ``repr()`` and ``str()`` of the client, its core, its config and every event;
* the text of every error the session's misuse raises;
* the recording (secrets are placeholders unless ``record_secrets``);
* the command line's output (stdout, stderr, ``--json``) and its recording.
"""

from __future__ import annotations

import io
import logging
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.facade import Facade, is_event, is_message, make_facade
from harness.tracescan import trace_text
from octoproto.adapters import cli
from octoproto.adapters.simulator import SimulatorHandle

from octoproto import (
    Authenticated,
    Disconnected,
    LocalProtocolError,
    LoginFailed,
    OctoPrintConfig,
    PushMessage,
    ReauthRequired,
    ReconnectSchedule,
    SeededEntropy,
)
from octoproto.testing import SimulatedOctoPrint

Simulator = Callable[..., SimulatorHandle]

SOON = 3.0
API_KEY = "apikey-" + secrets.token_hex(16)
PASSWORD = "password-" + secrets.token_hex(16)
USER = "octo-secrets"

CREDENTIALS: dict[str, dict[str, Any]] = {
    "apikey": {"api_key": API_KEY},
    "password": {"username": USER, "password": PASSWORD},
}


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every login session id the simulated server hands out."""
    made: list[str] = []
    original = SimulatedOctoPrint._new_session

    def new_session(self: SimulatedOctoPrint, user: str, now: float) -> str:
        session = original(self, user, now)
        made.append(session)
        return session

    monkeypatch.setattr(SimulatedOctoPrint, "_new_session", new_session)
    return made


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record of every logger, at DEBUG (octoproto's loggers named too)."""
    caplog.set_level(logging.DEBUG)
    for name in ("octoproto", "octoproto.handlers", "octoproto.adapters"):
        caplog.set_level(logging.DEBUG, logger=name)
    yield caplog


def leaks(texts: dict[str, str], secret_values: list[str]) -> list[str]:
    """Where (by label) any secret shows up."""
    return [
        f"{label} shows {value[:12]}..."
        for label, text in texts.items()
        for value in secret_values
        if value and value in text
    ]


def misuse_errors() -> dict[str, str]:
    """The text of each error that misuse with a secret in hand raises."""
    errors: dict[str, str] = {}
    attempts: dict[str, Callable[[], object]] = {
        "api key and password together": lambda: OctoPrintConfig(
            url="http://127.0.0.1/",
            entropy=SeededEntropy(1),
            api_key=API_KEY,
            username=USER,
            password=PASSWORD,
        ),
        "password without user": lambda: OctoPrintConfig(
            url="http://127.0.0.1/", entropy=SeededEntropy(1), password=PASSWORD
        ),
        "credentials in the URL": lambda: OctoPrintConfig(
            url=f"http://{USER}:{PASSWORD}@127.0.0.1:1/", entropy=SeededEntropy(1)
        ),
    }
    for label, attempt in attempts.items():
        try:
            attempt()
        except LocalProtocolError as exc:
            errors[label] = f"{exc!r} {exc}"
        else:  # pragma: no cover - each is refused
            raise AssertionError(f"{label}: accepted")
    return errors


@pytest.mark.fault_case(
    "secrets in logs, repr, errors, recordings",
    "no password, API key or session in any log (DEBUG), repr(), error text or recording",
)
@pytest.mark.parametrize("login", ["apikey", "password"])
def test_a_full_session_shows_no_secret(  # noqa: PLR0917 (fixtures)
    adapter: Facade,
    simulator: Simulator,
    sessions: list[str],
    all_logs: pytest.LogCaptureFixture,
    tmp_path: Path,
    login: str,
) -> None:
    def broken(message: PushMessage) -> None:
        raise ValueError("a handler bug")  # logged with its traceback

    trace = tmp_path / "trace.jsonl"
    sim = simulator(api_key=API_KEY, username=USER, password=PASSWORD)
    adapter.start(
        sim.url,
        **CREDENTIALS[login],
        reconnect=ReconnectSchedule(delays=(0.05,), attempts=None),
        login_retry_delay=0.1,
        record=str(trace),
        handlers=[("history", broken)],
    )
    adapter.events_until(is_event(Authenticated), SOON)
    # A stale session: the core logs in again and sends the new one.
    sim.close_sessions("stale")
    adapter.events_until(is_event(ReauthRequired), SOON)
    adapter.events_until(is_event(Authenticated), SOON)
    # A dropped connection: a login and an auth on the new one.
    sim.drop_connections()
    adapter.events_until(is_event(Disconnected), SOON)
    adapter.events_until(is_event(Authenticated), SOON)
    # A failed login, then its retry.
    sim.fail_logins(500)
    sim.close_sessions("stale")
    adapter.events_until(is_event(LoginFailed), SOON)
    sim.fail_logins(None)
    adapter.events_until(is_event(Authenticated), SOON)
    # An auth by hand, with the current session, and one the core refuses.
    assert len(sessions) >= 4, sessions
    adapter.send_auth(USER, sessions[-1])
    refused = ""
    try:
        adapter.send_auth(USER + ":x", sessions[-1])
    except LocalProtocolError as exc:
        refused = f"{exc!r} {exc}"
    assert refused
    adapter.events_until(is_message("current"), SOON)
    texts = {
        "the client's repr": repr(adapter.client),
        "the core's repr": repr(adapter.core),
        "the config's repr": repr(adapter.core.config) + str(adapter.core.config),
        "the usage": repr(adapter.core.usage),
        "a refused auth": refused,
    }
    adapter.disconnect()
    adapter.close()
    texts |= {f"event {e!r}"[:60]: f"{e!r} {e}" for _, e in adapter.log}
    texts |= misuse_errors()
    texts["the logs"] = all_logs.text
    texts["the recording"] = trace_text(trace)
    # The scan saw something: the handler's failures were logged, with
    # tracebacks, and the recording was read down to the messages (the
    # logins, and the auth messages inside masked, compressed frames).
    assert "a handler bug" in all_logs.text and "Traceback" in all_logs.text
    assert "api/login" in texts["the recording"]
    assert texts["the recording"].count('{\\"auth\\":\\"') >= 4  # SockJS-quoted
    assert leaks(texts, [API_KEY, PASSWORD, *sessions]) == []


def test_the_scan_finds_secrets_kept_on_purpose(
    simulator: Simulator, sessions: list[str], tmp_path: Path
) -> None:
    # The scan is not blind: with record_secrets=True the API key (an HTTP
    # header) and the session (inside masked, compressed auth frames) are there.
    trace = tmp_path / "kept.jsonl"
    sim = simulator(api_key=API_KEY)
    facade = make_facade("blocking")
    try:
        facade.start(sim.url, api_key=API_KEY, record=str(trace), record_secrets=True)
        facade.events_until(is_event(Authenticated), SOON)
    finally:
        facade.close()
    text = trace_text(trace)
    assert API_KEY in text
    assert sessions and f"{sim.username}:{sessions[0]}" in text


@pytest.mark.parametrize("adapter_name", cli.ADAPTERS)
def test_the_command_line_shows_no_secret(  # noqa: PLR0917 (fixtures)
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    simulator: Simulator,
    sessions: list[str],
    all_logs: pytest.LogCaptureFixture,
    tmp_path: Path,
    adapter_name: str,
) -> None:
    sim = simulator(api_key=API_KEY, username=USER, password=PASSWORD)
    for name in (cli.ENV_API_KEY, cli.ENV_USER, cli.ENV_PASSWORD):
        monkeypatch.delenv(name, raising=False)
    outputs: dict[str, str] = {}
    runs = {
        "record --api-key --json": ["record", sim.url, "--api-key", API_KEY, "--json"],
        "watch, password from the environment": ["watch", sim.url],
    }
    monkeypatch.setenv(cli.ENV_USER, USER)
    monkeypatch.setenv(cli.ENV_PASSWORD, PASSWORD)
    for label, command in runs.items():
        trace = tmp_path / f"{len(outputs)}.jsonl"
        argv = [*command, "--seconds", "0.5", "--adapter", adapter_name]
        if command[0] == "record":
            argv += ["--out", str(trace)]
        out = io.StringIO()
        code = cli.main(argv, out=out)
        captured = capsys.readouterr()
        assert code == 0, captured.err
        outputs[f"{label}: output"] = out.getvalue() + captured.out + captured.err
        if trace.exists():
            outputs[f"{label}: recording"] = trace_text(trace)
    assert "authenticated" in outputs["record --api-key --json: output"]
    assert "recording" in " ".join(outputs)  # the recording was written and scanned
    outputs["the logs"] = all_logs.text
    assert len(sessions) >= 2
    assert leaks(outputs, [API_KEY, PASSWORD, *sessions]) == []
