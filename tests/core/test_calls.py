"""Tests for the engine's request/response machinery (octoproto._calls and its use in _session).

The dialect here is a toy: ``call`` sends ``"<id> <payload>"`` as text once
the session is up (queued until then), and the server answers ``"ok <key>
<result>"`` or ``"err <key> <message>"``. RPC and Socket.IO build on the
same services.
"""

from __future__ import annotations

from typing import Any

import pytest
from harness.toycalls import Refused, ToyCalls
from peer import Harness

from octoproto import (
    CallFailed,
    CallSucceeded,
    CallTimeoutError,
    Connected,
    ConnectionLostError,
    Disconnected,
    LocalProtocolError,
    ProtocolError,
    ReconnectFailed,
    ReconnectSchedule,
    SeededEntropy,
    SendQueueFullError,
    SessionConfig,
)
from octoproto._calls import REMEMBERED_KEYS, CallMatch, CallTable


def toy(*, auto_open: bool = True, **options: Any) -> Harness[ToyCalls]:
    config = SessionConfig(
        url="ws://example.com/toy",
        entropy=SeededEntropy(3),
        reconnect=ReconnectSchedule.fixed(1.0, 2),
        **options,
    )
    return Harness(ToyCalls(config), auto_open=auto_open)


def sent_texts(h: Harness[ToyCalls]) -> list[object]:
    return [item[1] for item in h.server.received if item[0] == "text"]


def test_a_reply_settles_its_call() -> None:
    h = toy()
    h.connect_and_open()
    first = h.client.call("a", h.now, timeout=5)
    second = h.client.call("b", h.now)
    h.pump()
    assert (first, second) == (1, 2)
    assert sent_texts(h) == ["1 a", "2 b"]
    h.server.send("ok 2 B")
    h.server.send("err 1 nope")
    h.pump()
    assert h.events() == [CallSucceeded(2, "B"), CallFailed(1, Refused("nope"))]
    assert h.client.pending_calls == 0
    assert h.client.get_timer() is not None  # only the link timers are left
    assert "calls" not in h.client._timers


def test_a_timeout_fails_the_call_and_its_late_reply_is_counted() -> None:
    h = toy(ping_interval=None, dead_link_timeout=None)
    h.connect_and_open()
    call_id = h.client.call("slow", h.now, timeout=2.5)
    h.pump()
    assert h.client.get_timer() == h.now + 2.5
    h.advance(2.5)
    assert h.events() == [CallFailed(call_id, CallTimeoutError("reply timeout"))]
    assert h.client.expired == [call_id]
    assert h.client.get_timer() is None
    h.server.send(f"ok {call_id} too late")
    h.server.send("ok 99 never asked")
    h.pump()
    assert h.client.matches == [CallMatch.LATE, CallMatch.UNKNOWN]
    assert h.client.late_replies == 1
    assert h.events() == [ProtocolError("toy", "reply to no call: 99")]


def test_timeouts_fire_in_deadline_order_whatever_the_order_of_the_calls() -> None:
    h = toy(ping_interval=None, dead_link_timeout=None)
    h.connect_and_open()
    late = h.client.call("x", h.now, timeout=3)
    early = h.client.call("y", h.now, timeout=1)
    none = h.client.call("z", h.now)
    h.advance(3)
    assert h.events() == [
        CallFailed(early, CallTimeoutError("reply timeout")),
        CallFailed(late, CallTimeoutError("reply timeout")),
    ]
    assert h.client.pending_calls == 1 and h.client.get_timer() is None
    h.server.send(f"ok {none} fine")
    h.pump()
    assert h.events() == [CallSucceeded(none, "fine")]


def test_a_lost_connection_fails_the_calls_sent_on_it_at_once() -> None:
    h = toy()
    h.connect_and_open()
    sent = h.client.call("a", h.now, timeout=10)
    h.pump()
    h.server_eof()
    events = h.events()
    assert events[0] == CallFailed(
        sent, ConnectionLostError("the connection was lost before the reply")
    )
    assert isinstance(events[1], Disconnected)
    assert h.client.pending_calls == 0


def test_a_call_made_while_down_waits_for_the_next_connection() -> None:
    h = toy()
    h.connect_and_open()
    h.server_eof()
    h.events()
    waiting = h.client.call("queued", h.now, timeout=5)
    expiring = h.client.call("too slow", h.now, timeout=0.5)
    h.advance(0.5)
    assert h.events() == [CallFailed(expiring, CallTimeoutError("reply timeout"))]
    h.advance(0.5)  # the reconnect timer: a new connection
    assert isinstance(h.events()[-1], Connected)
    assert sent_texts(h) == [f"{waiting} queued"]
    h.server.send(f"ok {waiting} done")
    h.pump()
    assert h.events() == [CallSucceeded(waiting, "done")]


