"""The WebSocket frame layer, behind one small interface.

:class:`FrameCodec` is all the session engine knows of frames: feed it bytes,
get whole messages and control frames back; ask it for the bytes of a
message, ping, pong or close.

Client frames are written here (:class:`ClientFrameWriter`), because wsproto
masks outgoing frames with ``os.urandom`` and the core must draw every mask
from the injected entropy to replay byte for byte. Decoding has two
implementations sharing that writer: :class:`WsprotoFrameCodec` here, on
wsproto's frame parser (the reference for correctness), and the one
connections use, :class:`~octoproto._fastframes.FastFrameCodec`, which a
differential test holds to it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

from wsproto.frame_protocol import FrameProtocol, Opcode, ParseFailed

from ._deflate import BoundedPerMessageDeflate

#: RFC 6455 close codes the core uses itself.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_NO_STATUS = 1005
CLOSE_ABNORMAL = 1006
CLOSE_INVALID_DATA = 1007
CLOSE_MESSAGE_TOO_BIG = 1009

_MAX_CONTROL_PAYLOAD = 125


@dataclass(frozen=True, slots=True)
class WsMessage:
    """A complete data message: ``str`` for text, ``bytes`` for binary."""

    data: str | bytes


@dataclass(frozen=True, slots=True)
class WsPing:
    """A ping from the server (answer it with a pong)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class WsPong:
    """A pong from the server."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class WsClose:
    """The server's close frame (1005 when it carried no code)."""

    code: int
    reason: str


WsEvent = WsMessage | WsPing | WsPong | WsClose
WsControl = WsPing | WsPong | WsClose
#: What :meth:`FrameCodec.receive_raw` returns: the complete messages' payloads,
#: and each control frame with the number of messages that came before it.
Received = tuple[list[str | bytes], list[tuple[int, WsControl]]]


def merge_events(
    messages: list[str | bytes], controls: list[tuple[int, WsControl]]
) -> list[WsEvent]:
    """The ordered events of a :data:`Received` pair (what ``receive()`` returns)."""
    events: list[WsEvent] = []
    done = 0
    for index, control in controls:
        events.extend(WsMessage(data) for data in messages[done:index])
        events.append(control)
        done = index
    events.extend(WsMessage(data) for data in messages[done:])
    return events


def split_events(events: list[WsEvent]) -> Received:
    """The :data:`Received` pair of ordered events (the inverse of :func:`merge_events`)."""
    messages: list[str | bytes] = []
    controls: list[tuple[int, WsControl]] = []
    for event in events:
        if isinstance(event, WsMessage):
            messages.append(event.data)
        else:
            controls.append((len(messages), event))
    return messages, controls


class WebSocketFault(Exception):
    """The server broke the WebSocket protocol; close with ``close_code``.

    ``size`` is set when the fault is an oversized message (close code 1009).
    ``events`` are the complete events decoded before the fault, in order.
    """

    def __init__(self, close_code: int, detail: str, size: int | None = None) -> None:
        super().__init__(detail)
        self.close_code = close_code
        self.detail = detail
        self.size = size
        self.events: list[WsEvent] = []


class FrameCodec(Protocol):
    """What the session engine needs from a frame layer."""

    def receive(self, data: bytes) -> list[WsEvent]:
        """Decode ``data``; return the complete events. Raise :class:`WebSocketFault`."""

    def receive_raw(self, data: bytes) -> Received:
        """:meth:`receive` without an object per message: what the session uses.

        The messages' payloads in order, and the control frames with where
        they fall among them; a fault is raised exactly as by :meth:`receive`
        (its ``events`` ordered as ever).
        """

    def message(self, payload: str | bytes) -> bytes:
        """The bytes of one data message (text for ``str``, binary for ``bytes``)."""

    def ping(self, payload: bytes) -> bytes:
        """The bytes of a ping frame."""

    def pong(self, payload: bytes) -> bytes:
        """The bytes of a pong frame."""

    def close(self, code: int, reason: str) -> bytes:
        """The bytes of a close frame."""


# One translation table per mask byte: _XOR_TABLE[m][b] == b ^ m.
_XOR_TABLE = [bytes(b ^ m for b in range(256)) for m in range(256)]
# Below this size one big-integer XOR is the fastest mask in CPython; above
# it, four strided ``bytes.translate`` calls win (about 1.5× at 4 KiB, 2.7×
# at 1 MiB; measured by tests/bench/core_frames.py --mask).
_TRANSLATE_FROM = 1024


