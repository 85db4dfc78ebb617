"""The Socket.IO dialect's core against an in-memory server speaking Engine.IO / Socket.IO by hand.

Server frames follow what python-socketio 5.18.1 sent in captures
(tests/servers/socketio_app.py).
"""

from __future__ import annotations

import pytest
from peer import Harness

from octoproto import (
    CallError,
    CallFailed,
    CallSucceeded,
    CallTimeoutError,
    Connected,
    ConnectFailed,
    ConnectionLostError,
    Disconnected,
    InvalidMessageError,
    LocalProtocolError,
    NotConnectedError,
    ProtocolError,
    ReconnectScheduled,
    SeededEntropy,
    SendFailed,
    SendQueueFullError,
    SessionState,
    SocketIOClient,
    SocketIOConfig,
    SocketIOConnected,
    SocketIOConnectError,
    SocketIODisconnected,
    SocketIOEvent,
    socketio_reconnect_schedule,
)

OPEN = '0{"sid":"eio","upgrades":[],"pingTimeout":20000,"pingInterval":25000,"maxPayload":%d}'
FAST_OPEN = '0{"sid":"eio","upgrades":[],"pingTimeout":1000,"pingInterval":2000,"maxPayload":1000}'


def make(**options: object) -> Harness[SocketIOClient]:
    options.setdefault("url", "http://127.0.0.1:5000")
    return Harness(SocketIOClient(SocketIOConfig(entropy=SeededEntropy(1), **options)))  # type: ignore[arg-type]


def texts(h: Harness[SocketIOClient]) -> list[object]:
    """What the client sent on the current connection (text and binary), then forget it."""
    sent = [item[1] for item in h.server.received if item[0] in ("text", "binary")]
    h.server.received.clear()
    return sent


def open_eio(h: Harness[SocketIOClient], max_payload: int = 1_000_000) -> None:
    h.client.connect(h.now)
    h.pump()
    h.server.send(OPEN % max_payload)
    h.pump()


def up(h: Harness[SocketIOClient], *namespaces: str) -> list[object]:
    """Dial, open Engine.IO, answer every CONNECT; the events."""
    open_eio(h)
    for namespace in namespaces or ("/",):
        prefix = "" if namespace == "/" else f"{namespace},"
        h.server.send(f'40{prefix}{{"sid":"s{namespace}"}}')
    h.pump()
    texts(h)
    return list(h.events())


def test_target_and_connects_with_auth() -> None:
    h = make(url="http://127.0.0.1:5000/base?x=1", namespaces=["/", "/chat"], auth={"token": "t"})
    open_eio(h)
    assert h.server.request is not None
    assert h.server.request.target == "/base/socket.io/?x=1&EIO=4&transport=websocket"
    assert texts(h) == ['40{"token":"t"}', '40/chat,{"token":"t"}']
    assert h.client.state is SessionState.OPENING
    h.server.send('40{"sid":"a"}')
    h.pump()
    assert h.events() == [SocketIOConnected("/", "a")]
    assert h.client.sid == "a" and h.client.get_sid("/chat") is None
    h.server.send('40/chat,{"sid":"b"}')
    h.pump()
    events = h.events()
    assert events[0] == SocketIOConnected("/chat", "b") and isinstance(events[1], Connected)
    assert h.client.is_open and h.client.connected_namespaces == ("/", "/chat")
    assert h.client.get_sid("/nope") is None


def test_target_without_query() -> None:
    h = make(socketio_path="/sio/")
    open_eio(h)
    assert h.server.request is not None
    assert h.server.request.target == "/sio/?EIO=4&transport=websocket"


def test_events_before_the_connect_reply_come_after_it_in_order() -> None:
    h = make()
    open_eio(h)
    h.server.send('42["welcome",1]')
    h.server.send('421["asks",2]')
    h.server.send('40{"sid":"a"}')
    h.pump()
    events = h.events()
    assert events[:3] == [
        SocketIOConnected("/", "a"),
        SocketIOEvent("/", "welcome", (1,)),
        SocketIOEvent("/", "asks", (2,), 1),
    ]
    assert isinstance(events[3], Connected)


