"""Tests for octoproto._octoprint: the OctoPrint push-socket dialect, end to end.

Every test drives a real :class:`OctoPrintClient` through the in-memory
server peer and fake clock of ``peer.py``: wsproto plays the server's side of
the WebSocket, a queue of canned HTTP answers plays ``/login`` and
``/api/login``. Nothing sleeps; time moves only through ``Harness.advance``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import pytest
from peer import Accept, Harness, ServerPeer, accept_key

from octoproto import (
    Authenticated,
    AuthState,
    Channel,
    CloseTransport,
    Connected,
    ConnectFailed,
    Disconnected,
    Endpoint,
    Event,
    HandshakeResponse,
    InvalidMessageError,
    LocalProtocolError,
    LoginFailed,
    LoginSucceeded,
    NotConnectedError,
    OctoPrintClient,
    OctoPrintConfig,
    OpenTransport,
    ProtocolError,
    PushMessage,
    ReauthRequired,
    ReconnectSchedule,
    ReconnectScheduled,
    Secret,
    SeededEntropy,
    SendData,
    SessionState,
    ThrottleChanged,
    ThrottleSettings,
)
from octoproto._sockjs import random_session_ids

HOST = "octopi.local:5000"
URL = "http://octopi.local:5000/"
SEED = b"octoprint-tests"
# The secrets: each must reach the wire and never any event, repr or error.
API_KEY = "APIKEY-7f3a9c1e5b"
PASSWORD = "PASSWORD-hunter2-x9"
SESSION = "SESSION-0d6e2b8a41"
SESSION_2 = "SESSION-2c4f6a8e13"
SECRETS = (API_KEY, PASSWORD, SESSION, SESSION_2)

CONNECTED: dict[str, object] = {
    "version": "1.11.8",
    "display_version": "1.11.8",
    "branch": None,
    "python_version": "3.11.7",
    "plugin_hash": "4f1e",
    "config_hash": "9a2b",
    "debug": False,
    "safe_mode": None,
    "online": False,
    "permissions": [],
}
HISTORY: dict[str, object] = {"state": {"text": "Operational"}, "logs": [], "temps": []}


# ------------------------------------------------------------------ helpers


def make_config(**overrides: Any) -> OctoPrintConfig:
    """A config with the test defaults: seeded entropy, no pings, no dead-link timer."""
    settings: dict[str, Any] = {
        "url": URL,
        "entropy": SeededEntropy(SEED),
        "ping_interval": None,
        "dead_link_timeout": None,
        **overrides,
    }
    return OctoPrintConfig(**settings)


def http_response(
    status: int,
    body: bytes = b"",
    *,
    headers: tuple[tuple[str, str], ...] = (),
    reason: str | None = None,
) -> bytes:
    reason = HTTPStatus(status).phrase if reason is None else reason
    head = f"HTTP/1.1 {status} {reason}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers)
    head += f"Content-Length: {len(body)}\r\n\r\n"
    return head.encode("latin-1") + body


def user_record(
    session: str = SESSION, *, name: str = "alice", mechanism: str | None = "apikey"
) -> dict[str, object]:
    record: dict[str, object] = {
        "name": name,
        "active": True,
        "permissions": [],
        "groups": ["users"],
        "has_password": True,
        "session": session,
    }
    if mechanism is not None:
        record["_login_mechanism"] = mechanism
    return record


def login_ok(session: str = SESSION, **kwargs: Any) -> bytes:
    body = json.dumps(user_record(session, **kwargs)).encode()
    return http_response(200, body, headers=(("Content-Type", "application/json"),))


def passive_request(host: str = HOST, path: str = "/api/login") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nX-Api-Key: {API_KEY}\r\n"
        'Content-Length: 16\r\n\r\n{"passive":true}'
    ).encode()


class LoginServer:
    """The HTTP side: answers each request with the next canned answer (``None``: none).

    With ``page``, every ``GET /login`` gets that answer and only the logins
    themselves take answers from the queue.
    """

    def __init__(self, *answers: bytes | None, page: bytes | None = None) -> None:
        self.answers = list(answers)
        self.page = page

    def __call__(self, request: bytes) -> bytes | None:
        if self.page is not None and request.startswith(b"GET /login "):
            return self.page
        assert self.answers, f"unexpected HTTP request: {request!r}"
        return self.answers.pop(0)


class Octo(Harness[OctoPrintClient]):
    """A harness around an :class:`OctoPrintClient`, speaking OctoPrint's server side."""

    def __init__(self, http: LoginServer | None = None, **overrides: Any) -> None:
        config = make_config(**overrides)
        self.raw = config.endpoint is Endpoint.RAW
        # A SockJS server writes its "o" frame right after the 101.
        answer = Accept(greeting=() if self.raw else ("o",))
        super().__init__(OctoPrintClient(config), answer=answer, http=http)

    def push(self, *messages: object) -> None:
        """Server -> client: one ``a[...]`` frame (SockJS) or one text frame each (raw)."""
        if self.raw:
            for message in messages:
                self.server.send(json.dumps(message))
        else:
            self.server.send("a" + json.dumps(list(messages)))
        self.pump()

    def frame(self, data: str | bytes) -> None:
        """Server -> client: one websocket message exactly as given."""
        self.server.send(data)
        self.pump()

    def up(self) -> list[Event]:
        """Connect, and the server says ``connected``; return the events."""
        self.client.connect(self.now)
        self.pump()
        self.push({"connected": CONNECTED})
        return self.events()

    # Read through calls, so that mypy does not narrow them between two inputs.
    def state(self) -> SessionState:
        return self.client.state

    def auth(self) -> AuthState:
        return self.client.auth_state

    def sent(self) -> list[object]:
        """What the client sent on the current socket since the last call, decoded."""
        result: list[object] = []
        for item in self.server.received:
            if item[0] != "text":
                result.append(item)
                continue
            text = item[1]
            assert isinstance(text, str)
            if self.raw:
                result.append(json.loads(text))
            else:
                frame = json.loads(text)
                assert isinstance(frame, list), text
                assert all(isinstance(message, str) for message in frame), text
                result.extend(json.loads(message) for message in frame)
        self.server.received.clear()
        return result


def connected_event(server: ServerPeer) -> Connected:
    """The exact ``Connected`` event for a connection accepted by ``server``."""
    assert server.request is not None
    return Connected(
        HandshakeResponse(
            101,
            "Switching Protocols",
            "1.1",
            (
                ("upgrade", "websocket"),
                ("connection", "Upgrade"),
                ("sec-websocket-accept", accept_key(server.request)),
            ),
        )
    )


def authenticate(o: Octo, user: str = "alice") -> None:
    """Passive login already answered: the server confirms the auth with ``history``."""
    o.push({"history": HISTORY})
    assert o.events() == [Authenticated(user), PushMessage("history", HISTORY)]
    assert o.auth() is AuthState.AUTHENTICATED


def logged_in(**overrides: Any) -> Octo:
    """An authenticated session (passive login, first answer ``SESSION``)."""
    answers: tuple[bytes | None, ...] = overrides.pop("answers", ())
    o = Octo(LoginServer(login_ok(), *answers), api_key=API_KEY, **overrides)
    o.up()
    assert o.sent() == [{"auth": f"alice:{SESSION}"}]
    authenticate(o)
    return o


