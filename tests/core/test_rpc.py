"""Tests for octoproto._rpc: the RPC dialect (rpc-websockets, msgpack-rpc-websockets)."""

from __future__ import annotations

import json
from typing import Any

import msgpack
import pytest
from peer import Harness

from octoproto import (
    CallFailed,
    CallSucceeded,
    CallTimeoutError,
    Connected,
    ConnectionLostError,
    Disconnected,
    Event,
    LocalProtocolError,
    NotConnectedError,
    ProtocolError,
    ReconnectFailed,
    ReconnectSchedule,
    ReconnectScheduled,
    RpcAuthenticationError,
    RpcClient,
    RpcConfig,
    RpcError,
    RpcNotification,
    RpcRestoreFailed,
    RpcSubscriptionError,
    RpcValueError,
    SeededEntropy,
    SendFailed,
    SendQueueFullError,
    SessionState,
    rpc_reconnect_schedule,
)


def harness(url: str = "ws://example.com:8080/", **options: Any) -> Harness[RpcClient]:
    return Harness(RpcClient(RpcConfig(url=url, entropy=SeededEntropy(3), **options)))


def opened(**options: Any) -> Harness[RpcClient]:
    h = harness(**options)
    assert [type(e) for e in h.connect_and_open()] == [Connected]
    return h


def sent(h: Harness[RpcClient]) -> list[Any]:
    """What the server received since the last look, decoded."""
    messages = []
    for kind, payload in h.server.received:
        if kind == "text":
            messages.append(json.loads(str(payload)))
        elif kind == "binary":
            messages.append(msgpack.unpackb(payload))
    h.server.received.clear()
    return messages


def reply(h: Harness[RpcClient], message: object) -> list[Event]:
    h.server.send(json.dumps(message))
    h.pump()
    return h.events()


def result(request_id: object, value: object) -> dict[str, object]:
    return {"jsonrpc": "2.0", "result": value, "id": request_id}


def error(request_id: object, code: int, message: str, data: object = None) -> dict[str, object]:
    body: dict[str, object] = {"code": code, "message": message}
    if data is not None:
        body["data"] = data
    return {"jsonrpc": "2.0", "error": body, "id": request_id}


def drop(h: Harness[RpcClient]) -> list[Event]:
    h.server_eof()
    return h.events()


def test_the_url_path_is_the_namespace_and_the_query_passes_through() -> None:
    h = harness("ws://example.com:8080/chat?socket_id=me")
    h.connect_and_open()
    assert h.server.request is not None
    assert h.server.request.target == "/chat?socket_id=me"


def test_a_call_gets_its_result_and_ids_count_from_one() -> None:
    h = opened()
    first = h.client.call("sum", [1, 2], now=h.now)
    second = h.client.call("echo", {"a": 1}, now=h.now)
    h.pump()
    assert sent(h) == [
        {"jsonrpc": "2.0", "method": "sum", "params": [1, 2], "id": 1},
        {"jsonrpc": "2.0", "method": "echo", "params": {"a": 1}, "id": 2},
    ]
    assert reply(h, result(2, {"a": 1})) == [CallSucceeded(second, {"a": 1})]
    assert reply(h, result(1, 3)) == [CallSucceeded(first, 3)]
    assert h.client.pending_calls == 0


def test_a_remote_error_fails_the_call_with_code_message_and_data() -> None:
    h = opened()
    call_id = h.client.call("fail", now=h.now)
    h.pump()
    events = reply(h, error(1, -32000, "Error", "it failed"))
    assert events == [CallFailed(call_id, RpcError(-32000, "Error", "it failed"))]


def test_generated_request_ids_are_used_as_they_are() -> None:
    seen: list[tuple[str, object]] = []

    def generate(method: str, params: object) -> str:
        seen.append((method, params))
        return f"{method}-{len(seen)}"

    h = opened(generate_request_id=generate)
    call_id = h.client.call("sum", [1], now=h.now)
    h.pump()
    assert sent(h)[0]["id"] == "sum-1"
    assert seen == [("sum", [1])]
    assert reply(h, result("sum-1", 1)) == [CallSucceeded(call_id, 1)]