def test_too_many_early_events_is_a_protocol_error() -> None:
    h = make(max_early_events=1)
    open_eio(h)
    h.server.send('42["a"]')
    h.server.send('42["b"]')
    h.pump()
    events = h.events()
    assert isinstance(events[0], ProtocolError) and "more than 1 events" in events[0].detail
    assert isinstance(events[1], ConnectFailed)


def test_emit_ack_and_call() -> None:
    h = make(namespaces=["/", "/chat"])
    up(h, "/", "/chat")
    assert h.client.emit("echo", "hi", now=h.now) is None
    first = h.client.emit("echo", "hi", {"a": 1}, now=h.now, ack=True)
    assert first is not None
    second = h.client.call("msg", "yo", namespace="/chat", now=h.now)
    third = h.client.call("msg", "again", namespace="/chat", now=h.now, timeout=5)
    h.pump()
    assert texts(h) == [
        '42["echo","hi"]',
        '421["echo","hi",{"a":1}]',
        '42/chat,1["msg","yo"]',
        '42/chat,2["msg","again"]',
    ]
    h.server.send('431["hi",{"a":1}]')
    h.server.send('43/chat,1["chat","yo"]')
    h.pump()
    assert h.events() == [
        CallSucceeded(first, ("hi", {"a": 1})),
        CallSucceeded(second, ("chat", "yo")),
    ]
    assert h.client.pending_calls == 1
    h.advance(5)
    assert h.events() == [CallFailed(third, CallTimeoutError("reply timeout"))]
    h.server.send('43/chat,2["late"]')
    h.server.send('439["nobody"]')
    h.pump()
    assert h.client.late_replies == 1
    [error] = h.events()
    assert isinstance(error, ProtocolError) and "ACK 9" in error.detail


def test_binary_both_ways() -> None:
    h = make()
    up(h)
    call_id = h.client.emit("up", b"\x00", {"k": [b"z"]}, now=h.now, ack=True)
    h.pump()
    assert texts(h) == [
        '452-1["up",{"_placeholder":true,"num":0},{"k":[{"_placeholder":true,"num":1}]}]',
        b"\x00",
        b"z",
    ]
    h.server.send('461-1[{"_placeholder":true,"num":0}]')
    h.server.send(b"back")
    h.server.send('451-["bin",{"_placeholder":true,"num":0}]')
    h.server.send(b"\xff")
    h.pump()
    assert h.events() == [CallSucceeded(call_id, (b"back",)), SocketIOEvent("/", "bin", (b"\xff",))]  # type: ignore[arg-type]


def test_server_event_ack_from_the_client() -> None:
    h = make()
    up(h)
    h.server.send('421["question","what?"]')
    h.pump()
    assert h.events()[0] == SocketIOEvent("/", "question", ("what?",), 1)
    assert h.client.ack("/", 1, ["forty-two", b"b"], now=h.now) is True
    assert h.client.ack("/", 1, ["again"], now=h.now) is False
    h.pump()
    assert texts(h) == ['461-1["forty-two",{"_placeholder":true,"num":0}]', b"b"]


def test_owed_acks_are_bounded() -> None:
    h = make(max_pending_calls=1)
    up(h)
    h.server.send('421["a"]')
    h.server.send('422["b"]')
    h.pump()
    assert h.client.ack("/", 1, [], now=h.now) is False
    assert h.client.ack("/", 2, [], now=h.now) is True


