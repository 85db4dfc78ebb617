"""An adapter model that drives a client core and checks its promises after every input.

Shared by the fuzz targets (``fuzz/targets.py``) and the hypothesis state
machine (``tests/core/test_stateful.py``). :class:`Driver` plays a correct
adapter around a :class:`~octoproto.SessionEngine` (a ``WebSocketClient`` or
an ``OctoPrintClient``) and plays the server's side of the bytes too, and
after every input it checks what the design promises:

* **remote faults never raise**: a transport or timer input raises nothing;
  a user input raises only :class:`~octoproto.LocalProtocolError` (or a
  subclass), and then nothing has changed;
* **the state machine is the table**: every state change is a hop of
  :data:`~octoproto.TRANSITIONS`, and the hops chain from the state before
  the input to the state after it;
* **time**: :meth:`~octoproto.SessionEngine.get_timer` is ``None`` or not
  before the last ``now``; firing due timers terminates;
* **commands are well formed**: ``OpenTransport`` only for a channel not in
  use and for the configured server; ``SendData`` only on a transport the
  adapter reported open; on the socket, first one complete upgrade request,
  then only valid masked client frames, and nothing after our close frame;
  on the HTTP channel one complete request; EOF or a failure on a transport
  closes it at once; input about a closed transport changes nothing;
* **bounded**: no message beyond ``max_message_size`` (counted in bytes)
  reaches the user, no HTTP body beyond ``max_http_response_size``, the
  outbound queue never holds more than ``max_queued_messages``;
* **nothing is lost silently**: every user message the core accepted has
  been written to the socket, is still queued, or came back in
  ``SendFailed`` — exactly once.

A broken promise raises :class:`Violation`, whose ``kind`` groups findings.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import struct
import zlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import h11

from octoproto import (
    TRANSITIONS,
    Authenticated,
    AuthState,
    BinaryMessage,
    CallFailed,
    CallSucceeded,
    Channel,
    CloseTransport,
    Connected,
    ConnectFailed,
    Disconnected,
    Endpoint,
    Event,
    HandshakeResponse,
    LimitExceeded,
    LocalProtocolError,
    LoginFailed,
    LoginSucceeded,
    OctoPrintClient,
    OctoPrintConfig,
    OpenTransport,
    OperationWarning,
    ProtocolError,
    PushMessage,
    ReauthRequired,
    ReconnectFailed,
    ReconnectSchedule,
    ReconnectScheduled,
    RpcNotification,
    RpcRestoreFailed,
    SeededEntropy,
    SendData,
    SendFailed,
    SessionConfig,
    SessionEngine,
    SessionState,
    SocketIOConnected,
    SocketIOConnectError,
    SocketIODisconnected,
    SocketIOEvent,
    TextMessage,
    ThrottleChanged,
    ThroughputWarning,
    Trigger,
    WebSocketClient,
)

T = TypeVar("T")

# Limits small enough for fuzzed input to reach them, large enough for the
# real OctoPrint's messages (``connected`` is 8 KiB, the login page 6 KiB).
MAX_MESSAGE = 16 * 1024
MAX_HTTP = 8 * 1024
MAX_QUEUED = 3

PLAIN_URL = "ws://fuzz.test:8080/feed?x=1"
OCTOPRINT_URL = "http://octo.test:5000/"
ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
DEFLATE_TAIL = b"\x00\x00\xff\xff"

#: Firing due timers on one clock advance more often than this is a hang.
MAX_TIMER_FIRINGS = 10_000

EVENT_TYPES = (
    Authenticated,
    BinaryMessage,
    CallFailed,
    CallSucceeded,
    Connected,
    ConnectFailed,
    Disconnected,
    LimitExceeded,
    LoginFailed,
    LoginSucceeded,
    OperationWarning,
    ProtocolError,
    PushMessage,
    ReauthRequired,
    ReconnectFailed,
    ReconnectScheduled,
    RpcNotification,
    RpcRestoreFailed,
    SendFailed,
    SocketIOConnected,
    SocketIOConnectError,
    SocketIODisconnected,
    SocketIOEvent,
    TextMessage,
    ThrottleChanged,
    ThroughputWarning,
)

# OctoPrint message types the core sends itself (never user messages).
_CORE_TYPES = frozenset({"auth", "throttle", "subscribe"})


class Exhausted(Exception):
    """An input would cost more than the harness allows: not a finding, the run stops."""


class Violation(AssertionError):
    """A promise of the core was broken; ``kind`` names which (findings group by it)."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


# ----------------------------------------------------------------------------
# Reading fuzz input