def test_a_generated_id_in_use_is_refused() -> None:
    h = harness(generate_request_id=lambda method, params: method)
    h.client.connect(h.now)
    h.client.call("a", now=h.now)  # waiting for the connection
    with pytest.raises(RpcValueError, match="in use"):
        h.client.call("a", now=h.now)
    with pytest.raises(RpcValueError, match="in use"):
        h.client.call_batch([("b", None), ("b", None)], now=h.now)
    h.pump()
    with pytest.raises(RpcValueError, match="in use"):
        h.client.call("a", now=h.now)  # in flight
    h.client.call("b", now=h.now)
    h.client.disconnect(h.now)
    h.pump()
    h.client.connect(h.now)
    h.client.call("a", now=h.now, timeout=1.0)
    h.client.call("c", now=h.now)
    h.advance(1.0)
    h.client.call("a", now=h.now)  # the first "a" timed out while waiting: free again


def test_a_refused_call_changes_nothing() -> None:
    h = opened(generate_request_id=lambda method, params: 0)
    with pytest.raises(RpcValueError, match="request id"):
        h.client.call("m", now=h.now)
    h = opened()
    with pytest.raises(RpcValueError, match="structured"):
        h.client.call("m", "text", now=h.now)
    with pytest.raises(LocalProtocolError, match="timeout"):
        h.client.call("m", now=h.now, timeout=-1)
    with pytest.raises(LocalProtocolError, match="batch"):
        h.client.call_batch([("a", None), ("b", [1], 2)], now=h.now)  # type: ignore[list-item]
    with pytest.raises(LocalProtocolError, match="at least one"):
        h.client.call_batch([], now=h.now)
    assert h.client.pending_calls == 0
    h.client.call("m", now=h.now)
    h.pump()
    assert sent(h) == [{"jsonrpc": "2.0", "method": "m", "id": 1}]


def test_a_message_beyond_max_message_size_is_refused() -> None:
    h = opened(max_message_size=100)
    with pytest.raises(RpcValueError, match="max_message_size"):
        h.client.call("m", ["x" * 100], now=h.now)
    with pytest.raises(RpcValueError, match="max_message_size"):
        h.client.notify("m", ["x" * 100], now=h.now)


def test_max_pending_calls_bounds_a_batch_as_a_whole() -> None:
    h = opened(max_pending_calls=2)
    h.client.call("a", now=h.now)
    with pytest.raises(SendQueueFullError):
        h.client.call_batch([("b", None), ("c", None)], now=h.now)
    assert h.client.pending_calls == 1


def test_a_timeout_fails_the_call_and_the_late_reply_is_dropped_and_counted() -> None:
    h = opened()
    call_id = h.client.call("slow", now=h.now, timeout=2.0)
    h.pump()
    h.advance(2.0)
    assert h.events() == [CallFailed(call_id, CallTimeoutError("reply timeout"))]
    assert reply(h, result(1, "late")) == []
    assert h.client.late_replies == 1


def test_replies_to_no_request_are_protocol_errors() -> None:
    h = opened()
    assert reply(h, result(99, 1)) == [ProtocolError("rpc", "a result for no request (id 99)")]
    events = reply(h, error(None, -32601, "Method not found"))
    assert events == [
        ProtocolError("rpc", "an error for no request (id None): -32601 Method not found")
    ]
    assert h.client.is_open


def test_bad_messages_are_protocol_errors_and_the_connection_stays() -> None:
    h = opened()
    h.server.send("not json")
    h.pump()
    [event] = h.events()
    assert isinstance(event, ProtocolError)
    assert event.layer == "rpc"
    assert "invalid JSON" in event.detail
    assert h.client.is_open