# ------------------------------------------------------------------ config


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        (
            {"api_key": API_KEY, "username": "alice", "password": PASSWORD},
            LocalProtocolError,
            "give either api_key or username/password, not both",
        ),
        (
            {"api_key": API_KEY, "password": PASSWORD},
            LocalProtocolError,
            "give either api_key or username/password, not both",
        ),
        ({"username": "alice"}, LocalProtocolError, "username and password go together"),
        ({"password": PASSWORD}, LocalProtocolError, "username and password go together"),
        (
            {"username": "", "password": PASSWORD},
            LocalProtocolError,
            "an OctoPrint username is non-empty and has no ':'",
        ),
        (
            {"username": "al:ice", "password": PASSWORD},
            LocalProtocolError,
            "an OctoPrint username is non-empty and has no ':'",
        ),
        (
            {"subscription": {"state": "x"}},
            InvalidMessageError,
            "subscribe: state must be a bool or a mapping, got 'x'",
        ),
        ({"endpoint": "websocket"}, ValueError, "'websocket' is not a valid Endpoint"),
    ],
)
def test_config_refuses_what_cannot_work(
    overrides: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as caught:
        make_config(**overrides)
    assert str(caught.value) == message
    assert not any(secret in str(caught.value) for secret in SECRETS)


def test_config_normalises_its_fields() -> None:
    passive = make_config(api_key=API_KEY, endpoint="raw", relogin_reasons=["stale"])
    assert passive.endpoint is Endpoint.RAW
    assert passive.api_key == Secret(API_KEY)
    assert passive.relogin_reasons == frozenset({"stale"})
    assert passive.has_credentials
    active = make_config(username="alice", password=Secret(PASSWORD))
    assert active.password == Secret(PASSWORD)
    assert active.has_credentials
    anonymous = make_config()
    assert anonymous.endpoint is Endpoint.SOCKJS
    assert anonymous.relogin_reasons == frozenset({"stale", "modified"})
    assert not anonymous.has_credentials


def test_config_repr_hides_every_secret() -> None:
    for config in (make_config(api_key=API_KEY), make_config(username="al", password=PASSWORD)):
        text = repr(config) + str(config)
        assert "OctoPrintConfig(" in text
        assert not any(secret in text for secret in SECRETS)


# ------------------------------------------------------------------ endpoints


def test_sockjs_target_uses_ids_from_the_injected_entropy() -> None:
    o = Octo()
    o.client.connect(o.now)
    o.pump()
    assert o.commands[0] == OpenTransport(Channel.SOCKET, "octopi.local", 5000, False, None)
    assert o.server.request is not None
    assert o.server.request.target == "/sockjs/411/acstdsnw/websocket"
    # The ids are the first draws from the entropy, before the handshake nonce.
    assert random_session_ids(SeededEntropy(SEED)) == ("411", "acstdsnw")
    # A new connection gets new ids, drawn further down the same stream.
    o.server_eof()
    o.advance(1.0)
    assert len(o.servers) == 2
    assert o.server.request is not None
    second = o.server.request.target
    assert re.fullmatch(r"/sockjs/[0-9]{3}/[a-z0-9]{8}/websocket", second)
    assert second != "/sockjs/411/acstdsnw/websocket"


@pytest.mark.parametrize(
    ("url", "endpoint", "target"),
    [
        ("http://h/octoprint/", Endpoint.SOCKJS, "/octoprint/sockjs/411/acstdsnw/websocket"),
        ("ws://h/octoprint", Endpoint.SOCKJS, "/octoprint/sockjs/411/acstdsnw/websocket"),
        ("http://h/", Endpoint.RAW, "/sockjs/websocket"),
        ("http://h", Endpoint.RAW, "/sockjs/websocket"),
        ("https://h/a/b/", Endpoint.RAW, "/a/b/sockjs/websocket"),
    ],
)
def test_upgrade_target_under_a_base_path(url: str, endpoint: Endpoint, target: str) -> None:
    o = Octo(url=url, endpoint=endpoint)
    o.client.connect(o.now)
    o.pump()
    tls = url.startswith("https")
    assert o.commands[0] == OpenTransport(
        Channel.SOCKET, "h", 443 if tls else 80, tls, "h" if tls else None
    )
    assert o.server.request is not None
    assert o.server.request.target == target
    assert o.server.request.host == "h"


@pytest.mark.parametrize(
    ("endpoint", "wire"),
    [(Endpoint.SOCKJS, '["{\\"auth\\":\\"u:s\\"}"]'), (Endpoint.RAW, '{"auth":"u:s"}')],
)
def test_outgoing_framing(endpoint: Endpoint, wire: str) -> None:
    o = Octo(endpoint=endpoint)
    o.up()
    o.client.send_auth("u", "s")
    o.pump()
    assert o.server.received == [("text", wire)]


def test_sockjs_frames_and_dispatch_of_every_key_in_order() -> None:
    o = Octo()
    assert o.up() == [connected_event(o.server), PushMessage("connected", CONNECTED)]
    o.frame(
        'a[{"current":{"progress":1},"event":{"type":"Upload"}},'
        '{"plugin":{"plugin":"p","data":[1]}},{},{"slicingProgress":null}]'
    )
    assert o.events() == [
        PushMessage("current", {"progress": 1}),
        PushMessage("event", {"type": "Upload"}),
        PushMessage("plugin", {"plugin": "p", "data": [1]}),
        PushMessage("slicingProgress", None),
    ]
    o.frame('m{"timelapse":{"a":1},"renderProgress":2}')
    assert o.events() == [PushMessage("timelapse", {"a": 1}), PushMessage("renderProgress", 2)]
    for quiet in ("h", "a[]", "a[{}]"):
        o.frame(quiet)
        assert o.events() == []
    assert o.state() is SessionState.OPEN
    assert o.sent() == []


def test_raw_frames_carry_one_object_each() -> None:
    o = Octo(endpoint=Endpoint.RAW)
    o.client.connect(o.now)
    o.pump()
    assert o.events() == []
    o.frame('{"connected": {"version": "1.11.8"}, "current": {"state": "x"}}')
    assert o.events() == [
        connected_event(o.server),
        PushMessage("connected", {"version": "1.11.8"}),
        PushMessage("current", {"state": "x"}),
    ]
    # What tornado writes: ", " separators, "<\/" escapes, NaN.
    o.frame('{"event": {"type": "<\\/x>", "payload": NaN}}')
    (event,) = o.events()
    assert isinstance(event, PushMessage) and event.type == "event"
    assert isinstance(event.data, dict) and event.data["type"] == "</x>"
    assert math.isnan(event.data["payload"])


# ------------------------------------------------------------------ session up


def test_the_session_is_up_at_connected_not_at_the_handshake() -> None:
    o = Octo()
    o.client.connect(o.now)
    o.pump()  # 101 and "o" arrived
    assert o.events() == []
    assert o.state() is SessionState.OPENING
    assert not o.client.is_open
    # Messages before "connected" are passed on; they do not open the session.
    o.push({"current": {"a": 1}})
    assert o.events() == [PushMessage("current", {"a": 1})]
    assert o.state() is SessionState.OPENING
    o.push({"connected": CONNECTED})
    assert o.events() == [connected_event(o.server), PushMessage("connected", CONNECTED)]
    assert o.state() is SessionState.OPEN
    assert o.auth() is AuthState.ANONYMOUS
    assert o.client.get_timer() is None  # the connect timeout is off
    # A second "connected" is only a message.
    o.push({"connected": {"version": "2"}})
    assert o.events() == [PushMessage("connected", {"version": "2"})]


def test_connect_timeout_covers_the_handshake_and_the_first_message() -> None:
    o = Octo()
    o.auto_open = False
    o.client.connect(o.now)
    o.pump()
    o.advance_to(3.0)
    o.open_socket()  # transport open at 3 s, 101 and "o" at once
    assert o.state() is SessionState.OPENING
    o.advance_to(4.999)
    assert o.events() == []
    o.advance_to(5.0)  # 5 s after the dial, not after the 101
    assert o.events() == [
        ConnectFailed("connect timeout (5.0 s)", timed_out=True),
        ReconnectScheduled(1, 1.0),
    ]
    assert o.server.received == [("close", 1000, "connect timeout")]
    assert o.state() is SessionState.BACKOFF
    o.advance_to(6.0)
    assert o.commands[-1] == OpenTransport(Channel.SOCKET, "octopi.local", 5000, False, None)
    assert len(o.servers) == 2
    o.open_socket()
    o.push({"connected": CONNECTED})
    assert o.events() == [connected_event(o.server), PushMessage("connected", CONNECTED)]
    assert o.client.get_timer() is None


def test_connected_just_before_the_timeout_wins() -> None:
    o = Octo()
    o.client.connect(o.now)
    o.pump()
    o.advance_to(4.9)
    o.push({"connected": CONNECTED})
    assert o.events() == [connected_event(o.server), PushMessage("connected", CONNECTED)]
    o.advance_to(60.0)
    assert o.events() == []
    assert o.state() is SessionState.OPEN


def test_sockjs_heartbeats_keep_a_quiet_link_alive() -> None:
    o = Octo(dead_link_timeout=30.0)
    o.up()
    for _ in range(4):
        o.advance(25.0)
        o.frame("h")  # OctoPrint's fixed 25 s heartbeat
    assert o.now == 100.0
    assert o.events() == []
    o.advance(30.0)  # the heartbeats stop: the link is dead
    assert o.events() == [
        Disconnected(1006, "dead link: nothing received for 30.0 s"),
        ReconnectScheduled(1, 1.0),
    ]


# ------------------------------------------------------------------ login


def test_passive_login_then_auth_then_history() -> None:
    o = Octo(LoginServer(login_ok()), api_key=API_KEY)
    o.client.connect(o.now)
    o.pump()
    o.push({"connected": CONNECTED})
    assert o.http_requests == [passive_request()]
    assert o.events() == [
        connected_event(o.server),
        PushMessage("connected", CONNECTED),
        LoginSucceeded("alice", "apikey"),
    ]
    # The login went over its own transport, then the auth over the socket.
    assert o.commands[-4:-1] == [
        OpenTransport(Channel.HTTP, "octopi.local", 5000, False, None),
        SendData(Channel.HTTP, passive_request()),
        CloseTransport(Channel.HTTP),
    ]
    assert isinstance(o.commands[-1], SendData) and o.commands[-1].channel is Channel.SOCKET
    assert o.sent() == [{"auth": f"alice:{SESSION}"}]
    assert o.server.received == []
    assert o.auth() is AuthState.AUTHENTICATING
    assert o.client.user == "alice"
    # Held-back messages may come before the history; only history confirms.
    o.push({"event": {"type": "ClientAuthed"}})
    assert o.events() == [PushMessage("event", {"type": "ClientAuthed"})]
    o.push({"history": HISTORY})
    assert o.events() == [Authenticated("alice"), PushMessage("history", HISTORY)]
    assert o.auth() is AuthState.AUTHENTICATED
    o.push({"history": HISTORY})  # a later history is only a message
    assert o.events() == [PushMessage("history", HISTORY)]
    assert o.client.get_timer() is None


def test_passive_login_under_a_base_path_over_tls() -> None:
    o = Octo(LoginServer(login_ok()), url="https://octopi.example/octoprint/?x=1", api_key=API_KEY)
    o.up()
    # The URL's query is not carried over to the login request.
    assert o.http_requests == [passive_request("octopi.example", "/octoprint/api/login")]
    assert OpenTransport(Channel.HTTP, "octopi.example", 443, True, "octopi.example") in (
        o.commands
    )


def _active_request(headers: str, *, remember: bool = False) -> bytes:
    body = json.dumps({"user": "alice", "pass": PASSWORD, "remember": remember}).encode()
    return (
        f"POST /api/login HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\n{headers}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


@pytest.mark.parametrize(
    ("set_cookies", "extra_headers"),
    [
        pytest.param(
            (
                "csrf_token_P5000=tok-123; Path=/; SameSite=Lax",
                "session_P5000=sess-cookie; HttpOnly",
            ),
            "Cookie: csrf_token_P5000=tok-123; session_P5000=sess-cookie\r\n"
            "X-CSRF-Token: tok-123\r\n",
            id="csrf-and-session-cookie",
        ),
        pytest.param(
            ("bad@key=1", "csrf_token_P5000=tok-9"),
            "Cookie: csrf_token_P5000=tok-9\r\nX-CSRF-Token: tok-9\r\n",
            id="unparsable-cookie-skipped",
        ),
        pytest.param(("other=1",), "Cookie: other=1\r\n", id="no-csrf-cookie-no-csrf-header"),
        pytest.param((), "", id="no-cookies-at-all"),
    ],
)
def test_active_login_fetches_the_csrf_cookie_first(
    set_cookies: tuple[str, ...], extra_headers: str
) -> None:
    login_page = http_response(
        200,
        b"<html></html>",
        headers=tuple(("Set-Cookie", cookie) for cookie in set_cookies),
    )
    o = Octo(
        LoginServer(login_page, login_ok(mechanism="password")),
        username="alice",
        password=PASSWORD,
        remember=True,
    )
    events = o.up()
    assert o.http_requests == [
        f"GET /login HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode(),
        _active_request(extra_headers, remember=True),
    ]
    assert events == [
        connected_event(o.server),
        PushMessage("connected", CONNECTED),
        LoginSucceeded("alice", "password"),
    ]
    assert o.sent() == [{"auth": f"alice:{SESSION}"}]
    authenticate(o)


def test_active_login_cookies_are_fetched_afresh_for_every_login() -> None:
    page_1 = http_response(200, headers=(("Set-Cookie", "csrf_token_P5000=one"),))
    page_2 = http_response(200, headers=(("Set-Cookie", "csrf_token_P5000=two"),))
    o = Octo(
        LoginServer(page_1, http_response(500), page_2, login_ok(SESSION_2)),
        username="alice",
        password=PASSWORD,
        login_retry_delay=2.0,
    )
    assert o.up()[-1] == LoginFailed(500, "server error: 500 Internal Server Error", 2.0)
    o.advance(2.0)
    get_login = f"GET /login HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
    assert o.http_requests == [
        get_login,
        _active_request("Cookie: csrf_token_P5000=one\r\nX-CSRF-Token: one\r\n"),
        get_login,
        _active_request("Cookie: csrf_token_P5000=two\r\nX-CSRF-Token: two\r\n"),
    ]
    assert o.sent() == [{"auth": f"alice:{SESSION_2}"}]


@pytest.mark.parametrize("status", [302, 403, 404, 500])
def test_a_failed_csrf_step_is_a_login_failure_and_retried(status: int) -> None:
    page = http_response(200, headers=(("Set-Cookie", "csrf_token_P5000=t"),))
    o = Octo(
        LoginServer(http_response(status), page, login_ok(mechanism="password")),
        username="alice",
        password=PASSWORD,
        login_retry_delay=4.0,
    )
    o.client.send_message("queued", 1)
    # Even a 403 here is no verdict on the credentials: it is retried.
    assert o.up() == [
        connected_event(o.server),
        PushMessage("connected", CONNECTED),
        LoginFailed(status, f"GET /login answered {status}", 4.0),
    ]
    get_login = f"GET /login HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
    assert o.http_requests == [get_login]  # no POST without the CSRF step
    assert o.auth() is AuthState.ANONYMOUS
    assert o.sent() == [{"queued": 1}]
    assert o.client.get_timer() == 4.0
    o.advance(4.0)
    assert o.http_requests == [
        get_login,
        get_login,
        _active_request("Cookie: csrf_token_P5000=t\r\nX-CSRF-Token: t\r\n"),
    ]
    assert o.events() == [LoginSucceeded("alice", "password")]
    assert o.sent() == [{"auth": f"alice:{SESSION}"}]
    authenticate(o)


def test_user_messages_wait_for_the_login_and_go_out_in_order() -> None:
    o = Octo(LoginServer(None), api_key=API_KEY)
    o.client.send_message("first", 1)  # before connect(): queued
    o.client.connect(o.now)
    o.pump()
    o.client.send_message("second", [2])  # handshaking
    o.push({"connected": CONNECTED})
    o.client.send_message("third", {"n": 3})  # logging in
    assert o.auth() is AuthState.LOGGING_IN
    assert o.sent() == []
    # The login answer arrives late (the responder gave none).
    o.client.receive_data(login_ok(), o.now, channel=Channel.HTTP)
    o.pump()
    assert o.sent() == [{"auth": f"alice:{SESSION}"}]
    o.client.send_message("fourth", None)  # authenticating: still held back
    assert o.sent() == []
    o.push({"history": HISTORY})
    assert o.sent() == [{"first": 1}, {"second": [2]}, {"third": {"n": 3}}, {"fourth": None}]
    o.client.send_message("fifth", "now")
    o.pump()
    assert o.sent() == [{"fifth": "now"}]


def test_without_credentials_user_messages_flow_at_connected() -> None:
    o = Octo()
    o.client.send_message("early", 1)
    o.up()
    assert o.sent() == [{"early": 1}]
    assert o.http_requests == []
    assert o.auth() is AuthState.ANONYMOUS


def test_wrong_credentials_stop_automatic_logins_until_login() -> None:
    o = Octo(
        LoginServer(
            http_response(200),
            http_response(403),
            http_response(200),
            login_ok(mechanism="password"),
        ),
        username="alice",
        password=PASSWORD,
    )
    o.client.send_message("queued", 1)
    assert o.up() == [
        connected_event(o.server),
        PushMessage("connected", CONNECTED),
        LoginFailed(403, "wrong credentials", None),
    ]
    assert o.auth() is AuthState.ANONYMOUS
    assert o.client.get_timer() is None  # no retry
    assert o.sent() == [{"queued": 1}]  # sent anonymously rather than held forever
    assert len(o.http_requests) == 2
    # A reconnect does not try again: OctoPrint rate-limits failed logins.
    o.server_eof()
    o.advance(1.0)
    o.push({"connected": CONNECTED})
    assert o.events()[-2:] == [connected_event(o.server), PushMessage("connected", CONNECTED)]
    assert len(o.http_requests) == 2
    assert o.sent() == []
    assert o.client.get_timer() is None
    # login() does.
    o.client.login(o.now)
    o.pump()
    assert len(o.http_requests) == 4
    assert o.events() == [LoginSucceeded("alice", "password")]
    assert o.sent() == [{"auth": f"alice:{SESSION}"}]
    authenticate(o)


def test_a_refused_login_other_than_403_also_blocks() -> None:
    o = Octo(LoginServer(http_response(400, b"Expected a JSON object")), api_key=API_KEY)
    assert o.up()[-1] == LoginFailed(400, "refused: Bad Request", None)
    assert o.client.get_timer() is None


def test_an_api_key_refused_for_want_of_csrf_is_a_wrong_key() -> None:
    # What OctoPrint 1.11.8 answers a passive login with a key it does not
    # know (tests/integration/test_faults_real.py): it was taken for no key.
    o = Octo(
        LoginServer(http_response(400, b'{"error": "CSRF validation failed"}')), api_key=API_KEY
    )
    assert o.up()[-1] == LoginFailed(400, "wrong credentials", None)
    assert o.client.get_timer() is None


def test_a_csrf_refusal_of_a_password_login_is_no_verdict_on_the_password() -> None:
    page = http_response(200, headers=(("Set-Cookie", "csrf_token_P5000=t"),))
    o = Octo(
        LoginServer(page, http_response(400, b"CSRF validation failed")),
        username="alice",
        password=PASSWORD,
    )
    assert o.up()[-1] == LoginFailed(400, "refused: Bad Request", None)


def test_login_unblocks_while_disconnected_and_logs_in_at_the_next_connected() -> None:
    o = Octo(LoginServer(http_response(403), login_ok()), api_key=API_KEY)
    o.up()
    o.server_eof()
    assert o.state() is SessionState.BACKOFF
    o.client.login(o.now)  # nothing to log in on yet
    o.pump()
    assert len(o.http_requests) == 1
    o.advance(1.0)
    o.push({"connected": CONNECTED})
    assert len(o.http_requests) == 2
    assert o.sent() == [{"auth": f"alice:{SESSION}"}]


def test_login_while_a_login_is_in_flight_does_not_start_another() -> None:
    o = Octo(LoginServer(None), api_key=API_KEY)
    o.up()
    assert o.auth() is AuthState.LOGGING_IN
    o.client.login(o.now)
    o.pump()
    assert len(o.http_requests) == 1
    assert not any(isinstance(c, CloseTransport) for c in o.commands)


def test_login_without_credentials_is_a_caller_error() -> None:
    o = Octo()
    o.up()
    with pytest.raises(LocalProtocolError, match=r"^no credentials configured"):
        o.client.login(o.now)
    assert o.client.next_command() is None
    assert o.events() == []


@pytest.mark.parametrize(
    ("answer", "status", "reason"),
    [
        (http_response(429), 429, "rate limited by the server"),
        (http_response(500), 500, "server error: 500 Internal Server Error"),
        (http_response(503, reason="Busy"), 503, "server error: 503 Busy"),
        (http_response(302), 302, "server error: 302 Found"),
        (http_response(200, b"{"), 200, "the login response carries no session"),
        (http_response(200, b"[1, 2]"), 200, "the login response carries no session"),
        (http_response(200, b'{"name": "alice"}'), 200, "the login response carries no session"),
        (
            http_response(200, json.dumps(user_record("")).encode()),
            200,
            "the login response carries no session",
        ),
        (
            http_response(200, json.dumps({"session": SESSION, "name": 7}).encode()),
            200,
            "the login response carries no session",
        ),
    ],
    ids=[
        "429",
        "500",
        "503-busy",
        "302",
        "bad-json",
        "json-array",
        "no-session",
        "empty-session",
        "name-not-str",
    ],
)
def test_retryable_login_failures(answer: bytes, status: int, reason: str) -> None:
    o = Octo(LoginServer(answer, login_ok()), api_key=API_KEY, login_retry_delay=7.5)
    o.client.send_message("queued", 1)
    assert o.up() == [
        connected_event(o.server),
        PushMessage("connected", CONNECTED),
        LoginFailed(status, reason, 7.5),
    ]
    assert o.client.get_timer() == 7.5
    assert o.sent() == [{"queued": 1}]
    assert o.auth() is AuthState.ANONYMOUS
    o.advance_to(7.4)
    assert len(o.http_requests) == 1
    o.advance_to(7.5)
    assert o.http_requests == [passive_request(), passive_request()]
    assert o.events() == [LoginSucceeded("alice", "apikey")]
    assert o.sent() == [{"auth": f"alice:{SESSION}"}]
    authenticate(o)


def test_login_transport_failure_is_retried() -> None:
    o = Octo(None, api_key=API_KEY, login_retry_delay=3.0)  # HTTP dials are left pending
    o.up()
    assert o.commands[-1] == OpenTransport(Channel.HTTP, "octopi.local", 5000, False, None)
    o.client.transport_failed("connection refused", o.now, channel=Channel.HTTP)
    assert o.events() == [LoginFailed(0, "HTTP request failed: connection refused", 3.0)]
    assert o.client.next_command() == CloseTransport(Channel.HTTP)
    assert o.client.get_timer() == 3.0
    o.advance(3.0)
    assert o.commands[-1] == OpenTransport(Channel.HTTP, "octopi.local", 5000, False, None)


def test_login_timeout_is_retried() -> None:
    o = Octo(LoginServer(None, login_ok()), api_key=API_KEY, login_timeout=4.0)
    o.up()
    assert o.client.get_timer() == 4.0
    o.advance(4.0)
    assert o.events() == [LoginFailed(0, "HTTP request timed out", 10.0)]
    assert o.commands[-1] == CloseTransport(Channel.HTTP)
    o.advance(10.0)
    assert o.events() == [LoginSucceeded("alice", "apikey")]
    assert len(o.http_requests) == 2


def test_malformed_login_response_is_a_protocol_error_and_retried() -> None:
    o = Octo(LoginServer(b"HTTP/9 nonsense\r\n\r\n"), api_key=API_KEY)
    detail = "malformed HTTP response: illegal status line: bytearray(b'HTTP/9 nonsense')"
    assert o.up()[-2:] == [ProtocolError("http", detail), LoginFailed(0, detail, 10.0)]
    assert o.client.get_timer() == 10.0


@pytest.mark.parametrize("name", ["a:b", ""])
def test_a_user_name_that_cannot_authenticate_blocks_automatic_logins(name: str) -> None:
    o = Octo(LoginServer(login_ok(name=name, mechanism=None), login_ok()), api_key=API_KEY)
    assert o.up()[-2:] == [
        LoginSucceeded(name, "unknown"),
        LoginFailed(200, "the server's user name cannot authenticate a socket", None),
    ]
    assert o.sent() == []
    assert o.client.get_timer() is None
    # The same account would fail the same way: neither a reauthRequired nor
    # a reconnect logs in again.
    o.push({"reauthRequired": {"reason": "stale"}})
    assert o.events() == [
        ReauthRequired("stale", False),
        PushMessage("reauthRequired", {"reason": "stale"}),
    ]
    o.server_eof()
    o.advance(1.0)
    o.push({"connected": CONNECTED})
    assert o.events()[-2:] == [connected_event(o.server), PushMessage("connected", CONNECTED)]
    assert len(o.http_requests) == 1
    assert o.auth() is AuthState.ANONYMOUS
    # login() does.
    o.client.login(o.now)
    o.pump()
    assert o.events() == [LoginSucceeded("alice", "apikey")]
    assert o.sent() == [{"auth": f"alice:{SESSION}"}]
    authenticate(o)


def test_the_login_in_flight_is_cancelled_when_the_socket_drops() -> None:
    o = Octo(LoginServer(None, login_ok(SESSION_2)), api_key=API_KEY)
    o.up()
    o.server_eof()
    assert o.events() == [
        Disconnected(1006, "the server closed the connection"),
        ReconnectScheduled(1, 1.0),
    ]
    assert o.commands[-2:] == [CloseTransport(Channel.SOCKET), CloseTransport(Channel.HTTP)]
    assert o.auth() is AuthState.ANONYMOUS
    # The answer to the cancelled request is ignored.
    o.client.receive_data(login_ok(), o.now, channel=Channel.HTTP)
    o.client.receive_eof(o.now, channel=Channel.HTTP)
    assert o.events() == []
    assert o.client.get_timer() == 1.0
    o.advance(1.0)
    o.push({"connected": CONNECTED})
    assert o.sent() == [{"auth": f"alice:{SESSION_2}"}]


def test_a_pending_login_retry_is_cancelled_when_the_socket_drops() -> None:
    o = Octo(LoginServer(http_response(500)), api_key=API_KEY)
    o.up()
    assert o.client.get_timer() == 10.0
    o.server_eof()
    assert o.client.get_timer() == 1.0  # only the reconnect
    o.advance(1.0)
    assert o.client.get_timer() == 6.0  # only the connect timeout
    o.http = LoginServer(login_ok())
    o.push({"connected": CONNECTED})
    assert o.client.get_timer() is None
    o.advance(100.0)
    assert len(o.http_requests) == 2


def test_a_login_by_hand_cancels_the_pending_retry() -> None:
    o = Octo(LoginServer(http_response(500), login_ok()), api_key=API_KEY)
    o.up()
    o.advance(1.0)
    o.client.login(o.now)
    o.pump()
    assert o.events() == [LoginSucceeded("alice", "apikey")]
    assert o.sent() == [{"auth": f"alice:{SESSION}"}]
    authenticate(o)
    assert o.client.get_timer() is None
    o.advance(60.0)  # the old retry must not log in a third time
    assert len(o.http_requests) == 2
    assert o.auth() is AuthState.AUTHENTICATED


def test_login_again_while_authenticated_is_confirmed_without_history() -> None:
    # Re-auth of an authenticated socket brings no new history (protocols.md).
    o = logged_in(answers=(login_ok(SESSION_2),))
    o.client.login(o.now)
    o.pump()
    assert o.events() == [LoginSucceeded("alice", "apikey")]
    assert o.sent() == [{"auth": f"alice:{SESSION_2}"}]
    assert o.auth() is AuthState.AUTHENTICATING
    o.advance(0.999)
    assert o.events() == []
    o.advance(0.001)
    assert o.events() == [Authenticated("alice")]
    assert o.auth() is AuthState.AUTHENTICATED


# ------------------------------------------------------------------ reauthRequired


@pytest.mark.parametrize(
    ("payload", "reason", "relogin"),
    [
        ({"reason": "stale"}, "stale", True),
        ({"reason": "modified"}, "modified", True),
        ({"reason": "logout"}, "logout", False),
        ({"reason": "removed"}, "removed", False),
        ({"reason": "something new"}, "something new", False),
        ({"reason": 5}, "unknown", False),
        ({}, "unknown", False),
        ("stale", "unknown", False),
        (None, "unknown", False),
    ],
)
def test_reauth_required_by_reason(payload: object, reason: str, relogin: bool) -> None:
    o = logged_in(answers=(login_ok(SESSION_2),))
    o.http = LoginServer(None)
    o.push({"reauthRequired": payload})
    assert o.events() == [ReauthRequired(reason, relogin), PushMessage("reauthRequired", payload)]
    if relogin:
        assert o.http_requests == [passive_request(), passive_request()]
        assert o.auth() is AuthState.LOGGING_IN
    else:
        assert o.http_requests == [passive_request()]
        assert o.auth() is AuthState.ANONYMOUS
        assert o.client.get_timer() is None


def test_stale_logs_in_again_and_the_grace_period_confirms() -> None:
    # OctoPrint 1.11.8 sends history once per socket: the re-auth of a socket
    # that already had it brings none, so the grace period confirms it.
    o = logged_in(answers=(login_ok(SESSION_2),))
    o.push({"reauthRequired": {"reason": "stale"}})
    assert o.events() == [
        ReauthRequired("stale", True),
        PushMessage("reauthRequired", {"reason": "stale"}),
        LoginSucceeded("alice", "apikey"),
    ]
    assert o.sent() == [{"auth": f"alice:{SESSION_2}"}]
    assert o.auth() is AuthState.AUTHENTICATING
    o.advance(1.0)
    assert o.events() == [Authenticated("alice")]
    assert o.auth() is AuthState.AUTHENTICATED


def test_modified_while_authenticated_is_confirmed_without_history() -> None:
    o = logged_in(answers=(login_ok(SESSION_2),))
    o.push({"reauthRequired": {"reason": "modified"}})
    assert o.events() == [
        ReauthRequired("modified", True),
        PushMessage("reauthRequired", {"reason": "modified"}),
        LoginSucceeded("alice", "apikey"),
    ]
    assert o.sent() == [{"auth": f"alice:{SESSION_2}"}]
    assert o.auth() is AuthState.AUTHENTICATING
    o.advance(0.5)
    assert o.events() == []
    o.advance(0.5)
    assert o.events() == [Authenticated("alice")]
    assert o.auth() is AuthState.AUTHENTICATED


def test_modified_before_authenticated_still_waits_for_history() -> None:
    o = Octo(LoginServer(login_ok(), login_ok(SESSION_2)), api_key=API_KEY)
    o.up()
    assert o.auth() is AuthState.AUTHENTICATING
    o.push({"reauthRequired": {"reason": "modified"}})
    assert o.sent() == [{"auth": f"alice:{SESSION}"}, {"auth": f"alice:{SESSION_2}"}]
    assert o.client.get_timer() is None
    o.events()
    authenticate(o)


def test_modified_without_relogin_keeps_the_socket_authenticated() -> None:
    o = logged_in(relogin_reasons={"stale"})
    o.push({"reauthRequired": {"reason": "modified"}})
    assert o.events() == [
        ReauthRequired("modified", False),
        PushMessage("reauthRequired", {"reason": "modified"}),
    ]
    assert o.auth() is AuthState.AUTHENTICATED
    assert o.client.get_timer() is None
    assert len(o.http_requests) == 1


def test_modified_during_the_grace_period_refutes_nothing() -> None:
    o = Octo(subscription={"events": True})
    o.client.send_auth("bob", SESSION)
    o.client.send_message("queued", 1)
    o.up()
    assert o.sent() == [{"subscribe": {"events": True}}, {"auth": f"bob:{SESSION}"}]
    o.advance(0.5)
    o.push({"reauthRequired": {"reason": "modified"}})
    assert o.events() == [
        ReauthRequired("modified", False),
        PushMessage("reauthRequired", {"reason": "modified"}),
    ]
    assert o.auth() is AuthState.AUTHENTICATING
    assert o.client.get_timer() == 1.0  # the grace period runs on
    o.advance(0.5)
    assert o.events() == [Authenticated("bob")]
    assert o.sent() == [{"queued": 1}]


def test_a_relogin_on_a_socket_the_server_holds_authenticated_needs_no_history() -> None:
    # The server holds the socket authenticated whatever auth is pending, so
    # each new auth is confirmed by the grace timer.
    o = logged_in(answers=(login_ok(SESSION_2), login_ok(SESSION)))
    o.client.login(o.now)
    o.pump()
    assert o.events() == [LoginSucceeded("alice", "apikey")]
    assert o.sent() == [{"auth": f"alice:{SESSION_2}"}]
    assert o.client.get_timer() == 1.0
    o.advance(0.5)
    o.push({"reauthRequired": {"reason": "modified"}})
    assert o.events() == [
        ReauthRequired("modified", True),
        PushMessage("reauthRequired", {"reason": "modified"}),
        LoginSucceeded("alice", "apikey"),
    ]
    assert o.sent() == [{"auth": f"alice:{SESSION}"}]
    assert o.auth() is AuthState.AUTHENTICATING
    assert o.client.get_timer() == 1.5  # a new grace period; the old one is gone
    o.advance(0.999)
    assert o.events() == []
    o.advance(0.001)
    assert o.events() == [Authenticated("alice")]
    assert o.client.get_timer() is None


@pytest.mark.parametrize("reason", ["modified", "stale", "logout", "removed", "other"])
def test_only_modified_keeps_a_session_given_by_hand(reason: str) -> None:
    o = Octo()
    o.client.send_auth("bob", SESSION)
    o.up()
    assert o.sent() == [{"auth": f"bob:{SESSION}"}]
    authenticate(o, "bob")
    o.push({"reauthRequired": {"reason": reason}})
    assert o.events() == [
        ReauthRequired(reason, False),
        PushMessage("reauthRequired", {"reason": reason}),
    ]
    kept = reason == "modified"
    assert o.auth() is (AuthState.AUTHENTICATED if kept else AuthState.ANONYMOUS)
    o.client.send_message("next", 1)  # the socket was authenticated: messages flow either way
    o.pump()
    assert o.sent() == [{"next": 1}]
    # A dropped session is dead on the server: it is never sent again.
    o.server_eof()
    o.advance(1.0)
    o.push({"connected": CONNECTED})
    assert o.sent() == ([{"auth": f"bob:{SESSION}"}] if kept else [])
    assert o.auth() is (AuthState.AUTHENTICATING if kept else AuthState.ANONYMOUS)


def test_reauth_required_during_a_login_does_not_start_another() -> None:
    o = Octo(LoginServer(None), api_key=API_KEY)
    o.up()
    o.events()
    o.push({"reauthRequired": {"reason": "stale"}})
    assert o.events() == [
        ReauthRequired("stale", False),
        PushMessage("reauthRequired", {"reason": "stale"}),
    ]
    assert len(o.http_requests) == 1
    assert o.client.get_timer() == 10.0  # the login in flight is still timed


def test_reauth_required_without_credentials_never_logs_in() -> None:
    o = Octo()
    o.client.send_auth("bob", SESSION)
    o.up()
    assert o.sent() == [{"auth": f"bob:{SESSION}"}]
    o.push({"reauthRequired": {"reason": "stale"}})
    assert o.events() == [
        ReauthRequired("stale", False),
        PushMessage("reauthRequired", {"reason": "stale"}),
    ]
    assert o.auth() is AuthState.ANONYMOUS
    assert o.http_requests == []
    assert OpenTransport(Channel.HTTP, "octopi.local", 5000, False, None) not in o.commands


def test_relogin_reasons_are_configurable() -> None:
    o = logged_in(answers=(login_ok(SESSION_2),), relogin_reasons={"logout"})
    o.push({"reauthRequired": {"reason": "stale"}})
    assert o.events() == [
        ReauthRequired("stale", False),
        PushMessage("reauthRequired", {"reason": "stale"}),
    ]
    o.push({"reauthRequired": {"reason": "logout"}})
    assert o.events() == [
        ReauthRequired("logout", True),
        PushMessage("reauthRequired", {"reason": "logout"}),
        LoginSucceeded("alice", "apikey"),
    ]
    assert o.sent() == [{"auth": f"alice:{SESSION_2}"}]


def test_no_relogin_after_a_403() -> None:
    o = Octo(LoginServer(http_response(403)), api_key=API_KEY)
    o.up()
    o.push({"reauthRequired": {"reason": "stale"}})
    assert o.events() == [
        ReauthRequired("stale", False),
        PushMessage("reauthRequired", {"reason": "stale"}),
    ]
    assert len(o.http_requests) == 1


def test_without_state_in_the_subscription_a_grace_timer_confirms_the_auth() -> None:
    subscription = {"events": ["PrintDone"], "plugins": True}
    o = Octo(LoginServer(login_ok()), api_key=API_KEY, subscription=subscription)
    o.up()
    assert o.sent() == [{"subscribe": subscription}, {"auth": f"alice:{SESSION}"}]
    assert o.client.get_timer() == 1.0
    o.advance(0.999)
    assert o.events() == []
    o.advance(0.001)
    assert o.events() == [Authenticated("alice")]


def test_a_reauth_required_within_the_grace_period_refutes_the_auth() -> None:
    o = Octo(
        LoginServer(login_ok(), login_ok(SESSION_2)),
        api_key=API_KEY,
        subscription={"state": False, "events": True},
    )
    o.up()
    o.advance(0.5)
    o.push({"reauthRequired": {"reason": "stale"}})
    assert o.events() == [
        ReauthRequired("stale", True),
        PushMessage("reauthRequired", {"reason": "stale"}),
        LoginSucceeded("alice", "apikey"),
    ]
    assert o.client.get_timer() == 1.5  # a new grace period for the new session
    o.push({"reauthRequired": {"reason": "logout"}})
    assert o.events() == [
        ReauthRequired("logout", False),
        PushMessage("reauthRequired", {"reason": "logout"}),
    ]
    assert o.client.get_timer() is None
    o.advance(10.0)
    assert o.events() == []
    assert o.auth() is AuthState.ANONYMOUS


def test_with_state_filters_in_the_subscription_history_confirms() -> None:
    subscription = {"state": {"logs": "^Recv", "messages": False}}
    o = Octo(LoginServer(login_ok()), api_key=API_KEY, subscription=subscription)
    o.up()
    assert o.client.get_timer() is None
    assert o.sent() == [{"subscribe": subscription}, {"auth": f"alice:{SESSION}"}]
    authenticate(o)


# ------------------------------------------------------------------ auth by hand


def test_send_auth_by_hand_is_kept_and_resent_after_every_reconnect() -> None:
    o = Octo()
    o.client.send_auth("bob", SESSION)  # before connect(): kept, not sent
    assert o.client.user == "bob"
    o.up()
    assert o.sent() == [{"auth": f"bob:{SESSION}"}]
    assert o.auth() is AuthState.AUTHENTICATING
    authenticate(o, "bob")
    o.server_eof()
    assert o.auth() is AuthState.ANONYMOUS
    o.advance(1.0)
    o.push({"connected": CONNECTED})
    assert o.events() == [
        Disconnected(1006, "the server closed the connection"),
        ReconnectScheduled(1, 1.0),
        connected_event(o.server),
        PushMessage("connected", CONNECTED),
    ]
    assert o.sent() == [{"auth": f"bob:{SESSION}"}]
    authenticate(o, "bob")
    # While open it goes out at once, and replaces the kept one.
    o.client.send_message("auth", f"carol:{SESSION_2}")
    o.pump()
    assert o.sent() == [{"auth": f"carol:{SESSION_2}"}]
    assert o.client.user == "carol"
    o.advance(1.0)  # re-auth of an authenticated socket: no history comes
    assert o.events() == [Authenticated("carol")]
    o.server_eof()
    o.advance(1.0)
    o.push({"connected": CONNECTED})
    assert o.sent() == [{"auth": f"carol:{SESSION_2}"}]


def test_send_auth_accepts_a_secret() -> None:
    o = Octo()
    o.up()
    o.client.send_auth("bob", Secret(SESSION))
    o.pump()
    assert o.sent() == [{"auth": f"bob:{SESSION}"}]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda c: c.send_message("auth", 5),
            InvalidMessageError,
            "an auth payload is a 'user:session' string",
        ),
        (
            lambda c: c.send_message("auth", "bob"),
            InvalidMessageError,
            "auth: the session must be a non-empty str, got str",
        ),
        (
            lambda c: c.send_message("auth", f":{SESSION}"),
            InvalidMessageError,
            "auth: the user must be a non-empty str, got str",
        ),
        (
            lambda c: c.send_auth("a:b", SESSION),
            InvalidMessageError,
            "auth: a user name containing ':' cannot authenticate",
        ),
        (
            lambda c: c.send_auth("bob", 5),
            LocalProtocolError,
            "a secret must be a str, not int",
        ),
        (
            lambda c: c.send_auth("bob", None),
            InvalidMessageError,
            "auth: the session must be a non-empty str, got NoneType",
        ),
        (
            lambda c: c.send_message("throttle", "2"),
            LocalProtocolError,
            "throttle factor must be an int within [1, None], got '2'",
        ),
        (
            lambda c: c.send_message("throttle", 0),
            LocalProtocolError,
            "throttle factor must be an int within [1, None], got 0",
        ),
        (
            lambda c: c.send_message("throttle", True),
            LocalProtocolError,
            "throttle factor must be an int within [1, None], got True",
        ),
        (
            lambda c: c.send_message("subscribe", {"state": True, "nope": 1}),
            InvalidMessageError,
            "subscribe: unknown key 'nope' (allowed: state, plugins, events)",
        ),
        (
            lambda c: c.subscribe({"events": "PrintDone"}),
            InvalidMessageError,
            "subscribe: events must be a bool or a list of str, got 'PrintDone'",
        ),
        (
            lambda c: c.send_message("", 1),
            InvalidMessageError,
            "the message type must be a non-empty str, got ''",
        ),
        (
            lambda c: c.send_message("x", math.nan),
            InvalidMessageError,
            "'x' payload is not JSON-serialisable: Out of range float values are not JSON"
            " compliant",
        ),
    ],
    ids=[
        "auth-not-str",
        "auth-no-session",
        "auth-no-user",
        "auth-user-with-colon",
        "session-not-str",
        "session-none",
        "throttle-str",
        "throttle-zero",
        "throttle-bool",
        "subscribe-unknown-key",
        "subscribe-events-str",
        "empty-type",
        "nan-payload",
    ],
)
def test_invalid_outgoing_messages_raise_and_change_nothing(
    call: Callable[[OctoPrintClient], None], error: type[Exception], message: str
) -> None:
    o = Octo(subscription={"state": True})
    o.up()
    o.client.send_auth("bob", SESSION)
    o.pump()
    assert o.sent() == [{"subscribe": {"state": True}}, {"auth": f"bob:{SESSION}"}]
    before = len(o.commands)
    with pytest.raises(error) as caught:
        call(o.client)
    assert type(caught.value) is error
    assert str(caught.value) == message
    assert SESSION not in str(caught.value)
    assert o.client.next_command() is None
    assert len(o.commands) == before
    assert o.events() == []
    assert (o.client.user, o.client.throttle_factor) == ("bob", 1)
    # What is re-sent after a reconnect is what it was before.
    o.server_eof()
    o.advance(1.0)
    o.push({"connected": CONNECTED})
    assert o.sent() == [{"subscribe": {"state": True}}, {"auth": f"bob:{SESSION}"}]


