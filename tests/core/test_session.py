"""Tests for octoproto._session: the engine every dialect runs on.

Driven through the plain :class:`WebSocketClient` and, for the hooks only a
richer dialect uses (a session that is ready later than the handshake, dialect
timers, the HTTP side channel), through :class:`Stub`, a test-only dialect.
The clock is a float; nothing sleeps.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from peer import (
    Accept,
    Harness,
    HttpResponder,
    Reject,
    accept_key,
    handshake_101,
    server_frame,
)
from wsproto.events import Request
from wsproto.extensions import PerMessageDeflate

from octoproto import (
    TRANSITIONS,
    BinaryMessage,
    Channel,
    CloseTransport,
    Command,
    Connected,
    ConnectFailed,
    Disconnected,
    Event,
    HandshakeResponse,
    LimitExceeded,
    LocalProtocolError,
    NotConnectedError,
    OpenTransport,
    OperationWarning,
    ProtocolError,
    ReconnectFailed,
    ReconnectSchedule,
    ReconnectScheduled,
    SeededEntropy,
    SendData,
    SendFailed,
    SendQueueFullError,
    SessionConfig,
    SessionEngine,
    SessionState,
    TextMessage,
    ThroughputWarning,
    Trigger,
    Usage,
    WebSocketClient,
)
from octoproto._entropy import uniform
from octoproto._http import HttpResponse

S = SessionState
OPEN_SOCKET = OpenTransport(Channel.SOCKET, "example.com", 80, False, None)
CLOSE_SOCKET = CloseTransport(Channel.SOCKET)
OPEN_HTTP = OpenTransport(Channel.HTTP, "example.com", 80, False, None)
CLOSE_HTTP = CloseTransport(Channel.HTTP)


def config(**kwargs: Any) -> SessionConfig:
    options: dict[str, Any] = {
        "url": "ws://example.com/ws",
        "entropy": SeededEntropy(1),
        "compression": False,
        **kwargs,
    }
    return SessionConfig(**options)


def plain(**kwargs: Any) -> Harness[WebSocketClient]:
    return Harness(WebSocketClient(config(**kwargs)))


def opened(**kwargs: Any) -> Harness[WebSocketClient]:
    h = plain(**kwargs)
    assert [type(e) for e in h.connect_and_open()] == [Connected]
    return h


def handshake_of(h: Harness[Any]) -> HandshakeResponse:
    """What Connected carries for a default wsproto 101 to the current request."""
    assert h.server.request is not None
    return HandshakeResponse(
        101,
        "Switching Protocols",
        "1.1",
        (
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-accept", accept_key(h.server.request)),
        ),
    )


def state(h: Harness[Any]) -> SessionState:
    """The client's state (a call, so that mypy does not narrow it across inputs)."""
    current: SessionState = h.client.state
    return current


def socket_bytes(commands: list[Command]) -> bytes:
    return b"".join(
        c.data for c in commands if isinstance(c, SendData) and c.channel is Channel.SOCKET
    )


def no_answer(request: Request) -> bytes:
    return b""


class Stub(SessionEngine):
    """A test dialect: ready at the server's "ready" message; logs every hook it gets."""

    def __init__(self, config: SessionConfig) -> None:
        super().__init__(config)
        self.log: list[tuple[object, ...]] = []

    def _on_websocket_open(self, now: float) -> None:
        """Not ready yet: this dialect waits for the server's "ready" message."""

    def send(self, message: str) -> None:
        self._send_user_message(message)

    def login(self, now: float, timeout: float = 10.0) -> None:
        self._advance(now)
        self._start_http(
            "POST", "/api/login", [("X-Api-Key", "k")], b"{}", now=now, timeout=timeout
        )

    def cancel_login(self) -> None:
        self._cancel_http()

    def set_dialect_timer(self, deadline: float) -> None:
        self._set_timer("stub-timer", deadline)

    def _on_websocket_message(self, data: str | bytes, now: float) -> None:
        if data == "ready":
            self._session_ready(now)
            self._accept_user_messages()
        elif data == "again":
            self._session_ready(now)  # a buggy dialect: not possible in OPEN
        elif data == "fatal":
            self._protocol_error("stub", "fatal message", now, 1008)
        elif data == "odd":
            self._protocol_error("stub", "odd message", now, None)
        else:
            self.log.append(("message", data))

    def _wrap_outgoing(self, message: str | bytes) -> str | bytes:
        return f"[{message!s}]"

    def _on_timer(self, name: str, now: float) -> None:
        self.log.append(("timer", name, now))

    def _on_http_response(self, response: HttpResponse, now: float) -> None:
        self.log.append(("http", response.status_code, response.body, now))

    def _on_http_failed(self, reason: str, now: float) -> None:
        self.log.append(("http failed", reason, now))

    def _on_connection_lost(self, now: float) -> None:
        self.log.append(("lost", now))


def stub(http: HttpResponder | None = None, **kwargs: Any) -> tuple[Stub, Harness[Stub]]:
    client = Stub(config(**kwargs))
    return client, Harness(client, http=http)


# ================================================================ basics


def test_initial_state_and_outputs() -> None:
    client = WebSocketClient(config())
    assert client.state is S.IDLE
    assert not client.is_open
    assert client.usage == Usage(0, 0, 0, 0)
    assert client.next_event() is None
    assert client.next_command() is None
    assert client.get_timer() is None
    assert client.config.url == "ws://example.com/ws"


def test_connect_dials_and_opens() -> None:
    h = plain()
    h.client.connect(0.0)
    assert h.client.state is S.CONNECTING
    assert h.client.get_timer() == 5.0
    h.pump()
    assert h.commands[0] == OPEN_SOCKET
    assert h.events() == [Connected(handshake_of(h))]
    assert state(h) is S.OPEN
    assert h.client.is_open
    assert h.client.get_timer() == 20.0  # the ping; the connect timer is gone


def test_tls_dial() -> None:
    client = WebSocketClient(config(url="wss://example.com:8443/x"))
    client.connect(0)
    assert client.next_command() == OpenTransport(
        Channel.SOCKET, "example.com", 8443, True, "example.com"
    )


def test_connect_is_idempotent_while_live() -> None:
    h = opened()
    count = len(h.commands)
    h.client.connect(h.now)
    h.pump()
    assert len(h.commands) == count
    assert h.events() == []


def test_transitions_table() -> None:
    T = Trigger  # noqa: N806
    live = (S.CONNECTING, S.HANDSHAKING, S.OPENING, S.OPEN)
    assert dict(TRANSITIONS) == {
        (S.IDLE, T.CONNECT): S.CONNECTING,
        (S.CLOSED, T.CONNECT): S.CONNECTING,
        (S.CONNECTING, T.TRANSPORT_OPENED): S.HANDSHAKING,
        (S.HANDSHAKING, T.HANDSHAKE_ACCEPTED): S.OPENING,
        (S.OPENING, T.SESSION_READY): S.OPEN,
        **{(state, T.LOST_WILL_RETRY): S.BACKOFF for state in live},
        **{(state, T.LOST_GIVING_UP): S.CLOSED for state in live},
        (S.BACKOFF, T.BACKOFF_ELAPSED): S.CONNECTING,
        **{(state, T.RECONNECT): S.CONNECTING for state in (*live, S.BACKOFF, S.CLOSING)},
        (S.CONNECTING, T.DISCONNECT): S.CLOSED,
        (S.HANDSHAKING, T.DISCONNECT): S.CLOSED,
        (S.BACKOFF, T.DISCONNECT): S.CLOSED,
        (S.OPENING, T.DISCONNECT): S.CLOSING,
        (S.OPEN, T.DISCONNECT): S.CLOSING,
        (S.CLOSING, T.CLOSE_DONE): S.CLOSED,
    }


