"""permessage-deflate (RFC 7692) for the client side, with a bound on inflation.

It plugs into wsproto's frame decoder (the reference codec) through
wsproto's own extension interface, and the fast codec calls the same
inflation methods (:meth:`start_message`, :meth:`inflate`,
:meth:`finish_message`) directly: one inflater per connection, one bound.
Inflation is ours for one reason: wsproto's extension inflates without a
limit, and a "decompression bomb" (a few KiB that inflate to GiBs) must end
as a :class:`~octoproto.LimitExceeded` event, not as exhausted memory. Every
``decompress`` call here is capped at what the message may still grow by.

Compression of outgoing messages is here too (:meth:`compress_message`),
used by the client frame writer.
"""

from __future__ import annotations

import zlib

from wsproto.extensions import Extension
from wsproto.frame_protocol import CloseReason, Opcode, RsvBits

# RFC 7692 §7.2.2: the sender strips this tail from each message and the
# receiver appends it again before inflating.
_DEFLATE_TAIL = b"\x00\x00\xff\xff"
_WINDOW_BITS = 15


class BoundedPerMessageDeflate(Extension):
    """Client-side permessage-deflate whose inflation never exceeds ``max_message_size``."""

    name = "permessage-deflate"

    def __init__(self, max_message_size: int) -> None:
        self._max_message_size = max_message_size
        self._enabled = False
        self._server_no_context_takeover = False
        self._client_no_context_takeover = False
        self._server_window_bits = _WINDOW_BITS
        self._client_window_bits = _WINDOW_BITS
        self._inflater: zlib._Decompress | None = None
        self._deflater: zlib._Compress | None = None
        # Only the first frame of a message carries RSV1; the flag lasts
        # until the message's final frame.
        self._message_compressed: bool | None = None
        self._frame_is_data = False
        self._inflated = 0  # bytes produced so far for the current message

    # --- negotiation ------------------------------------------------------

    def enabled(self) -> bool:
        """Whether the server accepted the extension."""
        return self._enabled

    def offer(self) -> str:
        """Our offer: let the server choose our window size (we inflate at 15 bits anyway)."""
        return "client_max_window_bits"

    def finalize(self, offer: str) -> None:
        """Apply the parameters of the server's response; raise ValueError if unusable."""
        for parameter in offer.split(";")[1:]:
            key, _, value = (part.strip() for part in parameter.partition("="))
            if key == "server_no_context_takeover":
                self._server_no_context_takeover = True
            elif key == "client_no_context_takeover":
                self._client_no_context_takeover = True
            elif key in ("server_max_window_bits", "client_max_window_bits"):
                bits = int(value.strip('"')) if value else _WINDOW_BITS
                if not 8 <= bits <= 15:
                    raise ValueError(f"{key}={bits} is out of range")
                # zlib cannot deflate with an 8-bit window; 9 is compatible.
                if key == "server_max_window_bits":
                    self._server_window_bits = bits
                else:
                    self._client_window_bits = max(bits, 9)
            else:
                raise ValueError(f"unknown permessage-deflate parameter {key!r}")
        self._enabled = True

    # --- inbound (wsproto's decoder calls these) ------------------------------

    def frame_inbound_header(
        self, proto: object, opcode: Opcode, rsv: RsvBits, payload_length: int
    ) -> CloseReason | RsvBits:
        """Check RSV1 use and note whether the current message is compressed."""
        if rsv.rsv1 and (opcode.iscontrol() or opcode is Opcode.CONTINUATION):
            return CloseReason.PROTOCOL_ERROR
        self._frame_is_data = not opcode.iscontrol()
        if self._frame_is_data and self._message_compressed is None:
            self._message_compressed = rsv.rsv1
            if rsv.rsv1:
                self.start_message()
        return RsvBits(True, False, False)

    def frame_inbound_payload_data(self, proto: object, data: bytes) -> bytes | CloseReason:
        """Inflate a chunk of payload, refusing to produce more than the message may hold."""
        if not (self._frame_is_data and self._message_compressed):
            return data
        return self.inflate(data)

    def frame_inbound_complete(self, proto: object, fin: bool) -> bytes | CloseReason | None:
        """At the end of a compressed message, flush the inflater."""
        if not (self._frame_is_data and fin):
            return None
        compressed, self._message_compressed = self._message_compressed, None
        if not compressed:
            return None
        return self.finish_message()

    # --- inflation: the one path both frame codecs use -----------------------
    #
    # wsproto's decoder reaches it through the hooks above; the fast codec
    # (``_fastframes``) tracks messages itself and calls these three directly.

    def start_message(self) -> None:
        """A compressed message begins: its inflation budget is the whole limit again."""
        self._inflated = 0
        if self._inflater is None:
            # Always the largest window: it inflates whatever the server's
            # window is, and the outcome never depends on how the bytes were
            # cut. With the negotiated one, zlib let a reference beyond it
            # through within one decompress call and refused it across two.
            self._inflater = zlib.decompressobj(-_WINDOW_BITS)

    def inflate(self, data: bytes) -> bytes | CloseReason:
        """Inflate a chunk of the current message, refusing to produce more than it may hold."""
        assert self._inflater is not None
        budget = self._max_message_size - self._inflated
        try:
            # Ask for one byte more than allowed: getting it proves the bomb.
            output = self._inflater.decompress(data, budget + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._inflated += len(output)
        if len(output) > budget:
            return CloseReason.MESSAGE_TOO_BIG
        return output

    def finish_message(self) -> bytes | CloseReason:
        """The compressed message's last frame is in: flush the inflater."""
        result = self.inflate(_DEFLATE_TAIL)
        if self._server_no_context_takeover:
            self._inflater = None
        return result

    @property
    def inflated_size(self) -> int:
        """Bytes inflated so far for the current message (one past the limit once refused)."""
        return self._inflated

    # --- outbound -------------------------------------------------------

    def compress_message(self, payload: bytes) -> bytes:
        """Deflate one whole message (sent as a single frame with RSV1 set)."""
        if self._deflater is None:
            self._deflater = zlib.compressobj(
                zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -self._client_window_bits
            )
        data = self._deflater.compress(payload) + self._deflater.flush(zlib.Z_SYNC_FLUSH)
        if self._client_no_context_takeover:
            self._deflater = None
        return data[: -len(_DEFLATE_TAIL)]