def test_send_message_routes_the_special_types() -> None:
    o = Octo()
    o.up()
    o.client.send_message("throttle", 3)
    o.client.send_message("subscribe", {"plugins": ["p"]})
    o.client.send_message("custom", {"a": [1, "b"]})
    o.pump()
    assert o.sent() == [
        {"throttle": 3},
        {"subscribe": {"plugins": ["p"]}},
        {"custom": {"a": [1, "b"]}},
    ]
    assert o.events() == [ThrottleChanged(3, 1)]
    assert o.client.throttle_factor == 3


def test_a_subscription_set_while_down_goes_out_at_the_next_connected() -> None:
    o = Octo()
    o.client.subscribe({"state": True})
    o.client.connect(o.now)
    o.pump()
    o.client.subscribe({"events": True})  # handshaking: remembered only
    assert o.server.received == []
    o.push({"connected": CONNECTED})
    assert o.sent() == [{"subscribe": {"events": True}}]


# ------------------------------------------------------------------ throttle

#: (handler seconds, factor after, message sent) with base 0.5 s and a window of 3.
THROTTLE_TABLE = [
    (0.2, 1, None),  # fast enough at the fastest rate
    (0.6, 2, 2),  # > 1 x 0.5: too slow -> decrease the rate
    (0.9, 2, None),  # < 2 x 0.5, but the window's max is not < 1 x 0.5
    (1.2, 3, 3),  # > 2 x 0.5
    (0.1, 3, None),  # window [0.9, 1.2, 0.1]: max 1.2 is not < 2 x 0.5
    (0.1, 3, None),  # window [1.2, 0.1, 0.1]
    (0.1, 2, 2),  # window [0.1, 0.1, 0.1]: max < 1.0 -> increase the rate
    (0.1, 1, 1),  # max < 0.5
    (0.1, 1, None),  # at the minimum already
    (0.5, 1, None),  # exactly the limit is not too slow
]