def test_emits_wait_for_their_namespace_and_survive_a_reconnect() -> None:
    h = make(namespaces=["/", "/chat"])
    early = h.client.call("msg", 1, namespace="/chat", now=h.now)
    open_eio(h)
    h.client.emit("x", now=h.now)
    h.server.send('40{"sid":"a"}')
    h.pump()
    assert texts(h) == ["40", "40/chat,", '42["x"]']
    h.server_eof()
    events = h.events()
    assert SocketIODisconnected("/", "transport error") in events
    assert any(isinstance(e, ReconnectScheduled) for e in events)
    late = h.client.emit("y", namespace="/chat", now=h.now)
    assert late is None
    h.advance(10)
    h.server.send(OPEN % 1000)
    h.server.send('40{"sid":"a2"}')
    h.server.send('40/chat,{"sid":"b2"}')
    h.pump()
    assert texts(h) == ["40", "40/chat,", '42/chat,1["msg",1]', '42/chat,["y"]']
    h.server.send('43/chat,1["ok"]')
    h.pump()
    assert CallSucceeded(early, ("ok",)) in h.events()


def test_in_flight_calls_fail_on_a_lost_link() -> None:
    h = make()
    up(h)
    call_id = h.client.call("x", now=h.now)
    h.pump()
    h.server_eof()
    failed = [e for e in h.events() if isinstance(e, CallFailed)]
    assert failed and failed[0].call_id == call_id
    assert isinstance(failed[0].error, ConnectionLostError)


def test_queue_is_bounded_and_expired_calls_leave_it() -> None:
    h = make(max_queued_messages=2)
    first = h.client.call("a", now=h.now, timeout=1)
    h.client.emit("b", now=h.now)
    with pytest.raises(SendQueueFullError):
        h.client.emit("c", now=h.now)
    h.advance(1)
    assert h.events() == [CallFailed(first, CallTimeoutError("reply timeout"))]
    h.client.emit("c", now=h.now)
    up(h)
    assert h.server.received == []


def test_no_queue_when_queueing_is_off() -> None:
    h = make(queue_while_disconnected=False)
    with pytest.raises(NotConnectedError, match="queue_while_disconnected"):
        h.client.emit("a", now=h.now)


def test_caller_mistakes_raise_and_change_nothing() -> None:
    h = make()
    with pytest.raises(LocalProtocolError, match="not one of this client's namespaces"):
        h.client.emit("a", namespace="/other", now=h.now)
    with pytest.raises(InvalidMessageError, match="reserved"):
        h.client.emit("connect", now=h.now)
    with pytest.raises(InvalidMessageError, match="JSON"):
        h.client.emit("a", object(), now=h.now)
    up(h)
    h.client.disconnect(h.now)
    with pytest.raises(NotConnectedError, match="closed"):
        h.client.emit("a", now=h.now)


def test_max_payload() -> None:
    h = make()
    h.client.emit("a", "x" * 200, now=h.now)
    call_id = h.client.call("b", "x" * 200, now=h.now)
    h.client.emit("c", now=h.now)
    h.client.connect(h.now)
    h.pump()
    h.server.send(OPEN % 100)
    h.server.send('40{"sid":"a"}')
    h.pump()
    events = h.events()
    assert isinstance(events[1], SendFailed) and "maxPayload (100)" in events[1].reason
    assert events[2] == CallFailed(
        call_id, CallError("the emit is larger than the server's maxPayload (100)")
    )
    assert texts(h) == ["40", '42["c"]']
    with pytest.raises(InvalidMessageError, match="maxPayload"):
        h.client.emit("a", "x" * 200, now=h.now)
    h.server.send('421["q"]')
    h.pump()
    with pytest.raises(InvalidMessageError, match="maxPayload"):
        h.client.ack("/", 1, [b"x" * 200], now=h.now)


def test_heartbeat_pong_and_dead_link() -> None:
    h = make()
    h.client.connect(h.now)
    h.pump()
    h.server.send(FAST_OPEN)
    h.server.send('40{"sid":"a"}')
    h.pump()
    texts(h)
    h.advance(2)
    h.server.send("2")
    h.pump()
    assert texts(h) == ["3"]
    h.server.send("6")
    h.server.send("3")
    h.pump()
    h.advance(2.9)
    assert h.client.is_open
    h.advance(0.2)
    events = h.events()
    assert SocketIODisconnected("/", "transport error") in events
    assert any(isinstance(e, Disconnected) and "dead link" in e.reason for e in events)
    assert h.client.state is SessionState.BACKOFF


