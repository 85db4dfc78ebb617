"""Fault cases against the real OctoPrint 1.11.8, on every adapter (rows of docs/fault-matrix.md).

The simulated server answers login faults the way these tests find the real
one does; here the real one says so itself:

* a wrong API key: OctoPrint takes a key it does not know for no key at all
  and refuses the passive login for want of a CSRF token (400, which its
  login rate limit does not count), so the session's shared server is used;
* a wrong password (403), then OctoPrint's login rate limit (3 failures a
  minute, then 429 for every login): on a server of the test's own, so the
  shared one is never limited.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path

import pytest
from harness.facade import Facade, is_event, is_message, make_facade
from servers.octoprint_server import OctoPrintServer, free_port, start, stop

from octoproto import (
    Authenticated,
    AuthState,
    Disconnected,
    LoginFailed,
    LoginSucceeded,
    SessionState,
)

#: Seconds for a login (a few round trips to a real server).
SOON = 10.0
#: Seconds before a failed login is tried again, where the core retries.
RETRY = 0.5


@pytest.fixture
def own_octoprint(tmp_path: Path) -> Iterator[OctoPrintServer]:
    """A real OctoPrint for this test alone (its login rate limit is the test's to trip)."""
    server = start(free_port(), tmp_path / "octoprint")
    try:
        yield server
    finally:
        stop(server)


def failed_login(server: OctoPrintServer) -> int:
    """One active login with a wrong password (with the CSRF cookie it needs); the status."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        conn.request("GET", "/login")
        page = conn.getresponse()
        page.read()
        cookies: SimpleCookie = SimpleCookie()
        for value in page.headers.get_all("Set-Cookie") or []:
            cookies.load(value)
        token = cookies[f"csrf_token_P{server.port}"].value
    finally:
        conn.close()
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        body = json.dumps({"user": server.username, "pass": "wrong-" + server.password})
        headers = {
            "Content-Type": "application/json",
            "Cookie": f"csrf_token_P{server.port}={token}",
            "X-CSRF-Token": token,
        }
        conn.request("POST", "/api/login", body, headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def stays_up_anonymous(facade: Facade, seconds: float) -> None:
    """No login succeeds and the socket stays open, anonymous, for ``seconds``."""
    events = facade.events_for(seconds)
    assert not [e for e in events if isinstance(e, (LoginSucceeded, Authenticated, Disconnected))]
    assert facade.state is SessionState.OPEN
    assert facade.core.auth_state is AuthState.ANONYMOUS


@pytest.mark.fault_case(
    "login with a wrong API key (real OctoPrint)",
    "OctoPrint answers 400 (CSRF): LoginFailed(400, 'wrong credentials'), no retry; stays up",
)
def test_wrong_api_key(adapter: Facade, octoprint_server: OctoPrintServer) -> None:
    server = octoprint_server
    adapter.start(server.base_url, api_key="wrong-" + server.api_key, login_retry_delay=RETRY)
    events = adapter.events_until(is_event(LoginFailed), SOON)
    assert events[-1] == LoginFailed(400, "wrong credentials", None)
    assert any(is_message("connected")(e) for e in events)
    stays_up_anonymous(adapter, 3 * RETRY)


@pytest.mark.fault_case(
    "wrong password, then the login rate limit (real OctoPrint)",
    "403: LoginFailed, no retry; 429: LoginFailed(retry_in), retried on schedule; stays up",
)
def test_wrong_password_then_rate_limited(adapter: Facade, own_octoprint: OctoPrintServer) -> None:
    server = own_octoprint
    adapter.start(
        server.base_url,
        username=server.username,
        password="wrong-" + server.password,
        login_retry_delay=RETRY,
    )
    events = adapter.events_until(is_event(LoginFailed), SOON)
    assert events[-1] == LoginFailed(403, "wrong credentials", None)
    stays_up_anonymous(adapter, 3 * RETRY)  # no retry: failed logins are rate-limited
    # Two more failures make three a minute: from now on every login is 429.
    assert [failed_login(server) for _ in range(2)] == [403, 403]
    assert failed_login(server) == 429
    # A client with the right key is limited too; it retries on its own schedule.
    second = make_facade(adapter.name)
    try:
        second.start(server.base_url, api_key=server.api_key, login_retry_delay=RETRY)
        first = second.events_until(is_event(LoginFailed), SOON)[-1]
        assert first == LoginFailed(429, "rate limited by the server", RETRY)
        again = second.events_until(is_event(LoginFailed), SOON)[-1]
        assert again == first
        stamps = [t for t, e in second.log if isinstance(e, LoginFailed)]
        assert stamps[1] - stamps[0] >= RETRY - 0.05
        stays_up_anonymous(second, 0.2)
    finally:
        second.close()
    second.assert_stopped()