def test_message_processed_drives_the_throttle() -> None:
    o = Octo(throttle=ThrottleSettings(window=3))
    o.up()
    for step, (seconds, factor, sent) in enumerate(THROTTLE_TABLE):
        previous = o.client.throttle_factor
        o.client.message_processed(seconds, o.now)
        o.pump()
        assert o.client.throttle_factor == factor, step
        if sent is None:
            assert (o.events(), o.sent()) == ([], []), step
        else:
            assert o.events() == [ThrottleChanged(factor, previous)], step
            assert o.sent() == [{"throttle": sent}], step


def test_user_hooks_assigned_to_the_instance_take_over() -> None:
    o = Octo(throttle=ThrottleSettings(window=3))
    o.up()
    calls: list[tuple[str, float, float]] = []

    def too_high(measured: float, maximum: float) -> None:
        calls.append(("high", measured, maximum))

    def too_low(measured: float, minimum: float) -> None:
        calls.append(("low", measured, minimum))

    o.client.on_rate_too_high = too_high  # type: ignore[method-assign]
    o.client.on_rate_too_low = too_low  # type: ignore[method-assign]
    o.client.message_processed(0.75, o.now)
    o.pump()
    assert calls == [("high", 0.75, 0.5)]
    assert (o.client.throttle_factor, o.events(), o.sent()) == (1, [], [])
    o.client.set_throttle(3)
    o.client.message_processed(0.25, o.now)
    o.pump()
    assert calls[1:] == [("low", 0.75, 1.0)]  # 0.75 is still in the window
    o.client.message_processed(0.25, o.now)
    o.client.message_processed(0.25, o.now)
    assert calls[2:] == [("low", 0.75, 1.0), ("low", 0.25, 1.0)]
    assert o.client.throttle_factor == 3
    assert o.events() == [ThrottleChanged(3, 1)]
    assert o.sent() == [{"throttle": 3}]


