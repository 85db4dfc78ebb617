"""A server that stops reading: the send backlog (``max_send_backlog``, design musts 6 and 7).

The core counts the bytes it sent on the push socket that the adapter has
not reported written (``io_completed``). At the bound it says so once
(``LimitExceeded``), holds user messages back in its bounded queue, in
order, until the backlog is down to half, and treats a backlog that does
not move for ``dead_link_timeout`` as a dead link (close, reconnect; the
queue goes out on the next connection). The harness delivers every
``SendData`` to the server at once; what the adapter has "written" is what
these tests report with :func:`confirm`.
"""

from __future__ import annotations

from typing import Any

import pytest
from peer import Harness

from octoproto import (
    Channel,
    CloseTransport,
    Connected,
    Disconnected,
    LimitExceeded,
    LocalProtocolError,
    ReconnectSchedule,
    ReconnectScheduled,
    SeededEntropy,
    SendData,
    SendFailed,
    SendQueueFullError,
    SessionConfig,
    SessionState,
    WebSocketClient,
)

#: 300 characters: a 308-byte client frame (2 + 2 length + 4 mask).
MESSAGE = "m" * 300
FRAME = 308


def numbered(n: int) -> str:
    """A :data:`MESSAGE` that starts with the digit ``n``."""
    return f"{n}{MESSAGE[1:]}"


def opened(**kwargs: Any) -> tuple[Harness[WebSocketClient], list[int]]:
    """An open plain WebSocket client with a send backlog of 1000 bytes; every write confirmed."""
    options: dict[str, Any] = {
        "url": "ws://example.com/ws",
        "entropy": SeededEntropy(1),
        "compression": False,
        "max_send_backlog": 1000,
        **kwargs,
    }
    h = Harness(WebSocketClient(SessionConfig(**options)))
    assert [type(e) for e in h.connect_and_open()] == [Connected]
    confirmed = [0]  # how many SendData commands were reported written
    confirm(h, confirmed)
    return h, confirmed


def confirm(h: Harness[WebSocketClient], confirmed: list[int], count: int | None = None) -> None:
    """Report the next ``count`` socket writes (all so far: ``None``) as the adapters do."""
    writes = [c for c in h.commands if isinstance(c, SendData) and c.channel is Channel.SOCKET]
    end = len(writes) if count is None else confirmed[0] + count
    for command in writes[confirmed[0] : end]:
        h.client.io_completed("send", len(command.data), 0.0, h.now)
    confirmed[0] = end
    h.pump()


def texts(h: Harness[WebSocketClient]) -> list[str]:
    return [str(item[1]) for item in h.server.received if item[0] == "text"]


def test_no_bound_without_the_setting() -> None:
    h, _ = opened(max_send_backlog=None)
    for n in range(100):
        h.client.send(f"{n}")
    h.pump()
    assert len(texts(h)) == 100
    assert h.events() == []


def test_full_backlog_holds_user_messages_back_until_half_is_written() -> None:
    h, confirmed = opened()
    for n in range(6):
        h.client.send(numbered(n))
    h.pump()
    # The fourth write takes the backlog to 4 × 308 bytes: it goes, the rest wait.
    assert h.events() == [LimitExceeded("max_send_backlog", 4 * FRAME, 1000)]
    assert [t[0] for t in texts(h)] == ["0", "1", "2", "3"]
    confirm(h, confirmed, 2)  # 616 bytes left: more than half
    assert len(texts(h)) == 4
    confirm(h, confirmed, 1)  # 308 bytes left: the queue goes out, in order
    assert [t[0] for t in texts(h)] == ["0", "1", "2", "3", "4", "5"]
    assert h.events() == []  # (924 bytes: not full again)
    h.client.send("after")
    h.pump()
    assert texts(h)[-1] == "after"
    assert h.client.state is SessionState.OPEN


def test_while_full_the_queue_is_bounded_and_used_even_without_queueing() -> None:
    h, _ = opened(max_queued_messages=2, queue_while_disconnected=False)
    for _ in range(4):
        h.client.send(MESSAGE)
    h.client.send("held 1")
    h.client.send("held 2")
    with pytest.raises(SendQueueFullError, match=r"2 messages .* the server is not reading"):
        h.client.send("refused")
    h.pump()
    assert len(texts(h)) == 4


def test_a_stalled_backlog_is_a_dead_link_and_the_queue_goes_out_after_the_reconnect() -> None:
    h, _ = opened(ping_interval=None)
    for n in range(5):
        h.client.send(numbered(n))
    h.pump()
    full_at = h.now
    h.events()
    # The server keeps sending (the receiving side looks alive) but reads nothing.
    h.advance(20)
    h.server.send_pong()  # (unsolicited: no event, no answer)
    h.pump()
    h.commands.clear()
    h.advance(10)  # 30 s after the backlog filled: dead_link_timeout
    assert h.now == full_at + 30
    assert h.events() == [
        Disconnected(1006, f"send stalled: {4 * FRAME} bytes not written for 30.0 s"),
        ReconnectScheduled(1, 1.0),
    ]
    # No close frame: it would only wait behind the rest.
    assert h.commands[0] == CloseTransport(Channel.SOCKET)
    assert not [c for c in h.commands if isinstance(c, SendData)]
    h.advance(1)  # redial; the new connection starts with an empty backlog
    assert [type(e) for e in h.events()] == [Connected]
    assert texts(h) == [numbered(4)]
    assert h.client.state is SessionState.OPEN