def test_no_heartbeat_when_the_server_sets_none() -> None:
    h = make()
    h.client.connect(h.now)
    h.pump()
    h.server.send('0{"sid":"e","pingInterval":0,"pingTimeout":0}')
    h.server.send('40{"sid":"a"}')
    h.pump()
    assert h.client.get_timer() is None


def test_namespace_refused_fails_the_attempt() -> None:
    h = make(namespaces=["/", "/private"], auth={"token": "x"})
    open_eio(h)
    h.server.send('40{"sid":"a"}')
    h.server.send('44/private,{"message":"Connection rejected by server"}')
    h.pump()
    events = h.events()
    assert events[:2] == [
        SocketIOConnected("/", "a"),
        SocketIOConnectError("/private", {"message": "Connection rejected by server"}),
    ]
    assert SocketIODisconnected("/", "transport error") in events
    failed = [e for e in events if isinstance(e, ConnectFailed)]
    assert failed and "namespace /private refused" in failed[0].reason
    assert h.client.state is SessionState.BACKOFF


def test_connect_error_when_open_is_only_reported() -> None:
    h = make()
    up(h)
    h.server.send('44"odd"')
    h.server.send('40{"sid":"again"}')
    h.pump()
    events = h.events()
    assert events[0] == SocketIOConnectError("/", "odd")
    assert isinstance(events[1], ProtocolError) and "second CONNECT" in events[1].detail
    assert h.client.is_open


def test_server_disconnects_one_namespace_then_the_last() -> None:
    h = make(namespaces=["/", "/chat"])
    up(h, "/", "/chat")
    queued_call = h.client.call("x", namespace="/chat", now=h.now)
    h.client._backlog_full = True  # hold the emit in the queue
    h.client.emit("y", namespace="/chat", now=h.now)
    h.client._backlog_full = False
    h.server.send("41/chat,")
    h.pump()
    events = h.events()
    assert SocketIODisconnected("/chat", "server disconnect") in events
    assert CallFailed(queued_call, CallError("the server disconnected /chat")) in events
    with pytest.raises(NotConnectedError, match="disconnected namespace /chat"):
        h.client.emit("z", namespace="/chat", now=h.now)
    h.server.send("41/chat,")  # already gone: nothing
    h.server.send("41")
    h.pump()
    events = h.events()
    assert SocketIODisconnected("/", "server disconnect") in events
    assert h.client.state in (SessionState.CLOSING, SessionState.CLOSED)


def test_engineio_close_from_the_server_ends_for_good() -> None:
    h = make()
    up(h)
    h.server.send("1")
    h.pump()
    events = h.events()
    assert events[0] == SocketIODisconnected("/", "server disconnect")
    assert "1" in texts(h)
    assert h.client.state is SessionState.CLOSED


def test_client_disconnect_leaves_every_namespace() -> None:
    h = make(namespaces=["/", "/chat"])
    up(h, "/", "/chat")
    h.client.emit("sent", now=h.now)
    h.pump()
    h.client._backlog_full = True
    h.client.emit("queued", now=h.now)
    h.client._backlog_full = False
    texts(h)
    h.client.disconnect(h.now)
    h.pump()
    events = h.events()
    assert events[0] == SendFailed(('42["queued"]',), "disconnect() was called")
    assert events[1:3] == [
        SocketIODisconnected("/", "client disconnect"),
        SocketIODisconnected("/chat", "client disconnect"),
    ]
    assert texts(h) == ["41", "41/chat,", "1"]


def test_disconnect_while_dialling() -> None:
    h = make()
    h.client.connect(h.now)
    h.client.disconnect(h.now)
    assert h.client.state is SessionState.CLOSED