def test_subclass_hooks_take_over_too() -> None:
    seen: list[float] = []

    class Patient(OctoPrintClient):
        def on_rate_too_high(self, measured: float, maximum: float) -> None:
            seen.append(measured)
            self.set_throttle(10)

    client = Patient(make_config())
    client.message_processed(2.0, 0.0)
    assert (seen, client.throttle_factor) == ([2.0], 10)
    assert client.next_event() == ThrottleChanged(10, 1)


def test_auto_throttle_off_measures_but_never_changes_the_factor() -> None:
    o = Octo(auto_throttle=False)
    o.up()
    for seconds in (0.6, 5.0, 0.0):
        o.client.message_processed(seconds, o.now)
    o.pump()
    assert (o.client.throttle_factor, o.events(), o.sent()) == (1, [], [])


def test_message_processed_refuses_what_is_not_a_duration() -> None:
    o = Octo()
    with pytest.raises(LocalProtocolError, match="processing time"):
        o.client.message_processed(-0.1, 0.0)
    with pytest.raises(LocalProtocolError, match="now must be a finite number"):
        o.client.message_processed(0.1, math.nan)
    assert o.client.throttle_factor == 1


def test_set_throttle_and_rate_steps_within_bounds() -> None:
    o = Octo(throttle=ThrottleSettings(min_factor=2, max_factor=4))
    assert o.client.throttle_factor == 2
    o.up()
    assert o.sent() == [{"throttle": 2}]  # the minimum is not the server's default of 1
    for bad in (1, 5, 2.0):
        with pytest.raises(LocalProtocolError, match=r"within \[2, 4\]"):
            o.client.set_throttle(bad)  # type: ignore[arg-type]
    o.client.set_throttle(4)
    o.client.set_throttle(4)  # no change: no event, nothing sent
    o.client.decrease_rate()  # at the maximum: nothing
    o.client.increase_rate()
    o.client.increase_rate()
    o.client.increase_rate()  # at the minimum: nothing
    o.pump()
    assert o.events() == [ThrottleChanged(4, 2), ThrottleChanged(3, 4), ThrottleChanged(2, 3)]
    assert o.sent() == [{"throttle": 4}, {"throttle": 3}, {"throttle": 2}]


