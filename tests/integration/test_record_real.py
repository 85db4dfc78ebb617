"""Recording a session with the real OctoPrint: it replays, and the redaction holds.

The real server's login answers are Flask's, not the simulator's: a user
record with the user's own ``apikey``, the session, and cookies beside the
CSRF one (``session_P<port>``, ``remember_token_P<port>``). Each adapter
records an active and a passive login; the trace must replay identically,
hold no password, API key, session or cookie value, and the stand-in must
not have parted from the real client (no warning on ``octoproto.adapters``).
"""

from __future__ import annotations

import base64
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from harness.facade import Facade, is_event, is_message
from servers.octoprint_server import OctoPrintServer

from octoproto import Authenticated, assert_replays

SOON = 10.0


def inputs_and_outputs(text: str) -> tuple[bytes, bytes]:
    """Every byte string the client received, and every one it sent on the HTTP channel."""
    received, sent = [], []
    for line in text.splitlines()[1:-1]:
        step = json.loads(line)
        if step.get("in") == "receive_data" and step["args"]["channel"] == "http":
            received.append(base64.b64decode(step["args"]["data"]))
        for kind, value in step.get("out", []):
            send = (value or {}).get("SendData") if kind == "command" else None
            if send and send["channel"] == "http":
                sent.append(base64.b64decode(send["data"]["$b"]))
    return b"".join(received), b"".join(sent)


@pytest.mark.parametrize("login", ["password", "apikey"])
def test_a_recorded_real_session_replays_and_holds_no_secret(
    adapter: Facade,
    octoprint_server: OctoPrintServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    login: str,
) -> None:
    server = octoprint_server
    path = tmp_path / "real.trace"
    credentials: dict[str, Any] = (
        {"username": server.username, "password": server.password}
        if login == "password"
        else {"api_key": server.api_key}
    )
    with caplog.at_level(logging.WARNING, logger="octoproto.adapters"):
        adapter.start(server.base_url, record=path, **credentials)
        adapter.events_until(is_event(Authenticated), SOON)
        adapter.events_until(is_message("current"), SOON)
        adapter.close()
    assert "redaction changed its course" not in caplog.text

    text = path.read_text()
    assert_replays(text)
    received, sent = inputs_and_outputs(text)
    everything = text.encode() + received + sent
    assert server.password.encode() not in everything
    assert server.api_key.encode() not in everything
    # The login answer's secrets are placeholders, where the real ones were.
    sessions = re.findall(rb'"session": ?"([^"]*)"', received)
    assert sessions and all(value.startswith(b"redacted-session-") for value in sessions)
    for value in re.findall(rb'"apikey": ?"([^"]*)"', received):
        assert value.startswith(b"redacted-")
    cookies = re.findall(rb"(?im)^set-cookie: *[^=]+=([^;\r\n]*)", received)
    assert all(not value or value.startswith(b"redacted-") for value in cookies)
    if login == "password":
        assert cookies  # the CSRF cookie at least
        for header in re.findall(rb"(?im)^(?:cookie|x-csrf-token): *([^\r\n]*)", sent):
            assert b"redacted-cookie-" in header