def test_dialect_bug_in_a_transition_raises() -> None:
    _, h = stub()
    h.connect_and_open()
    h.server.send("ready")
    h.pump()
    h.server.send("again")
    with pytest.raises(LocalProtocolError, match="'dialect ready' is not possible in state 'open'"):
        h.pump()


# ================================================================ the reconnect schedule


def run_failing_dials(h: Harness[Any]) -> tuple[list[float], list[Event]]:
    """Fail every dial at once; return the times of the dials and the events."""
    dials: list[float] = []
    h.client.connect(h.now)
    while True:
        h.pump()
        dials.append(h.now)
        h.fail_socket("refused")
        deadline = h.client.get_timer()
        if deadline is None:
            return dials, h.events()
        h.advance_to(deadline)


def test_octoprint_reconnect_timetable() -> None:
    h = Harness(WebSocketClient(config()), auto_open=False)
    dials, events = run_failing_dials(h)
    assert dials == [0, 1, 2, 4, 7, 12, 20, 33, 53, 93, 193]
    # Each failed dial is released with CloseTransport, like any transport.
    assert h.commands == [OPEN_SOCKET, CLOSE_SOCKET] * 11
    expected: list[Event] = []
    for attempt, delay in enumerate([1, 1, 2, 3, 5, 8, 13, 20, 40, 100], start=1):
        expected += [ConnectFailed("refused"), ReconnectScheduled(attempt, delay)]
    assert events == [*expected, ConnectFailed("refused"), ReconnectFailed(10)]
    assert h.client.state is S.CLOSED
    assert h.client.get_timer() is None


def test_schedule_resets_after_a_successful_open() -> None:
    h = Harness(WebSocketClient(config()), auto_open=False)
    h.client.connect(0)
    for _ in range(3):
        h.pump()
        h.fail_socket("refused")
        h.advance_to(h.client.get_timer() or 0)
    assert h.now == 4.0
    h.events()
    h.open_socket()
    assert [type(e) for e in h.events()] == [Connected]
    h.server_eof()
    assert h.events() == [
        Disconnected(1006, "the server closed the connection"),
        ReconnectScheduled(1, 1.0),
    ]
    assert h.client.get_timer() == 5.0


def test_connect_after_giving_up_starts_a_fresh_schedule() -> None:
    h = Harness(WebSocketClient(config(reconnect=ReconnectSchedule.fixed(2, 1))), auto_open=False)
    dials, events = run_failing_dials(h)
    assert dials == [0, 2]
    assert events[-1] == ReconnectFailed(1)
    h.client.connect(h.now)
    h.pump()
    h.fail_socket("refused")
    assert h.events() == [ConnectFailed("refused"), ReconnectScheduled(1, 2.0)]


def test_never_reconnect() -> None:
    h = Harness(WebSocketClient(config(reconnect=ReconnectSchedule.never())), auto_open=False)
    dials, events = run_failing_dials(h)
    assert (dials, events) == ([0], [ConnectFailed("refused"), ReconnectFailed(0)])


def test_jitter_is_within_bounds_and_deterministic() -> None:
    schedule = ReconnectSchedule(jitter=0.5)

    def run() -> tuple[list[float], list[Event]]:
        client = WebSocketClient(config(reconnect=schedule, entropy=SeededEntropy("jitter")))
        return run_failing_dials(Harness(client, auto_open=False))

    dials, events = run()
    assert (dials, events) == run()
    delays = [e.delay for e in events if isinstance(e, ReconnectScheduled)]
    twin = SeededEntropy("jitter")  # no handshake happened: jitter is all the entropy used
    expected = [d * (1 + 0.5 * (2 * uniform(twin) - 1)) for d in schedule.delays]
    assert delays == expected
    assert all(0.5 * d <= got <= 1.5 * d for d, got in zip(schedule.delays, delays, strict=True))
    assert delays != list(schedule.delays)
    assert dials == [sum(delays[:i]) for i in range(11)]


# ================================================================ timers


def test_connect_timeout_closes_and_retries() -> None:
    h = Harness(WebSocketClient(config()), auto_open=False)
    h.client.connect(0)
    h.pump()
    h.advance_to(4.999)
    assert (h.events(), h.commands) == ([], [OPEN_SOCKET])
    h.advance_to(5.0)
    assert h.commands == [OPEN_SOCKET, CLOSE_SOCKET]
    assert h.events() == [
        ConnectFailed("connect timeout (5.0 s)", timed_out=True),
        ReconnectScheduled(1, 1.0),
    ]
    h.open_socket()  # a stale report about the abandoned transport
    assert (h.events(), h.client.state) == ([], S.BACKOFF)
    h.advance_to(6.0)
    assert h.commands[-1] == OPEN_SOCKET
    assert h.client.get_timer() == 11.0


def test_connect_timeout_during_the_handshake() -> None:
    h = Harness(WebSocketClient(config(connect_timeout=2.5)), answer=no_answer)
    h.connect_and_open()
    assert h.client.state is S.HANDSHAKING
    h.advance(2.5)
    assert h.commands[-1] == CLOSE_SOCKET
    assert h.events() == [
        ConnectFailed("connect timeout (2.5 s)", timed_out=True),
        ReconnectScheduled(1, 1.0),
    ]


def test_no_connect_timeout() -> None:
    h = Harness(WebSocketClient(config(connect_timeout=None)), auto_open=False)
    h.client.connect(0)
    assert h.client.get_timer() is None


def test_ping_after_silence_and_pong_rearms() -> None:
    h = opened()
    h.server.auto_pong = False
    h.advance_to(19.9)
    assert h.server.received == []
    h.advance_to(20.0)
    assert h.server.received == [("ping", b"")]
    assert h.client.get_timer() == 30.0  # the dead-link timer, armed at the handshake
    h.advance_to(25.0)
    h.server.send_pong(b"")
    h.pump()
    assert h.client.get_timer() == 45.0  # both re-armed by the pong
    h.advance_to(44.0)
    h.server.send("still here")
    h.pump()
    assert h.events() == [TextMessage("still here")]
    assert h.client.get_timer() == 64.0
    h.advance_to(64.0)
    assert h.server.received == [("ping", b""), ("ping", b"")]
    assert h.client.get_timer() == 74.0


def test_ping_is_repeated_while_the_server_only_answers_pings() -> None:
    h = opened()
    h.advance_to(100.0)  # the peer pongs each ping, so the link stays up
    assert h.server.received == [("ping", b"")] * 5
    assert h.client.is_open
    assert h.client.get_timer() == 120.0


def test_dead_link_closes_and_reconnects() -> None:
    h = opened()
    h.server.auto_pong = False
    h.advance_to(30.0)
    assert h.server.received == [("ping", b""), ("close", 1001, "dead link")]
    assert h.commands[-1] == CLOSE_SOCKET
    assert h.events() == [
        Disconnected(1006, "dead link: nothing received for 30.0 s"),
        ReconnectScheduled(1, 1.0),
    ]
    h.advance_to(31.0)
    assert [type(e) for e in h.events()] == [Connected]
    assert len(h.servers) == 2


def test_no_ping_and_no_dead_link() -> None:
    h = opened(ping_interval=None, dead_link_timeout=None)
    assert h.client.get_timer() is None
    h.advance(1e6)
    assert h.client.is_open


