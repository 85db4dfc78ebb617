"""Fuzz targets of the Socket.IO dialect (registered in :mod:`fuzz.targets`).

``socketio_wire``: a run of WebSocket messages as the server would send them
goes through the Engine.IO and Socket.IO parsers and the binary reassembler,
as the client feeds them. Input: byte 0 picks the reassembler's limits; then
each message is a flag byte (odd: binary) and a length-prefixed chunk (text
is decoded as UTF-8 with replacement). The only exception allowed is
:class:`~octoproto._socketio_wire.SocketIOWireError`; every packet that comes
out whole must have the shape the client relies on.
"""

from __future__ import annotations

from octoproto._socketio_wire import (
    BinaryAssembler,
    EngineIOType,
    PacketType,
    SocketIOPacket,
    SocketIOWireError,
    parse_engineio,
    parse_open,
    parse_packet,
)

from .harness import ByteReader, Violation

#: Limits the first byte chooses between: small ones fuzzed input reaches.
_LIMITS = ((2, 64), (16, 4096))


def _check(packet: SocketIOPacket) -> None:
    if not isinstance(packet.namespace, str) or not packet.namespace.startswith("/"):
        raise Violation("bad-socketio-packet", f"namespace {packet.namespace!r}")
    if packet.type in (PacketType.EVENT, PacketType.BINARY_EVENT) and not (
        isinstance(packet.data, list) and packet.data and isinstance(packet.data[0], str)
    ):
        raise Violation("bad-socketio-packet", f"event data {packet.data!r:.80}")
    if packet.type in (PacketType.ACK, PacketType.BINARY_ACK) and (
        packet.ack_id is None or not isinstance(packet.data, list)
    ):
        raise Violation("bad-socketio-packet", f"ack {packet.ack_id!r} {packet.data!r:.80}")


def target_socketio_wire(data: bytes) -> None:
    """Engine.IO packets, Socket.IO packets, binary reassembly: packets, or SocketIOWireError."""
    r = ByteReader(data)
    attachments, size = r.pick(_LIMITS)
    assembler = BinaryAssembler(attachments, size)
    while r.remaining:
        binary = r.flag()
        chunk = r.chunk()
        message: str | bytes = chunk if binary else chunk.decode("utf-8", "replace")
        try:
            kind, payload = parse_engineio(message)
            if kind is EngineIOType.OPEN and isinstance(payload, str):
                opened = parse_open(payload)
                if opened.ping_interval < 0 or opened.max_payload < 1:
                    raise Violation("bad-engineio-open", repr(opened)[:80])
            if kind is not EngineIOType.MESSAGE:
                continue
            whole = (
                assembler.feed_binary(payload)
                if isinstance(payload, bytes)
                else assembler.feed_packet(parse_packet(payload))
            )
        except SocketIOWireError:
            assembler.reset()  # as the client does: the connection is dropped
            continue
        if whole is not None:
            _check(whole)
