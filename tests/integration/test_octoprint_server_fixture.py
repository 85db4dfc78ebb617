"""Checks that the ``octoprint_server`` fixture gives a usable, real OctoPrint.

Only the standard library is used here, so a failure points at the server
set-up and never at octoproto itself.
"""

from __future__ import annotations

import http.client
import json
import time
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

from servers.octoprint_server import OctoPrintServer, free_port, restart, start, stop


def _call(
    server: OctoPrintServer,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        all_headers = dict(headers or {})
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        conn.request(method, path, body=payload, headers=all_headers)
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def _passive_login(server: OctoPrintServer) -> dict[str, Any]:
    status, _, data = _call(
        server, "POST", "/api/login", {"passive": True}, {"X-Api-Key": server.api_key}
    )
    assert status == 200, data
    user: dict[str, Any] = json.loads(data)
    return user


def _csrf_headers(server: OctoPrintServer) -> dict[str, str]:
    """Fetch the CSRF cookie from the login page; return headers that satisfy it."""
    status, headers, _ = _call(server, "GET", "/login")
    assert status == 200
    cookies: SimpleCookie = SimpleCookie()
    for value in headers.get_all("Set-Cookie") or []:
        cookies.load(value)
    # OctoPrint suffixes every cookie with the port so that instances on one
    # host do not clobber each other's cookies.
    name = f"csrf_token_P{server.port}"
    assert name in cookies, sorted(cookies)
    token = cookies[name].value
    return {"Cookie": f"{name}={token}", "X-CSRF-Token": token}


def _active_login(server: OctoPrintServer, password: str) -> tuple[int, bytes]:
    status, _, data = _call(
        server,
        "POST",
        "/api/login",
        {"user": server.username, "pass": password, "remember": False},
        _csrf_headers(server),
    )
    return status, data


def test_passive_login_with_api_key(octoprint_server: OctoPrintServer) -> None:
    user = _passive_login(octoprint_server)
    assert user["name"] == octoprint_server.username
    assert user["session"]
    assert user["_login_mechanism"] == "apikey"
    assert "admins" in user["groups"]


def test_active_login_with_csrf_token(octoprint_server: OctoPrintServer) -> None:
    status, data = _active_login(octoprint_server, octoprint_server.password)
    assert status == 200, data
    user = json.loads(data)
    assert user["name"] == octoprint_server.username
    assert user["session"]
    assert user["_login_mechanism"] == "password"


def test_active_login_without_csrf_token_is_rejected(octoprint_server: OctoPrintServer) -> None:
    status, _, _ = _call(
        octoprint_server,
        "POST",
        "/api/login",
        {"user": octoprint_server.username, "pass": octoprint_server.password},
    )
    assert status == 400


def test_wrong_password_is_forbidden(octoprint_server: OctoPrintServer) -> None:
    # Only one attempt: OctoPrint rate-limits failed logins (3 per minute).
    status, _ = _active_login(octoprint_server, octoprint_server.password + "-wrong")
    assert status == 403


def test_virtual_printer_is_operational(octoprint_server: OctoPrintServer) -> None:
    status, _, data = _call(
        octoprint_server, "GET", "/api/connection", headers={"X-Api-Key": octoprint_server.api_key}
    )
    assert status == 200
    current = json.loads(data)["current"]
    assert current["state"] == "Operational"
    assert current["port"] == "VIRTUAL"


def test_restart_keeps_credentials(tmp_path: Path) -> None:
    # A server of its own, so the shared one keeps its sessions for other tests.
    server = start(free_port(), tmp_path)
    try:
        old_pid = server.pid
        began = time.monotonic()
        assert restart(server) is server
        print(f"restart took {time.monotonic() - began:.1f} s")
        assert server.pid != old_pid
        # Same API key and password as before: the user store, the appkeys
        # store and the password salt in config.yaml all survived.
        assert _passive_login(server)["name"] == server.username
        status, data = _active_login(server, server.password)
        assert status == 200, data
        status, _, data = _call(
            server, "GET", "/api/connection", headers={"X-Api-Key": server.api_key}
        )
        assert json.loads(data)["current"]["state"] == "Operational"
    finally:
        stop(server)