def test_handle_timer_early_does_nothing_and_due_timers_fire_in_order() -> None:
    client, h = stub()
    h.connect_and_open()
    client.set_dialect_timer(3.0)
    assert client.get_timer() == 3.0
    client.handle_timer(2.9)
    assert (client.log, client.next_command()) == ([], None)
    h.now = 6.0
    client.handle_timer(6.0)  # the dialect timer (3.0), then the connect timeout (5.0)
    h.pump()
    assert client.log == [("timer", "stub-timer", 6.0), ("lost", 6.0)]
    assert h.events() == [
        ConnectFailed("connect timeout (5.0 s)", timed_out=True),
        ReconnectScheduled(1, 1.0),
    ]


# ================================================================ closing


def test_user_disconnect_close_handshake() -> None:
    h = opened()
    h.client.disconnect(h.now, reason="bye")
    assert h.client.state is S.CLOSING
    assert not h.client.is_open
    assert h.client.get_timer() == 5.0  # the close timeout, nothing else
    h.pump()
    assert h.server.received == [("close", 1001, "bye")]  # WebSocketClient: 1001 by default
    assert h.commands[-1] == CLOSE_SOCKET
    assert h.events() == [Disconnected(1001, "bye")]
    assert state(h) is S.CLOSED
    assert h.client.get_timer() is None


def test_close_timeout() -> None:
    h = opened()
    h.server.auto_close = False
    h.client.disconnect(h.now, code=4001)
    h.pump()
    h.advance(4.9)
    assert h.events() == []
    h.advance(0.1)
    assert h.commands[-1] == CLOSE_SOCKET
    assert h.events() == [Disconnected(4001, "")]
    assert h.client.state is S.CLOSED


@pytest.mark.parametrize(
    "end",
    ["eof", "failed", "bad frame"],
)
def test_closing_ends_on_eof_failure_or_bad_input(end: str) -> None:
    h = opened()
    h.server.auto_close = False
    h.client.disconnect(h.now, code=1000, reason="done")
    h.pump()
    sent = len(h.commands)
    if end == "eof":
        h.server_eof()
    elif end == "failed":
        h.fail_socket("reset")
    else:
        h.server.send_raw(server_frame(0x3, b""))
        h.pump()
    events = h.events()
    assert events[-1] == Disconnected(1000, "done")
    assert events[:-1] == (
        [ProtocolError("websocket", "Invalid opcode 0x3")] if end == "bad frame" else []
    )
    assert h.client.state is S.CLOSED
    assert h.client.get_timer() is None
    assert socket_bytes(h.commands[sent:]) == b""  # nothing after our close frame
    assert h.server.received == [("close", 1000, "done")]


def test_closing_ignores_messages_and_pings() -> None:
    h = opened()
    h.server.auto_close = False
    h.client.disconnect(h.now)
    h.pump()
    h.server.send("late")
    h.server.send_ping(b"?")
    h.pump()
    assert h.events() == []
    assert h.server.received == [("close", 1001, "")]  # no pong after our close frame
    assert h.client.get_timer() == 5.0  # input does not re-arm the link timers
    h.server.send_close(1001, "")
    h.pump()
    assert h.events() == [Disconnected(1001, "")]


@pytest.mark.parametrize(
    ("code", "reason", "echo"),
    [
        (1000, "normal", 1000),
        (1001, "going away", 1001),
        (1011, "internal error", 1011),
        (1012, "", 1012),
        (3000, "unauthorized", 3000),
        (4000, "app", 4000),
        (None, "", 1000),
    ],
)
def test_server_close_codes(code: int | None, reason: str, echo: int) -> None:
    h = opened()
    h.server.send_close(code, reason)
    h.pump()
    assert h.server.received == [("close", echo, "")]
    assert h.commands[-1] == CLOSE_SOCKET
    assert h.events() == [
        Disconnected(1005 if code is None else code, reason),
        ReconnectScheduled(1, 1.0),
    ]
    assert h.client.state is S.BACKOFF
    h.advance(1.0)
    assert [type(e) for e in h.events()] == [Connected]


def test_server_eof_and_transport_failure_while_open() -> None:
    h = opened()
    h.fail_socket("connection reset")
    assert h.commands[-1] == CLOSE_SOCKET  # released like any other transport
    assert h.events() == [Disconnected(1006, "connection reset"), ReconnectScheduled(1, 1.0)]
    h.client.transport_failed("again", h.now)  # stale
    h.client.receive_eof(h.now)  # stale
    assert h.events() == []


def test_eof_before_the_transport_opened() -> None:
    h = Harness(WebSocketClient(config()), auto_open=False)
    h.client.connect(0)
    h.pump()
    h.server_eof()
    assert h.events() == [
        ConnectFailed("the server closed the connection"),
        ReconnectScheduled(1, 1.0),
    ]


def test_eof_during_the_handshake() -> None:
    h = Harness(WebSocketClient(config()), answer=no_answer)
    h.connect_and_open()
    h.server_eof()
    detail = (
        "malformed HTTP response: can't handle event type ConnectionClosed when"
        " role=SERVER and state=SEND_RESPONSE"
    )
    assert h.events() == [
        ProtocolError("http", detail),
        ConnectFailed(detail),
        ReconnectScheduled(1, 1.0),
    ]


# ================================================================ disconnect(), reconnect() anytime


def to_state(state: SessionState) -> Harness[WebSocketClient]:
    h = Harness(WebSocketClient(config()), auto_open=state is not S.CONNECTING)
    if state is S.HANDSHAKING:
        h.answer = no_answer
    if state is not S.IDLE:
        h.connect_and_open()
    if state is S.BACKOFF:
        h.server_eof()
    elif state is S.CLOSING:
        h.server.auto_close = False
        h.client.disconnect(h.now, code=4000, reason="leaving")
        h.pump()
    elif state is S.CLOSED:
        h.client.disconnect(h.now)
        h.pump()
    h.events()
    assert h.client.state is state
    return h


@pytest.mark.parametrize(
    ("state", "commands", "events"),
    [
        (S.IDLE, [], []),
        (S.CONNECTING, [CLOSE_SOCKET], [Disconnected(1001, "")]),
        (S.HANDSHAKING, [CLOSE_SOCKET], [Disconnected(1001, "")]),
        (S.BACKOFF, [], [Disconnected(1001, "")]),
        (S.CLOSING, [], []),
        (S.CLOSED, [], []),
    ],
)
def test_disconnect_in_every_state(
    state: SessionState, commands: list[Command], events: list[Event]
) -> None:
    h = to_state(state)
    before = len(h.commands)
    h.client.disconnect(h.now)
    h.pump()
    assert h.commands[before:] == commands
    assert h.events() == events
    expected_state = S.IDLE if state is S.IDLE else S.CLOSING if state is S.CLOSING else S.CLOSED
    assert h.client.state is expected_state
    assert h.client.get_timer() == (5.0 if state is S.CLOSING else None)
    h.advance(1000)
    assert len(h.commands) == before + len(commands) + (state is S.CLOSING)


def kinds(commands: list[Command]) -> list[str]:
    return [type(c).__name__ for c in commands]


