"""The batch path: codecs' ``receive_raw``, and ``next_events`` / ``next_batch`` of the core.

``receive_raw`` is what the session decodes with (no object per message); it
must say exactly what ``receive`` says, which the differential test holds to
wsproto. ``next_batch`` hands a plain WebSocket's messages over as bare
payloads; ``as_event`` makes the same events ``next_event`` gives.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from peer import Harness, server_frame

from octoproto import (
    BinaryMessage,
    Connected,
    Disconnected,
    HandlerRegistry,
    SeededEntropy,
    SessionConfig,
    TextMessage,
    WebSocketClient,
    as_event,
)
from octoproto._fastframes import FastFrameCodec
from octoproto._frames import (
    WebSocketFault,
    WsClose,
    WsMessage,
    WsPing,
    WsprotoFrameCodec,
    merge_events,
    split_events,
)


def _stream() -> bytes:
    return (
        server_frame(0x1, b"a")
        + server_frame(0x9, b"p1")
        + server_frame(0x2, b"\x00" * 200)
        + server_frame(0x1, "é".encode())
        + server_frame(0xA, b"")
        + server_frame(0x9, b"p2")
        + server_frame(0x1, b"z" * 70000)
        + server_frame(0x8, b"\x03\xe8bye")
    )


@pytest.mark.parametrize("codec_class", [FastFrameCodec, WsprotoFrameCodec])
def test_receive_raw_is_receive_split(codec_class: type[FastFrameCodec]) -> None:
    data = _stream()
    ordered = codec_class(SeededEntropy(1), 1 << 20, None).receive(data)
    messages, controls = codec_class(SeededEntropy(1), 1 << 20, None).receive_raw(data)
    assert messages == ["a", b"\x00" * 200, "é", "z" * 70000]
    assert [index for index, _ in controls] == [1, 3, 3, 4]
    assert merge_events(messages, controls) == ordered
    assert split_events(ordered) == (messages, controls)


@given(st.lists(st.sampled_from(["m", "p", "c"]), max_size=8))
def test_merge_and_split_are_inverse(kinds: list[str]) -> None:
    events = [
        WsMessage(str(i)) if kind == "m" else WsPing(b"") if kind == "p" else WsClose(1000, "")
        for i, kind in enumerate(kinds)
    ]
    assert merge_events(*split_events(events)) == events  # type: ignore[arg-type]


def test_a_fault_in_receive_raw_carries_the_ordered_events() -> None:
    codec = FastFrameCodec(SeededEntropy(1), 1 << 20, None)
    data = server_frame(0x1, b"a") + server_frame(0x9, b"") + server_frame(0x3, b"")
    with pytest.raises(WebSocketFault) as info:
        codec.receive_raw(data)
    assert info.value.events == [WsMessage("a"), WsPing(b"")]
    assert codec.receive_raw(server_frame(0x1, b"late")) == ([], [])


def _open() -> Harness[WebSocketClient]:
    h = Harness(WebSocketClient(SessionConfig(url="ws://example.com/", entropy=SeededEntropy(2))))
    assert [type(event) for event in h.connect_and_open()] == [Connected]
    return h


def test_as_event_makes_the_same_events() -> None:
    assert as_event("t") == TextMessage("t")
    assert type(as_event("t")) is TextMessage
    assert as_event(b"b") == BinaryMessage(b"b")
    assert hash(as_event(b"b")) == hash(BinaryMessage(b"b"))
    event = Disconnected(1000, "")
    assert as_event(event) is event
    with pytest.raises(AttributeError):
        as_event("t").text = "changed"  # type: ignore[attr-defined]


def test_next_batch_hands_over_bare_payloads_in_order() -> None:
    h = _open()
    h.server.send("one")
    h.server.send(b"two")
    h.server.send_close(1000, "done")
    h.pump()
    batch = h.client.next_batch()
    assert batch[:2] == ["one", b"two"]
    assert type(batch[2]) is Disconnected
    assert h.client.next_batch() == []
    assert h.client.next_event() is None


def test_next_events_and_next_event_make_the_events() -> None:
    h = _open()
    assert h.client.next_events() == []
    h.server.send("one")
    h.server.send(b"two")
    h.server.send("three")
    h.pump()
    assert h.client.next_event() == TextMessage("one")
    assert h.client.next_events() == [BinaryMessage(b"two"), TextMessage("three")]
    assert h.client.next_events() == []


def test_messages_around_control_frames_keep_their_order() -> None:
    h = _open()
    h.client.receive_data(
        server_frame(0x1, b"a") + server_frame(0x9, b"x") + server_frame(0x1, b"b"), h.now
    )
    assert h.client.next_batch() == ["a", "b"]
    h.pump()
    assert ("pong", b"x") in h.server.received


def test_a_registry_is_true_while_a_handler_is_registered() -> None:
    registry: HandlerRegistry[object] = HandlerRegistry()
    assert not registry
    registry.on("current", print)
    assert registry
    registry.off("current", print)
    assert not registry