def test_notifications_become_events_with_rpc_websockets_arguments() -> None:
    h = opened()
    events: list[RpcNotification] = []
    for params in ([], {}, {"n": 1}, [1, "two"], 5, None):
        [event] = reply(h, {"notification": "tick", "params": params})
        assert isinstance(event, RpcNotification)
        events.append(event)
    assert events == [
        RpcNotification("tick", []),
        RpcNotification("tick", {}),
        RpcNotification("tick", {"n": 1}),
        RpcNotification("tick", [1, "two"]),
        RpcNotification("tick", 5),
        RpcNotification("tick", None),
    ]
    assert [e.args for e in events] == [(), (), ({"n": 1},), (1, "two"), (5,), (None,)]


def test_a_notification_and_a_batch_in_one_frame_order() -> None:
    h = opened()
    ids = h.client.call_batch([("sum", [1, 2]), ("nope", None)], now=h.now)
    h.pump()
    assert sent(h) == [
        [
            {"jsonrpc": "2.0", "method": "sum", "params": [1, 2], "id": 1},
            {"jsonrpc": "2.0", "method": "nope", "id": 2},
        ]
    ]
    events = reply(h, [result(1, 3), error(2, -32601, "Method not found")])
    assert events == [
        CallSucceeded(ids[0], 3),
        CallFailed(ids[1], RpcError(-32601, "Method not found")),
    ]


def test_notify_sends_a_request_without_id() -> None:
    h = opened()
    h.client.notify("log", ["x"], now=h.now)
    h.pump()
    assert sent(h) == [{"jsonrpc": "2.0", "method": "log", "params": ["x"]}]


def test_list_methods() -> None:
    h = opened()
    call_id = h.client.list_methods(now=h.now)
    h.pump()
    assert sent(h) == [{"jsonrpc": "2.0", "method": "__listMethods", "id": 1}]
    assert reply(h, result(1, ["sum"])) == [CallSucceeded(call_id, ["sum"])]


def test_msgpack_mode_speaks_binary_frames() -> None:
    h = opened(encoding="msgpack")
    call_id = h.client.call("sum", [1, 2**40], now=h.now)
    h.pump()
    assert h.server.received[0][0] == "binary"
    assert sent(h) == [{"jsonrpc": "2.0", "method": "sum", "params": [1, 2.0**40], "id": 1}]
    h.server.send(msgpack.packb({"result": 3.0, "id": 1.0}))
    h.pump()
    assert h.events() == [CallSucceeded(call_id, 3.0)]
    h.server.send('{"result":1,"id":1}')
    h.pump()
    assert h.events() == [ProtocolError("rpc", "a text frame in msgpack mode (expected binary)")]


# --- the connection ----------------------------------------------------------------


def test_calls_in_flight_fail_at_once_when_the_link_drops() -> None:
    h = opened()
    call_id = h.client.call("slow", now=h.now)
    h.pump()
    events = drop(h)
    assert CallFailed(call_id, ConnectionLostError("the connection was lost before the reply")) in (
        events
    )
    assert h.client.pending_calls == 0


def test_calls_made_while_disconnected_wait_for_the_connection() -> None:
    h = harness()
    h.client.connect(h.now)
    call_id = h.client.call("sum", [1], now=h.now)
    h.client.notify("log", now=h.now)
    h.pump()
    assert [type(e) for e in h.events()] == [Connected]
    assert sent(h) == [
        {"jsonrpc": "2.0", "method": "log"},
        {"jsonrpc": "2.0", "method": "sum", "params": [1], "id": 1},
    ]
    assert reply(h, result(1, 1)) == [CallSucceeded(call_id, 1)]