def test_a_waiting_call_keeps_its_deadline_across_a_lost_connection() -> None:
    h = toy(ping_interval=None, dead_link_timeout=None)
    h.client.connect(h.now)
    call_id = h.client.call("x", h.now, timeout=0.25)
    h.fail_socket()  # before the socket is up: the call is still waiting
    h.events()
    assert h.client.get_timer() == 0.25
    h.advance(0.25)
    assert h.events() == [CallFailed(call_id, CallTimeoutError("reply timeout"))]


def test_disconnect_fails_every_call_waiting_or_in_flight() -> None:
    h = toy()
    h.connect_and_open()
    sent = h.client.call("a", h.now, timeout=5)
    h.pump()
    h.client.disconnect(h.now)
    failed = [event for event in h.events() if isinstance(event, CallFailed)]
    assert failed == [
        CallFailed(sent, ConnectionLostError("the session closed: disconnect() was called"))
    ]
    assert "calls" not in h.client._timers


def test_giving_up_fails_the_calls_still_waiting() -> None:
    h = toy(auto_open=False)
    h.client.connect(h.now)
    call_id = h.client.call("never sent", h.now, timeout=60)
    for _ in range(3):
        h.fail_socket()
        h.advance(1.0)
    events = h.events()
    give_up = next(i for i, event in enumerate(events) if isinstance(event, ReconnectFailed))
    reason = "the session closed: the reconnect schedule is exhausted"
    assert events[give_up + 1] == CallFailed(call_id, ConnectionLostError(reason))
    assert h.client.get_timer() is None


def test_a_dialect_may_fail_a_call_itself_and_its_reply_then_counts_as_late() -> None:
    h = toy()
    h.connect_and_open()
    call_id = h.client.call("a", h.now, timeout=5)
    h.client.refuse(call_id, h.now)
    h.client.refuse(call_id, h.now)  # already over: nothing more
    assert h.events() == [CallFailed(call_id, Refused("refused locally"))]
    h.pump()
    h.server.send(f"ok {call_id} x")
    h.pump()
    assert h.client.late_replies == 1


def test_calls_are_bounded_and_their_timeouts_checked() -> None:
    h = toy(max_pending_calls=2)
    h.connect_and_open()
    h.client.call("a", h.now)
    h.client.call("b", h.now)
    with pytest.raises(SendQueueFullError, match="max_pending_calls"):
        h.client.call("c", h.now)
    for bad in (0, -1, float("inf"), float("nan"), True, "1"):
        with pytest.raises(LocalProtocolError, match="timeout"):
            h.client._open_call(bad, h.now)  # type: ignore[arg-type]
    assert h.client.pending_calls == 2
    with pytest.raises(LocalProtocolError, match="max_pending_calls"):
        SessionConfig(url="ws://h/", entropy=SeededEntropy(1), max_pending_calls=-1)


def test_call_errors_compare_by_type_and_arguments() -> None:
    assert CallTimeoutError("reply timeout") == CallTimeoutError("reply timeout")
    assert CallTimeoutError("x") != ConnectionLostError("x")
    assert CallTimeoutError("x") != "x"
    assert hash(Refused("a", {"data": 1})) == hash(Refused("a", {"data": 1}))
    assert isinstance(CallTimeoutError("x"), TimeoutError)
    assert isinstance(ConnectionLostError("x"), ConnectionError)


# --- the table alone ------------------------------------------------------------


def test_the_table_sweeps_stale_deadlines() -> None:
    table = CallTable()
    ids = [table.open(float(n)) for n in range(100)]
    for call_id in ids[:-1]:
        table.end(call_id)
    assert table.next_deadline() == 99.0
    assert len(table._heap) == 1
    assert table.expire(98.0) == []
    assert table.expire(99.0) == [ids[-1]]
    assert table.next_deadline() is None


def test_the_table_remembers_a_bounded_number_of_ended_keys() -> None:
    table = CallTable()
    for n in range(REMEMBERED_KEYS + 1):
        table.bind(table.open(None), n)
        assert table.end(n + 1)
    assert table.settle(0) == (CallMatch.UNKNOWN, 0)  # the oldest is forgotten
    assert table.settle(REMEMBERED_KEYS) == (CallMatch.LATE, 0)
    assert table.settle(REMEMBERED_KEYS) == (CallMatch.UNKNOWN, 0)  # counted once


def test_a_key_used_again_is_no_longer_late() -> None:
    table = CallTable()
    first = table.open(None)
    table.bind(first, "k")
    table.end(first)
    second = table.open(None)
    table.bind(second, "k")
    assert table.settle("k") == (CallMatch.SETTLED, second)
    assert table.late_replies == 0


def test_expiry_skips_calls_that_ended_early() -> None:
    table = CallTable()
    answered, slow = table.open(1.0), table.open(2.0)
    table.end(answered)
    assert table.expire(2.0) == [slow]
    assert len(table) == 0