def test_progress_moves_the_stall_deadline() -> None:
    h, confirmed = opened()
    for _ in range(6):
        h.client.send(MESSAGE)
    h.pump()
    h.events()
    for _ in range(2):  # the server keeps the receiving side alive
        h.advance(10)
        h.server.send_pong()
        h.pump()
    confirm(h, confirmed, 1)  # 20 s in, one write done: still full, but moving
    h.advance(10)
    h.server.send_pong()
    h.pump()
    h.advance(19)  # 49 s in
    assert h.events() == [] and h.client.state is SessionState.OPEN
    h.advance(1)  # 30 s after the last progress
    assert [type(e) for e in h.events()] == [Disconnected, ReconnectScheduled]


def test_without_a_dead_link_timeout_a_full_backlog_only_waits() -> None:
    h, confirmed = opened(dead_link_timeout=None, ping_interval=None)
    for _ in range(5):
        h.client.send(MESSAGE)
    h.pump()
    assert h.client.get_timer() is None
    confirm(h, confirmed, 1)  # still full: nothing to re-arm
    assert h.client.get_timer() is None
    h.advance(1000)
    assert [type(e) for e in h.events()] == [LimitExceeded]
    assert h.client.state is SessionState.OPEN


def test_the_backlog_belongs_to_the_connection() -> None:
    h, _ = opened(reconnect=ReconnectSchedule.fixed(0.5, None))
    for _ in range(5):
        h.client.send(MESSAGE)
    h.pump()
    h.server_eof()
    h.advance(0.5)
    assert [type(e) for e in h.events()] == [
        LimitExceeded,
        Disconnected,
        ReconnectScheduled,
        Connected,
    ]
    assert len(texts(h)) == 1  # the fifth, queued, went out on the new connection
    # A late report about the old socket (adapters filter these) cannot go below zero.
    h.client.io_completed("send", 10**6, 0.0, h.now)
    for _ in range(3):
        h.client.send(MESSAGE)
    h.pump()
    assert len(texts(h)) == 4 and h.events() == []


def test_disconnect_hands_back_what_the_backlog_held() -> None:
    h, _ = opened()
    for n in range(5):
        h.client.send(f"{n}")
        h.client.send(MESSAGE)
    h.pump()
    h.events()
    h.client.disconnect(h.now)
    (failed,) = [e for e in h.events() if isinstance(e, SendFailed)]
    # 3 × (7 + 308) bytes, then "3" and the fourth MESSAGE fill it: the rest waits.
    assert failed.messages == ("4", MESSAGE)
    assert failed.reason == "disconnect() was called"


def test_a_full_backlog_before_the_session_is_up() -> None:
    # The upgrade request alone fills a 1-byte backlog; once written it is
    # empty again, and nothing is flushed before the session is up.
    config = SessionConfig(url="ws://example.com/ws", entropy=SeededEntropy(1), max_send_backlog=1)
    h = Harness(WebSocketClient(config), answer=lambda request: b"")  # no 101 yet
    h.client.connect(h.now)
    h.pump()
    h.client.send("early")
    (request,) = [c for c in h.commands if isinstance(c, SendData)]
    h.client.io_completed("send", len(request.data), 0.0, h.now)
    h.pump()
    assert h.client.state is SessionState.HANDSHAKING
    assert [type(e) for e in h.events()] == [LimitExceeded]
    assert h.server.received == []


def test_a_tiny_bound_fills_with_each_message_and_lets_it_go() -> None:
    config = SessionConfig(url="ws://example.com/ws", entropy=SeededEntropy(1), max_send_backlog=1)
    h = Harness(WebSocketClient(config))
    assert [type(e) for e in h.connect_and_open()] == [LimitExceeded, Connected]
    confirmed = [0]
    confirm(h, confirmed)  # the upgrade request: the backlog is empty again
    for n in range(2):
        h.client.send(f"{n}")
        h.pump()
        assert texts(h)[-1] == f"{n}"
        assert [type(e) for e in h.events()] == [LimitExceeded]
        confirm(h, confirmed)


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "1"])
def test_max_send_backlog_must_be_a_positive_int(value: object) -> None:
    with pytest.raises(LocalProtocolError, match="max_send_backlog must be an int >= 1 or None"):
        SessionConfig(url="ws://x/", entropy=SeededEntropy(1), max_send_backlog=value)  # type: ignore[arg-type]
