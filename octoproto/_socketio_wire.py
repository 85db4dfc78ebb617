"""Engine.IO v4 and Socket.IO v5 packets over a WebSocket, in both directions.

Engine.IO (the transport layer): over the websocket transport every text
message is one packet, its type a digit followed by its data; every binary
message is a ``message`` packet carrying raw bytes.

========  ========  =============================================
``0``     open      ``{"sid", "pingInterval", "pingTimeout", "maxPayload", "upgrades"}``
``1``     close     the other side closes the session
``2``     ping      sent by the *server* in v4; the client answers ``3``
``3``     pong
``4``     message   a Socket.IO packet follows
``5``     upgrade   (not used on the websocket transport)
``6``     noop
========  ========  =============================================

Socket.IO (inside ``4``): ``<type>[<#attachments>-][<nsp>,][<ack id>][<JSON>]``
with types 0 CONNECT, 1 DISCONNECT, 2 EVENT, 3 ACK, 4 CONNECT_ERROR,
5 BINARY_EVENT, 6 BINARY_ACK. A binary packet's ``bytes`` travel as that many
binary messages right after it, each standing where the JSON has a
placeholder ``{"_placeholder": true, "num": n}``.

What comes from the server never raises anything but
:class:`SocketIOWireError` (the client turns it into a
:class:`~octoproto.ProtocolError`); what the caller asks to send is checked
first and refused with :class:`~octoproto.InvalidMessageError`.
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass

from ._errors import InvalidMessageError
from ._util import loads_json_or_raise, preview

__all__ = [
    "RESERVED_EVENTS",
    "BinaryAssembler",
    "EngineIOOpen",
    "EngineIOType",
    "PacketType",
    "SocketIOPacket",
    "SocketIOWireError",
    "check_event",
    "check_namespace",
    "encode_packet",
    "parse_engineio",
    "parse_open",
    "parse_packet",
]

#: Ack ids and attachment counts have at most this many digits (2**53 fits):
#: a longer run of digits is garbage, and must not cost a big-int parse.
MAX_DIGITS = 16

#: Event names the client's own surface uses (socket.io-client refuses to emit them).
RESERVED_EVENTS = frozenset({"connect", "connect_error", "disconnect"})


class SocketIOWireError(Exception):
    """The server sent something that is not a valid Engine.IO or Socket.IO packet.

    A remote fault, not caller misuse: the client reports it as a
    :class:`~octoproto.ProtocolError` event. It is therefore *not* a
    :class:`~octoproto.LocalProtocolError`.
    """


class EngineIOType(enum.IntEnum):
    """Engine.IO packet types."""

    OPEN = 0
    CLOSE = 1
    PING = 2
    PONG = 3
    MESSAGE = 4
    UPGRADE = 5
    NOOP = 6


class PacketType(enum.IntEnum):
    """Socket.IO packet types."""

    CONNECT = 0
    DISCONNECT = 1
    EVENT = 2
    ACK = 3
    CONNECT_ERROR = 4
    BINARY_EVENT = 5
    BINARY_ACK = 6


_BINARY_TYPES = (PacketType.BINARY_EVENT, PacketType.BINARY_ACK)


@dataclass(frozen=True, slots=True)
class EngineIOOpen:
    """The server's open packet: the session's id and heartbeat settings."""

    sid: str
    #: Seconds between the server's pings.
    ping_interval: float
    #: Seconds the server waits for a pong (and the client for the next ping, on top).
    ping_timeout: float
    #: The largest packet the server accepts, in bytes.
    max_payload: int


@dataclass(frozen=True, slots=True)
class SocketIOPacket:
    """One Socket.IO packet (binary ones with their attachments put back)."""

    type: PacketType
    namespace: str
    #: The decoded JSON payload (``None`` when there is none).
    data: object = None
    ack_id: int | None = None
    #: How many binary attachments follow (binary packets only, as received).
    attachments: int = 0


def parse_engineio(message: str | bytes) -> tuple[EngineIOType, str | bytes]:
    """Split one WebSocket message into its Engine.IO type and data.

    A binary message is a ``message`` packet of raw bytes.
    """
    if isinstance(message, bytes):
        return EngineIOType.MESSAGE, message
    head = message[:1]
    if not ("0" <= head <= "6"):
        raise SocketIOWireError(f"not an Engine.IO packet: {preview(message[:20])}")
    return EngineIOType(ord(head) - 48), message[1:]


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SocketIOWireError(f"Engine.IO open: {name} must be a number, got {preview(value)}")
    if value < 0:
        raise SocketIOWireError(f"Engine.IO open: {name} must be >= 0, got {value}")
    return value


def parse_open(data: str) -> EngineIOOpen:
    """Decode the data of an Engine.IO ``open`` packet (times in ms on the wire)."""
    value = loads_json_or_raise(data, SocketIOWireError)
    if not isinstance(value, dict):
        raise SocketIOWireError(f"Engine.IO open must be a JSON object, got {preview(value)}")
    sid = value.get("sid")
    if not isinstance(sid, str) or not sid:
        raise SocketIOWireError(f"Engine.IO open: sid must be a non-empty string: {preview(sid)}")
    interval = _number(value.get("pingInterval"), "pingInterval")
    timeout = _number(value.get("pingTimeout"), "pingTimeout")
    # Engine.IO servers before v4's maxPayload did not send it; 1 MB is the
    # protocol's default.
    max_payload = value.get("maxPayload", 1_000_000)
    if isinstance(max_payload, bool) or not isinstance(max_payload, int) or max_payload < 1:
        raise SocketIOWireError(
            f"Engine.IO open: maxPayload must be an int >= 1, got {preview(max_payload)}"
        )
    return EngineIOOpen(sid, interval / 1000, timeout / 1000, max_payload)


def _digits(text: str, pos: int) -> tuple[int | None, int]:
    end = pos
    while end < len(text) and "0" <= text[end] <= "9":
        end += 1
    if end == pos:
        return None, pos
    if end - pos > MAX_DIGITS:
        raise SocketIOWireError(f"a number of {end - pos} digits in a Socket.IO packet")
    return int(text[pos:end]), end


def parse_packet(text: str) -> SocketIOPacket:
    """Decode one Socket.IO packet from the data of an Engine.IO ``message``.

    Checks what the client relies on for each type: a CONNECT carries
    ``{"sid": str}``, an EVENT a non-empty list starting with the event's
    name, an ACK a list and an ack id, a binary packet its attachment count.
    """
    head = text[:1]
    if not ("0" <= head <= "6"):
        raise SocketIOWireError(f"not a Socket.IO packet: {preview(text[:20])}")
    kind = PacketType(ord(head) - 48)
    pos = 1
    attachments = 0
    if kind in _BINARY_TYPES:
        count, pos = _digits(text, pos)
        if count is None or text[pos : pos + 1] != "-":
            raise SocketIOWireError(
                f"binary packet without its attachment count: {preview(text[:20])}"
            )
        attachments, pos = count, pos + 1
    namespace = "/"
    if text[pos : pos + 1] == "/":
        comma = text.find(",", pos)
        end = len(text) if comma < 0 else comma
        namespace = text[pos:end]
        pos = end + 1
    ack_id, pos = _digits(text, pos)
    data = loads_json_or_raise(text[pos:], SocketIOWireError) if pos < len(text) else None
    packet = SocketIOPacket(kind, namespace, data, ack_id, attachments)
    _check_incoming(packet)
    return packet


def _check_incoming(packet: SocketIOPacket) -> None:
    kind, data = packet.type, packet.data
    if kind is PacketType.CONNECT:
        if not isinstance(data, dict) or not isinstance(data.get("sid"), str):
            raise SocketIOWireError(f"CONNECT without a sid: {preview(data)}")
    elif kind in (PacketType.EVENT, PacketType.BINARY_EVENT):
        if not isinstance(data, list) or not data or not isinstance(data[0], str):
            raise SocketIOWireError(f"EVENT data must be [name, ...args]: {preview(data)}")
    elif kind in (PacketType.ACK, PacketType.BINARY_ACK):
        if packet.ack_id is None:
            raise SocketIOWireError("ACK without an ack id")
        if not isinstance(data, list):
            raise SocketIOWireError(f"ACK data must be a list: {preview(data)}")


def _is_placeholder(value: dict[object, object]) -> bool:
    return value.get("_placeholder") is True


def _reconstruct(data: object, attachments: list[bytes]) -> object:
    """Put the attachments where their placeholders are; every one exactly once."""
    used: set[int] = set()

    def resolve(value: object) -> object:
        if isinstance(value, dict) and _is_placeholder(value):
            num = value.get("num")
            if (
                set(value) != {"_placeholder", "num"}
                or isinstance(num, bool)
                or not isinstance(num, int)
                or not 0 <= num < len(attachments)
                or num in used
            ):
                raise SocketIOWireError(f"bad binary placeholder {preview(value)}")
            used.add(num)
            return attachments[num]
        return value

    # Iterative, so that a deeply nested payload cannot exhaust the stack.
    root: list[object] = [data]
    stack: list[list[object] | dict[object, object]] = [root]
    while stack:
        container = stack.pop()
        slots: list[tuple[object, object]] = list(
            enumerate(container) if isinstance(container, list) else container.items()
        )
        for key, item in slots:
            resolved = resolve(item)
            if resolved is not item:
                if isinstance(container, list):
                    container[key] = resolved  # type: ignore[call-overload]
                else:
                    container[key] = resolved
            elif isinstance(item, (list, dict)):
                stack.append(item)
    if len(used) != len(attachments):
        raise SocketIOWireError(
            f"{len(attachments)} attachments but {len(used)} placeholders refer to them"
        )
    return root[0]


class BinaryAssembler:
    """Puts binary packets together from their text part and the binary messages after it.

    Every packet of the connection goes through :meth:`feed_packet`, every
    binary message through :meth:`feed_binary`; each returns the packet once
    it is whole. Bounded: at most ``max_attachments`` attachments of at most
    ``max_bytes`` in all per packet.
    """

    def __init__(self, max_attachments: int, max_bytes: int) -> None:
        self._max_attachments = max_attachments
        self._max_bytes = max_bytes
        self._packet: SocketIOPacket | None = None
        self._parts: list[bytes] = []
        self._size = 0

    def feed_packet(self, packet: SocketIOPacket) -> SocketIOPacket | None:
        """A packet's text came; the packet unless it waits for attachments."""
        if self._packet is not None:
            raise SocketIOWireError(
                f"a packet came after {len(self._parts)} of {self._packet.attachments}"
                " attachments of a binary packet"
            )
        if packet.type not in _BINARY_TYPES:
            return packet
        if packet.attachments > self._max_attachments:
            raise SocketIOWireError(
                f"binary packet with {packet.attachments} attachments"
                f" (the limit is {self._max_attachments})"
            )
        self._packet = packet
        return self._finish() if packet.attachments == 0 else None

    def feed_binary(self, data: bytes) -> SocketIOPacket | None:
        """One binary message; the packet when it was the last attachment."""
        if self._packet is None:
            raise SocketIOWireError(f"binary message of {len(data)} bytes with no packet before it")
        self._size += len(data)
        if self._size > self._max_bytes:
            raise SocketIOWireError(
                f"binary attachments of more than {self._max_bytes} bytes in one packet"
            )
        self._parts.append(data)
        return self._finish() if len(self._parts) == self._packet.attachments else None

    def reset(self) -> None:
        """Forget a partial packet (the connection ended, or it was bad)."""
        self._packet, self._parts, self._size = None, [], 0

    def _finish(self) -> SocketIOPacket:
        packet, parts = self._packet, self._parts
        assert packet is not None
        self.reset()
        data = _reconstruct(packet.data, parts)
        return SocketIOPacket(packet.type, packet.namespace, data, packet.ack_id, len(parts))