def test_waiting_calls_that_time_out_are_not_sent() -> None:
    h = Harness(RpcClient(RpcConfig(url="ws://h:1/", entropy=SeededEntropy(3))), auto_open=False)
    h.client.connect(h.now)
    h.pump()
    expiring = h.client.call("a", now=h.now, timeout=1.0)
    h.client.call_batch([("b", None), ("c", None)], now=h.now)
    expiring_batch = h.client.call_batch([("d", None), ("e", None)], now=h.now, timeout=1.0)
    h.client.call("f", now=h.now)
    h.advance(1.0)
    assert h.events() == [
        CallFailed(call_id, CallTimeoutError("reply timeout"))
        for call_id in (expiring, *expiring_batch)
    ]
    h.open_socket()
    assert sent(h) == [
        [{"jsonrpc": "2.0", "method": "b", "id": 2}, {"jsonrpc": "2.0", "method": "c", "id": 3}],
        {"jsonrpc": "2.0", "method": "f", "id": 6},
    ]
    assert h.client.pending_calls == 3


def test_without_queueing_a_call_while_disconnected_raises() -> None:
    h = harness(queue_while_disconnected=False)
    h.client.connect(h.now)
    with pytest.raises(NotConnectedError):
        h.client.call("m", now=h.now)
    with pytest.raises(NotConnectedError):
        h.client.notify("m", now=h.now)


def test_a_closed_session_refuses_calls() -> None:
    h = opened()
    h.client.disconnect(h.now)
    with pytest.raises(NotConnectedError, match="closed"):
        h.client.call("m", now=h.now)


def test_waiting_calls_fail_when_the_session_closes_for_good_and_are_never_sent() -> None:
    h = harness()
    h.client.connect(h.now)
    call_id = h.client.call("m", now=h.now)
    h.client.disconnect(h.now)
    lost = ConnectionLostError("the session closed: disconnect() was called")
    assert CallFailed(call_id, lost) in h.events()
    h.client.connect(h.now)
    h.pump()
    assert sent(h) == []
    fresh = h.client.call("n", now=h.now)
    h.pump()
    assert sent(h) == [{"jsonrpc": "2.0", "method": "n", "id": 2}]
    assert fresh == call_id + 1


def test_the_default_reconnect_is_rpc_websockets() -> None:
    assert RpcConfig(url="ws://h/", entropy=SeededEntropy(1)).reconnect == (
        ReconnectSchedule.fixed(1.0, 4)
    )
    assert rpc_reconnect_schedule(0.5, 0) == ReconnectSchedule.fixed(0.5, None)
    assert rpc_reconnect_schedule(2.0, 1) == ReconnectSchedule.fixed(2.0, 0)
    for bad in (-1, True, 1.5):
        with pytest.raises(LocalProtocolError, match="max_reconnects"):
            rpc_reconnect_schedule(1.0, bad)  # type: ignore[arg-type]


def test_four_redials_after_a_drop_then_it_gives_up() -> None:
    h = opened()
    h.client.call("m", now=h.now)
    events = drop(h)
    assert ReconnectScheduled(1, 1.0) in events
    h.answer = lambda request: b"HTTP/1.1 500 No\r\nContent-Length: 0\r\n\r\n"
    for _ in range(4):
        h.advance(1.0)
    events = h.events()
    assert [e for e in events if isinstance(e, ReconnectFailed)] == [ReconnectFailed(4)]
    assert h.client.state is SessionState.CLOSED


def test_a_normal_close_from_the_server_does_not_reconnect() -> None:
    h = opened()
    call_id = h.client.call("m", now=h.now)
    h.pump()
    h.server.send_close(1000)
    h.pump()
    events = h.events()
    assert Disconnected(1000, "") in events
    assert ReconnectFailed(0) in events
    lost = ConnectionLostError("the connection was lost before the reply")
    assert CallFailed(call_id, lost) in events
    assert h.client.state is SessionState.CLOSED
    assert h.client.config.reconnect == rpc_reconnect_schedule()


def test_any_other_close_from_the_server_reconnects() -> None:
    h = opened()
    h.server.send_close(4000)
    h.pump()
    assert ReconnectScheduled(1, 1.0) in h.events()


def test_our_own_close_uses_1000() -> None:
    h = opened()
    h.client.disconnect(h.now)
    h.pump()
    assert h.server.received == [("close", 1000, "")]


# --- login and subscriptions -----------------------------------------------------


