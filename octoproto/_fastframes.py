"""The fast frame decoder: one pass over the received bytes, with wsproto's checks.

wsproto's frame parser (behind :class:`~octoproto._frames.WsprotoFrameCodec`)
costs some 5–7 µs per frame in CPython: it buffers, rolls back, builds
named tuples and runs a generator per frame. :class:`FastFrameCodec` reads
the same input in one pass over the bytes of each :meth:`receive` call:

* The common frame — final, unfragmented, unmasked text or binary with a
  1- or 2-byte length, whole in the buffer, no message in progress — is
  checked with two byte compares and sliced straight into the list of
  messages (``bytes.decode`` for text): :meth:`FastFrameCodec.receive_raw`,
  which the session uses, makes no object per message; control frames go
  to a list of their own with their place among the messages.
  :meth:`FastFrameCodec.receive` merges the two into ordered
  :class:`~octoproto._frames.WsMessage` events for the differential test.
* Everything else goes through :meth:`FastFrameCodec._frame`, which makes
  wsproto's checks in wsproto's order (so that the first fault in a stream
  is the one wsproto reports, with the same close code and text).
* A data frame whose payload is not all there yet is *streamed*: its header
  is consumed, and each later ``receive`` hands the payload bytes that
  arrived to the message as a piece, exactly as wsproto hands over partial
  frames. So the codec never holds more than an incomplete header or
  control frame (< 128 bytes) besides the parts of the current message, and
  those are bounded: an uncompressed message by its frame headers (a
  header that takes the message past ``max_message_size`` is refused at
  once with 1009, before any of its payload is held), a compressed one by
  the bounded inflater. A large frame's payload is never re-sliced or
  copied more than once on the way to the message.

Where it differs from wsproto, on purpose (the differential test in
``tests/core/test_fastframes.py`` allows exactly these):

* An uncompressed message that its frame headers take past
  ``max_message_size`` is refused when the header arrives, with ``size``
  the length the header claims for the message. The reference refuses once
  more than the limit has *arrived*, with the count so far, or with 1007 if
  invalid UTF-8 came first in the bytes it decoded. The header is earlier
  and chunking-independent.

permessage-deflate uses the connection's one
:class:`~octoproto._deflate.BoundedPerMessageDeflate` through the same
inflation methods wsproto's decoder reaches through its extension hooks.

Writing is :class:`~octoproto._frames.ClientFrameWriter`, shared with the
reference codec.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from typing import cast

from ._deflate import BoundedPerMessageDeflate
from ._frames import (
    CLOSE_INVALID_DATA,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_NO_STATUS,
    CLOSE_PROTOCOL_ERROR,
    ClientFrameWriter,
    Received,
    WebSocketFault,
    WsClose,
    WsControl,
    WsEvent,
    WsPing,
    WsPong,
    merge_events,
)

_CONTINUATION, _TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_OPCODES = frozenset({_CONTINUATION, _TEXT, _BINARY, _CLOSE, _PING, _PONG})
# How wsproto names the opcode in "expected CONTINUATION, got ..." (its enum's repr).
_OPCODE_REPR = {_TEXT: "<Opcode.TEXT: 1>", _BINARY: "<Opcode.BINARY: 2>"}
# Close codes as wsproto judges them (RFC 6455 §7.4): the codes it knows, of
# which three may never be sent; other codes below 3000 are reserved.
_KNOWN_CLOSE_CODES = frozenset(
    {1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1015}
)
_LOCAL_ONLY_CLOSE_CODES = frozenset({1005, 1006, 1015})
_TOO_BIG = "message exceeds max_message_size"

_utf8_decoder = codecs.getincrementaldecoder("utf-8")


def _protocol_error(detail: str) -> WebSocketFault:
    return WebSocketFault(CLOSE_PROTOCOL_ERROR, detail)


class FastFrameCodec(ClientFrameWriter):
    """Decode server frames in one pass; write masked client frames (shared writer)."""

    def __init__(
        self,
        entropy: Callable[[int], bytes],
        max_message_size: int,
        deflate: BoundedPerMessageDeflate | None,
    ) -> None:
        super().__init__(entropy, max_message_size, deflate)
        self._leftover = b""  # an incomplete header or control frame
        self._done = False  # a close frame or a fault ended decoding
        # The data frame being streamed (its header read, payload still due).
        self._in_frame = False
        self._remaining = 0
        self._frame_opcode = 0  # the header's opcode, until its first piece is read
        self._first_piece = False
        self._frame_fin = False
        self._frame_compressed = False
        # The message in progress (opcode 0: none).
        self._message_opcode = 0
        self._message_compressed = False
        self._message_size = 0  # payload bytes its headers announced (uncompressed only)
        self._parts: list[str | bytes] = []
        self._text: codecs.IncrementalDecoder | None = None

    def receive(self, data: bytes) -> list[WsEvent]:
        """Decode ``data``; complete events in order, or a :class:`WebSocketFault`.

        As with the reference codec, the fault carries the events decoded
        before it, and after a close frame or a fault nothing more is decoded.
        """
        return merge_events(*self.receive_raw(data))

    def receive_raw(self, data: bytes) -> Received:
        """:meth:`receive` as the payloads of the messages, and the control frames apart.

        Each control frame comes with the number of messages decoded before
        it. A fault is raised as by :meth:`receive`, with the ordered events.
        """
        messages: list[str | bytes] = []
        controls: list[tuple[int, WsControl]] = []
        if self._done:
            return messages, controls
        if self._leftover:
            data = self._leftover + data
            self._leftover = b""
        elif type(data) is not bytes:
            data = bytes(data)
        try:
            self._decode(data, messages, controls)
        except UnicodeDecodeError as exc:
            fault = WebSocketFault(CLOSE_INVALID_DATA, str(exc))
        except WebSocketFault as exc:
            fault = exc
        else:
            return messages, controls
        self._done = True
        fault.events = merge_events(messages, controls)
        raise fault

    def _decode(
        self, data: bytes, messages: list[str | bytes], controls: list[tuple[int, WsControl]]
    ) -> None:
        n = len(data)
        pos = self._payload(data, 0, messages) if self._in_frame else 0
        append = messages.append
        limit = self._max_message_size
        idle = not self._message_opcode  # no fragmented message in progress
        while n - pos > 1:
            first = data[pos]
            if 0x81 <= first <= 0x82 and idle:
                # The hot path: a final text/binary frame, no RSV bits, no message
                # in progress; unmasked with a minimal 1- or 2-byte length (the
                # mask bit makes `second` >= 128 and sends it the long way).
                second = data[pos + 1]
                if second < 126:
                    start = pos + 2
                    end = start + second
                    if end <= n and second <= limit:
                        payload = data[start:end]
                        append(payload.decode() if first == 0x81 else payload)
                        pos = end
                        continue
                elif second == 126 and n - pos > 3:
                    length = (data[pos + 2] << 8) | data[pos + 3]
                    start = pos + 4
                    end = start + length
                    if end <= n and 125 < length <= limit:
                        payload = data[start:end]
                        append(payload.decode() if first == 0x81 else payload)
                        pos = end
                        continue
            pos = self._frame(data, pos, messages, controls)
            if pos < 0:
                return
            idle = not self._message_opcode
        if pos < n:
            self._leftover = data[pos:]

    def _frame(
        self,
        data: bytes,
        pos: int,
        messages: list[str | bytes],
        controls: list[tuple[int, WsControl]],
    ) -> int:
        """Read the frame at ``pos``; the position after what was used, or -1 to stop.

        The checks are wsproto's, in wsproto's order (``FrameDecoder.parse_header``,
        then the extension's, then ``MessageDecoder``): the first fault in a
        stream is the one wsproto reports.
        """
        n = len(data)
        first, second = data[pos], data[pos + 1]
        opcode = first & 0x0F
        if opcode not in _OPCODES:
            raise _protocol_error(f"Invalid opcode {opcode:#x}")
        fin = bool(first & 0x80)
        control = opcode & 0x08
        if control and not fin:
            raise _protocol_error("Invalid attempt to fragment control frame")
        length = second & 0x7F
        if control and length > 125:
            raise _protocol_error("Control frame with payload len > 125")
        start = pos + 2
        if length == 126:
            start = pos + 4
            if start > n:
                return self._wait(data, pos)
            length = int.from_bytes(data[pos + 2 : start], "big")
            if length <= 125:
                raise _protocol_error("Payload length used 2 bytes when 1 would have sufficed")
        elif length == 127:
            start = pos + 10
            if start > n:
                return self._wait(data, pos)
            length = int.from_bytes(data[pos + 2 : start], "big")
            if length <= 0xFFFF:
                raise _protocol_error("Payload length used 8 bytes when 2 would have sufficed")
            if length >> 63:
                raise _protocol_error("8-byte payload length with non-zero MSB")
        rsv = first & 0x70
        if rsv:
            # With permessage-deflate, RSV1 is allowed on the first frame of a data
            # message only (wsproto's extension hook says "error in extension").
            if self._deflate is not None and rsv & 0x40 and (control or opcode == _CONTINUATION):
                raise _protocol_error("error in extension")
            if self._deflate is None or rsv & 0x30:
                raise _protocol_error("Reserved bit set unexpectedly")
        if second & 0x80:
            raise _protocol_error("client received unexpected masked frame")
        if control:
            # Control frames are read whole, as wsproto does.
            end = start + length
            if end > n:
                return self._wait(data, pos)
            payload = data[start:end]
            if opcode == _PING:
                controls.append((len(messages), WsPing(payload)))
            elif opcode == _PONG:
                controls.append((len(messages), WsPong(payload)))
            else:
                controls.append((len(messages), _close(payload)))
                self._done = True  # nothing after a close frame is read
                return -1
            return end
        # A data frame. Whether it is compressed is the message's business: the
        # first frame's RSV1 decides (wsproto's extension tracks it the same way,
        # also for a frame that turns out to be out of order).
        if self._message_opcode:
            in_order = opcode == _CONTINUATION
            compressed = self._message_compressed
        else:
            in_order = opcode != _CONTINUATION
            compressed = rsv != 0  # RSV1 and nothing else, or it failed above
            if compressed:
                assert self._deflate is not None
                self._deflate.start_message()
        if in_order and not compressed:
            # The header says how big the message gets: refuse now, before
            # holding any of it (wsproto would count the bytes as they come).
            size = self._message_size + length
            if size > self._max_message_size:
                raise WebSocketFault(CLOSE_MESSAGE_TOO_BIG, _TOO_BIG, size)
            self._message_size = size
        self._in_frame = True
        self._remaining = length
        self._frame_opcode = opcode
        self._first_piece = True
        self._frame_fin = fin
        self._frame_compressed = compressed
        return self._payload(data, start, messages)

    def _wait(self, data: bytes, pos: int) -> int:
        # An incomplete header or control frame: keep it for the next call.
        self._leftover = data[pos:]
        return -1

    def _payload(self, data: bytes, pos: int, messages: list[str | bytes]) -> int:
        """Hand the streamed frame the payload bytes at ``pos``; the position after them.

        Like wsproto, a piece is whatever payload has arrived (an empty piece
        only for an empty frame), and each piece is inflated, checked against
        the message's opcode and decoded as it comes.
        """
        available = len(data) - pos
        remaining = self._remaining
        if available >= remaining:
            take = remaining
        elif available:
            take = available
        else:
            return pos  # nothing of this frame's payload yet
        end = pos + take
        piece = data[pos:end]  # `data` itself when the whole call is payload
        self._remaining = remaining = remaining - take
        finished = not remaining
        if finished:
            self._in_frame = False
        fin = finished and self._frame_fin
        if self._frame_compressed:
            piece = self._inflate(piece)
            if fin:
                piece += self._inflate_end()
        if self._first_piece:
            self._first_piece = False
            opcode = self._frame_opcode
            if not self._message_opcode:
                if opcode == _CONTINUATION:
                    raise _protocol_error("unexpected CONTINUATION")
                self._message_opcode = opcode
                self._message_compressed = self._frame_compressed
                if opcode == _TEXT:
                    self._text = _utf8_decoder()
            elif opcode != _CONTINUATION:
                raise _protocol_error(f"expected CONTINUATION, got {_OPCODE_REPR[opcode]}")
        if self._text is None:
            part: str | bytes = piece
        else:
            part = self._text.decode(piece, fin)
        if not fin:
            self._parts.append(part)
            return end
        if self._parts:
            self._parts.append(part)
            part = _join(self._parts)
            self._parts = []
        self._message_opcode = 0
        self._message_size = 0
        self._text = None
        messages.append(part)
        return end

    def _inflate(self, data: bytes) -> bytes:
        assert self._deflate is not None
        return self._inflated(self._deflate.inflate(data))

    def _inflate_end(self) -> bytes:
        assert self._deflate is not None
        return self._inflated(self._deflate.finish_message())

    def _inflated(self, result: bytes | int) -> bytes:
        if isinstance(result, bytes):
            return result
        assert self._deflate is not None
        if result == CLOSE_MESSAGE_TOO_BIG:
            raise WebSocketFault(CLOSE_MESSAGE_TOO_BIG, _TOO_BIG, self._deflate.inflated_size)
        # Not deflate data: 1007, in wsproto's words.
        raise WebSocketFault(int(result), "error in extension")


def _join(parts: list[str | bytes]) -> str | bytes:
    if isinstance(parts[0], str):
        return "".join(cast("list[str]", parts))
    return b"".join(cast("list[bytes]", parts))


def _close(payload: bytes) -> WsClose:
    """The server's close frame, judged as wsproto judges it."""
    if not payload:
        return WsClose(CLOSE_NO_STATUS, "")
    if len(payload) == 1:
        raise _protocol_error("CLOSE with 1 byte payload")
    code = (payload[0] << 8) | payload[1]
    if code < 1000 or code > 4999:
        raise _protocol_error("CLOSE with invalid code")
    if code in _LOCAL_ONLY_CLOSE_CODES:
        raise _protocol_error("remote CLOSE with local-only reason")
    if code <= 2999 and code not in _KNOWN_CLOSE_CODES:
        raise _protocol_error("CLOSE with unknown reserved code")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WebSocketFault(
            CLOSE_INVALID_DATA, "Error decoding CLOSE reason: " + str(exc)
        ) from None
    return WsClose(code, reason)