def check_namespace(namespace: object) -> str:
    """A namespace the caller gave: a ``str`` starting with ``/``, no ``,``."""
    if not isinstance(namespace, str) or not namespace.startswith("/") or "," in namespace:
        raise InvalidMessageError(
            f"a namespace is a str starting with '/' and without ',': {preview(namespace)}"
        )
    return namespace


def check_event(event: object) -> str:
    """An event name the caller emits: a non-empty ``str``, not a reserved one."""
    if not isinstance(event, str) or not event:
        raise InvalidMessageError(f"an event name is a non-empty str: {preview(event)}")
    if event in RESERVED_EVENTS:
        raise InvalidMessageError(f"{event!r} is reserved and cannot be emitted")
    return event


def _deconstruct(data: object) -> tuple[object, list[bytes]]:
    """Replace every ``bytes`` in ``data`` with a placeholder; the copy and the bytes.

    Tuples become lists (JSON has no tuples); containers without bytes are
    copied too, which keeps this simple and the caller's data untouched.
    """
    attachments: list[bytes] = []

    def convert(value: object) -> object:
        if isinstance(value, (bytes, bytearray, memoryview)):
            attachments.append(bytes(value))
            return {"_placeholder": True, "num": len(attachments) - 1}
        if isinstance(value, (list, tuple)):
            return [convert(item) for item in value]
        if isinstance(value, dict):
            return {key: convert(item) for key, item in value.items()}
        return value

    try:
        return convert(data), attachments
    except RecursionError:
        raise InvalidMessageError("the data is nested too deeply") from None


def encode_packet(
    kind: PacketType,
    namespace: str = "/",
    data: object = None,
    ack_id: int | None = None,
) -> list[str | bytes]:
    """The WebSocket messages of one packet from the client: the text, then any attachments.

    An EVENT or ACK whose data holds ``bytes`` is sent as BINARY_EVENT /
    BINARY_ACK. The data must be JSON-serializable (no ``NaN``): otherwise
    :class:`~octoproto.InvalidMessageError`.
    """
    attachments: list[bytes] = []
    if kind in (PacketType.EVENT, PacketType.ACK):
        data, attachments = _deconstruct(data)
        if attachments:
            kind = PacketType.BINARY_EVENT if kind is PacketType.EVENT else PacketType.BINARY_ACK
    text = [f"4{kind.value}"]
    if attachments:
        text.append(f"{len(attachments)}-")
    if namespace != "/":
        text.append(f"{namespace},")
    if ack_id is not None:
        text.append(str(ack_id))
    if data is not None:
        try:
            text.append(
                json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            )
        except (TypeError, ValueError, RecursionError) as exc:
            raise InvalidMessageError(f"not JSON-serializable: {exc}") from None
    return ["".join(text), *attachments]
