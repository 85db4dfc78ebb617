"""Engine.IO / Socket.IO packets: parsing what the server sends, encoding what the client sends.

The samples marked "captured" are frames python-socketio 5.18.1 sent to a raw
client (tests/servers/socketio_app.py).
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from octoproto import InvalidMessageError, LocalProtocolError
from octoproto._socketio_wire import (
    BinaryAssembler,
    EngineIOOpen,
    EngineIOType,
    PacketType,
    SocketIOPacket,
    SocketIOWireError,
    check_event,
    check_namespace,
    encode_packet,
    parse_engineio,
    parse_open,
    parse_packet,
)

CAPTURED_OPEN = (
    '{"sid":"a-PDpVFTOckioBygAAAA","upgrades":[],"pingTimeout":1000,'
    '"pingInterval":2000,"maxPayload":1000000}'
)


def test_engineio_types() -> None:
    assert parse_engineio("2") == (EngineIOType.PING, "")
    assert parse_engineio("6") == (EngineIOType.NOOP, "")
    assert parse_engineio('42["a"]') == (EngineIOType.MESSAGE, '2["a"]')
    assert parse_engineio(b"\x00") == (EngineIOType.MESSAGE, b"\x00")


@pytest.mark.parametrize("bad", ["", "7", "x2", " 2"])
def test_engineio_garbage(bad: str) -> None:
    with pytest.raises(SocketIOWireError, match=r"not an Engine\.IO packet"):
        parse_engineio(bad)


def test_open_captured() -> None:
    assert parse_open(CAPTURED_OPEN) == EngineIOOpen("a-PDpVFTOckioBygAAAA", 2.0, 1.0, 1_000_000)


def test_open_without_max_payload_takes_the_protocol_default() -> None:
    opened = parse_open('{"sid":"s","pingInterval":25000,"pingTimeout":20000}')
    assert opened.max_payload == 1_000_000


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ("[]", "JSON object"),
        ("{", "invalid JSON"),
        ('{"sid":"","pingInterval":1,"pingTimeout":1}', "sid"),
        ('{"sid":1,"pingInterval":1,"pingTimeout":1}', "sid"),
        ('{"sid":"s","pingInterval":true,"pingTimeout":1}', "pingInterval must be a number"),
        ('{"sid":"s","pingInterval":"1","pingTimeout":1}', "pingInterval must be a number"),
        ('{"sid":"s","pingInterval":1,"pingTimeout":-1}', "pingTimeout must be >= 0"),
        ('{"sid":"s","pingInterval":1,"pingTimeout":1,"maxPayload":0}', "maxPayload"),
        ('{"sid":"s","pingInterval":1,"pingTimeout":1,"maxPayload":1.5}', "maxPayload"),
        ('{"sid":"s","pingInterval":1,"pingTimeout":1,"maxPayload":true}', "maxPayload"),
    ],
)
def test_open_invalid(data: str, match: str) -> None:
    with pytest.raises(SocketIOWireError, match=match):
        parse_open(data)


@pytest.mark.parametrize(
    ("text", "packet"),
    [
        # captured
        (
            '0{"sid":"TgcnV6rIoKU8RHprAAAB"}',
            SocketIOPacket(PacketType.CONNECT, "/", {"sid": "TgcnV6rIoKU8RHprAAAB"}),
        ),
        ('0/chat,{"sid":"A7"}', SocketIOPacket(PacketType.CONNECT, "/chat", {"sid": "A7"})),
        (
            '4/nope,"Unable to connect"',
            SocketIOPacket(PacketType.CONNECT_ERROR, "/nope", "Unable to connect"),
        ),
        (
            '4{"message":"authentication failed","data":{"code":401}}',
            SocketIOPacket(
                PacketType.CONNECT_ERROR,
                "/",
                {"message": "authentication failed", "data": {"code": 401}},
            ),
        ),
        ("1", SocketIOPacket(PacketType.DISCONNECT, "/")),
        ("1/chat,", SocketIOPacket(PacketType.DISCONNECT, "/chat")),
        ('31["hi",{"a":1}]', SocketIOPacket(PacketType.ACK, "/", ["hi", {"a": 1}], 1)),
        ('3/chat,7["chat","yo"]', SocketIOPacket(PacketType.ACK, "/chat", ["chat", "yo"], 7)),
        ('21["question","what?"]', SocketIOPacket(PacketType.EVENT, "/", ["question", "what?"], 1)),
        (
            '2/chat,["hello","from /chat"]',
            SocketIOPacket(PacketType.EVENT, "/chat", ["hello", "from /chat"]),
        ),
        # a namespace at the very end (socket.io's parser allows it)
        ("1/chat", SocketIOPacket(PacketType.DISCONNECT, "/chat")),
        (
            '61-1[{"_placeholder":true,"num":0},"x"]',
            SocketIOPacket(
                PacketType.BINARY_ACK, "/", [{"_placeholder": True, "num": 0}, "x"], 1, 1
            ),
        ),
    ],
)
def test_parse_packet(text: str, packet: SocketIOPacket) -> None:
    assert parse_packet(text) == packet


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "not a Socket.IO packet"),
        ("9", "not a Socket.IO packet"),
        ("0", "CONNECT without a sid"),
        ('0{"sid":5}', "CONNECT without a sid"),
        ("2", "EVENT data"),
        ("2[]", "EVENT data"),
        ("2[1]", "EVENT data"),
        ('2{"a":1}', "EVENT data"),
        ('3["x"]', "ACK without an ack id"),
        ('31{"x":1}', "ACK data must be a list"),
        ('5["a"]', "attachment count"),
        ('51["a"]', "attachment count"),
        ('2["a"', "invalid JSON"),
        ("2" + "1" * 17 + '["a"]', "17 digits"),
    ],
)
def test_parse_packet_invalid(text: str, match: str) -> None:
    with pytest.raises(SocketIOWireError, match=match):
        parse_packet(text)


def _feed(assembler: BinaryAssembler, text: str, *parts: bytes) -> SocketIOPacket | None:
    result = assembler.feed_packet(parse_packet(text))
    for part in parts:
        assert result is None
        result = assembler.feed_binary(part)
    return result


def test_binary_reassembly_captured() -> None:
    # captured: server emit("binary", {"blob": b"..", "parts": [b"a", "text", b"bc"]}, b"2nd")
    text = (
        '54-["binary",{"blob":{"_placeholder":true,"num":0},"parts":[{"_placeholder":true,'
        '"num":1},"text",{"_placeholder":true,"num":2}]},{"_placeholder":true,"num":3}]'
    )
    assembler = BinaryAssembler(8, 1000)
    packet = _feed(assembler, text, b"\x00\x01\xff", b"a", b"bc", b"2nd")
    assert packet == SocketIOPacket(
        PacketType.BINARY_EVENT,
        "/",
        ["binary", {"blob": b"\x00\x01\xff", "parts": [b"a", "text", b"bc"]}, b"2nd"],
        None,
        4,
    )
    # The assembler is ready for the next packet.
    assert _feed(assembler, '2["x"]') == SocketIOPacket(PacketType.EVENT, "/", ["x"])


def test_binary_with_no_attachment_is_whole_at_once() -> None:
    packet = _feed(BinaryAssembler(1, 10), '50-["a",1]')
    assert packet == SocketIOPacket(PacketType.BINARY_EVENT, "/", ["a", 1])


@pytest.mark.parametrize(
    ("text", "parts", "match"),
    [
        ('52-["a",{"_placeholder":true,"num":0}]', [b"x", b"y"], "2 attachments but 1"),
        ('51-["a",{"_placeholder":true,"num":1}]', [b"x"], "bad binary placeholder"),
        ('51-["a",{"_placeholder":true,"num":true}]', [b"x"], "bad binary placeholder"),
        ('51-["a",{"_placeholder":true,"num":"0"}]', [b"x"], "bad binary placeholder"),
        ('51-["a",{"_placeholder":true,"num":0,"x":1}]', [b"x"], "bad binary placeholder"),
        (
            '52-["a",{"_placeholder":true,"num":0},{"_placeholder":true,"num":0}]',
            [b"x", b"y"],
            "bad binary placeholder",
        ),
        ('59-["a"]', [], "9 attachments"),
        ('52-["a"]', [b"x" * 60, b"y" * 60], "more than 100 bytes"),
    ],
)
def test_binary_reassembly_errors(text: str, parts: list[bytes], match: str) -> None:
    with pytest.raises(SocketIOWireError, match=match):
        _feed(BinaryAssembler(8, 100), text, *parts)


def test_placeholder_false_is_plain_data() -> None:
    packet = _feed(
        BinaryAssembler(1, 10),
        '51-["a",{"_placeholder":false},{"_placeholder":true,"num":0}]',
        b"z",
    )
    assert packet is not None
    assert packet.data == ["a", {"_placeholder": False}, b"z"]


def test_text_packet_while_attachments_are_due() -> None:
    assembler = BinaryAssembler(8, 100)
    assembler.feed_packet(
        parse_packet('52-["a",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]')
    )
    assembler.feed_binary(b"x")
    with pytest.raises(SocketIOWireError, match="after 1 of 2 attachments"):
        assembler.feed_packet(parse_packet('2["b"]'))
    assembler.reset()
    assert assembler.feed_packet(parse_packet('2["b"]')) is not None


def test_binary_message_with_no_packet() -> None:
    with pytest.raises(SocketIOWireError, match="no packet before it"):
        BinaryAssembler(8, 100).feed_binary(b"abc")


def test_deep_nesting_is_reassembled_without_recursion() -> None:
    depth = 5000
    text = '51-["a",' + "[" * depth + '{"_placeholder":true,"num":0}' + "]" * depth + "]"
    try:
        packet = parse_packet(text)
    except SocketIOWireError:
        return  # json refused the depth itself: fine too
    result = BinaryAssembler(1, 10).feed_packet(packet)
    assert result is None


def test_encode_packets() -> None:
    assert encode_packet(PacketType.CONNECT) == ["40"]
    assert encode_packet(PacketType.CONNECT, "/", {"token": "x"}) == ['40{"token":"x"}']
    assert encode_packet(PacketType.CONNECT, "/chat") == ["40/chat,"]
    assert encode_packet(PacketType.DISCONNECT, "/chat") == ["41/chat,"]
    assert encode_packet(PacketType.EVENT, "/", ["echo", "hi"], 1) == ['421["echo","hi"]']
    assert encode_packet(PacketType.EVENT, "/chat", ["msg", "yo"], 7) == ['42/chat,7["msg","yo"]']
    assert encode_packet(PacketType.ACK, "/", ["forty-two"], 3) == ['433["forty-two"]']
    assert encode_packet(PacketType.EVENT, "/", ["é"]) == ['42["é"]']


def test_encode_binary() -> None:
    messages = encode_packet(
        PacketType.EVENT, "/chat", ["up", b"x", (1, bytearray(b"y")), {"k": memoryview(b"z")}], 5
    )
    assert messages == [
        '453-/chat,5["up",{"_placeholder":true,"num":0},[1,{"_placeholder":true,"num":1}],'
        '{"k":{"_placeholder":true,"num":2}}]',
        b"x",
        b"y",
        b"z",
    ]
    assert encode_packet(PacketType.ACK, "/", [b"q"], 2) == [
        '461-2[{"_placeholder":true,"num":0}]',
        b"q",
    ]


@pytest.mark.parametrize("data", [[float("nan")], [object()], [{1j: 1}]])
def test_encode_refuses_what_is_not_json(data: list[object]) -> None:
    with pytest.raises(InvalidMessageError, match="not JSON-serializable"):
        encode_packet(PacketType.EVENT, "/", ["x", *data])


def test_encode_refuses_too_deep() -> None:
    data: list[object] = []
    for _ in range(100_000):
        data = [data]
    with pytest.raises(InvalidMessageError, match="nested too deeply"):
        encode_packet(PacketType.EVENT, "/", ["x", data])


def test_checks_are_local_errors() -> None:
    assert check_namespace("/chat") == "/chat"
    assert check_event("echo") == "echo"
    for bad in ("chat", "/a,b", 5):
        with pytest.raises(LocalProtocolError, match="namespace"):
            check_namespace(bad)
    for bad_event in ("", 5):
        with pytest.raises(InvalidMessageError, match="event name"):
            check_event(bad_event)
    with pytest.raises(InvalidMessageError, match="reserved"):
        check_event("connect")


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)
_with_bytes = st.recursive(
    _json | st.binary(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)
_namespaces = st.just("/") | st.text(
    st.characters(blacklist_characters=",", codec="utf-8"), max_size=6
).map(lambda s: "/" + s)


@given(
    namespace=_namespaces,
    event=st.text(min_size=1, max_size=8),
    args=st.lists(_with_bytes, max_size=4),
    ack_id=st.none() | st.integers(0, 2**53),
    ack=st.booleans(),
)
def test_round_trip(
    namespace: str, event: str, args: list[object], ack_id: int | None, ack: bool
) -> None:
    kind, data = (PacketType.ACK, args) if ack else (PacketType.EVENT, [event, *args])
    if ack and ack_id is None:
        ack_id = 0
    text, *attachments = encode_packet(kind, namespace, data, ack_id)
    assert isinstance(text, str)
    eio_type, sio_text = parse_engineio(text)
    assert eio_type is EngineIOType.MESSAGE and isinstance(sio_text, str)
    assembler = BinaryAssembler(len(attachments), 1 << 20)
    packet = assembler.feed_packet(parse_packet(sio_text))
    for part in attachments:
        assert packet is None and isinstance(part, bytes)
        packet = assembler.feed_binary(part)
    assert packet is not None
    assert packet.namespace == namespace
    assert packet.ack_id == ack_id
    assert packet.type.name.endswith("ACK" if ack else "EVENT")
    assert packet.type in (
        (PacketType.BINARY_ACK, PacketType.BINARY_EVENT)
        if attachments
        else (PacketType.ACK, PacketType.EVENT)
    )
    # Lists and dicts only (JSON has no tuples): the data comes back as it was, bytes included.
    assert packet.data == data


@given(st.text(max_size=40))
def test_parse_packet_never_raises_anything_else(text: str) -> None:
    with contextlib.suppress(SocketIOWireError):
        parse_packet(text)