def mask_payload(payload: bytes, mask: bytes) -> bytes:
    """XOR ``payload`` with the repeated 4-byte ``mask`` (RFC 6455 §5.3)."""
    length = len(payload)
    if not length:
        return b""
    if length < _TRANSLATE_FROM:
        key = (mask * (length // 4 + 1))[:length]
        return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(
            length, "little"
        )
    data = bytearray(payload)
    for i in range(4):
        data[i::4] = data[i::4].translate(_XOR_TABLE[mask[i]])
    return bytes(data)


def encode_client_frame(opcode: int, payload: bytes, mask: bytes, *, rsv1: bool = False) -> bytes:
    """One final, masked client frame."""
    first = 0x80 | (0x40 if rsv1 else 0) | opcode
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", first, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", first, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, length)
    return header + mask + mask_payload(payload, mask)


class ClientFrameWriter:
    """The writing half of both codecs: final, masked client frames.

    Each frame's mask is four bytes of the injected entropy, so a recorded
    session replays byte for byte; messages are compressed when
    permessage-deflate was negotiated.
    """

    def __init__(
        self,
        entropy: Callable[[int], bytes],
        max_message_size: int,
        deflate: BoundedPerMessageDeflate | None,
    ) -> None:
        self._entropy = entropy
        self._max_message_size = max_message_size
        self._deflate = deflate

    def message(self, payload: str | bytes) -> bytes:
        """A text (``str``) or binary (``bytes``) message, compressed when negotiated."""
        if isinstance(payload, str):
            opcode, data = Opcode.TEXT, payload.encode("utf-8")
        else:
            opcode, data = Opcode.BINARY, bytes(payload)
        if self._deflate is not None:
            return encode_client_frame(
                opcode, self._deflate.compress_message(data), self._entropy(4), rsv1=True
            )
        return encode_client_frame(opcode, data, self._entropy(4))

    def ping(self, payload: bytes) -> bytes:
        """A ping frame (payload cut to the 125 bytes a control frame may carry)."""
        return encode_client_frame(Opcode.PING, payload[:_MAX_CONTROL_PAYLOAD], self._entropy(4))

    def pong(self, payload: bytes) -> bytes:
        """A pong frame echoing ``payload``."""
        return encode_client_frame(Opcode.PONG, payload[:_MAX_CONTROL_PAYLOAD], self._entropy(4))

    def close(self, code: int, reason: str) -> bytes:
        """A close frame; the reason is cut on a character boundary to fit 123 bytes."""
        encoded = reason.encode("utf-8")[: _MAX_CONTROL_PAYLOAD - 2]
        encoded = encoded.decode("utf-8", "ignore").encode("utf-8")
        return encode_client_frame(
            Opcode.CLOSE, struct.pack("!H", code) + encoded, self._entropy(4)
        )


class WsprotoFrameCodec(ClientFrameWriter):
    """Decode server frames with wsproto; write masked client frames ourselves.

    The reference decoder: :class:`~octoproto._fastframes.FastFrameCodec` is
    the one connections use, and a differential test holds it to this one.
    """

    def __init__(
        self,
        entropy: Callable[[int], bytes],
        max_message_size: int,
        deflate: BoundedPerMessageDeflate | None,
    ) -> None:
        super().__init__(entropy, max_message_size, deflate)
        self._decoder = FrameProtocol(client=True, extensions=[deflate] if deflate else [])
        self._parts: list[str | bytes] = []
        self._size = 0
        self._failed = False

    def receive(self, data: bytes) -> list[WsEvent]:
        """Decode ``data``; complete events in order, or a :class:`WebSocketFault`.

        The fault carries the events decoded before it (``fault.events``), so
        that how the bytes were cut into chunks never changes what is delivered.
        After a fault nothing more is decoded.
        """
        if self._failed:
            return []
        self._decoder.receive_bytes(data)
        events: list[WsEvent] = []
        try:
            for frame in self._decoder.received_frames():
                # wsproto's payload type depends on the opcode: bytes for
                # ping/pong, (code, reason) for close, str or bytes for data.
                if frame.opcode is Opcode.PING:
                    events.append(WsPing(bytes(cast("bytes", frame.payload))))
                elif frame.opcode is Opcode.PONG:
                    events.append(WsPong(bytes(cast("bytes", frame.payload))))
                elif frame.opcode is Opcode.CLOSE:
                    code, reason = cast("tuple[int, str]", frame.payload)
                    events.append(WsClose(int(code), reason))
                else:
                    part = cast("str | bytes", frame.payload)
                    message = self._collect(part, frame.message_finished)
                    if message is not None:
                        events.append(message)
        except ParseFailed as exc:
            if exc.code == CLOSE_MESSAGE_TOO_BIG:
                # Only the bounded inflater refuses with 1009; it knows how far it got
                # (wsproto's own text, "error in extension", would say nothing).
                assert self._deflate is not None
                fault = WebSocketFault(
                    CLOSE_MESSAGE_TOO_BIG,
                    "message exceeds max_message_size",
                    self._deflate.inflated_size,
                )
            else:
                fault = WebSocketFault(int(exc.code), str(exc))
        except WebSocketFault as exc:
            fault = exc
        else:
            return events
        self._failed = True
        fault.events = events
        raise fault

    def receive_raw(self, data: bytes) -> Received:
        """:meth:`receive`, split into messages and control frames."""
        return split_events(self.receive(data))

    def _collect(self, part: str | bytes, finished: bool) -> WsMessage | None:
        # wsproto hands over partial frames as bytes arrive, so the size is
        # checked before a large message is ever held whole. The limit is in
        # bytes for text too (what the message costs in memory, and what the
        # fast codec reads from frame headers), not in characters: the bytes
        # decoded so far, plus those of a character not yet complete, which
        # wsproto's UTF-8 decoder holds back.
        if isinstance(part, str):
            self._size += len(part.encode("utf-8"))
            text = self._decoder._message_decoder.decoder
            size = self._size + (len(text.getstate()[0]) if text is not None else 0)
        else:
            self._size += len(part)
            size = self._size
        if size > self._max_message_size:
            raise WebSocketFault(CLOSE_MESSAGE_TOO_BIG, "message exceeds max_message_size", size)
        self._parts.append(part)
        if not finished:
            return None
        parts, self._parts, self._size = self._parts, [], 0
        if isinstance(parts[0], str):
            return WsMessage("".join(cast("list[str]", parts)))
        return WsMessage(b"".join(cast("list[bytes]", parts)))