def test_login_succeeds_and_is_restored_after_a_reconnect_before_waiting_calls() -> None:
    h = opened()
    call_id = h.client.login({"user": "u"}, now=h.now)
    h.pump()
    assert sent(h) == [{"jsonrpc": "2.0", "method": "rpc.login", "params": {"user": "u"}, "id": 1}]
    assert reply(h, result(1, True)) == [CallSucceeded(call_id, True)]
    drop(h)
    waiting = h.client.call("protected", now=h.now)
    h.advance(1.0)
    assert h.client.state is SessionState.OPENING  # up only once logged in again
    # The waiting call got its id (2) when it was made.
    assert sent(h) == [{"jsonrpc": "2.0", "method": "rpc.login", "params": {"user": "u"}, "id": 3}]
    events = reply(h, result(3, True))
    assert [type(e) for e in events] == [Connected]
    assert sent(h) == [{"jsonrpc": "2.0", "method": "protected", "id": 2}]
    assert reply(h, result(2, "s")) == [CallSucceeded(waiting, "s")]


def test_a_falsy_login_result_fails_the_call_and_is_not_restored() -> None:
    h = opened()
    call_id = h.client.login({"user": "x"}, now=h.now)
    h.pump()
    [event] = reply(h, result(1, False))
    assert event == CallFailed(call_id, RpcAuthenticationError("authentication failed: False"))
    drop(h)
    h.advance(1.0)
    assert [type(e) for e in h.events()] == [Connected]
    assert sent(h) == []


def test_a_login_error_fails_the_call() -> None:
    h = opened()
    call_id = h.client.login(None, now=h.now)
    h.pump()
    assert reply(h, error(1, -32604, "Params not found")) == [
        CallFailed(call_id, RpcError(-32604, "Params not found"))
    ]


@pytest.mark.parametrize(
    ("answer", "failure"),
    [
        (result(2, False), RpcAuthenticationError("authentication failed: False")),
        (error(2, -32601, "Method not found"), RpcError(-32601, "Method not found")),
    ],
)
def test_a_failed_login_after_a_reconnect_is_reported(
    answer: dict[str, object], failure: Exception
) -> None:
    h = opened()
    h.client.login({"user": "u"}, now=h.now)
    h.pump()
    reply(h, result(1, True))
    drop(h)
    h.advance(1.0)
    sent(h)
    events = reply(h, answer)
    assert events[0] == RpcRestoreFailed("login", failure)  # type: ignore[arg-type]
    assert isinstance(events[1], Connected)


def test_subscribe_one_event() -> None:
    h = opened()
    call_id = h.client.subscribe("tick", now=h.now)
    h.pump()
    assert sent(h) == [{"jsonrpc": "2.0", "method": "rpc.on", "params": ["tick"], "id": 1}]
    assert reply(h, result(1, {"tick": "ok"})) == [CallSucceeded(call_id, {"tick": "ok"})]
    assert h.client.subscriptions == ("tick",)


@pytest.mark.parametrize("answer", [{"nope": "provided event invalid"}, "garbage"])
def test_subscribing_one_event_fails_on_any_other_status(answer: object) -> None:
    h = opened()
    call_id = h.client.subscribe("nope", now=h.now)
    h.pump()
    status = "provided event invalid" if isinstance(answer, dict) else None
    assert reply(h, result(1, answer)) == [
        CallFailed(call_id, RpcSubscriptionError("nope", status))
    ]
    assert h.client.subscriptions == ()
    assert str(RpcSubscriptionError("nope", status)).startswith("event 'nope': ")


def test_subscribing_a_list_returns_the_status_map() -> None:
    h = opened()
    call_id = h.client.subscribe(["a", "b", "c"], now=h.now)
    h.pump()
    statuses = {
        "a": "ok",
        "b": "provided event invalid",
        "c": "socket has already been subscribed to event",
    }
    assert reply(h, result(1, statuses)) == [CallSucceeded(call_id, statuses)]
    assert h.client.subscriptions == ("a", "c")