def test_factor_and_subscription_are_resent_before_auth_after_every_reconnect() -> None:
    subscription = {"state": True, "events": ["PrintDone"]}
    o = Octo(
        LoginServer(login_ok(), login_ok(SESSION_2)),
        api_key=API_KEY,
        subscription=subscription,
    )
    o.client.set_throttle(3)  # while down: remembered, announced, not sent
    assert o.events() == [ThrottleChanged(3, 1)]
    o.up()
    assert o.sent() == [
        {"subscribe": subscription},
        {"throttle": 3},
        {"auth": f"alice:{SESSION}"},
    ]
    authenticate(o)
    o.client.decrease_rate()
    o.pump()
    assert o.sent() == [{"throttle": 4}]
    o.server_eof()
    o.client.increase_rate()  # while in backoff
    o.advance(1.0)
    o.push({"connected": CONNECTED})
    assert o.sent() == [
        {"subscribe": subscription},
        {"throttle": 3},
        {"auth": f"alice:{SESSION_2}"},
    ]
    # Back at factor 1 nothing is sent: the server starts at 1.
    o.client.set_throttle(1)
    o.sent()
    o.server_eof()
    o.advance(1.0)
    o.http = LoginServer(login_ok())
    o.push({"connected": CONNECTED})
    assert o.sent() == [{"subscribe": subscription}, {"auth": f"alice:{SESSION}"}]


