"""Tests for octoproto.testing: the simulated OctoPrint server, driven directly.

No sockets and no real clock: each test plays the client with h11 and
wsproto (or with octoproto's own client core) against a ServerConnection,
and moves the server's clock by hand.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import h11
import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Message,
    Ping,
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import FrameProtocol

import octoproto
from octoproto import (
    Authenticated,
    Channel,
    CloseTransport,
    Connected,
    Disconnected,
    Endpoint,
    LocalProtocolError,
    LoginFailed,
    LoginSucceeded,
    OpenTransport,
    PushMessage,
    ReauthRequired,
    SeededEntropy,
    SendData,
)
from octoproto.testing import ServerConnection, SimulatedOctoPrint, SimulatorConfig

HOST = "127.0.0.1:5000"
SOCKJS = "/sockjs/123/abcdefgh/websocket"
RAW = "/sockjs/websocket"


def make(**overrides: Any) -> SimulatedOctoPrint:
    options: dict[str, Any] = {
        "username": "octo",
        "password": "pw",
        "api_key": "KEY",
        "port": 5000,
        "entropy": SeededEntropy(7),
    }
    options.update(overrides)
    return SimulatedOctoPrint(SimulatorConfig(**options))


def run_to(server: SimulatedOctoPrint, when: float) -> None:
    """Fire every server timer up to ``when``, each at its own deadline."""
    while (deadline := server.get_timer()) <= when:
        server.handle_timer(max(deadline, server.now))
    server.handle_timer(when)


# --- a hand-driven HTTP client ------------------------------------------------------


class Http:
    """One TCP connection to the server, speaking HTTP/1.1 with h11."""

    def __init__(self, server: SimulatedOctoPrint, now: float = 0.0) -> None:
        self.conn = server.accept(now)
        self.h11 = h11.Connection(h11.CLIENT)

    def request(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        now: float = 0.0,
    ) -> tuple[int, dict[str, str], bytes]:
        if self.h11.our_state is h11.DONE:
            self.h11.start_next_cycle()
        all_headers = [("Host", HOST), *(headers or [])]
        if body:
            all_headers.append(("Content-Length", str(len(body))))
        data = self.h11.send(h11.Request(method=method, target=target, headers=all_headers))
        data += self.h11.send(h11.Data(data=body)) if body else b""
        data += self.h11.send(h11.EndOfMessage())
        self.conn.receive_data(data, now)
        return self.response()

    def response(self) -> tuple[int, dict[str, str], bytes]:
        self.h11.receive_data(self.conn.data_to_send())
        head: h11.Response | None = None
        body = b""
        while True:
            event = self.h11.next_event()
            assert event is not h11.NEED_DATA, "the response is incomplete"
            if isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                headers = {k.decode(): v.decode() for k, v in head.headers}
                return head.status_code, headers, body


def http(  # noqa: PLR0917 (reads like the request line)
    server: SimulatedOctoPrint,
    method: str,
    target: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    now: float = 0.0,
) -> tuple[int, dict[str, str], bytes]:
    return Http(server, now).request(method, target, headers, body, now)


def login(server: SimulatedOctoPrint, now: float = 0.0) -> str:
    status, _, body = http(
        server, "POST", "/api/login", [("X-Api-Key", "KEY")], b'{"passive": true}', now
    )
    assert status == 200
    session = json.loads(body)["session"]
    assert isinstance(session, str)
    return session


# --- a hand-driven WebSocket client -------------------------------------------------


class Ws:
    """A websocket to the server; :meth:`read` returns the new frames, decoded.

    SockJS ``a[...]`` frames are unpacked into their message objects; the
    other SockJS frames (``o``, ``h``, ``c[...]``) stay strings. On the raw
    endpoint each text frame is JSON-decoded (or kept as a string).
    """

    def __init__(
        self,
        server: SimulatedOctoPrint,
        path: str = SOCKJS,
        now: float = 0.0,
        *,
        deflate: bool = False,
        headers: list[tuple[str, str]] | None = None,
        first: bytes = b"",
    ) -> None:
        self.conn = server.accept(now)
        self.sockjs = path != RAW
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.accepted: AcceptConnection | None = None
        self.rejected: int | None = None
        self.closes: list[int] = []
        self.pings: list[bytes] = []
        extensions = [PerMessageDeflate()] if deflate else []
        extra = [(k.encode(), v.encode()) for k, v in headers or []]
        upgrade = self.ws.send(
            Request(host=HOST, target=path, extensions=extensions, extra_headers=extra)
        )
        self.conn.receive_data(upgrade + first, now)
        self.opening = self.read()

    def read(self) -> list[object]:
        data = self.conn.data_to_send()
        if data:
            self.ws.receive_data(data)
        items: list[object] = []
        for event in self.ws.events():
            if isinstance(event, AcceptConnection):
                self.accepted = event
            elif isinstance(event, RejectConnection):
                self.rejected = event.status_code
            elif isinstance(event, TextMessage):
                items.extend(self._decode(event.data))
            elif isinstance(event, CloseConnection):
                self.closes.append(event.code)
            elif isinstance(event, Pong):
                self.pings.append(bytes(event.payload))
        return items

    def _decode(self, text: str) -> list[object]:
        if self.sockjs:
            return list(json.loads(text[1:])) if text.startswith("a") else [text]
        try:
            return [json.loads(text)]
        except ValueError:
            return [text]

    def send_text(self, text: str, now: float = 0.0) -> None:
        self.conn.receive_data(self.ws.send(Message(data=text)), now)

    def send(self, *messages: object, now: float = 0.0) -> None:
        """Messages as the client sends them: a SockJS array of JSON strings, or raw JSON."""
        if self.sockjs:
            self.send_text(json.dumps([json.dumps(m) for m in messages]), now)
        else:
            for message in messages:
                self.send_text(json.dumps(message), now)

    def auth(self, server: SimulatedOctoPrint, now: float = 0.0) -> list[object]:
        self.send({"auth": f"octo:{login(server, now)}"}, now=now)
        return self.read()

    @property
    def dropped(self) -> bool:
        """Closed abruptly: the TCP connection is gone and no close frame came."""
        self.read()
        return self.conn.closed and not self.closes


def types(items: list[object]) -> list[str]:
    """The message type of each item (a SockJS control frame stays as it is)."""
    return [next(iter(item)) if isinstance(item, dict) else str(item) for item in items]


def of_type(items: list[object], kind: str) -> list[Any]:
    return [item[kind] for item in items if isinstance(item, dict) and kind in item]


# --- HTTP -------------------------------------------------------------------------


def test_version_login_page_info_and_unknown_paths() -> None:
    server = make()
    status, headers, body = http(server, "GET", "/api/version")
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body) == {"api": "0.1", "server": "1.11.8", "text": "OctoPrint 1.11.8"}
    assert http(server, "GET", "/api/nope")[0] == 404
    assert http(server, "POST", "/api/version")[0] == 405
    status, _, body = http(server, "GET", "/sockjs/info")
    info = json.loads(body)
    assert status == 200 and info["websocket"] is True and isinstance(info["entropy"], int)


def test_base_path_prefixes_every_route() -> None:
    server = make(base_path="/octoprint/")
    assert http(server, "GET", "/api/version")[0] == 404
    assert http(server, "GET", "/octoprintX/api/version")[0] == 404
    assert http(server, "GET", "/octoprint/api/version?x=1")[0] == 200
    ws = Ws(server, "/octoprint" + SOCKJS)
    assert ws.accepted is not None and types(ws.opening) == ["o", "connected"]


def test_keep_alive_then_connection_close() -> None:
    server = make()
    client = Http(server)
    assert client.request("GET", "/api/version")[0] == 200
    assert client.request("GET", "/api/version")[0] == 200
    assert not client.conn.closed
    status, headers, _ = client.request("GET", "/api/version", [("Connection", "close")])
    assert status == 200 and headers["connection"] == "close"
    assert client.conn.closed
    client.conn.receive_data(b"GET / HTTP/1.1\r\n\r\n", 0.0)  # ignored once closed
    assert client.conn.data_to_send() == b""


def test_malformed_request_gets_400_and_close() -> None:
    server = make()
    conn = server.accept(0.0)
    conn.receive_data(b"NOT HTTP AT ALL\r\n\r\n", 0.0)
    assert conn.data_to_send().startswith(b"HTTP/1.1 400 ")
    assert conn.closed


def test_oversized_body_gets_413_and_close() -> None:
    server = make()
    client = Http(server)
    status, _, _ = client.request("POST", "/api/login", body=b"x" * 70_000)
    assert status == 413 and client.conn.closed


def test_client_eof_closes_and_forgets_the_connection() -> None:
    server = make()
    conn = server.accept(0.0)
    assert server.connections == (conn,)
    conn.receive_eof(0.0)
    assert conn.closed and conn.endpoint is None and not server.connections
    run_to(server, 1.0)


def test_delay_responses_holds_http_and_upgrade() -> None:
    server = make()
    server.delay_responses(2.0, 0.0)
    client = Http(server)
    request = b"GET /api/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    client.conn.receive_data(request, 0.0)
    assert client.conn.data_to_send() == b"" and not client.conn.closed
    assert server.get_timer() == 0.5  # the printer ticks first; the release is at 2.0
    run_to(server, 1.9)
    assert client.conn.data_to_send() == b""
    run_to(server, 2.0)
    assert client.response()[0] == 200 and client.conn.closed
    ws = Ws(server, now=3.0)
    assert ws.accepted is None
    run_to(server, 5.0)
    assert types(ws.read()) == ["o", "connected"]
    server.delay_responses(-1, 5.0)  # off again
    assert http(server, "GET", "/api/version", now=5.0)[0] == 200


# --- login ------------------------------------------------------------------------------


def test_passive_login_with_api_key_header_or_bearer() -> None:
    server = make()
    for header in (("X-Api-Key", "KEY"), ("Authorization", "Bearer KEY")):
        status, _, body = http(server, "POST", "/api/login", [header], b'{"passive": true}')
        record = json.loads(body)
        assert status == 200
        assert record["name"] == "octo" and record["active"] is True
        assert record["_login_mechanism"] == "apikey" and len(record["session"]) == 32
        assert record["apikey"] is None
    assert login(server) != login(server)  # every login is a new session


def test_api_key_logins_that_fail_or_bring_no_session() -> None:
    server = make()
    # A wrong key is no key: the CSRF check refuses it, as OctoPrint does.
    wrong = http(server, "POST", "/api/login", [("X-Api-Key", "nope")], b'{"passive":true}')
    assert wrong[:3:2] == (400, b"CSRF validation failed")
    status, _, body = http(
        server, "POST", "/api/login", [("X-Api-Key", "KEY")], b'{"user":"octo","pass":"pw"}'
    )
    assert status == 200 and "session" not in json.loads(body)
    assert http(server, "POST", "/api/login", [("X-Api-Key", "KEY")], b"{}")[0] == 400
    assert http(server, "POST", "/api/login", [("X-Api-Key", "KEY")], b"[1]")[0] == 400
    assert http(server, "POST", "/api/login", [("X-Api-Key", "KEY")], b"{not json")[0] == 400


def test_active_login_needs_the_csrf_cookie_and_header() -> None:
    server = make()
    body = b'{"user": "octo", "pass": "pw", "remember": false}'
    status, _, text = http(server, "POST", "/api/login", [], body)
    assert (status, text) == (400, b"CSRF validation failed")
    status, headers, _ = http(server, "GET", "/login")
    assert status == 200 and headers["content-type"].startswith("text/html")
    name, _, rest = headers["set-cookie"].partition("=")
    token = rest.split(";")[0]
    assert name == "csrf_token_P5000" and len(token) == 32
    cookie = ("Cookie", f"{name}={token}")
    status, _, text = http(server, "POST", "/api/login", [cookie, ("X-CSRF-Token", token)], body)
    record = json.loads(text)
    assert status == 200 and record["_login_mechanism"] == "password" and record["session"]
    assert http(server, "POST", "/api/login", [cookie, ("X-CSRF-Token", "x")], body)[0] == 400
    assert http(server, "POST", "/api/login", [cookie], body)[0] == 400
    bad_cookie = [("Cookie", 'a="\\'), ("X-CSRF-Token", token)]
    assert http(server, "POST", "/api/login", bad_cookie, body)[0] == 400
    wrong = b'{"user": "octo", "pass": "nope"}'
    assert http(server, "POST", "/api/login", [cookie, ("X-CSRF-Token", token)], wrong)[0] == 403
    passive = b'{"passive": true}'  # no key and no session cookie: nobody to log in
    assert http(server, "POST", "/api/login", [cookie, ("X-CSRF-Token", token)], passive)[0] == 403


@pytest.mark.parametrize("status", [403, 429, 500])
def test_fail_logins(status: int) -> None:
    server = make()
    server.fail_logins(status, 0.0)
    headers = [("X-Api-Key", "KEY")]
    assert http(server, "POST", "/api/login", headers, b'{"passive":true}')[0] == status
    server.fail_logins(None, 0.0)
    assert login(server)


# --- the websocket endpoints ------------------------------------------------------------


def test_sockjs_endpoint_opens_with_o_then_connected() -> None:
    server = make()
    ws = Ws(server)
    assert ws.accepted is not None and ws.conn.endpoint == "sockjs"
    assert types(ws.opening) == ["o", "connected"]
    connected = of_type(ws.opening, "connected")[0]
    assert connected["version"] == connected["display_version"] == "1.11.8"
    assert "apikey" not in connected and isinstance(connected["permissions"], list)
    assert {"plugin_hash", "config_hash", "python_version", "safe_mode", "online"} <= set(connected)


def test_raw_endpoint_sends_plain_json_objects_like_tornado() -> None:
    server = make()
    ws = Ws(server, RAW)
    assert ws.conn.endpoint == "raw" and types(ws.opening) == ["connected"]
    ws.send({"auth": f"octo:{login(server)}"})
    server.fire_event("Custom", {"html": "</b>"}, 0.0)
    ws.ws.receive_data(ws.conn.data_to_send())
    texts = [e.data for e in ws.ws.events() if isinstance(e, TextMessage)]
    assert any('"html": "<\\/b>"' in text for text in texts)  # ", " and <\/ escapes
    run_to(server, 60.0)
    assert "h" not in types(ws.read())  # no heartbeats on the raw endpoint


def test_heartbeats_on_a_fixed_timer_and_their_faults() -> None:
    server = make(heartbeat_interval=5.0)
    ws = Ws(server, now=0.25)
    run_to(server, 5.2)
    assert "h" not in types(ws.read())
    run_to(server, 5.25)
    assert types(ws.read()).count("h") == 1
    server.handle_timer(21.0)  # called late: one beat, not a burst
    assert types(ws.read()).count("h") == 1
    server.stop_heartbeats(21.0)
    run_to(server, 40.0)
    assert "h" not in types(ws.read())
    raw, client = Ws(server, RAW, now=40.0), Http(server, now=40.0)
    server.start_heartbeats(40.0)  # only SockJS sockets beat
    assert raw.conn._heartbeat_due is client.conn._heartbeat_due is None
    run_to(server, 44.9)
    assert "h" not in types(ws.read())
    run_to(server, 45.0)
    assert types(ws.read()).count("h") == 1


def test_no_heartbeat_after_the_client_closed() -> None:
    # The close is echoed, but the echo is not taken before a beat falls due.
    server = make(heartbeat_interval=5.0)
    ws = Ws(server)
    ws.conn.receive_data(ws.ws.send(CloseConnection(code=1000)), 1.0)
    run_to(server, 5.0)  # used to raise: a text frame on a closed websocket
    assert ws.read() == [] and ws.closes == [1000]
    assert ws.conn.closed


def test_default_heartbeat_is_every_25_seconds() -> None:
    server = make()
    ws = Ws(server)
    beats = []
    while (deadline := server.get_timer()) <= 60:
        server.handle_timer(deadline)
        if "h" in types(ws.read()):
            beats.append(deadline)
    assert beats == [25.0, 50.0]


def test_upgrade_refusals() -> None:
    server = make()
    status, _, body = http(server, "GET", SOCKJS)
    assert status == 400 and b"WebSocket" in body
    upgrade = [("Upgrade", "websocket"), ("Connection", "Upgrade")]
    headers = [*upgrade, ("Sec-WebSocket-Key", "a" * 22 + "=="), ("Sec-WebSocket-Version", "8")]
    assert http(server, "GET", RAW, headers)[0] == 400
    assert http(server, "POST", SOCKJS)[0] == 405
    assert http(server, "GET", "/sockjs/1.2/ab/websocket")[0] == 404
    other = Ws(server, headers=[("Origin", "http://localhost:5000")])
    assert other.rejected == 403 and other.accepted is None
    same = Ws(server, headers=[("Origin", f"http://{HOST}")])
    assert same.accepted is not None


def test_permessage_deflate_is_accepted_when_offered() -> None:
    server = make()
    ws = Ws(server, deflate=True)
    assert ws.accepted is not None
    assert [e.name for e in ws.accepted.extensions] == ["permessage-deflate"]
    assert types(ws.opening) == ["o", "connected"]
    assert types(ws.auth(server))[-3:] == ["history", "timelapse", "event"]
    offer = [("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits=x")]
    plain = Ws(server, headers=offer)
    assert plain.accepted is not None and plain.accepted.extensions == []


def test_frames_sent_with_the_upgrade_request_are_read() -> None:
    server = make()
    frame = bytes(
        FrameProtocol(client=True, extensions=[]).send_data(
            json.dumps([json.dumps({"auth": f"octo:{login(server)}"})])
        )
    )
    ws = Ws(server, first=frame)
    assert types(ws.opening) == ["o", "connected", "history", "timelapse", "event"]


def test_websocket_control_frames_and_binary() -> None:
    server = make()
    ws = Ws(server)
    ws.conn.receive_data(ws.ws.send(Ping(b"hi")), 0.0)
    ws.read()
    assert ws.pings == [b"hi"]
    ws.conn.receive_data(ws.ws.send(Pong(b"unasked")), 0.0)  # needs no answer
    assert ws.conn.data_to_send() == b""
    ws.conn.receive_data(ws.ws.send(Message(data=b"\x01\x02")), 0.0)  # binary: ignored
    ws.conn.receive_data(ws.ws.send(Message(data='["{\\"thr', message_finished=False)), 0.0)
    ws.conn.receive_data(ws.ws.send(Message(data='ottle\\": 4}"]')), 0.0)
    assert ws.conn.throttle_factor == 4  # fragments are joined
    ws.conn.receive_data(ws.ws.send(CloseConnection(code=1000)), 0.0)
    ws.read()
    assert ws.closes == [1000] and ws.conn.closed


def test_oversized_and_invalid_frames_close_the_socket() -> None:
    server = make(max_message_size=100)
    ws = Ws(server)
    ws.send_text("x" * 101)
    ws.read()
    assert ws.closes == [1009] and ws.conn.closed
    ws = Ws(server)
    unmasked = FrameProtocol(client=False, extensions=[]).send_data("hello")
    ws.conn.receive_data(bytes(unmasked), 0.0)
    ws.read()
    assert ws.closes == [1002] and ws.conn.closed


# --- auth, current, history ---------------------------------------------------------------


def test_anonymous_socket_gets_only_connected_and_events_wait() -> None:
    server = make(idle_duration=1.0)
    ws = Ws(server)
    run_to(server, 3.0)
    assert ws.read() == []  # no current, and the print's events are held back
    session = login(server, 3.0)
    ws.send({"auth": f"octo:{session}"}, now=3.0)
    items = ws.read()
    assert types(items) == ["event", "event", "history", "timelapse", "event"]
    events = [e["type"] for e in of_type(items, "event")]
    assert events == ["PrintStarted", "PrinterStateChanged", "ClientAuthed"]
    assert of_type(items, "event")[-1]["payload"] == {
        "username": "octo",
        "remoteAddress": "127.0.0.1",
    }
    assert ws.conn.user == "octo"
    history = of_type(items, "history")[0]
    assert len(history["temps"]) == 6 and history["logs"] and history["state"]["text"]
    ws.send({"auth": f"octo:{session}"}, now=3.0)
    assert ws.read() == []  # re-auth while authenticated: nothing new


def test_held_back_events_are_bounded() -> None:
    server = make(max_held_back=3)
    ws = Ws(server)
    for number in range(5):
        server.fire_event("Custom", number, 0.0)
    items = ws.auth(server)
    assert [e["payload"] for e in of_type(items, "event")][:3] == [2, 3, 4]


def test_wrong_session_gets_stale_and_the_socket_goes_anonymous() -> None:
    server = make()
    ws = Ws(server)
    ws.auth(server)
    ws.send({"auth": "octo:nonsense"})
    assert ws.read() == [{"reauthRequired": {"reason": "stale"}}]
    assert ws.conn.user is None
    run_to(server, 2.0)
    assert ws.read() == []
    ws.send({"auth": f"root:{login(server, 2.0)}"}, now=2.0)  # a session of another user
    assert of_type(ws.read(), "reauthRequired") == [{"reason": "stale"}]
    ws.send({"auth": "octo"}, {"auth": "a:b:c"}, now=2.0)  # not user:session: ignored
    assert ws.read() == []


def test_current_every_half_second_with_one_tick_each() -> None:
    server = make()
    ws = Ws(server)
    ws.auth(server)
    run_to(server, 3.0)
    currents = of_type(ws.read(), "current")
    assert [c["serverTime"] - 1.7e9 for c in currents] == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert all(len(c["temps"]) == 1 for c in currents)
    assert set(currents[0]) >= {"state", "job", "progress", "currentZ", "offsets", "logs"}


def test_throttle_spaces_current_and_merges_temps_and_logs() -> None:
    server = make()
    ws = Ws(server)
    ws.auth(server)
    ws.send({"throttle": 3})
    run_to(server, 6.0)
    currents = of_type(ws.read(), "current")
    assert [c["serverTime"] - 1.7e9 for c in currents] == [0.5, 2.0, 3.5, 5.0]
    assert [len(c["temps"]) for c in currents] == [1, 3, 3, 3]
    assert len(currents[1]["logs"]) >= 3
    ws.send({"throttle": 10}, now=6.0)
    run_to(server, 7.0)
    assert ws.read() == []
    ws.send({"throttle": 1}, now=7.0)  # the held update goes out at once
    assert [len(c["temps"]) for c in of_type(ws.read(), "current")] == [4]


def test_throttled_current_waits_for_its_window_between_ticks() -> None:
    server = make(tick_interval=0.4)
    ws = Ws(server)
    ws.auth(server)
    run_to(server, 2.0)
    currents = of_type(ws.read(), "current")
    # Ticks at 0.4, 0.8, 1.2 ...; current at most every 0.5 s: the update of
    # 0.8 waits until 0.9, and so on.
    assert [round(c["serverTime"] - 1.7e9, 1) for c in currents] == [0.4, 0.9, 1.4, 1.9]
    assert [len(c["temps"]) for c in currents] == [1, 1, 1, 1]


@pytest.mark.parametrize(
    ("text", "factor"),
    [
        ('{"throttle": "3"}', 3),
        ('{"throttle": 1.9}', 1),
        ('{"throttle": true}', 1),
        ('{"throttle": 1e6}', 1000000),
        ('{"throttle": 0}', 5),
        ('{"throttle": -1}', 5),
        ('{"throttle": "abc"}', 5),
        ('{"throttle": NaN}', 5),
    ],
)
def test_throttle_values_are_coerced_like_the_real_server(text: str, factor: int) -> None:
    server = make()
    ws = Ws(server, RAW)
    ws.send({"throttle": 5})
    ws.send_text(text)
    assert ws.conn.throttle_factor == factor and not ws.dropped


@pytest.mark.parametrize("value", ["null", "[2]", "{}", "Infinity"])
def test_throttle_values_that_drop_the_connection(value: str) -> None:
    server = make()
    ws = Ws(server, RAW)
    ws.send_text(f'{{"throttle": {value}}}')
    assert ws.dropped


def test_huge_throttle_stops_current() -> None:
    server = make()
    ws = Ws(server)
    ws.auth(server)
    ws.send({"throttle": 10**30})
    run_to(server, 100.0)
    assert [len(c["temps"]) for c in of_type(ws.read(), "current")] == [1]


# --- subscriptions ------------------------------------------------------------------------


def test_subscription_state_off_and_an_event_filter() -> None:
    server = make(idle_duration=1.0)
    ws = Ws(server)
    ws.send({"subscribe": {"events": ["PrinterStateChanged"]}})
    items = ws.auth(server)
    assert types(items) == []  # no history, no timelapse, ClientAuthed filtered out
    run_to(server, 3.0)
    items = ws.read()
    assert [e["type"] for e in of_type(items, "event")] == ["PrinterStateChanged"]
    assert of_type(items, "current") == []


def test_subscribing_to_state_later_sends_history_again() -> None:
    server = make()
    ws = Ws(server)
    ws.send({"subscribe": {"state": False, "events": True}})
    ws.auth(server)
    ws.send({"subscribe": {"state": {"logs": "^Recv", "messages": True}, "events": True}})
    assert types(ws.read()) == ["history"]
    ws.send({"subscribe": {"state": {"logs": "^Recv", "messages": True}}})
    assert ws.read() == []  # the state part did not change
    run_to(server, 7.0)
    currents = of_type(ws.read(), "current")
    logs = [line for c in currents for line in c["logs"]]
    assert logs and all(line.startswith("Recv") for line in logs)
    assert any("Send" in line for line in server._printer.logs)
    ws.send({"subscribe": {"state": {"logs": False}}}, now=7.0)
    assert of_type(ws.read(), "history")[0]["logs"] == []


def test_plugin_messages_follow_the_plugin_filter() -> None:
    server = make()
    plain, listed, none = Ws(server), Ws(server), Ws(server)
    listed.send({"subscribe": {"plugins": ["a"], "state": True}})
    none.send({"subscribe": {"plugins": False, "state": True}})
    for ws in (plain, listed, none):
        ws.auth(server)
    server.send_plugin_message("a", {"x": 1}, 0.0)
    server.send_plugin_message("b", {"x": 2}, 0.0)
    assert of_type(plain.read(), "plugin") == [
        {"plugin": "a", "data": {"x": 1}},
        {"plugin": "b", "data": {"x": 2}},
    ]
    assert [p["plugin"] for p in of_type(listed.read(), "plugin")] == ["a"]
    assert of_type(none.read(), "plugin") == []


@pytest.mark.parametrize(
    "subscription",
    [
        {"state": {"logs": "(("}},
        {"state": {"messages": 5}},
        {"state": True, "plugins": "a"},
        {"events": {"x": 1}},
        {"state": "x"},
    ],
)
def test_a_bad_first_subscription_silences_the_socket(subscription: object) -> None:
    server = make(idle_duration=1.0)
    ws = Ws(server)
    ws.send({"subscribe": subscription})
    ws.auth(server)
    run_to(server, 3.0)
    assert ws.read() == [] and not ws.dropped


def test_a_bad_later_subscription_keeps_the_previous_one() -> None:
    server = make()
    ws = Ws(server)
    ws.send({"subscribe": {"state": True}})
    ws.auth(server)
    ws.send({"subscribe": {"state": True, "events": 3}})
    run_to(server, 1.0)
    assert types(ws.read()) == ["current", "current"]


# --- malformed input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "[not json",
        '["5"]',
        '["null"]',
        '["\\"the auth\\""]',
        '["[\\"subscribe\\"]"]',
        '["{\\"auth\\": 5}"]',
        '["{\\"subscribe\\": \\"x\\"}"]',
        '["{\\"subscribe\\": [1]}"]',
    ],
)
def test_sockjs_input_that_drops_the_connection(text: str) -> None:
    server = make()
    ws = Ws(server)
    ws.auth(server)
    ws.send_text(text)
    assert ws.dropped and ws.conn.user is None
    assert ws.conn.data_to_send() == b""


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[]",
        '["not json"]',
        "[5, null, {}]",
        '["[1, 2]"]',
        '["\\"hello\\""]',
        '["{\\"x\\": 1}"]',
    ],
)
def test_sockjs_input_that_is_ignored(text: str) -> None:
    server = make()
    ws = Ws(server)
    ws.send_text(text)
    assert ws.read() == [] and not ws.dropped


@pytest.mark.parametrize("text", ["", "not json", "[1]", '"x"', '{"unknown": 1}'])
def test_raw_input_that_is_ignored(text: str) -> None:
    server = make()
    ws = Ws(server, RAW)
    ws.send_text(text)
    assert ws.read() == [] and not ws.dropped


def test_sockjs_accepts_a_bare_json_string_frame() -> None:
    server = make()
    ws = Ws(server)
    ws.send_text(json.dumps(json.dumps({"throttle": 2})))
    assert ws.conn.throttle_factor == 2


def test_only_the_first_special_key_counts() -> None:
    server = make()
    ws = Ws(server)
    ws.send({"throttle": 2, "auth": "octo:nonsense"})
    assert ws.read() == [{"reauthRequired": {"reason": "stale"}}]
    assert ws.conn.throttle_factor == 1


def test_messages_after_a_drop_in_the_same_frame_are_not_handled() -> None:
    server = make()
    ws = Ws(server)
    ws.send_text(json.dumps(["5", json.dumps({"throttle": 3})]))
    assert ws.dropped and ws.conn.throttle_factor == 1


# --- the printer ----------------------------------------------------------------------


def test_the_print_job_loops_with_realistic_numbers() -> None:
    server = make(idle_duration=30.0, print_duration=20.0)
    ws = Ws(server)
    ws.auth(server)
    run_to(server, 85.0)
    items = ws.read()
    events = [(e["type"], e["payload"].get("state_id")) for e in of_type(items, "event")]
    assert events == [
        ("PrintStarted", None),
        ("PrinterStateChanged", "PRINTING"),
        ("PrintDone", None),
        ("PrinterStateChanged", "OPERATIONAL"),
        ("PrintStarted", None),
        ("PrinterStateChanged", "PRINTING"),
    ]
    currents = of_type(items, "current")
    at = {round(c["serverTime"] - 1.7e9, 1): c for c in currents}
    assert at[1.0]["state"]["text"] == "Operational" and at[1.0]["currentZ"] is None
    assert at[1.0]["progress"]["completion"] is None
    printing = at[49.5]
    assert printing["state"]["text"] == "Printing" and printing["state"]["flags"]["printing"]
    assert printing["progress"]["completion"] == 97.5
    assert printing["progress"]["printTimeLeft"] == 0
    assert printing["busyFiles"] == [{"origin": "local", "path": "simulated_benchy.gcode"}]
    tool = printing["temps"][0]["tool0"]
    assert tool["target"] == 210.0 and 180 < tool["actual"] < 211
    assert 35 < printing["temps"][0]["bed"]["actual"] < 61
    assert printing["currentZ"] > 40
    line = next(line for line in printing["logs"] if line.startswith("Send: "))
    command, _, checksum = line[6:].partition("*")
    expected = 0
    for byte in command.encode():
        expected ^= byte
    assert int(checksum) == expected and command.startswith("N")
    cooled = at[79.5]
    assert cooled["state"]["text"] == "Operational"
    assert cooled["temps"][0]["tool0"]["target"] == 0.0
    assert cooled["temps"][0]["tool0"]["actual"] < 40
    progress = [c["progress"]["completion"] for c in currents if c["state"]["text"] == "Printing"]
    assert progress[:3] == sorted(progress[:3])


def test_same_inputs_give_the_same_bytes() -> None:
    def session() -> bytes:
        server = make(entropy=SeededEntropy(3))
        ws = Ws(server)
        ws.auth(server)
        ws.send({"throttle": 2})
        run_to(server, 10.0)
        ws.ws.receive_data(ws.conn.data_to_send())
        return (
            b"".join(e.data.encode() for e in ws.ws.events() if isinstance(e, TextMessage))
            + json.dumps(ws.opening).encode()
        )

    assert session() == session()


# --- fault injection ----------------------------------------------------------------------


def test_drop_connections_aborts_everything() -> None:
    server = make()
    ws, client = Ws(server), Http(server)
    server.fire_event("Custom", 1, 0.0)
    server.drop_connections(0.0)
    assert ws.dropped and client.conn.closed and server.connections == ()
    ws.conn.receive_data(ws.ws.send(Ping(b"")), 0.0)  # ignored once dropped
    assert ws.conn.data_to_send() == b""


def test_send_garbage() -> None:
    server = make()
    sockjs, raw, client = Ws(server), Ws(server, RAW), Http(server)
    server.send_garbage(0.0)
    assert sockjs.read() == ["\x00garbage{"] and raw.read() == ["\x00garbage{"]
    assert client.conn.data_to_send() == b""
    server.send_garbage(0.0, broken_frame=True)
    assert sockjs.conn.data_to_send() == b"\x8f\x00"


def test_send_close_sockjs_then_the_client_answers() -> None:
    server = make()
    ws = Ws(server)
    ws.auth(server)
    server.send_close(1.0)
    assert ws.read() == ['c[3000,"Go away!"]'] and ws.closes == [1000]
    frames = FrameProtocol(client=True, extensions=[])
    late = frames.send_data(json.dumps([json.dumps({"throttle": 4})]))
    ws.conn.receive_data(bytes(late), 1.0)  # after our close: not handled
    assert ws.conn.throttle_factor == 1 and not ws.conn.closed
    ws.conn.receive_data(bytes(frames.close(1000)), 1.0)
    assert ws.conn.closed and ws.conn.user is None
    server.send_close(1.0)  # nobody left to close


def test_send_close_raw_and_a_client_that_never_answers() -> None:
    server = make()
    ws = Ws(server, RAW)
    server.send_close(0.0, code=4000, reason="bye")
    ws.read()
    assert ws.closes == [4000] and not ws.conn.closed
    run_to(server, 1.9)
    assert not ws.conn.closed
    run_to(server, 2.0)
    assert ws.conn.closed


def test_close_sessions_logout_holds_events_until_reauth() -> None:
    server = make()
    ws, anonymous = Ws(server), Ws(server)
    ws.auth(server)
    server.close_sessions(1.0, reason="logout")
    assert ws.read() == [{"reauthRequired": {"reason": "logout"}}] and anonymous.read() == []
    server.fire_event("Custom", 1, 1.0)
    run_to(server, 2.0)
    assert ws.read() == []
    items = ws.auth(server, 2.0)
    # The held-back event, then ClientAuthed; no second history (OctoPrint
    # 1.11.8 sends one per socket).
    assert types(items) == ["event", "event"]


def test_close_sessions_modified_keeps_the_socket_authenticated() -> None:
    server = make()
    ws = Ws(server)
    ws.auth(server)
    server.close_sessions(0.0, reason="modified")
    assert ws.read() == [{"reauthRequired": {"reason": "modified"}}]
    run_to(server, 1.0)
    assert types(ws.read()) == ["current", "current"]


def test_close_sessions_silently_makes_old_sessions_stale() -> None:
    server = make()
    session = login(server)
    ws = Ws(server)
    ws.auth(server)
    server.close_sessions(0.0, reason=None)
    assert ws.read() == [] and ws.conn.user == "octo"
    other = Ws(server)
    other.send({"auth": f"octo:{session}"})
    assert other.read() == [{"reauthRequired": {"reason": "stale"}}]


def test_unused_sessions_go_stale_but_used_ones_do_not() -> None:
    server = make(session_timeout=60.0)
    idle = login(server)
    ws = Ws(server)
    ws.auth(server)
    shared = ws.conn._session
    assert shared is not None
    used = next(k for k, v in server._sessions.items() if v is shared)
    run_to(server, 100.0)
    late = Ws(server, now=100.0)
    late.send({"auth": f"octo:{idle}"}, now=100.0)
    assert of_type(late.read(), "reauthRequired") == [{"reason": "stale"}]
    late.send({"auth": f"octo:{used}"}, now=100.0)
    assert "history" in types(late.read())
    forever = make(session_timeout=None, tick_interval=1000.0)
    old = login(forever)
    run_to(forever, 10_000.0)
    ws = Ws(forever, now=10_000.0)
    ws.send({"auth": f"octo:{old}"}, now=10_000.0)
    assert "history" in types(ws.read())


# --- misuse -----------------------------------------------------------------------------


def test_payloads_must_be_json() -> None:
    server = make()
    with pytest.raises(LocalProtocolError, match="JSON"):
        server.fire_event("Custom", {1, 2}, 0.0)
    with pytest.raises(LocalProtocolError, match="JSON"):
        server.send_plugin_message("p", object(), 0.0)


def test_time_must_not_go_backwards_or_be_nan() -> None:
    server = make()
    server.handle_timer(5.0)
    with pytest.raises(LocalProtocolError, match="backwards"):
        server.accept(4.0)
    with pytest.raises(LocalProtocolError, match="finite"):
        server.handle_timer(math.nan)


@pytest.mark.parametrize(
    "options",
    [
        {"username": "a:b"},
        {"username": ""},
        {"heartbeat_interval": 0},
        {"tick_interval": -1},
        {"idle_duration": -1},
        {"base_path": "/x?y"},
    ],
)
def test_config_is_checked(options: dict[str, Any]) -> None:
    with pytest.raises(LocalProtocolError):
        SimulatorConfig(**options)


def test_default_config_and_repr_hide_secrets() -> None:
    server = SimulatedOctoPrint()
    assert "octoprint" not in repr(server.config) and server.config.api_key not in repr(
        server.config
    )
    assert server.get_timer() == 0.5


# --- octoproto's own client against the simulator ------------------------------------------


class Link:
    """Wire an OctoPrintClient to the simulator with a fake clock (the adapter's job)."""

    def __init__(self, server: SimulatedOctoPrint, **options: Any) -> None:
        self.server = server
        config = octoproto.OctoPrintConfig(
            url=f"http://{HOST}/", entropy=SeededEntropy(1), **options
        )
        self.client = octoproto.OctoPrintClient(config)
        self.conns: dict[Channel, ServerConnection] = {}
        self.now = 0.0
        self.events: list[octoproto.Event] = []

    def pump(self) -> None:
        busy = True
        while busy:
            busy = False
            while (command := self.client.next_command()) is not None:
                busy = True
                if isinstance(command, OpenTransport):
                    self.conns[command.channel] = self.server.accept(self.now)
                    self.client.transport_opened(self.now, channel=command.channel)
                elif isinstance(command, SendData):
                    self.conns[command.channel].receive_data(command.data, self.now)
                else:
                    assert isinstance(command, CloseTransport)
                    conn = self.conns.pop(command.channel, None)
                    if conn is not None:
                        conn.receive_eof(self.now)
            for channel, conn in list(self.conns.items()):
                if data := conn.data_to_send():
                    busy = True
                    self.client.receive_data(data, self.now, channel=channel)
                if conn.closed and self.conns.get(channel) is conn:
                    busy = True
                    del self.conns[channel]
                    self.client.receive_eof(self.now, channel=channel)
        while (event := self.client.next_event()) is not None:
            self.events.append(event)

    def run(self, until: float) -> list[octoproto.Event]:
        """Run both sides to ``until``; return the client's events."""
        self.events = []
        self.client.connect(self.now)
        self.pump()
        while True:
            timers = [t for t in (self.client.get_timer(), self.server.get_timer()) if t]
            deadline = min(timers)
            if deadline > until:
                break
            self.now = max(self.now, deadline)
            self.server.handle_timer(self.now)
            self.client.handle_timer(self.now)
            self.pump()
        self.now = until
        return self.events


def pushed(events: list[octoproto.Event], kind: str) -> list[PushMessage]:
    return [e for e in events if isinstance(e, PushMessage) and e.type == kind]


@pytest.mark.parametrize("endpoint", [Endpoint.SOCKJS, Endpoint.RAW])
def test_client_core_passive_login_auth_and_updates(endpoint: Endpoint) -> None:
    link = Link(make(), api_key="KEY", endpoint=endpoint)
    events = link.run(3.0)
    connected = next(e for e in events if isinstance(e, Connected))
    assert connected.handshake.extensions  # permessage-deflate negotiated
    assert LoginSucceeded("octo", "apikey") in events and Authenticated("octo") in events
    assert len(pushed(events, "current")) == 6
    assert link.client.is_open


def test_client_core_active_login_through_csrf() -> None:
    link = Link(make(), username="octo", password="pw")
    events = link.run(1.0)
    assert LoginSucceeded("octo", "password") in events and Authenticated("octo") in events


def test_client_core_reconnects_after_faults() -> None:
    server = make()
    link = Link(server, api_key="KEY")
    link.run(1.0)
    server.drop_connections(link.now)
    events = link.run(3.0)
    assert [type(e).__name__ for e in events][:2] == ["Disconnected", "ReconnectScheduled"]
    assert Authenticated("octo") in events
    server.send_close(link.now)
    events = link.run(6.0)
    assert Disconnected(3000, "Go away!") in events and Authenticated("octo") in events
    server.close_sessions(link.now, reason="stale")
    events = link.run(7.0)
    assert ReauthRequired("stale", True) in events and Authenticated("octo") in events
    server.fail_logins(403, link.now)
    server.close_sessions(link.now, reason="stale")
    events = link.run(8.0)
    assert any(isinstance(e, LoginFailed) and e.status == 403 for e in events)


def test_nothing_draws_from_os_urandom(monkeypatch: pytest.MonkeyPatch) -> None:
    # wsproto masks client frames and makes handshake nonces with os.urandom;
    # in the server role it must need neither (and the client core uses the
    # injected entropy), so a whole session runs with os.urandom broken.
    def refuse(count: int) -> bytes:
        raise AssertionError("os.urandom was called")

    monkeypatch.setattr(os, "urandom", refuse)
    server = make()
    link = Link(server, username="octo", password="pw")
    events = link.run(2.0)
    assert Authenticated("octo") in events and pushed(events, "current")
    server.send_close(link.now)
    assert Disconnected(3000, "Go away!") in link.run(4.0)
