"""Tests for octoproto._deflate: negotiation, bounded inflation, context takeover."""

from __future__ import annotations

import functools
import tracemalloc
import zlib

import pytest
from peer import Accept, Harness, server_frame
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, Ping, TextMessage
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason, Opcode, RsvBits

from octoproto import (
    Disconnected,
    LimitExceeded,
    ProtocolError,
    ReconnectScheduled,
    SeededEntropy,
    SessionConfig,
    WebSocketClient,
)
from octoproto._deflate import BoundedPerMessageDeflate
from octoproto._frames import (
    WebSocketFault,
    WsMessage,
    WsPing,
    WsprotoFrameCodec,
    mask_payload,
)

BOMB_SIZE = 50 * 1024 * 1024


@functools.cache
def _bomb() -> bytes:
    """50 MiB of zeros, deflated (about 50 KiB), as one permessage-deflate payload."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    data = b"".join(compressor.compress(chunk) for _ in range(BOMB_SIZE >> 20))
    data += compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


def _deflate(
    response: str = "permessage-deflate", max_size: int = 1000
) -> BoundedPerMessageDeflate:
    extension = BoundedPerMessageDeflate(max_size)
    extension.finalize(response)
    return extension


def _pair(
    **server_options: object,
) -> tuple[WsprotoFrameCodec, Connection, BoundedPerMessageDeflate]:
    """Our codec and a wsproto server that negotiated permessage-deflate with it."""
    server_extension = PerMessageDeflate(**server_options)  # type: ignore[arg-type]
    ours = BoundedPerMessageDeflate(100_000)
    accepted = server_extension.accept(f"{ours.name}; {ours.offer()}")
    ours.finalize(f"{ours.name}; {accepted}")
    codec = WsprotoFrameCodec(SeededEntropy(3), 100_000, ours)
    return codec, Connection(ConnectionType.SERVER, [server_extension]), ours


# ---------------------------------------------------------------- negotiation


def test_offer_and_name() -> None:
    extension = BoundedPerMessageDeflate(10)
    assert extension.name == "permessage-deflate"
    assert extension.offer() == "client_max_window_bits"
    assert extension.enabled() is False
    extension.finalize("permessage-deflate")
    assert extension.enabled() is True


@pytest.mark.parametrize(
    ("response", "state"),
    [
        ("permessage-deflate", (False, False, 15, 15)),
        (
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            (True, True, 15, 15),
        ),
        ("permessage-deflate; server_max_window_bits=10", (False, False, 10, 15)),
        ('permessage-deflate; server_max_window_bits="9"', (False, False, 9, 15)),
        ("permessage-deflate; client_max_window_bits", (False, False, 15, 15)),
        ("permessage-deflate; client_max_window_bits = 12", (False, False, 15, 12)),
        ("permessage-deflate; client_max_window_bits=8", (False, False, 15, 9)),
        ("permessage-deflate; server_max_window_bits=8", (False, False, 8, 15)),
    ],
)
def test_finalize_parameters(response: str, state: tuple[bool, bool, int, int]) -> None:
    extension = _deflate(response)
    assert (
        extension._server_no_context_takeover,
        extension._client_no_context_takeover,
        extension._server_window_bits,
        extension._client_window_bits,
    ) == state


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (
            "permessage-deflate; server_max_window_bits=16",
            "server_max_window_bits=16 is out of range",
        ),
        (
            "permessage-deflate; client_max_window_bits=7",
            "client_max_window_bits=7 is out of range",
        ),
        ("permessage-deflate; server_max_window_bits=", "server_max_window_bits=15"),
        ("permessage-deflate; x=1", "unknown permessage-deflate parameter 'x'"),
    ],
)
def test_finalize_refuses(response: str, message: str) -> None:
    extension = BoundedPerMessageDeflate(10)
    if message == "server_max_window_bits=15":  # an empty value means the default
        extension.finalize(response)
        assert extension._server_window_bits == 15
        return
    with pytest.raises(ValueError) as info:
        extension.finalize(response)
    assert str(info.value) == message
    assert extension.enabled() is False


# ---------------------------------------------------------------- round trips


def test_compressed_messages_both_ways() -> None:
    codec, server, _ = _pair()
    server.receive_data(codec.message("hello hello hello") + codec.message(b"\x00" * 1000))
    text, binary = server.events()
    assert text == TextMessage("hello hello hello")
    assert isinstance(binary, BytesMessage)
    assert binary.data == b"\x00" * 1000
    frame = codec.message(b"\x00" * 1000)
    assert frame[0] == 0xC2 and len(frame) < 30  # RSV1 set, and actually compressed
    data = server.send(TextMessage("a" * 500)) + server.send(BytesMessage(b"b" * 500))
    assert data[0] == 0xC1
    assert codec.receive(data) == [WsMessage("a" * 500), WsMessage(b"b" * 500)]


def test_uncompressed_message_on_a_deflate_connection() -> None:
    codec, _, _ = _pair()
    assert codec.receive(server_frame(0x1, b"plain")) == [WsMessage("plain")]


def test_fragmented_compressed_message_with_an_interleaved_ping() -> None:
    codec, server, _ = _pair()
    data = server.send(TextMessage("abc" * 100, message_finished=False))
    data += server.send(Ping(b"!"))
    data += server.send(TextMessage("def" * 100))
    assert data[0] == 0x41  # RSV1 on the first frame only, no FIN
    assert codec.receive(data) == [WsPing(b"!"), WsMessage("abc" * 100 + "def" * 100)]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (server_frame(0x9, b"", rsv1=True), 1002),  # RSV1 on a control frame
        (server_frame(0x1, b"a", fin=False) + server_frame(0x0, b"b", rsv1=True), 1002),
        (server_frame(0x1, b"\xff\xff\xff\xff", rsv1=True), 1007),  # not deflate data
    ],
)
def test_bad_compressed_input(frame: bytes, code: int) -> None:
    codec, _, _ = _pair()
    with pytest.raises(WebSocketFault) as info:
        codec.receive(frame)
    assert (info.value.close_code, info.value.size) == (code, None)


def test_hooks_directly() -> None:
    extension = _deflate()
    proto = object()
    plain = RsvBits(False, False, False)
    assert extension.frame_inbound_header(proto, Opcode.PING, plain, 0) == RsvBits(
        True, False, False
    )
    assert extension.frame_inbound_payload_data(proto, b"raw") == b"raw"
    assert extension.frame_inbound_complete(proto, True) is None  # a control frame
    assert extension.frame_inbound_header(proto, Opcode.TEXT, plain, 3) == RsvBits(
        True, False, False
    )
    assert extension.frame_inbound_complete(proto, False) is None  # not the last frame
    assert extension.frame_inbound_complete(proto, True) is None  # uncompressed message
    assert (
        extension.frame_inbound_header(proto, Opcode.CONTINUATION, RsvBits(True, False, False), 0)
        is CloseReason.PROTOCOL_ERROR
    )


# ---------------------------------------------------------------- the bound


def _compressed(payload: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return (compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def test_inflation_up_to_exactly_the_limit() -> None:
    codec = WsprotoFrameCodec(SeededEntropy(0), 1000, _deflate())
    assert codec.receive(server_frame(0x2, _compressed(bytes(1000)), rsv1=True)) == [
        WsMessage(bytes(1000))
    ]


def test_inflation_one_past_the_limit() -> None:
    extension = _deflate()
    codec = WsprotoFrameCodec(SeededEntropy(0), 1000, extension)
    with pytest.raises(WebSocketFault) as info:
        codec.receive(server_frame(0x2, _compressed(bytes(1001)), rsv1=True))
    assert (info.value.close_code, info.value.detail, info.value.size) == (
        1009,
        "message exceeds max_message_size",
        1001,
    )
    assert extension.inflated_size == 1001


def test_the_limit_spans_fragments() -> None:
    compressed = _compressed(b"x" * 600 + b"y" * 600)
    half = len(compressed) // 2
    codec = WsprotoFrameCodec(SeededEntropy(0), 1000, _deflate())
    with pytest.raises(WebSocketFault) as info:
        codec.receive(
            server_frame(0x1, compressed[:half], fin=False, rsv1=True)
            + server_frame(0x0, compressed[half:])
        )
    assert (info.value.close_code, info.value.size) == (1009, 1001)


def test_decompression_bomb_never_inflates() -> None:
    bomb = server_frame(0x2, _bomb(), rsv1=True)
    client = WebSocketClient(
        SessionConfig(url="ws://h/", entropy=SeededEntropy(1), max_message_size=64 * 1024)
    )
    h = Harness(client, answer=Accept(deflate=PerMessageDeflate))
    assert len(h.connect_and_open()) == 1
    h.server.send_raw(bomb)
    tracemalloc.start()
    try:
        h.pump()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024  # nowhere near the 50 MiB the bomb would inflate to
    assert h.events() == [
        LimitExceeded("max_message_size", 64 * 1024 + 1, 64 * 1024),
        ProtocolError("websocket", "message exceeds max_message_size"),
        Disconnected(1009, "message exceeds max_message_size"),
        ReconnectScheduled(1, 1.0),
    ]
    assert h.server.received == [("close", 1009, "message exceeds max_message_size")]
    assert not h.socket_live


# ---------------------------------------------------------------- context takeover


def test_inbound_context_takeover_is_kept() -> None:
    codec, server, extension = _pair()
    text = "the same long sentence, sent twice to test the shared window. " * 4
    first, second = server.send(TextMessage(text)), server.send(TextMessage(text))
    assert len(second) < len(first) / 3  # the server refers back to the first message
    assert codec.receive(first) == [WsMessage(text)]
    inflater = extension._inflater
    assert inflater is not None
    assert codec.receive(second) == [WsMessage(text)]
    assert extension._inflater is inflater


def test_inbound_no_context_takeover_resets_the_inflater() -> None:
    codec, server, extension = _pair(server_no_context_takeover=True)
    assert extension._server_no_context_takeover
    text = "no shared window between messages. " * 4
    first, second = server.send(TextMessage(text)), server.send(TextMessage(text))
    assert first == second  # each message is compressed from scratch
    assert codec.receive(first) == [WsMessage(text)]
    assert extension._inflater is None
    assert codec.receive(second) == [WsMessage(text)]


@pytest.mark.parametrize("no_takeover", [False, True])
def test_outbound_context_takeover(no_takeover: bool) -> None:
    codec, server, extension = _pair(client_no_context_takeover=no_takeover)
    assert extension._client_no_context_takeover is no_takeover
    text = "a message worth compressing, twice over. " * 4
    frames = [codec.message(text) for _ in range(3)]
    assert (len(frames[1]) < len(frames[0]) / 3) is not no_takeover
    payloads = [mask_payload(frame[6:], frame[2:6]) for frame in frames]  # all < 126 bytes
    assert (payloads[0] == payloads[1] == payloads[2]) is no_takeover
    server.receive_data(b"".join(frames))
    assert [e.data for e in server.events()] == [text, text, text]  # type: ignore[attr-defined]


def test_small_client_window_is_honoured() -> None:
    extension = _deflate("permessage-deflate; client_max_window_bits=9")
    server_extension = PerMessageDeflate()
    server_extension.finalize("permessage-deflate; client_max_window_bits=9")
    server = Connection(ConnectionType.SERVER, [server_extension])
    payload = bytes(range(256)) * 8
    server.receive_data(WsprotoFrameCodec(SeededEntropy(0), 10_000, extension).message(payload))
    assert [bytes(e.data) for e in server.events()] == [payload]  # type: ignore[attr-defined]