# ------------------------------------------------------------------ malformed input


def test_a_binary_message_is_reported_and_ignored() -> None:
    o = Octo()
    o.up()
    o.frame(b"\x00\x01")
    assert o.events() == [ProtocolError("octoprint", "unexpected binary message")]
    assert o.state() is SessionState.OPEN
    assert o.sent() == []


@pytest.mark.parametrize(
    ("batch", "detail"),
    [
        ("1", "an OctoPrint message must be a JSON object, got int"),
        ('"x"', "an OctoPrint message must be a JSON object, got str"),
        ("null", "an OctoPrint message must be a JSON object, got NoneType"),
        ("[1]", "an OctoPrint message must be a JSON object, got list"),
    ],
)
def test_non_object_messages_are_reported_and_the_rest_delivered(batch: str, detail: str) -> None:
    o = Octo()
    o.up()
    o.frame(f'a[{batch},{{"current":1}}]')
    assert o.events() == [ProtocolError("octoprint", detail), PushMessage("current", 1)]
    o.frame(f"m{batch}")
    assert o.events() == [ProtocolError("octoprint", detail)]
    assert o.state() is SessionState.OPEN


@pytest.mark.parametrize(
    ("frame", "detail"),
    [
        ("", "empty SockJS frame"),
        ("x", "unknown SockJS frame type 'x'"),
        ("o1", "SockJS 'o' frame has 1 unexpected characters after it"),
        ("h ", "SockJS 'h' frame has 1 unexpected characters after it"),
        ("a[", "invalid JSON: Expecting value at position 1"),
        ("a{}", "SockJS 'a' frame must carry a JSON array, got an object"),
        ("c[1]", "SockJS 'c' frame must carry [code, reason] (an int and a string)"),
        ('c[true,"x"]', "SockJS 'c' frame must carry [code, reason] (an int and a string)"),
        ("m", "invalid JSON: Expecting value at position 0"),
    ],
)
def test_garbage_sockjs_frames_close_and_reconnect(frame: str, detail: str) -> None:
    o = Octo()
    o.up()
    o.frame(frame)
    assert o.events() == [
        ProtocolError("sockjs", detail),
        Disconnected(1002, detail),
        ReconnectScheduled(1, 1.0),
    ]
    assert o.server.received == [("close", 1002, detail)]
    assert o.state() is SessionState.BACKOFF
    o.advance(1.0)
    o.push({"connected": CONNECTED})
    assert o.events() == [connected_event(o.server), PushMessage("connected", CONNECTED)]


def test_a_garbage_frame_before_connected_fails_the_attempt() -> None:
    o = Octo()
    o.client.connect(o.now)
    o.pump()
    o.frame("zzz")
    assert o.events() == [
        ProtocolError("sockjs", "unknown SockJS frame type 'z'"),
        ConnectFailed("unknown SockJS frame type 'z'"),
        ReconnectScheduled(1, 1.0),
    ]