def test_bad_close_code_changes_nothing() -> None:
    h = make()
    up(h)
    with pytest.raises(LocalProtocolError):
        h.client.disconnect(h.now, code=1005)
    assert h.client.is_open


@pytest.mark.parametrize(
    ("messages", "detail"),
    [
        (["x"], "not an Engine.IO packet"),
        (["40"], "expected the Engine.IO open"),
        ([b"\x00"], "expected the Engine.IO open"),
        ([OPEN % 10, "0{}"], "second Engine.IO open"),
        ([OPEN % 10, "4x"], "not a Socket.IO packet"),
        ([OPEN % 10, b"\x00"], "no packet before it"),
    ],
)
def test_wire_faults_close_with_a_protocol_error(messages: list[str | bytes], detail: str) -> None:
    h = make()
    h.client.connect(h.now)
    h.pump()
    for message in messages:
        h.server.send(message)
    h.pump()
    events = h.events()
    assert isinstance(events[0], ProtocolError) and events[0].layer == "socketio"
    assert detail in events[0].detail
    assert ("close", 1002, events[0].detail[:100]) in h.server.received


def test_packets_for_unknown_namespaces_and_odd_engineio_types_are_tolerated() -> None:
    h = make()
    up(h)
    h.server.send('42/else,["x"]')
    h.server.send("5")
    h.pump()
    [error] = h.events()
    assert isinstance(error, ProtocolError) and "/else" in error.detail
    assert h.client.is_open


def test_config_checks() -> None:
    entropy = SeededEntropy(1)
    url = "http://h"
    for bad in ([], ["/", "/"], ["chat"]):
        with pytest.raises(LocalProtocolError):
            SocketIOConfig(url=url, entropy=entropy, namespaces=bad)
    with pytest.raises(InvalidMessageError):
        SocketIOConfig(url=url, entropy=entropy, auth={"b": b"x"})
    with pytest.raises(LocalProtocolError, match="socketio_path"):
        SocketIOConfig(url=url, entropy=entropy, socketio_path="a?b")
    with pytest.raises(LocalProtocolError, match="max_attachments"):
        SocketIOConfig(url=url, entropy=entropy, max_attachments=-1)
    assert "auth" not in repr(SocketIOConfig(url=url, entropy=entropy, auth={"token": "secret"}))


def test_reconnect_schedule_like_python_socketio() -> None:
    schedule = socketio_reconnect_schedule()
    assert schedule.delays == (1.0, 2.0, 4.0, 5.0)
    assert schedule.attempts is None and schedule.jitter_seconds == 0.5 and schedule.jitter == 0
    assert socketio_reconnect_schedule(attempts=3).attempts == 3
    assert SocketIOConfig(url="http://h", entropy=SeededEntropy(1)).reconnect == schedule


def test_expiry_finds_its_call_behind_others_and_close_fails_queued_calls() -> None:
    h = make()
    h.client.emit("first", now=h.now)
    expiring = h.client.call("second", now=h.now, timeout=1)
    kept = h.client.call("third", now=h.now)
    h.advance(1)
    assert h.events() == [CallFailed(expiring, CallTimeoutError("reply timeout"))]
    h.client.connect(h.now)
    h.client.disconnect(h.now)
    events = h.events()
    assert events[0] == SendFailed(('42["first"]',), "disconnect() was called")
    assert isinstance(events[1], CallFailed) and events[1].call_id == kept


def test_calls_in_flight_are_pruned_as_they_end() -> None:
    h = make()
    up(h)
    ids = [h.client.call("x", now=h.now) for _ in range(64)]
    h.pump()
    for ack_id in range(1, 65):
        h.server.send(f"43{ack_id}[]")
    h.pump()
    assert len([e for e in h.events() if isinstance(e, CallSucceeded)]) == len(ids)
    h.client.call("y", now=h.now)
    assert h.client.pending_calls == 1
