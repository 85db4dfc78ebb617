"""Tests for octoproto._frames: our masked writer and the wsproto-backed reader.

Besides unit tests, two differential properties pin the codec to wsproto
(the reference): what we write, a wsproto server reads as the same messages;
what a wsproto server writes, we read as the same messages, however the bytes
are cut into chunks.
"""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from peer import server_frame
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.extensions import PerMessageDeflate

from octoproto import SeededEntropy
from octoproto._deflate import BoundedPerMessageDeflate
from octoproto._frames import (
    WebSocketFault,
    WsClose,
    WsEvent,
    WsMessage,
    WsPing,
    WsPong,
    WsprotoFrameCodec,
    encode_client_frame,
    mask_payload,
)

# ---------------------------------------------------------------- writing


def _naive_mask(payload: bytes, mask: bytes) -> bytes:
    return bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@given(st.binary(max_size=300), st.binary(min_size=4, max_size=4))
def test_mask_payload_matches_the_rfc(payload: bytes, mask: bytes) -> None:
    assert mask_payload(payload, mask) == _naive_mask(payload, mask)


def test_mask_payload_keeps_leading_zero_bytes() -> None:
    assert mask_payload(b"\x00\x00\x00\x00\x00", b"\x00\x00\x00\x00") == bytes(5)
    assert mask_payload(b"", b"abcd") == b""