def test_a_second_open_frame_is_reported_but_harmless() -> None:
    o = Octo()
    o.client.connect(o.now)
    o.pump()
    o.frame("o")  # a repeated "o" before connected changes nothing
    assert o.events() == []
    o.push({"connected": CONNECTED})
    o.events()
    o.frame("o")
    assert o.events() == [ProtocolError("sockjs", "a second open frame")]
    assert o.state() is SessionState.OPEN
    assert o.sent() == []


def test_a_sockjs_close_frame_ends_the_session_and_reconnects() -> None:
    o = logged_in()
    o.frame('c[3000,"Go away!"]')
    assert o.events() == [Disconnected(3000, "Go away!"), ReconnectScheduled(1, 1.0)]
    assert o.server.received == [("close", 1000, "")]
    assert o.state() is SessionState.BACKOFF
    assert o.auth() is AuthState.ANONYMOUS
    assert o.commands[-1] == CloseTransport(Channel.SOCKET)


def test_a_sockjs_close_frame_before_connected_fails_the_attempt() -> None:
    o = Octo()
    o.client.connect(o.now)
    o.pump()
    o.frame('c[2010,"Another connection still open"]')
    assert o.events() == [
        ConnectFailed("Another connection still open"),
        ReconnectScheduled(1, 1.0),
    ]


def test_messages_after_a_close_frame_in_the_same_read_are_dropped() -> None:
    o = Octo()
    o.up()
    o.server.send('c[3000,"Go away!"]')
    o.server.send('a[{"current":1}]')
    o.pump()
    assert o.events() == [Disconnected(3000, "Go away!"), ReconnectScheduled(1, 1.0)]


@pytest.mark.parametrize(
    ("data", "event"),
    [
        (b"\x00", ProtocolError("octoprint", "unexpected binary message")),
        ("not json", ProtocolError("json", "invalid JSON: Expecting value at position 0")),
        (
            "[1, 2]",
            ProtocolError("octoprint", "an OctoPrint message must be a JSON object, got list"),
        ),
        ("7", ProtocolError("octoprint", "an OctoPrint message must be a JSON object, got int")),
    ],
)
def test_raw_endpoint_bad_input_is_reported_and_ignored(data: str | bytes, event: Event) -> None:
    o = Octo(endpoint=Endpoint.RAW)
    o.up()
    o.frame(data)
    assert o.events() == [event]
    assert o.state() is SessionState.OPEN
    o.push({"current": 1})
    assert o.events() == [PushMessage("current", 1)]
    assert o.sent() == []


# ------------------------------------------------------------------ disconnect


def test_disconnect_cancels_the_login_in_flight() -> None:
    o = Octo(LoginServer(None), api_key=API_KEY)
    o.up()
    o.server.auto_close = False  # the server is slow to answer our close
    before = len(o.commands)
    o.client.disconnect(o.now)
    # The session ends for the dialect at once: the login is cancelled before
    # the close frame goes out, and the socket is anonymous already.
    assert o.auth() is AuthState.ANONYMOUS
    o.pump()
    assert o.state() is SessionState.CLOSING
    close_frame = o.commands[-1]
    assert isinstance(close_frame, SendData)
    assert o.commands[before:] == [
        CloseTransport(Channel.HTTP),
        SendData(Channel.SOCKET, close_frame.data),
    ]
    # A late login answer must not make the client write after its close
    # frame (the peer raises AssertionError if it does).
    o.client.receive_data(login_ok(), o.now, channel=Channel.HTTP)
    o.pump()
    assert o.server.received == [("close", 1000, "")]
    assert o.events() == []
    assert len(o.commands) == before + 2
    o.advance(5.0)
    assert o.events() == [Disconnected(1000, "")]
    assert o.auth() is AuthState.ANONYMOUS


def test_disconnect_cancels_the_auth_grace_timer() -> None:
    o = Octo(LoginServer(login_ok()), api_key=API_KEY, subscription={"events": True})
    o.up()
    assert o.client.get_timer() == 1.0  # the grace timer
    o.server.auto_close = False
    o.client.disconnect(o.now)
    assert o.auth() is AuthState.ANONYMOUS  # the session is over at once
    o.pump()
    assert o.client.get_timer() == 5.0  # only the close timeout
    o.advance(2.0)
    assert o.events() == []  # no Authenticated while closing
    with pytest.raises(NotConnectedError):
        o.client.send_message("late", 1)
    assert o.sent() == [
        {"subscribe": {"events": True}},
        {"auth": f"alice:{SESSION}"},
        ("close", 1000, ""),
    ]
    o.advance(3.0)
    assert o.events() == [Disconnected(1000, "")]


def test_disconnect_cancels_the_login_retry() -> None:
    o = Octo(LoginServer(http_response(500)), api_key=API_KEY, login_retry_delay=1.0)
    o.up()
    assert o.client.get_timer() == 1.0
    o.server.auto_close = False
    o.client.disconnect(o.now)
    o.pump()
    assert o.client.get_timer() == 5.0  # only the close timeout
    o.advance(5.0)
    assert o.events() == [Disconnected(1000, "")]
    assert len(o.http_requests) == 1  # no login while closing


# ------------------------------------------------------------------ secrets


#: The login answers :func:`_full_session` needs, in order.
SCENARIO_ANSWERS = (
    http_response(500),
    login_ok(),
    login_ok(SESSION_2),
    login_ok(SESSION),
    # Cut short: the harness's EOF makes it a malformed response.
    b'HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n{"session": "' + SESSION.encode(),
    None,
    None,
)


def _full_session(o: Octo) -> list[Event]:
    """Connect, log in (after failures), re-auth, drop, reconnect, misbehave; all events."""
    events = o.up()
    o.advance(10.0)  # the retry after the first failure
    o.push({"history": HISTORY})
    o.push({"reauthRequired": {"reason": "stale"}})
    o.push({"history": HISTORY})
    o.push({"reauthRequired": {"reason": "modified"}})
    o.advance(1.0)
    o.client.message_processed(0.9, o.now)
    o.frame(b"binary")
    o.frame("a[1]")
    o.server_eof()
    o.advance(2.0)  # the reconnect, even with jitter
    o.push({"connected": CONNECTED})
    o.frame("bogus")
    o.advance(10.0)  # redial; no "connected": connect timeout; redial
    o.push({"connected": CONNECTED})
    o.advance(20.0)  # the login times out, and is retried
    events += o.events()
    assert ProtocolError("sockjs", "unknown SockJS frame type 'b'") in events
    return events


@pytest.mark.parametrize(
    "credentials",
    [{"api_key": API_KEY}, {"username": "alice", "password": PASSWORD}],
    ids=["passive", "active"],
)
def test_secrets_never_appear_in_events(credentials: dict[str, str]) -> None:
    page = http_response(200, headers=(("Set-Cookie", "csrf_token_P5000=t"),))
    o = Octo(LoginServer(*SCENARIO_ANSWERS, page=page), **credentials)
    events = _full_session(o)
    kinds = {type(event).__name__ for event in events}
    assert {"LoginSucceeded", "LoginFailed", "Authenticated", "ReauthRequired"} <= kinds
    assert {"ProtocolError", "Disconnected", "ThrottleChanged", "ConnectFailed"} <= kinds
    text = "\n".join(repr(event) + str(event) for event in events)
    for secret in SECRETS:
        assert secret not in text
    # The secrets did travel: on the wire, where they belong.
    wire = b"".join(o.http_requests).decode() + "".join(
        str(item) for server in o.servers for item in server.received
    )
    key = API_KEY if "api_key" in credentials else PASSWORD
    assert key in wire and SESSION in wire and SESSION_2 in wire
    assert not any(secret in repr(o.client.config) for secret in SECRETS)


# ------------------------------------------------------------------ determinism


def _replay(seed: bytes) -> tuple[list[object], list[Event], float | None]:
    page = http_response(200, headers=(("Set-Cookie", "csrf_token_P5000=t"),))
    o = Octo(
        LoginServer(*SCENARIO_ANSWERS, page=page),
        entropy=SeededEntropy(seed),
        username="alice",
        password=PASSWORD,
        reconnect=ReconnectSchedule(delays=(1.0, 2.0), jitter=0.5),
        ping_interval=7.0,
        dead_link_timeout=30.0,
    )
    o.client.send_message("hello", [1, 2])
    events = _full_session(o)
    return list(o.commands), events, o.client.get_timer()


def test_the_same_seed_and_inputs_give_the_same_commands_and_events() -> None:
    first = _replay(b"replay")
    assert first == _replay(b"replay")
    commands, events, _ = first
    assert len(commands) > 40 and len(events) > 20
    # The jittered reconnect delays were drawn from the entropy too.
    delays = [event.delay for event in events if isinstance(event, ReconnectScheduled)]
    assert len(delays) == 3 and not set(delays) & {1.0, 2.0}
    other = _replay(b"another seed")
    assert other[0] != first[0]  # ids, nonce and masks come from the seed