class ByteReader:
    """Consume fuzz input as small decisions; reads past the end give zeros."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    @property
    def remaining(self) -> int:
        """Bytes not consumed yet."""
        return len(self._data) - self._pos

    def u8(self) -> int:
        """One byte (0 at the end)."""
        if self._pos >= len(self._data):
            return 0
        self._pos += 1
        return self._data[self._pos - 1]

    def u16(self) -> int:
        """Two bytes, big-endian."""
        return self.u8() << 8 | self.u8()

    def flag(self) -> bool:
        """A yes/no decision."""
        return self.u8() & 1 == 1

    def pick(self, options: Sequence[T]) -> T:
        """One of ``options``."""
        return options[self.u8() % len(options)]

    def take(self, count: int) -> bytes:
        """Up to ``count`` bytes."""
        data = self._data[self._pos : self._pos + max(count, 0)]
        self._pos += len(data)
        return data

    def chunk(self, limit: int = 255) -> bytes:
        """A length-prefixed run of bytes (one length byte, two when ``limit`` > 255)."""
        size = self.u16() if limit > 255 else self.u8()
        return self.take(min(size, limit))

    def text(self, limit: int = 255) -> str:
        """A length-prefixed run decoded as UTF-8 (invalid sequences replaced)."""
        return self.chunk(limit).decode("utf-8", "replace")

    def rest(self) -> bytes:
        """Everything left."""
        return self.take(self.remaining)


# ----------------------------------------------------------------------------
# The server's side of the bytes


def accept_token(key: bytes | str) -> str:
    """The ``Sec-WebSocket-Accept`` value for a ``Sec-WebSocket-Key``."""
    raw = key.encode("ascii") if isinstance(key, str) else key
    return base64.b64encode(hashlib.sha1(raw + ACCEPT_GUID).digest()).decode("ascii")


def upgrade_response(
    key: bytes | str,
    *,
    extension: str | None = None,
    subprotocol: str | None = None,
    extra_headers: Sequence[tuple[str, str]] = (),
) -> bytes:
    """A correct ``101 Switching Protocols`` answer to the request that carried ``key``."""
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_token(key)}",
    ]
    if extension is not None:
        lines.append(f"Sec-WebSocket-Extensions: {extension}")
    if subprotocol is not None:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    lines += [f"{name}: {value}" for name, value in extra_headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def http_response(
    status: int,
    reason: str,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    *,
    content_length: bool = True,
) -> bytes:
    """An HTTP/1.1 response, with a ``Content-Length`` unless told otherwise."""
    lines = [f"HTTP/1.1 {status} {reason}".rstrip()]
    lines += [f"{name}: {value}" for name, value in headers]
    if content_length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def server_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv1: bool = False,
    rsv2: bool = False,
    rsv3: bool = False,
    mask: bytes | None = None,
) -> bytes:
    """One frame as a server writes it (unmasked unless ``mask``), valid or not."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | (0x20 if rsv2 else 0)
    first |= (0x10 if rsv3 else 0) | (opcode & 0x0F)
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", first, size | (0x80 if mask else 0))
    elif size < 1 << 16:
        head = struct.pack("!BBH", first, 126 | (0x80 if mask else 0), size)
    else:
        head = struct.pack("!BBQ", first, 127 | (0x80 if mask else 0), size)
    if mask:
        key = (mask * (size // 4 + 1))[:size]
        payload = bytes(a ^ b for a, b in zip(payload, key, strict=True))
        head += mask
    return head + payload


class ServerDeflate:
    """The server's permessage-deflate compressor, as negotiated in our 101."""

    def __init__(self, window_bits: int = 15, no_context_takeover: bool = False) -> None:
        self._bits = max(window_bits, 9)
        self._reset = no_context_takeover
        self._compressor: zlib._Compress | None = None

    def compress(self, data: bytes) -> bytes:
        """One message's payload, compressed, without the 4-byte tail."""
        if self._compressor is None:
            self._compressor = zlib.compressobj(6, zlib.DEFLATED, -self._bits)
        out = self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
        if self._reset:
            self._compressor = None
        return out[: -len(DEFLATE_TAIL)]


@dataclass(frozen=True)
class ClientFrame:
    """A complete message or control frame the client wrote."""

    opcode: int
    payload: bytes
    text: str | None = None  # for text messages


class ClientFrameDecoder:
    """A strict, independent reader of the frames a client writes (RFC 6455, RFC 7692).

    Every frame must be masked, with RSV2/RSV3 clear, RSV1 only on the first
    frame of a data message and only with permessage-deflate; control frames
    final and at most 125 bytes; text valid UTF-8; close codes ones a client
    may send; nothing after the close frame.
    """

    def __init__(self, deflate: bool) -> None:
        self._deflate = deflate
        self._inflater = zlib.decompressobj(-15) if deflate else None
        self._buffer = bytearray()
        self._parts: list[bytes] = []
        self._opcode: int | None = None
        self._compressed = False
        self.closed = False

    def feed(self, data: bytes) -> list[ClientFrame]:
        """Frames completed by ``data``; :class:`Violation` for anything invalid."""
        if self.closed and data:
            raise Violation("data-after-close-frame", f"{len(data)} bytes after our close frame")
        self._buffer += data
        frames: list[ClientFrame] = []
        while (frame := self._next()) is not None:
            frames.append(frame)
        if self.closed and self._buffer:
            raise Violation("data-after-close-frame", "bytes follow our close frame")
        return frames

    def _next(self) -> ClientFrame | None:
        buf = self._buffer
        if len(buf) < 2 or self.closed:
            return None
        first, second = buf[0], buf[1]
        fin, rsv1, opcode = bool(first & 0x80), bool(first & 0x40), first & 0x0F
        if first & 0x30:
            raise Violation("bad-client-frame", "RSV2/RSV3 set")
        if not second & 0x80:
            raise Violation("bad-client-frame", "unmasked client frame")
        size, offset = second & 0x7F, 2
        if size == 126:
            if len(buf) < 4:
                return None
            (size,), offset = struct.unpack_from("!H", buf, 2), 4
        elif size == 127:
            if len(buf) < 10:
                return None
            (size,), offset = struct.unpack_from("!Q", buf, 2), 10
        if len(buf) < offset + 4 + size:
            return None
        mask = bytes(buf[offset : offset + 4])
        body = bytes(buf[offset + 4 : offset + 4 + size])
        del buf[: offset + 4 + size]
        key = (mask * (size // 4 + 1))[:size]
        payload = (int.from_bytes(body, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")
        if opcode >= 8:
            return self._control(opcode, fin, rsv1, payload)
        return self._data(opcode, fin, rsv1, payload)

    def _control(self, opcode: int, fin: bool, rsv1: bool, payload: bytes) -> ClientFrame:
        if opcode not in (8, 9, 10) or not fin or rsv1 or len(payload) > 125:
            raise Violation("bad-client-frame", f"bad control frame (opcode {opcode})")
        if opcode == 8:
            self.closed = True
            if len(payload) == 1:
                raise Violation("bad-client-frame", "close frame with a 1-byte payload")
            if payload:
                (code,) = struct.unpack_from("!H", payload)
                if not (1000 <= code <= 1014 or 3000 <= code <= 4999) or code in (
                    1004,
                    1005,
                    1006,
                ):
                    raise Violation("bad-client-close-code", f"client sent close code {code}")
                try:
                    payload[2:].decode("utf-8")
                except UnicodeDecodeError:
                    raise Violation("bad-client-frame", "close reason not UTF-8") from None
        return ClientFrame(opcode, payload)

    def _data(self, opcode: int, fin: bool, rsv1: bool, payload: bytes) -> ClientFrame | None:
        if opcode not in (0, 1, 2):
            raise Violation("bad-client-frame", f"reserved opcode {opcode}")
        if opcode == 0:
            if self._opcode is None:
                raise Violation("bad-client-frame", "continuation without a message")
            if rsv1:
                raise Violation("bad-client-frame", "RSV1 on a continuation frame")
        else:
            if self._opcode is not None:
                raise Violation("bad-client-frame", "new message inside a fragmented one")
            if rsv1 and not self._deflate:
                raise Violation("bad-client-frame", "RSV1 without permessage-deflate")
            self._opcode, self._compressed = opcode, rsv1
        self._parts.append(payload)
        if not fin:
            return None
        data, kind, compressed = b"".join(self._parts), self._opcode, self._compressed
        self._parts, self._opcode = [], None
        if compressed:
            assert self._inflater is not None
            try:
                data = self._inflater.decompress(data + DEFLATE_TAIL)
            except zlib.error as exc:
                raise Violation("bad-client-frame", f"client deflate stream: {exc}") from None
        if kind == 1:
            try:
                return ClientFrame(1, data, data.decode("utf-8"))
            except UnicodeDecodeError:
                raise Violation("bad-client-frame", "client text message not UTF-8") from None
        return ClientFrame(2, data)


def parse_request(data: bytes) -> tuple[h11.Request, bytes]:
    """The one complete HTTP request in ``data`` (head and body), or a :class:`Violation`."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    request: h11.Request | None = None
    body = bytearray()
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise Violation("bad-client-request", str(exc)) from None
        if isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            break
        else:
            raise Violation("bad-client-request", "incomplete request in one SendData")
    assert request is not None
    if conn.trailing_data[0]:
        raise Violation("bad-client-request", "bytes after the request")
    return request, bytes(body)


def request_header(request: h11.Request, name: bytes) -> str | None:
    """A header of a parsed request (lower-case ``name``), or ``None``."""
    for key, value in request.headers:
        if key == name:
            return value.decode("latin-1")
    return None


# ----------------------------------------------------------------------------
# Server content: OctoPrint messages, SockJS frames, login responses


_REAUTH_REASONS = ("stale", "modified", "removed", "logout", "unknown", "", "x" * 40)
_TYPES = ("connected", "history", "current", "event", "plugin", "reauthRequired", "timelapse")


def octoprint_value(r: ByteReader) -> object:
    """A decoded server message: mostly the real types, sometimes anything at all."""
    kind = r.u8() % 12
    if kind == 0:
        return {"connected": {"version": "1.11.8", "display_version": "1.11.8"}}
    if kind == 1:
        return {"history": {"state": {"text": "Operational"}, "logs": [], "temps": []}}
    if kind == 2:
        return {"current": {"logs": [r.text(40)], "serverTime": 1.7e9 + r.u8()}}
    if kind == 3:
        return {"reauthRequired": {"reason": r.pick(_REAUTH_REASONS)}}
    if kind == 4:
        return {"reauthRequired": r.pick((None, 1, "stale", [], {"reason": 1}))}
    if kind == 5:
        return {"event": {"type": r.text(20), "payload": None}}
    if kind == 6:  # several types at once, in one object
        return {r.pick(_TYPES): r.u8() for _ in range(1 + r.u8() % 4)}
    if kind == 7:
        return r.pick((None, 1, "text", [], [{"connected": {}}], True, 1.5))
    if kind == 8:
        return {}
    if kind == 9:
        return {r.text(16): r.text(16)}
    if kind == 10:
        return {"plugin": {"plugin": r.text(12), "data": {"x": r.u8()}}}
    return {"connected": None}


def octoprint_json(r: ByteReader) -> str:
    """The JSON text of one server message (raw endpoint), sometimes not JSON at all."""
    kind = r.u8() % 8
    if kind < 5:
        return json.dumps(octoprint_value(r))
    if kind == 5:
        return r.text(200)
    if kind == 6:
        depth = 1 + r.u16() % 5000
        return "[" * depth + "]" * depth
    return r.pick(("NaN", "1e999", "9" * 5000, '{"a":1', '"\\ud800"', "{}", "[]"))


def sockjs_text(r: ByteReader) -> str:
    """One SockJS frame as the server sends it, or a broken one."""
    kind = r.u8() % 10
    if kind == 0:
        return "o"
    if kind == 1:
        return "h"
    if kind in (2, 3, 4):
        values = [octoprint_value(r) for _ in range(1 + r.u8() % 3)]
        return "a" + json.dumps(values)
    if kind == 5:
        return "m" + json.dumps(octoprint_value(r))
    if kind == 6:
        code = r.pick((3000, 2010, 1000, 1002, 0, -1, 70000))
        return "c" + json.dumps([code, r.text(30)])
    if kind == 7:
        return r.pick(('c[true,"x"]', "c[1]", "a{}", "a1", "oo", "h ", "", "x", "a[", "m"))
    return r.text(120)


def login_response(r: ByteReader) -> bytes:
    """An answer on the HTTP channel: OctoPrint's login replies, and broken ones."""
    kind = r.u8() % 14
    user = r.pick(("octo", "admin", "a:b", "", "ü"))
    if kind < 3:
        record = {"name": user, "session": f"S{r.u8()}", "_login_mechanism": "apikey"}
        return http_response(
            200, "OK", [("Content-Type", "application/json")], json.dumps(record).encode()
        )
    if kind == 3:  # GET /login: the CSRF cookie
        cookie = f"csrf_token_P5000={r.u8():02x}token; Path=/; SameSite=Strict"
        return http_response(
            200, "OK", [("Set-Cookie", cookie), ("Set-Cookie", 'x="y')], b"<html/>"
        )
    if kind == 4:
        return http_response(r.pick((403, 401, 400, 404, 429, 500, 503)), "Nope")
    if kind == 5:
        return http_response(
            200,
            "OK",
            [],
            r.pick((b"{}", b"[]", b"null", b"{", b'{"session":1}', b'{"name":"o","session":""}')),
        )
    if kind == 6:  # chunked
        return b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n{"name":"\r\n0\r\n\r\n'
    if kind == 7:
        return b"HTTP/1.1 100 Continue\r\n\r\n" + http_response(204, "No Content")
    if kind == 8:
        return http_response(200, "OK", [], b"x" * (MAX_HTTP + 1 + r.u8()))
    if kind == 9:
        return b"HTTP/1.1 200 OK\r\n" + b"X: " + b"y" * (MAX_HTTP + r.u8()) + b"\r\n\r\n"
    if kind == 10:
        return http_response(200, "OK", [], b'{"name":"octo","session":"S"}', content_length=False)
    if kind == 11:
        return b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
    if kind == 12:  # anything at all (captured answers come this way)
        return r.chunk(2000)
    return http_response(200, "OK", [], b'{"name":"octo","session":"S"}')[: r.u8()]


CLOSE_CODES = (
    1000,
    1001,
    1002,
    1003,
    1005,
    1006,
    1007,
    1008,
    1009,
    1011,
    1012,
    1015,
    3000,
    4999,
    0,
    999,
    2999,
    5000,
    65535,
)


# ----------------------------------------------------------------------------
# Client configurations


def plain_config(seed: int, **overrides: object) -> SessionConfig:
    """A plain WebSocket client's config with short timers and small limits."""
    options: dict[str, object] = {
        "url": PLAIN_URL,
        "entropy": SeededEntropy(seed),
        "subprotocols": ("chat", "superchat"),
        "reconnect": ReconnectSchedule(delays=(0.0, 0.1, 0.3), attempts=4, jitter=0.2),
        "connect_timeout": 1.0,
        "close_timeout": 0.5,
        "ping_interval": 0.7,
        "dead_link_timeout": 2.0,
        "max_message_size": MAX_MESSAGE,
        "max_http_response_size": MAX_HTTP,
        "max_queued_messages": MAX_QUEUED,
        "warning_ms": 300,
        "warning_bs": 10_000,
        "min_ms": 100,
    }
    options.update(overrides)
    return SessionConfig(**options)  # type: ignore[arg-type]


def octoprint_config(seed: int, **overrides: object) -> OctoPrintConfig:
    """An OctoPrint client's config with short timers and small limits."""
    options: dict[str, object] = {
        "url": OCTOPRINT_URL,
        "entropy": SeededEntropy(seed),
        "reconnect": ReconnectSchedule(delays=(0.1, 0.2, 0.5), attempts=5),
        "connect_timeout": 1.5,
        "close_timeout": 0.5,
        "ping_interval": 0.9,
        "dead_link_timeout": 2.5,
        "max_message_size": MAX_MESSAGE,
        "max_http_response_size": MAX_HTTP,
        "max_queued_messages": MAX_QUEUED,
        "login_timeout": 0.8,
        "login_retry_delay": 0.6,
    }
    options.update(overrides)
    return OctoPrintConfig(**options)  # type: ignore[arg-type]


def octoprint_variant(
    seed: int,
    variant: int,
    *,
    compression: bool = True,
    overrides: Mapping[str, object] | None = None,
) -> OctoPrintConfig:
    """One of six OctoPrint set-ups: endpoint × (anonymous, API key, user and password)."""
    endpoint = Endpoint.RAW if variant % 2 else Endpoint.SOCKJS
    setups: tuple[dict[str, object], ...] = (
        {},
        {"api_key": "FUZZKEY"},
        {"username": "octo", "password": "pw", "subscription": {"state": {"logs": "^Recv"}}},
    )
    options = {**setups[variant // 2 % 3], **(overrides or {})}
    return octoprint_config(seed, endpoint=endpoint, compression=compression, **options)


# ----------------------------------------------------------------------------
# The adapter model


@dataclass
class ChannelModel:
    """What the adapter knows about one channel's transport."""

    #: ``idle`` (never used), ``pending`` (OpenTransport issued), ``open``, ``closed``.
    state: str = "idle"
    eof: bool = False  # the adapter reported EOF (it reads no more)
    writes: int = 0  # SendData commands on this transport
    #: The socket: which dial this transport belongs to, its upgrade request, its frames.
    dial: int = 0
    request: h11.Request | None = None
    decoder: ClientFrameDecoder | None = None
    server_deflate: ServerDeflate | None = None
    offered_deflate: ServerDeflate | None = None


@dataclass
class Driver:
    """A correct adapter, plus the server's side of the bytes, plus the checks.

    Every input method takes ``dt``, the seconds to move the clock first;
    timers that fall due on the way are fired in order, as an adapter waking
    at ``get_timer()`` would. Methods return whether the input was accepted
    (user inputs may be refused with ``LocalProtocolError``); inputs that
    make no sense for the adapter at this point (data on a channel that is
    not open, say) are skipped and return ``False``.
    """

    client: SessionEngine
    now: float = 0.0
    hops: list[tuple[SessionState, Trigger, SessionState]] = field(default_factory=list)
    event_counts: Counter[str] = field(default_factory=Counter)
    max_events: int = 200  # events kept in ``events`` (all are checked)
    events: list[Event] = field(default_factory=list)
    steps: int = 0

    def __post_init__(self) -> None:
        self.config = self.client.config
        self.octoprint = isinstance(self.client, OctoPrintClient)
        self.socket = ChannelModel()
        self.http = ChannelModel()
        self.accepted: Counter[object] = Counter()
        self.written: Counter[object] = Counter()
        self.failed: Counter[object] = Counter()
        self._dials = 0  # hops into CONNECTING
        self._accepted_deflate: dict[int, bool] = {}  # dial -> permessage-deflate in force
        self._expect_closed: list[ChannelModel] = []  # transports that got EOF or failed
        self._message_id = 0
        original = self.client._move

        def move(trigger: Trigger) -> None:
            before = self.client.state
            original(trigger)
            after = self.client.state
            self.hops.append((before, trigger, after))
            if after is SessionState.CONNECTING:
                self._dials += 1
            if trigger is Trigger.HANDSHAKE_ACCEPTED:
                response = self.client._handshake_response
                assert response is not None
                deflate = "permessage-deflate" in response.extensions
                self._accepted_deflate[self._dials] = deflate
                # The server compresses with what our 101 said (None: a 101 not ours).
                self.socket.server_deflate = self.socket.offered_deflate if deflate else None

        setattr(self.client, "_move", move)  # noqa: B010  (instance attribute, by design)

    # ------------------------------------------------------------------
    # The clock

    def advance(self, dt: float) -> None:
        """Move the clock by ``dt``, firing every deadline on the way at its time."""
        target = self.now + max(0.0, dt)
        for _ in range(MAX_TIMER_FIRINGS):
            deadline = self.client.get_timer()
            if deadline is None or deadline > target:
                break
            self.now = max(self.now, deadline)
            self._fire()
        else:
            # Every handle_timer() returned, and each fires a timer at most
            # once: a busy schedule the settings asked for (a 1 ns connect
            # timeout and no reconnect delay, say), not a hang.
            raise Exhausted(f"more than {MAX_TIMER_FIRINGS} timer firings in {dt} s")
        self.now = target

    def wake_late(self, dt: float) -> None:
        """``handle_timer`` at a ``now`` past the deadlines (an adapter that woke late)."""
        self.now += max(0.0, dt)
        self._fire()

    def _fire(self) -> None:
        self._remote(lambda: self.client.handle_timer(self.now))

    # ------------------------------------------------------------------
    # User inputs

    def connect(self, dt: float = 0.0) -> bool:
        self.advance(dt)
        return self._user(lambda: self.client.connect(self.now))

    def reconnect(self, dt: float = 0.0) -> bool:
        self.advance(dt)
        return self._user(lambda: self.client.reconnect(self.now))

    def disconnect(self, dt: float = 0.0, code: int | None = None, reason: str = "") -> bool:
        self.advance(dt)
        return self._user(lambda: self.client.disconnect(self.now, code=code, reason=reason))

    def send(self, message: str | bytes, dt: float = 0.0) -> bool:
        """A user message: ``WebSocketClient.send`` or ``OctoPrintClient.send_message``."""
        self.advance(dt)
        client = self.client
        if isinstance(client, OctoPrintClient):
            self._message_id += 1
            payload = {"n": self._message_id, "data": message if isinstance(message, str) else ""}
            text = json.dumps({"fuzz": payload}, separators=(",", ":"))
            return self._user(
                lambda: client.send_message("fuzz", payload, now=self.now), accept=text
            )
        assert isinstance(client, WebSocketClient)
        return self._user(lambda: client.send(message), accept=_key(message))

    def octoprint_call(self, kind: int, value: int, dt: float = 0.0) -> bool:
        """One of the OctoPrint client's other user inputs (no-op for a plain client)."""
        client = self.client
        if not isinstance(client, OctoPrintClient):
            return False
        self.advance(dt)
        calls: list[Callable[[], None]] = [
            lambda: client.send_auth("octo", f"session{value}", now=self.now),
            lambda: client.send_auth("a:b" if value % 2 else "", "s", now=self.now),
            lambda: client.subscribe({"state": bool(value % 2), "events": ["PrintDone"]}),
            lambda: client.subscribe({"bogus": value}),
            lambda: client.set_throttle(value % 5),
            client.increase_rate,
            client.decrease_rate,
            lambda: client.message_processed(value / 50.0, self.now),
            lambda: client.message_processed(-1.0, self.now),
            lambda: client.login(self.now),
            lambda: client.send_message("throttle", value % 4, now=self.now),
            lambda: client.send_message("auth", f"octo:s{value}", now=self.now),
            lambda: client.send_message("subscribe", {"plugins": True}),
            lambda: client.send_message("", 1),
            lambda: client.send_message("x", math.nan, now=self.now),
        ]
        return self._user(calls[kind % len(calls)])

    def misuse(self, kind: int, dt: float = 0.0) -> bool:
        """Caller misuse the core documents: it must raise LocalProtocolError and change nothing."""
        self.advance(dt)
        client, now = self.client, self.now
        calls: list[Callable[[], None]] = [
            # time going backwards (or, before any input, a clock that is not finite)
            lambda: client.connect(client._now - 1.0 if client._now > -math.inf else math.nan),
            lambda: client.handle_timer(math.nan),
            lambda: client.disconnect(now, code=1005),
            lambda: client.disconnect(now, code=5000),
            lambda: client.io_completed("recv", 1, 0.0, now),
            lambda: client.io_completed("send", -1, 0.0, now),
            lambda: client.receive_data(b"x", math.inf),
        ]
        if isinstance(client, WebSocketClient):
            too_big = min(self.config.max_message_size, 1 << 24) + 1
            if too_big > self.config.max_message_size:
                calls.append(lambda: client.send(b"x" * too_big))
            calls.append(lambda: client.send(42))  # type: ignore[arg-type]
        if self.socket.state == "pending":  # data before transport_opened()
            calls.append(lambda: client.receive_data(b"x", now))
        if self._user(calls[kind % len(calls)]):
            raise Violation("misuse-accepted", f"misuse #{kind % len(calls)} did not raise")
        return True

    def io_completed(self, nbytes: int, seconds: float, dt: float = 0.0) -> bool:
        self.advance(dt)
        return self._user(lambda: self.client.io_completed("send", nbytes, seconds, self.now))

    # ------------------------------------------------------------------
    # Transport inputs

    def _channel(self, channel: Channel) -> ChannelModel:
        return self.socket if channel is Channel.SOCKET else self.http

    def transport_opened(self, channel: Channel, dt: float = 0.0) -> bool:
        self.advance(dt)
        model = self._channel(channel)
        if model.state != "pending":
            return False
        model.state = "open"
        self._remote(lambda: self.client.transport_opened(self.now, channel=channel))
        return True

    def transport_failed(self, channel: Channel, reason: str = "reset", dt: float = 0.0) -> bool:
        self.advance(dt)
        model = self._channel(channel)
        if model.state not in ("pending", "open"):
            return False
        self._expect_closed.append(model)
        self._remote(lambda: self.client.transport_failed(reason, self.now, channel=channel))
        return True

    def receive(self, channel: Channel, data: bytes, dt: float = 0.0) -> bool:
        self.advance(dt)
        model = self._channel(channel)
        if model.state != "open" or model.eof:
            return False
        self._remote(lambda: self.client.receive_data(data, self.now, channel=channel))
        return True

    def receive_eof(self, channel: Channel, dt: float = 0.0) -> bool:
        self.advance(dt)
        model = self._channel(channel)
        if model.state != "open" or model.eof:
            return False
        model.eof = True
        self._expect_closed.append(model)
        self._remote(lambda: self.client.receive_eof(self.now, channel=channel))
        return True

    def stale(self, channel: Channel, kind: int, data: bytes = b"x", dt: float = 0.0) -> bool:
        """Input about a transport the core closed (or never opened): it must change nothing."""
        self.advance(dt)
        if self._channel(channel).state not in ("idle", "closed"):
            return False
        before = self._snapshot()
        calls: list[Callable[[], None]] = [
            lambda: self.client.transport_opened(self.now, channel=channel),
            lambda: self.client.transport_failed("stale", self.now, channel=channel),
            lambda: self.client.receive_data(data, self.now, channel=channel),
            lambda: self.client.receive_eof(self.now, channel=channel),
        ]
        self._remote(calls[kind % len(calls)])
        if self._snapshot() != before:
            raise Violation("stale-input-changed-state", f"{channel.value} input #{kind % 4}")
        return True

    # ------------------------------------------------------------------
    # Server content for the socket

    def upgrade(self, r: ByteReader) -> bytes | None:
        """A correct 101 for the socket's current request, with choices from ``r``."""
        model = self.socket
        if model.request is None:
            return None
        key = request_header(model.request, b"sec-websocket-key") or ""
        offer = request_header(model.request, b"sec-websocket-extensions")
        extension = None
        model.offered_deflate = None
        if offer is not None and r.flag():
            params = r.pick(
                (
                    "",
                    "; server_no_context_takeover",
                    "; client_no_context_takeover",
                    "; client_max_window_bits=10",
                    "; server_max_window_bits=9",
                    "; server_max_window_bits=12; server_no_context_takeover",
                    "; client_max_window_bits",
                )
            )
            extension = "permessage-deflate" + params
            bits = 9 if "server_max_window_bits=9" in params else 15
            bits = 12 if "server_max_window_bits=12" in params else bits
            model.offered_deflate = ServerDeflate(bits, "server_no_context" in params)
        subprotocol = r.pick((None, None, "chat", "superchat", "bogus"))
        return upgrade_response(key, extension=extension, subprotocol=subprotocol)

    def message_frames(self, payload: str | bytes, r: ByteReader) -> bytes:
        """One server message, maybe fragmented, compressed when that was negotiated."""
        data = payload.encode("utf-8") if isinstance(payload, str) else payload
        opcode = 1 if isinstance(payload, str) else 2
        deflate = self.socket.server_deflate
        compress = deflate is not None and r.u8() % 4 != 0
        if compress:
            assert deflate is not None
            data = deflate.compress(data)
        pieces = 1 + r.u8() % 3
        step = max(1, len(data) // pieces)
        chunks = [data[i : i + step] for i in range(0, len(data), step)] or [b""]
        out = b""
        for index, chunk in enumerate(chunks):
            out += server_frame(
                opcode if index == 0 else 0,
                chunk,
                fin=index == len(chunks) - 1,
                rsv1=compress and index == 0,
            )
            if index == 0 and len(chunks) > 1 and r.u8() % 8 == 0:
                out += server_frame(9, b"interleaved")
        return out

    def frames(self, r: ByteReader) -> bytes:
        """Server frames for the open socket: messages, control frames, broken frames."""
        kind = r.u8() % 16
        if kind < 4:
            if self.octoprint and isinstance(self.config, OctoPrintConfig):
                endpoint = self.config.endpoint
                text = sockjs_text(r) if endpoint is Endpoint.SOCKJS else octoprint_json(r)
            else:
                text = r.text(200)
            return self.message_frames(text, r)
        if kind == 4:
            return self.message_frames(r.chunk(300), r)
        if kind == 5:  # near and over the limit, multi-byte characters included
            char = r.pick(("a", "é", "€", "𝄞"))
            count = MAX_MESSAGE // len(char.encode()) - 2 + r.u8() % 8
            return self.message_frames(char * count, r)
        if kind == 6:
            return server_frame(9, r.chunk(130)[:125])
        if kind == 7:
            return server_frame(10, r.chunk(20))
        if kind == 8:
            code = r.pick(CLOSE_CODES)
            reason = r.text(40).encode("utf-8")[:100]
            payload = b"" if code == 1005 else struct.pack("!H", code & 0xFFFF) + reason
            return server_frame(8, payload)
        if kind == 9:
            return server_frame(8, r.pick((b"\x03", b"\x03\xe8\xff\xfe", b"\x00\x00")))
        if kind == 10:  # invalid UTF-8, maybe split over frames
            return server_frame(1, b"ok \xc3", fin=r.flag()) + server_frame(0, b"\x28 bad")
        if kind == 11:  # frames a server may not send
            bad = (
                server_frame(1, b"x", mask=b"abcd"),
                server_frame(9, b"p" * 126),
                server_frame(9, b"p", fin=False),
                server_frame(0, b"orphan"),
                server_frame(3, b""),
                server_frame(1, b"x", rsv2=True),
                server_frame(9, b"x", rsv1=True),
                server_frame(1, b"x", rsv1=True),
                server_frame(1, b"a", fin=False) + server_frame(2, b"b"),
            )
            return r.pick(bad)
        if kind == 12:  # a decompression bomb when deflate is on, else a big frame
            deflate = self.socket.server_deflate
            if deflate is not None:
                return server_frame(1, deflate.compress(b"a" * (MAX_MESSAGE * 4)), rsv1=True)
            return server_frame(2, b"\x00" * (MAX_MESSAGE + 1))
        if kind == 13:  # a frame header announcing far more than will come
            return b"\x82\x7f" + struct.pack("!Q", r.pick((1 << 63, MAX_MESSAGE + 1, 2**40)))
        if kind == 14:
            return server_frame(1, b"", fin=False) + server_frame(0, b"", fin=r.flag())
        return r.chunk(300)

    def progress(self, r: ByteReader, dt: float = 0.0) -> bool:
        """The next step of a healthy connection, whatever it is now (helps reach deep states)."""
        state, socket, http = self.client.state, self.socket, self.http
        if http.state == "pending":
            return self.transport_opened(Channel.HTTP, dt)
        if http.state == "open" and not http.eof and http.request is not None:
            if http.request.method == b"GET":
                cookie = "csrf_token_P5000=abc; Path=/"
                answer = http_response(200, "OK", [("Set-Cookie", cookie)], b"<html/>")
            else:
                record = {"name": "octo", "session": f"S{r.u8()}", "_login_mechanism": "password"}
                answer = http_response(200, "OK", [], json.dumps(record).encode())
            return self.receive(Channel.HTTP, answer, dt)
        if socket.state == "pending":
            return self.transport_opened(Channel.SOCKET, dt)
        if state is SessionState.HANDSHAKING and socket.state == "open":
            response = self.upgrade(r)
            return response is not None and self.receive(Channel.SOCKET, response, dt)
        if state in (SessionState.OPENING, SessionState.OPEN) and isinstance(
            self.config, OctoPrintConfig
        ):
            client = self.client
            assert isinstance(client, OctoPrintClient)
            if state is SessionState.OPENING:
                values: list[object] = [{"connected": {"version": "1.11.8"}}]
            elif client.auth_state is AuthState.AUTHENTICATING:
                values = [{"history": {"logs": []}}]
            else:
                values = [{"current": {"logs": ["Recv: ok"]}}]
            if self.config.endpoint is Endpoint.RAW:
                text = json.dumps(values[0])
            else:
                text = ("o" if state is SessionState.OPENING else "a") + (
                    "" if state is SessionState.OPENING else json.dumps(values)
                )
                if state is SessionState.OPENING:
                    frames = self.message_frames("o", r) + self.message_frames(
                        "a" + json.dumps(values), r
                    )
                    return self.receive(Channel.SOCKET, frames, dt)
            return self.receive(Channel.SOCKET, self.message_frames(text, r), dt)
        if state is SessionState.OPEN:
            return self.receive(Channel.SOCKET, self.message_frames(r.text(50), r), dt)
        if state in (SessionState.IDLE, SessionState.CLOSED):
            return self.connect(dt)
        deadline = self.client.get_timer()
        self.advance(dt if deadline is None else max(0.0, deadline - self.now))
        return True

    # ------------------------------------------------------------------
    # Running one input and checking everything

    def _remote(self, call: Callable[[], None]) -> None:
        """A transport or timer input: it must never raise."""
        before, hops = self.client.state, len(self.hops)
        try:
            call()
        except LocalProtocolError as exc:
            raise Violation("remote-input-raised", repr(exc)) from exc
        self._after(before, hops)

    def call(self, call: Callable[[], None]) -> bool:
        """Any user input: accepted (``True``), or refused with LocalProtocolError (no change)."""
        return self._user(call)

    def _user(self, call: Callable[[], None], *, accept: object = None) -> bool:
        """A user input: it may be refused with LocalProtocolError, changing nothing.

        ``accept``: the key of the user message this input sends, counted
        once the core has taken it.
        """
        before, hops = self.client.state, len(self.hops)
        snapshot = self._snapshot()
        try:
            call()
        except LocalProtocolError as exc:
            if self._snapshot() != snapshot:
                raise Violation("refused-input-changed-state", repr(exc)) from exc
            return False
        if accept is not None:
            self.accepted[accept] += 1
        self._after(before, hops)
        return True

    def _snapshot(self) -> tuple[object, ...]:
        c = self.client
        base: tuple[object, ...] = (
            c.state,
            tuple(sorted(c._timers.items())),
            tuple(c._queue),
            len(c._commands),
            len(c._events),
            len(self.hops),
            c._attempt,
            c._socket_active,
            c._http is not None,
            c._accepting_user_messages,
            c.usage,
        )
        if isinstance(c, OctoPrintClient):
            base += (c.auth_state, c.throttle_factor, c.user, c._subscription, c._login_blocked)
        return base

    def _after(self, before: SessionState, first_hop: int) -> None:
        self.steps += 1
        client = self.client
        # The state machine is the table, and the hops chain up.
        state = before
        for source, trigger, target in self.hops[first_hop:]:
            if source is not state or TRANSITIONS.get((source, trigger)) is not target:
                raise Violation("bad-transition", f"{source} --{trigger}--> {target}")
            state = target
        if state is not client.state:
            raise Violation("untracked-state-change", f"{state} -> {client.state}")
        self._drain_commands()
        self._drain_events(first_hop)
        for model in self._expect_closed:
            if model.state != "closed":  # (a later transport on the channel may be open)
                raise Violation("transport-left-open", f"{model.state} after EOF/failure")
        self._expect_closed.clear()
        deadline = client.get_timer()
        if deadline is not None and not deadline >= self.now:
            raise Violation("timer-in-the-past", f"get_timer() {deadline} < now {self.now}")
        if len(client._queue) > self.config.max_queued_messages:
            raise Violation("queue-over-limit", f"{len(client._queue)} queued")
        if (
            isinstance(client, OctoPrintClient)
            and client.auth_state is AuthState.LOGGING_IN
            and client._http is None
        ):
            raise Violation("login-without-request", "LOGGING_IN with no HTTP request")
        self._check_accounting()

    def _check_accounting(self) -> None:
        queued = Counter(_key(message) for message in self.client._queue)
        if self.accepted != self.written + self.failed + queued:
            lost = self.accepted - (self.written + self.failed + queued)
            extra = (self.written + self.failed + queued) - self.accepted
            raise Violation(
                "message-lost-or-duplicated", f"lost {dict(lost)!r:.200} extra {dict(extra)!r:.200}"
            )

    def _drain_commands(self) -> None:
        while (command := self.client.next_command()) is not None:
            if isinstance(command, OpenTransport):
                self._open(command)
            elif isinstance(command, SendData):
                self._send(command)
            elif isinstance(command, CloseTransport):
                model = self._channel(command.channel)
                if model.state not in ("pending", "open"):
                    raise Violation("close-without-transport", command.channel.value)
                model.state = "closed"
            else:
                raise Violation("unknown-command", repr(command))

    def _open(self, command: OpenTransport) -> None:
        model = self._channel(command.channel)
        if model.state in ("pending", "open"):
            raise Violation("open-while-open", command.channel.value)
        address = self.client._address_info
        if (command.host, command.port, command.tls) != (address.host, address.port, address.tls):
            raise Violation("wrong-server", repr(command))
        dial = model.dial + 1 if command.channel is Channel.SOCKET else 0
        fresh = ChannelModel(state="pending", dial=dial)
        if command.channel is Channel.SOCKET:
            self.socket = fresh
        else:
            self.http = fresh

    def _send(self, command: SendData) -> None:
        model = self._channel(command.channel)
        if model.state != "open":
            raise Violation("send-on-closed-transport", f"{command.channel.value} {model.state}")
        if not isinstance(command.data, bytes) or not command.data:
            raise Violation("bad-send-data", repr(command.data[:20]))
        model.writes += 1
        if command.channel is Channel.HTTP:
            if model.writes > 1:
                raise Violation("http-request-in-pieces", "more than one SendData")
            request, _body = parse_request(command.data)
            model.request = request
            if (request.method, request.target) not in (
                (b"GET", b"/login"),
                (b"POST", b"/api/login"),
            ):
                raise Violation("unexpected-http-request", repr((request.method, request.target)))
            return
        if model.request is None:
            if model.writes > 1:
                raise Violation("frames-before-request", "")
            request, _ = parse_request(command.data)
            if request_header(request, b"upgrade") != "websocket":
                raise Violation("bad-upgrade-request", "no Upgrade: websocket")
            model.request = request
            return
        if model.decoder is None:
            deflate = self._accepted_deflate.get(model.dial)
            if deflate is None:
                raise Violation("frames-before-accept", "client frames before a 101 was accepted")
            model.decoder = ClientFrameDecoder(deflate)
        for frame in model.decoder.feed(command.data):
            if frame.opcode == 1:
                assert frame.text is not None
                self._written_text(frame.text)
            elif frame.opcode == 2:
                if self.octoprint:
                    raise Violation("octoprint-binary-sent", "")
                self.written[_key(frame.payload)] += 1

    def _written_text(self, text: str) -> None:
        if not self.octoprint:
            self.written[_key(text)] += 1
            return
        assert isinstance(self.config, OctoPrintConfig)
        if self.config.endpoint is Endpoint.SOCKJS:
            batch = json.loads(text)
            if not isinstance(batch, list) or not all(isinstance(m, str) for m in batch):
                raise Violation("bad-sockjs-from-client", text[:80])
            messages = batch
        else:
            messages = [text]
        for message in messages:
            value = json.loads(message)
            if not isinstance(value, dict) or len(value) != 1:
                raise Violation("bad-octoprint-from-client", message[:80])
            if next(iter(value)) not in _CORE_TYPES:
                self.written[message] += 1

    def _drain_events(self, first_hop: int) -> None:
        config = self.config
        ready = sum(
            1 for _, trigger, _ in self.hops[first_hop:] if trigger is Trigger.SESSION_READY
        )
        connected = 0
        while (event := self.client.next_event()) is not None:
            check_event(event, config)
            self.event_counts[type(event).__name__] += 1
            if len(self.events) < self.max_events:
                self.events.append(event)
            if isinstance(event, Connected):
                connected += 1
            elif isinstance(event, SendFailed):
                for message in event.messages:
                    self.failed[_key(message)] += 1
        if connected != ready:
            raise Violation("connected-without-ready", f"{connected} Connected, {ready} ready")


def _key(message: str | bytes) -> object:
    """How a user message is counted: text and bytes apart."""
    return message if isinstance(message, str) else ("bytes", message)


def check_event(event: Event, config: SessionConfig) -> None:
    """An event is one of the documented kinds, and within the configured limits."""
    if not isinstance(event, EVENT_TYPES):
        raise Violation("unknown-event", type(event).__name__)
    if isinstance(event, TextMessage):
        size = len(event.text.encode("utf-8", "surrogatepass"))
        if size > config.max_message_size:
            raise Violation("message-over-limit", f"text of {size} bytes")
    elif isinstance(event, BinaryMessage):
        if len(event.data) > config.max_message_size:
            raise Violation("message-over-limit", f"binary of {len(event.data)} bytes")
    elif isinstance(event, Connected | ConnectFailed):
        handshake = event.handshake
        if handshake is not None:
            check_handshake(handshake, config)
    elif isinstance(event, LimitExceeded):
        if not event.size > event.maximum:
            raise Violation("bad-limit-event", repr(event))
    elif isinstance(event, ReconnectScheduled):
        if not (event.attempt >= 1 and math.isfinite(event.delay) and event.delay >= 0):
            raise Violation("bad-reconnect-event", repr(event))
    elif isinstance(event, SendFailed):
        if not event.messages:
            raise Violation("empty-send-failed", event.reason)
    elif isinstance(event, PushMessage) and not isinstance(event.type, str):
        raise Violation("bad-push-message", repr(event.type)[:50])


def check_handshake(handshake: HandshakeResponse, config: SessionConfig) -> None:
    """A handshake response in an event respects ``max_http_response_size``."""
    if len(handshake.body) > config.max_http_response_size:
        raise Violation("http-body-over-limit", f"{len(handshake.body)} bytes")


# ----------------------------------------------------------------------------
# Fuzz programs: a byte string read as a sequence of inputs


def make_client(selector: int, seed: int = 1) -> SessionEngine:
    """A client for a fuzz program: plain WebSocket or one of the OctoPrint set-ups."""
    compression = selector & 0x80 == 0
    variant = selector & 0x7F
    if variant % 7 == 6:
        return WebSocketClient(plain_config(seed, compression=compression))
    return OctoPrintClient(octoprint_variant(seed, variant % 7, compression=compression))


def run_program(data: bytes, *, seed: int = 1, max_steps: int = 400) -> Driver:
    """Read ``data`` as a client choice and a sequence of inputs, and run them, checking."""
    r = ByteReader(data)
    driver = Driver(make_client(r.u8(), seed))
    run_ops(driver, r, max_steps)
    return driver


def run_ops(driver: Driver, r: ByteReader, max_steps: int) -> None:
    """Apply operations from ``r`` until it is used up, ``max_steps`` or :class:`Exhausted`."""
    try:
        for _ in range(max_steps):
            if not r.remaining:
                break
            apply_op(driver, r)
    except Exhausted:
        pass


#: Operation codes of a fuzz program (one byte each, modulo their number).
OPS = (
    "connect",
    "reconnect",
    "disconnect",
    "open",
    "fail",
    "raw",
    "upgrade",
    "frames",
    "frames",
    "frames",
    "eof",
    "timer",
    "timer",
    "late",
    "send",
    "octoprint",
    "http-open",
    "http-data",
    "http-eof",
    "http-fail",
    "stale",
    "io",
    "upgrade-and-frames",
    "progress",
    "progress",
    "progress",
    "misuse",
)


#: The clock steps an operation's second byte chooses from.
DTS = (0.0, 0.0, 0.001, 0.05, 0.2, 0.5, 1.0, 3.0)


def op(name: str, *args: int | bytes, dt: int = 0) -> bytes:
    """Encode one operation of a fuzz program (the inverse of :func:`apply_op`).

    ``args`` are the operation's further bytes: an ``int`` is one decision
    byte, ``bytes`` are written as they are (see :func:`chunk16`).
    """
    out = bytes([OPS.index(name), dt])
    for arg in args:
        out += bytes([arg]) if isinstance(arg, int) else arg
    return out


def chunk16(data: bytes) -> bytes:
    """``data`` as a :meth:`ByteReader.chunk` with a two-byte length."""
    return struct.pack("!H", len(data)) + data


def apply_op(driver: Driver, r: ByteReader) -> None:
    """Decode one operation from ``r`` and apply it."""
    name = OPS[r.u8() % len(OPS)]
    dt = r.pick(DTS)
    if name == "connect":
        driver.connect(dt)
    elif name == "reconnect":
        driver.reconnect(dt)
    elif name == "disconnect":
        driver.disconnect(dt, r.pick((None, 1000, 1001, 3000, 1005, 999)), r.text(20))
    elif name == "open":
        driver.transport_opened(Channel.SOCKET, dt)
    elif name == "fail":
        driver.transport_failed(Channel.SOCKET, "connection reset", dt)
    elif name == "raw":
        driver.receive(Channel.SOCKET, r.chunk(2000), dt)
    elif name == "upgrade":
        response = driver.upgrade(r)
        if response is not None:
            cut = r.u8()
            if cut and cut < len(response):  # in two pieces
                driver.receive(Channel.SOCKET, response[:cut], dt)
                driver.receive(Channel.SOCKET, response[cut:])
            else:
                driver.receive(Channel.SOCKET, response, dt)
    elif name == "frames":
        data = driver.frames(r)
        cut = r.u8()
        driver.receive(Channel.SOCKET, data[:cut] if cut else data, dt)
        if cut:
            driver.receive(Channel.SOCKET, data[cut:])
    elif name == "eof":
        driver.receive_eof(Channel.SOCKET, dt)
    elif name == "timer":
        deadline = driver.client.get_timer()
        driver.advance(dt if deadline is None else max(0.0, deadline - driver.now))
    elif name == "late":
        driver.wake_late(dt)
    elif name == "send":
        driver.send(r.text(60) if r.flag() else r.chunk(60), dt)
    elif name == "octoprint":
        driver.octoprint_call(r.u8(), r.u8(), dt)
    elif name == "http-open":
        driver.transport_opened(Channel.HTTP, dt)
    elif name == "http-data":
        data = login_response(r)
        cut = r.u8()
        driver.receive(Channel.HTTP, data[:cut] if cut else data, dt)
        if cut:
            driver.receive(Channel.HTTP, data[cut:])
    elif name == "http-eof":
        driver.receive_eof(Channel.HTTP, dt)
    elif name == "http-fail":
        driver.transport_failed(Channel.HTTP, "refused", dt)
    elif name == "stale":
        driver.stale(r.pick((Channel.SOCKET, Channel.HTTP)), r.u8(), r.chunk(40), dt)
    elif name == "io":
        driver.io_completed(r.u16(), r.u8() / 10.0, dt)
    elif name == "progress":
        driver.progress(ByteReader(bytes([r.u8()]) * 8), dt)
    elif name == "misuse":
        driver.misuse(r.u8(), dt)
    else:  # upgrade-and-frames: a 101 with the first frames in the same chunk
        response = driver.upgrade(r)
        if response is not None:
            driver.socket.server_deflate = driver.socket.offered_deflate
            driver.receive(Channel.SOCKET, response + driver.frames(r), dt)