@pytest.mark.parametrize(
    ("state", "before_dial", "ended"),
    [
        (S.IDLE, [], []),
        (S.CONNECTING, ["CloseTransport"], []),
        (S.HANDSHAKING, ["CloseTransport"], []),
        # A close frame first; the session that was open ends for the user.
        (S.OPEN, ["SendData", "CloseTransport"], [Disconnected(1000, "reconnect() was called")]),
        (S.BACKOFF, [], []),
        # Our close frame is already out: no second one, and the Disconnected
        # that the close handshake owed comes now, with the user's code and reason.
        (S.CLOSING, ["CloseTransport"], [Disconnected(4000, "leaving")]),
        (S.CLOSED, [], []),
    ],
)
def test_reconnect_in_every_state(
    state: SessionState, before_dial: list[str], ended: list[Event]
) -> None:
    h = to_state(state)
    h.auto_open, h.answer = True, Accept()
    before = len(h.commands)
    h.client.reconnect(h.now)
    assert h.events() == ended  # before the new dial's outcome
    h.pump()
    assert kinds(h.commands[before:]) == [*before_dial, "OpenTransport", "SendData"]
    if len(h.servers) > 1:
        old = h.servers[-2].received
        assert old == {
            S.OPEN: [("close", 1000, "reconnecting")],
            S.CLOSING: [("close", 4000, "leaving")],
            S.CLOSED: [("close", 1001, "")],  # from disconnect() while open
        }.get(state, [])
    assert h.events() == [Connected(handshake_of(h))]
    assert h.client.state is S.OPEN
    assert h.client.get_timer() == h.now + 20.0
    h.advance(1000)  # the old connection's close timer is gone too
    assert Disconnected(4000, "leaving") not in h.events()


def test_reconnect_in_opening_ends_the_dialect_session_and_reports_nothing() -> None:
    client, h = stub()
    h.connect_and_open()
    assert client.state is S.OPENING
    client.set_dialect_timer(3.0)
    client.reconnect(h.now)
    assert h.events() == []  # no session was up: nothing ended for the user
    assert client.log == [("lost", 0.0)]
    h.pump()
    assert h.servers[0].received == [("close", 1000, "reconnecting")]
    assert client.state is S.OPENING
    assert client.get_timer() == 5.0  # the new connect timeout; the dialect timer is gone
    h.server.send("ready")
    h.pump()
    assert h.events() == [Connected(handshake_of(h))]
    h.advance(10.0)
    assert client.log == [("lost", 0.0)]


def test_reconnect_resets_the_attempt_counter() -> None:
    h = Harness(WebSocketClient(config()), auto_open=False)
    h.client.connect(0)
    h.pump()
    h.fail_socket()
    h.advance(1)
    h.fail_socket()
    assert h.events()[-1] == ReconnectScheduled(2, 1.0)
    h.client.reconnect(h.now)
    h.pump()
    h.fail_socket()
    assert h.events() == [ConnectFailed("connection refused"), ReconnectScheduled(1, 1.0)]


def test_disconnect_in_opening_and_connect_timeout_with_an_open_websocket() -> None:
    client, h = stub()
    h.connect_and_open()
    assert client.state is S.OPENING
    client.disconnect(h.now, code=3001, reason="r")
    assert client.log == [("lost", 0.0)]  # the session ended for the dialect at once
    assert client.get_timer() == 5.0  # the close timeout; the connect timeout is gone
    h.pump()
    assert h.server.received == [("close", 3001, "r")]
    assert h.events() == [Disconnected(3001, "r")]
    assert client.log == [("lost", 0.0)]  # once: the close handshake only drops the transport
    client.connect(h.now)
    h.pump()
    assert client.state is S.OPENING
    h.advance(5.0)
    assert h.server.received == [("close", 1000, "connect timeout")]
    assert h.events() == [
        ConnectFailed("connect timeout (5.0 s)", timed_out=True),
        ReconnectScheduled(1, 1.0),
    ]


def test_disconnect_ends_the_dialect_session_at_once_and_the_transport_later() -> None:
    client, h = stub(ping_interval=2.0)
    h.connect_and_open()
    h.server.send("ready")
    h.pump()
    h.events()
    client.set_dialect_timer(3.0)
    client.login(h.now)  # an HTTP request in flight (no responder: it stays pending)
    h.pump()
    h.server.auto_close = False  # the server is slow to answer our close
    before = len(h.commands)
    client.disconnect(h.now, code=4002, reason="done")
    # At once: the HTTP request is cancelled, the dialect hears the session is
    # over, every timer but the close timeout is gone, and sends are refused.
    assert client.log == [("lost", 0.0)]
    assert client.get_timer() == 5.0
    assert client.state is S.CLOSING
    with pytest.raises(NotConnectedError, match="the session is closed"):
        client.send("late")
    h.pump()
    assert h.commands[before:] == [
        CLOSE_HTTP,
        SendData(Channel.SOCKET, socket_bytes(h.commands[before:])),
    ]
    assert h.server.received == [("close", 4002, "done")]
    assert h.events() == []
    # A late answer on the cancelled HTTP transport is ignored.
    client.transport_opened(h.now, channel=Channel.HTTP)
    client.receive_data(reply("200 OK"), h.now, channel=Channel.HTTP)
    assert client.next_command() is None
    # The transport lives until the server answers the close; no dialect
    # timer, ping or HTTP timeout fires meanwhile.
    h.advance(4.0)
    assert (h.events(), client.log) == ([], [("lost", 0.0)])
    assert h.server.received == [("close", 4002, "done")]
    assert h.socket_live
    h.server.send_close(4002, "done")
    h.pump()
    assert h.commands[-1] == CLOSE_SOCKET
    assert h.events() == [Disconnected(4002, "done")]
    assert client.log == [("lost", 0.0)]  # not a second time
    assert state(h) is S.CLOSED
    assert client.get_timer() is None


# ================================================================ sending and the queue


def test_send_while_open() -> None:
    h = opened()
    h.client.send("text")
    h.client.send(b"\x00bin")
    h.pump()
    assert h.server.received == [("text", "text"), ("binary", b"\x00bin")]


def test_queue_while_disconnected_is_flushed_in_order_after_open() -> None:
    h = Harness(WebSocketClient(config()), auto_open=False)
    h.client.send("before connect")  # IDLE queues too
    h.client.connect(0)
    h.client.send("connecting")
    h.pump()
    h.fail_socket()
    h.client.send(b"backoff")
    h.advance(1.0)
    h.open_socket()
    assert [type(e) for e in h.events()] == [ConnectFailed, ReconnectScheduled, Connected]
    assert h.server.received == [
        ("text", "before connect"),
        ("text", "connecting"),
        ("binary", b"backoff"),
    ]
    h.client.send("after")
    h.pump()
    assert h.server.received[-1] == ("text", "after")


def test_queue_is_bounded() -> None:
    h = Harness(WebSocketClient(config(max_queued_messages=2)), auto_open=False)
    h.client.connect(0)
    h.client.send("1")
    h.client.send("2")
    with pytest.raises(SendQueueFullError, match="2 messages are already queued"):
        h.client.send("3")
    h.pump()
    h.open_socket()
    assert h.server.received == [("text", "1"), ("text", "2")]


def test_queue_survives_a_reconnect_and_is_handed_back_on_give_up() -> None:
    h = Harness(WebSocketClient(config(reconnect=ReconnectSchedule.fixed(1, 1))), auto_open=False)
    h.client.connect(0)
    h.client.send("a")
    h.client.send(b"b")
    h.pump()
    h.fail_socket()
    h.advance(1)
    h.fail_socket()
    assert h.events() == [
        ConnectFailed("connection refused"),
        ReconnectScheduled(1, 1.0),
        ConnectFailed("connection refused"),
        ReconnectFailed(1),
        SendFailed(("a", b"b"), "the reconnect schedule is exhausted"),
    ]
    with pytest.raises(NotConnectedError, match="the session is closed; call connect"):
        h.client.send("c")


def test_queue_is_handed_back_on_disconnect() -> None:
    h = to_state(S.BACKOFF)
    h.client.send("x")
    h.client.disconnect(h.now)
    assert h.events() == [SendFailed(("x",), "disconnect() was called"), Disconnected(1001, "")]


def test_send_while_closing_raises() -> None:
    h = to_state(S.CLOSING)
    with pytest.raises(NotConnectedError):
        h.client.send("x")