@pytest.mark.parametrize(
    ("length", "header"),
    [
        (0, b"\x81\x80"),
        (125, b"\x81\xfd"),
        (126, b"\x81\xfe\x00\x7e"),
        (65535, b"\x81\xfe\xff\xff"),
        (65536, b"\x81\xff" + struct.pack("!Q", 65536)),
    ],
)
def test_encode_client_frame_lengths(length: int, header: bytes) -> None:
    mask = b"\x01\x02\x03\x04"
    payload = bytes(range(256)) * (length // 256) + bytes(range(length % 256))
    frame = encode_client_frame(0x1, payload, mask)
    assert frame == header + mask + _naive_mask(payload, mask)


def test_encode_client_frame_rsv1() -> None:
    assert encode_client_frame(0x2, b"", b"abcd", rsv1=True) == b"\xc2\x80abcd"


def _codec(seed: object = 1, max_message_size: int = 1000) -> WsprotoFrameCodec:
    return WsprotoFrameCodec(SeededEntropy(str(seed)), max_message_size, None)


def test_writer_draws_one_mask_per_frame_from_the_entropy() -> None:
    codec = _codec()
    masks = SeededEntropy("1")
    first, second = masks(4), masks(4)
    assert codec.message("hi") == b"\x81\x82" + first + _naive_mask(b"hi", first)
    assert codec.message(b"\x00") == b"\x82\x81" + second + _naive_mask(b"\x00", second)


def test_control_frames() -> None:
    codec, masks = _codec(), SeededEntropy("1")
    mask = masks(4)
    assert codec.ping(b"p" * 200) == b"\x89\xfd" + mask + _naive_mask(b"p" * 125, mask)
    mask = masks(4)
    assert codec.pong(b"x") == b"\x8a\x81" + mask + _naive_mask(b"x", mask)
    mask = masks(4)
    assert codec.close(1001, "bye") == b"\x88\x85" + mask + _naive_mask(b"\x03\xe9bye", mask)


def test_close_reason_is_cut_on_a_character_boundary() -> None:
    server = Connection(ConnectionType.SERVER)
    server.receive_data(_codec().close(4000, "é" * 100))  # 200 bytes of UTF-8
    (event,) = server.events()
    assert event == CloseConnection(4000, "é" * 61)  # 122 bytes: 123 would split a character


# ---------------------------------------------------------------- reading


def test_read_messages_and_control_frames() -> None:
    codec = _codec()
    data = (
        server_frame(0x1, "héllo".encode())
        + server_frame(0x2, b"\x00\xff")
        + server_frame(0x9, b"ping")
        + server_frame(0xA, b"pong")
        + server_frame(0x8, struct.pack("!H", 4000) + b"bye")
    )
    assert codec.receive(data) == [
        WsMessage("héllo"),
        WsMessage(b"\x00\xff"),
        WsPing(b"ping"),
        WsPong(b"pong"),
        WsClose(4000, "bye"),
    ]


def test_long_server_frames() -> None:
    codec = _codec(max_message_size=100_000)
    for size in (126, 65535, 65536, 70_000):
        assert codec.receive(server_frame(0x2, b"a" * size)) == [WsMessage(b"a" * size)]


def test_close_without_a_code_is_1005() -> None:
    assert _codec().receive(server_frame(0x8, b"")) == [WsClose(1005, "")]


def test_fragmented_message_with_an_interleaved_ping() -> None:
    codec = _codec()
    assert codec.receive(server_frame(0x1, b"ab", fin=False)) == []
    assert codec.receive(server_frame(0x9, b"") + server_frame(0x0, b"cd", fin=False)) == [
        WsPing(b"")
    ]
    assert codec.receive(server_frame(0x0, b"ef")) == [WsMessage("abcdef")]
    assert codec.receive(server_frame(0x2, b"", fin=False) + server_frame(0x0, b"")) == [
        WsMessage(b"")
    ]


def test_partial_bytes_yield_nothing_until_complete() -> None:
    codec = _codec()
    frame = server_frame(0x1, b"x" * 300)
    events: list[WsEvent] = []
    for i in range(len(frame)):
        events += codec.receive(frame[i : i + 1])
    assert events == [WsMessage("x" * 300)]


@pytest.mark.parametrize("opcode", [0x1, 0x2])
def test_max_message_size_exactly(opcode: int) -> None:
    assert _codec(max_message_size=10).receive(server_frame(opcode, b"a" * 10)) != []
    with pytest.raises(WebSocketFault) as info:
        _codec(max_message_size=10).receive(server_frame(opcode, b"a" * 11))
    fault = info.value
    assert (fault.close_code, fault.detail, fault.size) == (
        1009,
        "message exceeds max_message_size",
        11,
    )


def test_max_message_size_across_fragments() -> None:
    codec = _codec(max_message_size=10)
    assert codec.receive(server_frame(0x2, b"a" * 6, fin=False)) == []
    with pytest.raises(WebSocketFault) as info:
        codec.receive(server_frame(0x0, b"b" * 5))
    assert (info.value.close_code, info.value.size) == (1009, 11)


def test_huge_declared_length_fails_on_the_bytes_not_the_header() -> None:
    codec = _codec(max_message_size=10)
    header = b"\x82\x7f" + struct.pack("!Q", 1 << 40)
    assert codec.receive(header + b"a" * 10) == []
    with pytest.raises(WebSocketFault) as info:
        codec.receive(b"a")
    assert (info.value.close_code, info.value.size) == (1009, 11)


@pytest.mark.parametrize(
    ("data", "code", "detail"),
    [
        (server_frame(0x1, b"\xff\xfe"), 1007, "'utf-8' codec can't decode byte 0xff"),
        (server_frame(0x1, b"ok\xc3", fin=False) + server_frame(0x0, b"("), 1007, "'utf-8'"),
        (server_frame(0x1, b"hi", mask=b"abcd"), 1002, "client received unexpected masked frame"),
        (server_frame(0x3, b""), 1002, "Invalid opcode 0x3"),
        (server_frame(0xB, b""), 1002, "Invalid opcode 0xb"),
        (server_frame(0x1, b"x", rsv1=True), 1002, "Reserved bit set unexpectedly"),
        (server_frame(0x9, b"", fin=False), 1002, "Invalid attempt to fragment control frame"),
        (server_frame(0x9, b"p" * 126), 1002, "Control frame with payload len > 125"),
        (server_frame(0x0, b"x"), 1002, "unexpected CONTINUATION"),
        (
            server_frame(0x1, b"a", fin=False) + server_frame(0x2, b"b"),
            1002,
            "expected CONTINUATION",
        ),
        (server_frame(0x8, b"\x03"), 1002, "CLOSE with 1 byte payload"),
        (server_frame(0x8, struct.pack("!H", 999)), 1002, "CLOSE with invalid code"),
        (server_frame(0x8, struct.pack("!H", 1006)), 1002, "remote CLOSE with local-only reason"),
        (server_frame(0x8, struct.pack("!H", 1016)), 1002, "CLOSE with unknown reserved code"),
        (server_frame(0x8, b"\x03\xe8\xff"), 1007, "Error decoding CLOSE reason"),
        (b"\x81\x7e\x00\x05hello", 1002, "Payload length used 2 bytes when 1 would have sufficed"),
    ],
)
def test_bad_frames_are_faults(data: bytes, code: int, detail: str) -> None:
    with pytest.raises(WebSocketFault) as info:
        _codec().receive(data)
    assert (info.value.close_code, info.value.size) == (code, None)
    assert info.value.detail.startswith(detail)
    assert str(info.value) == info.value.detail


def test_frames_after_a_close_are_not_read() -> None:
    codec = _codec()
    assert codec.receive(server_frame(0x8, b"") + server_frame(0x1, b"late")) == [WsClose(1005, "")]
    assert codec.receive(server_frame(0x1, b"later")) == []


# ---------------------------------------------------------------- differential properties

_messages = st.lists(
    st.one_of(st.text(max_size=200), st.binary(max_size=200)), min_size=1, max_size=8
)


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def _deflate_pair() -> tuple[BoundedPerMessageDeflate, PerMessageDeflate]:
    server = PerMessageDeflate()
    ours = BoundedPerMessageDeflate(10_000)
    ours.finalize(
        "permessage-deflate; " + str(server.accept("permessage-deflate; " + ours.offer()))
    )
    return ours, server


@settings(max_examples=100, deadline=None)
@given(
    _messages, st.lists(st.integers(min_value=0), max_size=10), st.booleans(), st.binary(max_size=8)
)
def test_wsproto_server_reads_what_we_write(
    messages: list[str | bytes], cuts: list[int], deflate: bool, seed: bytes
) -> None:
    ours, theirs = _deflate_pair() if deflate else (None, None)
    codec = WsprotoFrameCodec(SeededEntropy(seed), 10_000, ours)
    server = Connection(ConnectionType.SERVER, [theirs] if theirs else [])
    data = b"".join(codec.message(m) for m in messages) + codec.ping(b"p") + codec.close(1000, "ok")
    received: list[object] = []
    parts: list[str | bytes] = []
    for chunk in _chunks(data, cuts):
        server.receive_data(chunk)
        for event in server.events():
            if isinstance(event, TextMessage | BytesMessage):
                parts.append(event.data if isinstance(event, TextMessage) else bytes(event.data))
                if event.message_finished:
                    received.append(parts[0][:0].join(parts))  # type: ignore[arg-type]
                    parts = []
            else:
                received.append(event)
    assert received == [*messages, Ping(b"p"), CloseConnection(1000, "ok")]


def _message(data: str | bytes, *, finished: bool = True) -> TextMessage | BytesMessage:
    if isinstance(data, str):
        return TextMessage(data=data, message_finished=finished)
    return BytesMessage(data=data, message_finished=finished)


@st.composite
def _fragmented(draw: st.DrawFn) -> list[tuple[str | bytes, list[int]]]:
    """Messages, each with the sizes of its fragments (the rest goes in the last one)."""
    return draw(
        st.lists(
            st.tuples(
                st.one_of(st.text(max_size=100), st.binary(max_size=100)),
                st.lists(st.integers(min_value=0, max_value=40), max_size=3),
            ),
            min_size=1,
            max_size=6,
        )
    )


@settings(max_examples=100, deadline=None)
@given(_fragmented(), st.lists(st.integers(min_value=0), max_size=12), st.booleans())
def test_we_read_what_a_wsproto_server_writes(
    messages: list[tuple[str | bytes, list[int]]], cuts: list[int], deflate: bool
) -> None:
    ours, theirs = _deflate_pair() if deflate else (None, None)
    codec = WsprotoFrameCodec(SeededEntropy(0), 10_000, ours)
    server = Connection(ConnectionType.SERVER, [theirs] if theirs else [])
    data = b""
    for message, sizes in messages:
        rest = message
        for size in sizes:
            part, rest = rest[:size], rest[size:]
            data += server.send(_message(part, finished=False))
            data += server.send(Ping(b"keepalive"))
        data += server.send(_message(rest))
    data += server.send(Pong(b"")) + server.send(CloseConnection(1001, "restart"))
    events: list[WsEvent] = []
    for chunk in _chunks(data, cuts):
        events += codec.receive(chunk)
    expected: list[WsEvent] = []
    for message, sizes in messages:
        expected += [WsPing(b"keepalive")] * len(sizes) + [WsMessage(message)]
    assert events == [*expected, WsPong(b""), WsClose(1001, "restart")]


def test_bytes_message_events_are_compared_as_bytes() -> None:
    # wsproto may hand over bytearray payloads; the codec always returns bytes.
    (event,) = _codec().receive(bytes(Connection(ConnectionType.SERVER).send(BytesMessage(b"x"))))
    assert event == WsMessage(b"x")
    assert type(event.data) is bytes


def test_the_limit_counts_bytes_not_characters() -> None:
    # 3 characters, 9 bytes: over a limit of 8 although wsproto hands over 3 characters.
    with pytest.raises(WebSocketFault) as info:
        _codec(max_message_size=8).receive(server_frame(0x1, "€€€".encode()))
    assert info.value.size == 9
    assert _codec(max_message_size=9).receive(server_frame(0x1, "€€€".encode())) != []


def test_the_limit_counts_a_character_not_yet_complete() -> None:
    # wsproto's decoder holds back b"\xe2\x82"; those bytes arrived all the same.
    codec = _codec(max_message_size=2)
    assert codec.receive(server_frame(0x1, b"\xe2\x82", fin=False)) == []
    with pytest.raises(WebSocketFault) as info:
        codec.receive(server_frame(0x0, b"\xac"))
    assert (info.value.close_code, info.value.size) == (1009, 3)


def test_nothing_is_read_after_a_fault() -> None:
    codec = _codec(max_message_size=1)
    with pytest.raises(WebSocketFault):
        codec.receive(server_frame(0x2, b"ab"))
    assert codec.receive(server_frame(0x2, b"c")) == []


@pytest.mark.parametrize("size", [1023, 1024, 4099])
def test_mask_payload_on_both_sides_of_the_switch(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert mask_payload(payload, b"\x9a\x01\xff\x00") == _naive_mask(payload, b"\x9a\x01\xff\x00")