def test_bad_event_names_are_refused() -> None:
    h = opened()
    for events in ("", [], ["a", 5]):
        with pytest.raises(LocalProtocolError, match="events"):
            h.client.subscribe(events, now=h.now)  # type: ignore[arg-type]


def test_unsubscribe_forgets_the_events_whatever_the_answer() -> None:
    h = opened()
    h.client.subscribe(["a", "b"], now=h.now)
    h.pump()
    reply(h, result(1, {"a": "ok", "b": "ok"}))
    single = h.client.unsubscribe("a", now=h.now)
    several = h.client.unsubscribe(["b", "x"], now=h.now)
    h.pump()
    assert h.client.subscriptions == ()
    assert reply(h, result(2, {"a": "not subscribed"})) == [
        CallFailed(single, RpcSubscriptionError("a", "not subscribed"))
    ]
    statuses = {"b": "ok", "x": "provided event invalid"}
    assert reply(h, result(3, statuses)) == [CallSucceeded(several, statuses)]


def test_subscriptions_are_restored_after_login_on_reconnect() -> None:
    h = opened()
    h.client.login(["u"], now=h.now)
    h.client.subscribe(["a", "b"], now=h.now)
    h.pump()
    reply(h, result(1, True))
    reply(h, result(2, {"a": "ok", "b": "ok"}))
    drop(h)
    h.advance(1.0)
    assert sent(h) == [{"jsonrpc": "2.0", "method": "rpc.login", "params": ["u"], "id": 3}]
    assert reply(h, result(3, True)) == []
    assert sent(h) == [{"jsonrpc": "2.0", "method": "rpc.on", "params": ["a", "b"], "id": 4}]
    events = reply(h, result(4, {"a": "ok", "b": "provided event invalid"}))
    assert events[0] == RpcRestoreFailed(
        "subscribe", RpcSubscriptionError("b", "provided event invalid")
    )
    assert isinstance(events[1], Connected)


@pytest.mark.parametrize(
    ("answer", "failure"),
    [
        (error(2, -32606, "Event forbidden"), RpcError(-32606, "Event forbidden")),
        (result(2, None), RpcSubscriptionError("a", None)),
    ],
)
def test_a_failed_resubscription_is_reported(answer: dict[str, object], failure: Exception) -> None:
    h = opened()
    h.client.subscribe("a", now=h.now)
    h.pump()
    reply(h, result(1, {"a": "ok"}))
    drop(h)
    h.advance(1.0)
    sent(h)
    events = reply(h, answer)
    assert events[0] == RpcRestoreFailed("subscribe", failure)  # type: ignore[arg-type]
    assert isinstance(events[1], Connected)


def test_a_drop_during_the_restore_starts_it_again() -> None:
    h = opened()
    h.client.login(["u"], now=h.now)
    h.pump()
    reply(h, result(1, True))
    drop(h)
    h.advance(1.0)
    assert len(sent(h)) == 1
    drop(h)
    h.advance(1.0)
    assert sent(h) == [{"jsonrpc": "2.0", "method": "rpc.login", "params": ["u"], "id": 3}]


def test_config_checks() -> None:
    with pytest.raises(LocalProtocolError, match="generate_request_id"):
        RpcConfig(url="ws://h/", entropy=SeededEntropy(1), generate_request_id=5)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="encoding"):
        RpcConfig(url="ws://h/", entropy=SeededEntropy(1), encoding="xml")  # type: ignore[arg-type]


def test_queued_notifications_are_handed_back_when_the_session_gives_up() -> None:
    h = harness(reconnect=ReconnectSchedule.never())
    h.answer = lambda request: b"HTTP/1.1 500 No\r\nContent-Length: 0\r\n\r\n"
    h.client.connect(h.now)
    h.client.notify("log", now=h.now)
    h.pump()
    assert SendFailed(
        ('{"jsonrpc":"2.0","method":"log"}',), "the reconnect schedule is exhausted"
    ) in (h.events())