def test_queueing_disabled() -> None:
    h = Harness(WebSocketClient(config(queue_while_disconnected=False)), auto_open=False)
    h.client.connect(0)
    with pytest.raises(NotConnectedError, match="queue_while_disconnected is off"):
        h.client.send("x")
    assert h.client.state is S.CONNECTING


def test_dialect_wraps_and_accepts_later() -> None:
    client, h = stub()
    client.send("early")
    h.connect_and_open()
    assert client.state is S.OPENING
    assert h.server.received == []  # held until the dialect says the session is ready
    h.server.send("ready")
    h.pump()
    assert h.events() == [Connected(handshake_of(h))]
    client.send("late")
    h.pump()
    assert h.server.received == [("text", "[early]"), ("text", "[late]")]


# ================================================================ limits and bad input


@pytest.mark.parametrize(
    ("frames", "size"),
    [
        (server_frame(0x1, b"a" * 101), 101),
        (server_frame(0x2, b"a" * 101), 101),
        (server_frame(0x1, b"a" * 60, fin=False) + server_frame(0x0, b"a" * 60), 120),
    ],
)
def test_max_message_size(frames: bytes, size: int) -> None:
    h = opened(max_message_size=100)
    h.server.send("a" * 100)
    h.server.send_raw(frames)
    h.pump()
    assert h.events() == [
        TextMessage("a" * 100),
        LimitExceeded("max_message_size", size, 100),
        ProtocolError("websocket", "message exceeds max_message_size"),
        Disconnected(1009, "message exceeds max_message_size"),
        ReconnectScheduled(1, 1.0),
    ]
    assert h.server.received == [("close", 1009, "message exceeds max_message_size")]


def test_max_message_size_compressed() -> None:
    client = WebSocketClient(config(max_message_size=100, compression=True))
    h = Harness(client, answer=Accept(deflate=PerMessageDeflate))
    h.connect_and_open()
    h.server.send(b"\x00" * 100)
    h.server.send(b"\x00" * 500)
    h.pump()
    assert h.events() == [
        BinaryMessage(b"\x00" * 100),
        LimitExceeded("max_message_size", 101, 100),
        ProtocolError("websocket", "message exceeds max_message_size"),
        Disconnected(1009, "message exceeds max_message_size"),
        ReconnectScheduled(1, 1.0),
    ]


@pytest.mark.parametrize("chunk_size", [None, 100])
def test_max_http_response_size_on_the_handshake(chunk_size: int | None) -> None:
    answer = Accept(headers=[("X-Padding", "p" * 300)])
    h = Harness(WebSocketClient(config(max_http_response_size=200)), answer=answer)
    h.chunk_size = chunk_size
    events = h.connect_and_open()
    # Whole, the head is measured (442 bytes); in pieces, h11 stops it at the third.
    size = 300 if chunk_size else 442
    assert len(h.fed) == size
    detail = "HTTP response head exceeds 200 bytes"
    assert events == [
        LimitExceeded("max_http_response_size", size, 200),
        ProtocolError("http", detail),
        ConnectFailed(detail),
        ReconnectScheduled(1, 1.0),
    ]
    assert h.commands[-1] == CLOSE_SOCKET


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b"\x00\x01garbage\r\n\r\n", "illegal status line: bytearray(b'\\x00\\x01garbage')"),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "illegal status line: bytearray(b'SSH-2.0-OpenSSH_9.6')"),
    ],
)
def test_garbage_instead_of_http(raw: bytes, detail: str) -> None:
    h = Harness(WebSocketClient(config()), answer=lambda request: raw)
    detail = f"malformed HTTP response: {detail}"
    assert h.connect_and_open() == [
        ProtocolError("http", detail),
        ConnectFailed(detail),
        ReconnectScheduled(1, 1.0),
    ]
    assert h.commands[-1] == CLOSE_SOCKET


def test_refused_upgrade_with_a_body() -> None:
    answer = Reject(403, b"forbidden here", [("Content-Type", "text/plain")])
    h = Harness(WebSocketClient(config()), answer=answer)
    handshake = HandshakeResponse(
        403,
        "",
        "1.1",
        (("content-type", "text/plain"), ("transfer-encoding", "chunked")),
        body=b"forbidden here",  # the server's explanation reaches the user
    )
    assert h.connect_and_open() == [
        ConnectFailed("the server answered the upgrade with 403", handshake=handshake),
        ReconnectScheduled(1, 1.0),
    ]
    assert h.commands[-1] == CLOSE_SOCKET


@pytest.mark.parametrize(
    ("header", "detail"),
    [
        (
            "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "wrong Sec-WebSocket-Accept in the 101 response",
        ),
        ("Sec-WebSocket-Protocol: chat", "the server chose a subprotocol we did not offer: 'chat'"),
        (
            "Sec-WebSocket-Extensions: permessage-deflate",
            "the server accepted extensions we did not offer: ['permessage-deflate']",
        ),
    ],
)
def test_bad_101(header: str, detail: str) -> None:
    def answer(request: Request) -> bytes:
        if header.startswith("Sec-WebSocket-Accept"):  # instead of the right one
            return handshake_101(request).replace(b"Sec-WebSocket-Accept", b"X-Was")[:-2] + (
                header.encode() + b"\r\n\r\n"
            )
        return handshake_101(request, header)

    h = Harness(WebSocketClient(config()), answer=answer)
    events = h.connect_and_open()
    assert h.server.request is not None
    good = ("sec-websocket-accept", accept_key(h.server.request))
    name, value = header.lower().split(": ")[0], header.split(": ")[1]
    headers = (
        (("x-was", good[1]), (name, value))
        if name == "sec-websocket-accept"
        else (good, (name, value))
    )
    handshake = HandshakeResponse(
        101,
        "Switching Protocols",
        "1.1",
        (("upgrade", "websocket"), ("connection", "Upgrade"), *headers),
    )
    assert events == [ConnectFailed(detail, handshake=handshake), ReconnectScheduled(1, 1.0)]
    assert h.commands[-1] == CLOSE_SOCKET


def test_101_missing_headers() -> None:
    h = Harness(
        WebSocketClient(config()), answer=lambda r: b"HTTP/1.1 101 Switching Protocols\r\n\r\n"
    )
    events = h.connect_and_open()
    assert events == [
        ConnectFailed(
            "101 response without 'Upgrade: websocket'",
            handshake=HandshakeResponse(101, "Switching Protocols", "1.1", ()),
        ),
        ReconnectScheduled(1, 1.0),
    ]


@pytest.mark.parametrize(
    ("frame", "code", "detail"),
    [
        (server_frame(0x1, b"\xc3\x28"), 1007, "'utf-8' codec can't decode byte 0xc3"),
        (
            server_frame(0x1, b"hi", mask=b"\x01\x02\x03\x04"),
            1002,
            "client received unexpected masked frame",
        ),
        (server_frame(0xB, b""), 1002, "Invalid opcode 0xb"),
        (server_frame(0x2, b"x", rsv1=True), 1002, "Reserved bit set unexpectedly"),
        (server_frame(0x8, b"\x03"), 1002, "CLOSE with 1 byte payload"),
    ],
)
def test_bad_frames(frame: bytes, code: int, detail: str) -> None:
    h = opened()
    h.server.send_raw(frame)
    h.pump()
    events = h.events()
    assert [type(e) for e in events] == [ProtocolError, Disconnected, ReconnectScheduled]
    assert isinstance(events[0], ProtocolError)
    assert events[0].layer == "websocket"
    assert events[0].detail.startswith(detail)
    assert events[1] == Disconnected(code, events[0].detail)
    assert h.server.received == [("close", code, events[0].detail[:100])]


def test_server_ping_is_answered_and_pong_needs_nothing() -> None:
    h = opened()
    h.server.send_ping(b"abc")
    h.server.send_pong(b"unsolicited")
    h.pump()
    assert h.server.received == [("pong", b"abc")]
    assert h.events() == []


def test_greeting_right_after_the_101() -> None:
    h = Harness(WebSocketClient(config()), answer=Accept(greeting=["hello", b"\x01"]))
    h.chunk_size = 1000  # all in one piece: the messages are trailing data of the 101
    assert h.connect_and_open()[1:] == [TextMessage("hello"), BinaryMessage(b"\x01")]


def test_chunked_delivery() -> None:
    h = Harness(WebSocketClient(config()), answer=Accept(greeting=["hello"]))
    h.chunk_size = 1
    assert h.connect_and_open()[1:] == [TextMessage("hello")]


def test_dialect_protocol_errors() -> None:
    client, h = stub()
    h.connect_and_open()
    h.server.send("odd")
    h.server.send("fatal")
    h.server.send("never seen")  # same batch as "fatal": dropped with the connection
    h.pump()
    assert h.events() == [
        ProtocolError("stub", "odd message"),
        ProtocolError("stub", "fatal message"),
        ConnectFailed("fatal message"),
        ReconnectScheduled(1, 1.0),
    ]
    assert h.server.received == [("close", 1008, "fatal message")]
    assert ("message", "never seen") not in client.log


def test_dialect_ends_the_connection_in_the_greeting() -> None:
    client, h = stub()
    h.answer = Accept(greeting=["fatal", "never seen"])
    assert h.connect_and_open() == [
        ProtocolError("stub", "fatal message"),
        ConnectFailed("fatal message"),
        ReconnectScheduled(1, 1.0),
    ]
    assert client.log == [("lost", 0.0)]


def test_a_fault_after_the_dialect_ended_the_connection_is_not_reported() -> None:
    _, h = stub()
    h.connect_and_open()
    h.server.send("fatal")
    h.server.send_raw(server_frame(0x3, b""))  # in the same chunk: moot
    h.pump()
    assert h.events() == [
        ProtocolError("stub", "fatal message"),
        ConnectFailed("fatal message"),
        ReconnectScheduled(1, 1.0),
    ]
    assert h.server.received == [("close", 1008, "fatal message")]


def test_messages_before_a_bad_frame_in_the_same_chunk_are_delivered() -> None:
    def run(chunk_size: int | None) -> list[Event]:
        h = opened()
        h.chunk_size = chunk_size
        h.server.send("one")
        h.server.send_ping(b"p")
        h.server.send(b"two")
        h.server.send_raw(server_frame(0x3, b""))
        h.pump()
        assert h.server.received == [("pong", b"p"), ("close", 1002, "Invalid opcode 0x3")]
        return h.events()

    assert (
        run(None)
        == run(1)
        == [
            TextMessage("one"),
            BinaryMessage(b"two"),
            ProtocolError("websocket", "Invalid opcode 0x3"),
            Disconnected(1002, "Invalid opcode 0x3"),
            ReconnectScheduled(1, 1.0),
        ]
    )


def test_dialect_ends_the_connection_at_open() -> None:
    class Picky(Stub):
        def _on_websocket_open(self, now: float) -> None:
            self._protocol_error("stub", "no thanks", now, 1008)

    client = Picky(config())
    h = Harness(client, answer=Accept(greeting=["hello"]))
    h.chunk_size = 1000
    assert h.connect_and_open() == [
        ProtocolError("stub", "no thanks"),
        ConnectFailed("no thanks"),
        ReconnectScheduled(1, 1.0),
    ]
    assert client.log == [("lost", 0.0)]
    assert client._address_info.host == "example.com"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=40),
            st.sampled_from(
                [
                    server_frame(0x1, b"ok"),
                    server_frame(0x1, b"par", fin=False),
                    server_frame(0x0, b"t"),
                    server_frame(0x9, b"p"),
                    server_frame(0x8, b"\x03\xe8"),
                    server_frame(0x2, b"\x00" * 200),
                ]
            ),
        ),
        max_size=8,
    ),
    st.sampled_from(["open", "handshake", "closing"]),
)
def test_nothing_the_server_sends_makes_the_client_raise(chunks: list[bytes], phase: str) -> None:
    h = Harness(
        WebSocketClient(config(max_message_size=100)),
        answer=no_answer if phase == "handshake" else Accept(),
    )
    h.connect_and_open()
    if phase == "closing":
        h.server.auto_close = False
        h.client.disconnect(h.now)
        h.pump()
    before = len(h.commands)
    for chunk in chunks:  # straight in: the peer is not involved
        h.client.receive_data(chunk, h.now)
    commands = []
    while (command := h.client.next_command()) is not None:
        commands.append(command)
    events = h.events()
    # Whatever happened, it ended at most one connection, cleanly: nothing
    # was written after the transport was closed, and the loss was reported once.
    closed = CLOSE_SOCKET in commands
    if closed:
        assert all(not isinstance(c, SendData) for c in commands[commands.index(CLOSE_SOCKET) :])
    endings = [e for e in events if isinstance(e, Disconnected | ConnectFailed)]
    assert len(endings) == int(closed)
    assert h.client.state in (
        (S.BACKOFF, S.CLOSED) if closed else (S.OPEN, S.HANDSHAKING, S.CLOSING)
    )
    assert before == len(h.commands)


# ================================================================ stale input and caller misuse


def test_input_about_a_closed_transport_is_ignored() -> None:
    h = to_state(S.BACKOFF)
    client = h.client
    client.transport_opened(h.now)
    client.receive_data(b"HTTP/1.1 101 OK\r\n\r\n", h.now)
    client.receive_eof(h.now)
    client.transport_failed("late", h.now)
    assert (h.events(), client.next_command(), client.state) == ([], None, S.BACKOFF)


def test_duplicate_transport_opened_and_empty_data_are_ignored() -> None:
    h = Harness(WebSocketClient(config()), answer=no_answer)
    h.connect_and_open()
    h.client.transport_opened(h.now)
    h.client.receive_data(b"", h.now)
    h.pump()
    assert h.commands == [OPEN_SOCKET, SendData(Channel.SOCKET, bytes(h.server.raw))]


def test_data_before_transport_opened_raises() -> None:
    client = WebSocketClient(config())
    client.connect(0)
    with pytest.raises(LocalProtocolError, match="data received before transport_opened"):
        client.receive_data(b"x", 0)
    assert client.state is S.CONNECTING
    assert client.usage.bytes_recv == 0


@pytest.mark.parametrize("now", [math.nan, math.inf, -math.inf, "1.0", None])
def test_now_must_be_a_finite_number(now: object) -> None:
    client = WebSocketClient(config())
    with pytest.raises(LocalProtocolError, match="now must be a finite number"):
        client.connect(now)  # type: ignore[arg-type]
    assert client.state is S.IDLE


def test_now_must_not_go_backwards() -> None:
    client = WebSocketClient(config())
    client.connect(10)
    with pytest.raises(LocalProtocolError, match=r"now went backwards: 9.5 < 10"):
        client.handle_timer(9.5)
    client.handle_timer(10)  # the same time again is fine
    assert client.next_command() == OPEN_SOCKET


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, -1])
def test_close_codes_that_may_not_be_sent(code: int) -> None:
    h = opened()
    with pytest.raises(LocalProtocolError, match=f"close code {code} may not be sent"):
        h.client.disconnect(h.now, code=code)
    assert h.client.state is S.OPEN


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1011, 1013, 3000, 4999])
def test_close_codes_that_may_be_sent(code: int) -> None:
    h = opened()
    h.client.disconnect(h.now, code=code)
    h.pump()
    assert h.server.received == [("close", code, "")]


@pytest.mark.parametrize(
    ("args"),
    [
        ("write", 1, 0.1),
        ("recv", 1, 0.1),  # receiving is timed by the core itself
        ("send", -1, 0.1),
        ("send", 1, -0.1),
        ("send", 1, math.nan),
        ("send", 1, math.inf),
    ],
)
def test_io_completed_refuses_bad_arguments(args: tuple[str, int, float]) -> None:
    h = opened()
    with pytest.raises(LocalProtocolError, match=r"io_completed\(.*expected 'send',"):
        h.client.io_completed(*args, h.now)
    assert h.client.usage.us_sent == h.client.usage.us_recv == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "ftp://example.com"}, "the scheme must be ws, wss, http or https"),
        ({"url": "ws://"}, "no host"),
        ({"headers": {"Host": "x"}}, "header 'Host' is set by the handshake itself"),
        ({"headers": [("Bad Header", "x")]}, "invalid header 'Bad Header'"),
        ({"headers": [("X-Ok", "line\nbreak")]}, "invalid header 'X-Ok'"),
    ],
)
def test_bad_config_raises_at_construction(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(LocalProtocolError, match=message):
        WebSocketClient(config(**kwargs))


# ================================================================ usage statistics and warnings


def test_byte_counters_are_exact() -> None:
    h = opened()
    request, response = bytes(h.server.raw), bytes(h.fed)
    assert (len(request), len(response)) == (152, 129)
    assert h.client.usage == Usage(152, 129)
    h.server.send("x" * 300)
    h.client.send(b"y" * 70_000)
    h.pump()
    assert h.client.usage == Usage(152 + 14 + 70_000, 129 + 4 + 300)
    assert h.client.usage.bytes_sent == len(socket_bytes(h.commands)) == len(h.server.raw)
    assert h.client.usage.bytes_recv == len(h.fed)
    h.client.clear_stats()
    assert h.client.usage == Usage()
    h.server.send("z")
    h.pump()
    assert h.client.usage == Usage(0, 3, 0, 0)


def test_bytes_are_counted_across_connections_until_cleared() -> None:
    h = opened()
    first = h.client.usage
    h.server_eof()
    h.advance(1.0)
    assert h.client.usage == Usage(first.bytes_sent * 2, first.bytes_recv * 2)


def test_io_completed_fills_the_microsecond_counters() -> None:
    h = opened()
    h.client.io_completed("send", 100, 0.0015, h.now)
    h.client.io_completed("send", 100, 0.25, h.now)
    receive_in_two_halves(h, 2048, seconds=2.0)
    usage = h.client.usage
    assert (usage.us_sent, usage.us_recv) == (251_500, 2_000_000)
    assert h.events() == [BinaryMessage(bytes(2048))]  # warnings are off by default
    h.client.clear_stats()
    assert h.client.usage == Usage()


def answer_101_now(h: Harness[Any]) -> None:
    """Let the peer (answer=no_answer) send its 101 only now."""
    assert h.server.request is not None
    h.server.send_raw(handshake_101(h.server.request))
    h.server.start_frames()
    h.pump()


def test_operation_warnings_for_connect_and_handshake() -> None:
    arg = {"who": "me"}
    client = WebSocketClient(config(warning_ms=200, warning_arg=arg))
    h = Harness(client, auto_open=False, answer=no_answer)
    client.connect(0)
    h.pump()
    h.advance_to(0.2)
    h.open_socket()  # dialled at 0, open at 0.2: exactly the threshold
    assert h.events() == [OperationWarning("connect", 200_000, 200, arg)]
    h.advance_to(0.3999)
    answer_101_now(h)  # 199.9 ms after the request: just under it
    assert h.events() == [Connected(handshake_of(h))]
    h.server_eof()
    h.advance_to(1.3999)  # the redial is at 1.3999 and opens at once: no connect warning
    h.open_socket()
    h.advance_to(1.6)
    answer_101_now(h)
    assert h.events() == [
        Disconnected(1006, "the server closed the connection"),
        ReconnectScheduled(1, 1.0),
        OperationWarning("handshake", 200_100, 200, arg),
        Connected(handshake_of(h)),
    ]


def binary_frame(size: int) -> bytes:
    """An unmasked, final binary frame of ``size`` zero bytes, as a server sends it."""
    assert 126 <= size < 1 << 16
    return bytes([0x82, 126]) + size.to_bytes(2, "big") + bytes(size)


def receive_in_two_halves(h: Harness[WebSocketClient], size: int, seconds: float) -> None:
    """One binary message whose second half arrives ``seconds`` after its first."""
    frame = binary_frame(size)
    h.client.receive_data(frame[: len(frame) // 2], h.now)
    h.now += seconds
    h.client.receive_data(frame[len(frame) // 2 :], h.now)


def test_a_message_is_timed_from_its_first_chunk_to_its_last() -> None:
    h = opened()
    receive_in_two_halves(h, 1000, seconds=0.75)
    h.client.receive_data(binary_frame(200) + binary_frame(300), h.now)  # one chunk: 0 s
    assert h.client.usage.us_recv == 750_000
    assert [type(e) for e in h.events()] == [BinaryMessage] * 3


def test_operation_warnings_for_send_and_recv() -> None:
    h = opened(warning_ms=1000, warning_arg=7)
    h.client.io_completed("send", 10, 0.999, h.now)
    h.client.io_completed("send", 10, 1.0, h.now)
    receive_in_two_halves(h, 200, seconds=2.5)
    assert h.events() == [
        OperationWarning("send", 1_000_000, 1000, 7),
        OperationWarning("recv", 2_500_000, 1000, 7),
        BinaryMessage(bytes(200)),
    ]


def test_throughput_warnings() -> None:
    h = opened(warning_bs=1000, min_ms=500, warning_arg="arg")
    client = h.client
    receive_in_two_halves(h, 1020, seconds=2.0)  # a 1024-byte frame at 512 B/s: warn
    client.io_completed("send", 1023, 2.0, h.now)  # under 1 KiB: never counts
    client.io_completed("send", 2048, 0.499, h.now)  # too short to count
    client.io_completed("send", 2048, 0.5, h.now)  # 4096 B/s: fast enough
    client.io_completed("send", 1000 * 2, 2.0, h.now)  # exactly the threshold: warn
    assert h.events() == [
        ThroughputWarning("recv", 1024, 2_000_000, 512.0, 1000, "arg"),
        BinaryMessage(bytes(1020)),
        ThroughputWarning("send", 2000, 2_000_000, 1000.0, 1000, "arg"),
    ]


def test_throughput_warning_ignores_instant_transfers() -> None:
    h = opened(warning_bs=1000, min_ms=0)
    h.client.io_completed("send", 4096, 0.0, h.now)
    assert h.events() == []


def test_both_warnings_for_one_transfer() -> None:
    h = opened(warning_ms=100, warning_bs=10_000, min_ms=0)
    h.client.io_completed("send", 1024, 0.5, h.now)
    assert h.events() == [
        OperationWarning("send", 500_000, 100, None),
        ThroughputWarning("send", 1024, 500_000, 2048.0, 10_000, None),
    ]


# ================================================================ determinism


def scripted_session(seed: str) -> tuple[list[Command], list[Event], list[float | None]]:
    """One busy session: deflate, jitter, messages both ways, a drop, a reconnect, a close."""
    client = WebSocketClient(
        config(
            entropy=SeededEntropy(seed),
            compression=True,
            reconnect=ReconnectSchedule(jitter=0.3),
            headers={"X-Client": "test"},
            subprotocols=("chat",),
        )
    )
    h = Harness(client, answer=Accept(subprotocol="chat", deflate=PerMessageDeflate))
    events = h.connect_and_open()
    timers = [client.get_timer()]
    h.server.send("hello " * 20)
    client.send("hi " * 30)
    client.send(b"\x00\x01" * 40)
    h.advance(25.0)
    h.server_eof()
    timers.append(client.get_timer())
    h.advance(2.0)
    client.send("again")
    client.disconnect(h.now, code=1000)
    h.pump()
    events += h.events()
    timers.append(client.get_timer())
    return h.commands, events, timers


def test_same_seed_same_inputs_same_bytes_and_events() -> None:
    commands, events, timers = scripted_session("a")
    assert (commands, events, timers) == scripted_session("a")
    assert len(commands) > 10
    other, other_events, _ = scripted_session("b")
    assert socket_bytes(other) != socket_bytes(commands)  # the nonce and masks come from the seed
    assert [type(e) for e in other_events] == [type(e) for e in events]


# ================================================================ the HTTP side channel


def reply(status: str, body: bytes = b"") -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


LOGIN_REQUEST = (
    b"POST /api/login HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n"
    b"X-Api-Key: k\r\nContent-Length: 2\r\n\r\n{}"
)


def test_http_request_and_response() -> None:
    client, h = stub(http=lambda request: reply("200 OK", b'{"name":"u"}'))
    client.login(0)
    assert client.get_timer() == 10.0
    h.pump()
    assert h.commands == [OPEN_HTTP, SendData(Channel.HTTP, LOGIN_REQUEST), CLOSE_HTTP]
    assert h.http_requests == [LOGIN_REQUEST]
    assert client.log == [("http", 200, b'{"name":"u"}', 0)]
    assert client.get_timer() is None
    assert client.usage == Usage()  # the side channel is not the push socket


def test_http_request_leaves_out_the_url_query_and_uses_tls() -> None:
    # The URL's query is for the WebSocket; a dialect's request is sent as given.
    client = Stub(config(url="https://example.com:8443/octoprint?k=v"))
    client.login(0)
    assert client.next_command() == OpenTransport(
        Channel.HTTP, "example.com", 8443, True, "example.com"
    )
    client.transport_opened(0, channel=Channel.HTTP)
    assert client.next_command() == SendData(
        Channel.HTTP,
        b"POST /api/login HTTP/1.1\r\nHost: example.com:8443\r\nConnection: close\r\n"
        b"X-Api-Key: k\r\nContent-Length: 2\r\n\r\n{}",
    )
    client.connect(0)
    assert client.next_command() == OpenTransport(
        Channel.SOCKET, "example.com", 8443, True, "example.com"
    )
    client.transport_opened(0)
    upgrade = client.next_command()
    assert isinstance(upgrade, SendData)
    assert upgrade.data.startswith(b"GET /octoprint?k=v HTTP/1.1\r\nHost: example.com:8443\r\n")


def test_one_http_request_at_a_time() -> None:
    client, _ = stub()
    client.login(0)
    with pytest.raises(AssertionError, match="one HTTP request at a time"):
        client.login(0)


def test_http_timeout() -> None:
    client, h = stub(http=lambda request: None)
    client.login(0, timeout=3.0)
    h.pump()
    h.advance(3.0)
    assert h.commands == [OPEN_HTTP, SendData(Channel.HTTP, LOGIN_REQUEST), CLOSE_HTTP]
    assert client.log == [("http failed", "HTTP request timed out", 3.0)]
    client.receive_data(reply("200 OK"), h.now, channel=Channel.HTTP)  # too late: ignored
    client.receive_eof(h.now, channel=Channel.HTTP)
    client.transport_failed("late", h.now, channel=Channel.HTTP)
    client.transport_opened(h.now, channel=Channel.HTTP)
    assert client.log == [("http failed", "HTTP request timed out", 3.0)]
    assert client.next_command() is None


def test_http_transport_failure() -> None:
    client, h = stub()
    client.login(0)
    h.pump()
    client.transport_failed("refused", 1.0, channel=Channel.HTTP)
    assert client.next_command() == CLOSE_HTTP
    assert client.log == [("http failed", "HTTP request failed: refused", 1.0)]
    assert client.get_timer() is None


def test_http_eof_before_the_response_is_complete() -> None:
    client, h = stub(http=lambda request: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    client.login(0)
    h.pump()
    detail = (
        "malformed HTTP response: peer closed connection without sending complete"
        " message body (received 3 bytes, expected 10)"
    )
    assert h.events() == [ProtocolError("http", detail)]
    assert client.log == [("http failed", detail, 0)]
    assert h.commands[-1] == CLOSE_HTTP


def test_http_malformed_response() -> None:
    client, h = stub(http=lambda request: b"NOT HTTP AT ALL\r\n\r\n")
    client.login(0)
    h.pump()
    events = h.events()
    assert len(events) == 1
    assert isinstance(events[0], ProtocolError)
    assert events[0].detail.startswith("malformed HTTP response: ")
    assert client.log == [("http failed", events[0].detail, 0)]


def test_http_response_body_limit() -> None:
    body = b"x" * 300
    client, h = stub(http=lambda r: reply("200 OK", body), max_http_response_size=200)
    client.login(0)
    h.pump()
    detail = "HTTP response body exceeds 200 bytes"
    assert h.events() == [
        LimitExceeded("max_http_response_size", 300, 200),
        ProtocolError("http", detail),
    ]
    assert client.log == [("http failed", detail, 0)]


def test_http_response_in_pieces_and_data_before_open_is_ignored() -> None:
    client, _ = stub()
    client.login(0)
    client.receive_data(b"HTTP/1.1 200", 0, channel=Channel.HTTP)  # not open yet: ignored
    client.transport_opened(0, channel=Channel.HTTP)
    client.transport_opened(0, channel=Channel.HTTP)  # twice: ignored
    raw = reply("201 Created", b"ok")
    client.receive_data(b"", 0, channel=Channel.HTTP)  # empty data is not EOF
    client.receive_data(raw[:10], 0.5, channel=Channel.HTTP)
    assert client.log == []
    client.receive_data(raw[10:], 1.0, channel=Channel.HTTP)
    assert client.log == [("http", 201, b"ok", 1.0)]
    commands = []
    while (command := client.next_command()) is not None:
        commands.append(command)
    assert commands == [OPEN_HTTP, SendData(Channel.HTTP, LOGIN_REQUEST), CLOSE_HTTP]


def test_http_is_cancelled_when_the_connection_is_lost() -> None:
    client, h = stub()
    h.connect_and_open()
    client.login(h.now)
    h.pump()
    h.server_eof()
    assert h.commands[-3:] == [OPEN_HTTP, CLOSE_SOCKET, CLOSE_HTTP]
    assert client.log == [("lost", 0.0)]  # no failure report: the dialect knows the link is gone
    client.transport_opened(h.now, channel=Channel.HTTP)
    assert client.next_command() is None
    assert client.get_timer() == 1.0  # only the reconnect


def test_http_cancel_by_the_dialect() -> None:
    client, _ = stub()
    client.cancel_login()  # nothing under way: nothing happens
    assert client.next_command() is None
    client.login(0)
    client.cancel_login()
    assert [client.next_command(), client.next_command(), client.next_command()] == [
        OPEN_HTTP,
        CLOSE_HTTP,
        None,
    ]
    assert client.get_timer() is None
