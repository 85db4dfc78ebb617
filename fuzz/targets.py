"""One fuzz target per parser of the core, and one for the whole session engine.

A target takes one input (``bytes``) and either returns (the input was
handled, or reported as the documented error or event) or raises: any
exception is a finding. Each documents its input format: the first byte or
two choose a configuration, the rest is what the server sends. Targets are
deterministic (seeded entropy, no clock), so a finding replays from its input
alone: ``python fuzz/run.py TARGET --replay FILE``.

The parser targets allow exactly the exception their parser documents; the
engine targets allow none at all (remote faults never raise) and check the
invariants of :mod:`fuzz.harness` after every input.
"""

from __future__ import annotations

import contextlib
import functools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from octoproto import (
    Channel,
    LocalProtocolError,
    OctoPrintClient,
    OctoPrintConfig,
    ReconnectSchedule,
    SeededEntropy,
    SessionState,
    WebSocketClient,
)
from octoproto import _frames as frames_module
from octoproto._frames import (
    CLOSE_MESSAGE_TOO_BIG,
    WebSocketFault,
    WsClose,
    WsMessage,
    WsPing,
    WsPong,
    WsprotoFrameCodec,
)
from octoproto._handshake import ClientHandshake, HandshakeRejected, HandshakeResult
from octoproto._http import HttpExchange, HttpFault, HttpResponse
from octoproto._octoprint_wire import OctoPrintWireError, parse_json_text, split_push_message
from octoproto._sockjs import (
    SockJSClose,
    SockJSFramingError,
    SockJSHeartbeat,
    SockJSMessages,
    SockJSOpen,
    parse_frame,
)

from .harness import (
    ByteReader,
    Driver,
    Violation,
    accept_token,
    octoprint_variant,
    plain_config,
    run_ops,
    run_program,
    upgrade_response,
)
from .targets_rpc import target_rpc_client
from .targets_socketio import target_socketio_client, target_socketio_wire

#: The handshake key every target's handshake uses (entropy seeded with this).
HANDSHAKE_SEED = 7
#: The parser targets' limits: a selector bit chooses the small ones, which
#: fuzzed input reaches, or the large ones, which real traffic fits in.
SMALL_LIMIT = 512
LARGE_LIMIT = 64 * 1024

#: permessage-deflate answers a server may give (the frames target's byte 0 picks one).
DEFLATE_ANSWERS = (
    None,
    "permessage-deflate",
    "permessage-deflate; server_no_context_takeover",
    "permessage-deflate; client_max_window_bits=12; server_max_window_bits=10",
    "permessage-deflate; client_no_context_takeover; server_max_window_bits=8",
)


@dataclass(frozen=True)
class Target:
    """A fuzz target: its function, and how long an input may usefully be."""

    name: str
    run: Callable[[bytes], None]
    max_len: int
    summary: str
    #: The packages atheris instruments for coverage (the harness never: it
    #: would only slow the search down).
    instrument: tuple[str, ...] = ("octoproto",)


def _handshake(
    *, compression: bool = True, subprotocols: tuple[str, ...] = (), limit: int = LARGE_LIMIT
) -> ClientHandshake:
    return ClientHandshake(
        host_header="fuzz.test:8080",
        target="/feed",
        headers=[("X-Fuzz", "1")],
        subprotocols=subprotocols,
        origin=None,
        compression=compression,
        max_message_size=limit,
        max_response_size=limit,
        entropy=SeededEntropy(HANDSHAKE_SEED),
    )


@functools.cache
def handshake_key() -> str:
    """The ``Sec-WebSocket-Key`` the targets' handshakes send (fixed by the seed)."""
    request = _handshake().request_bytes
    return request.split(b"Sec-WebSocket-Key: ")[1].split(b"\r\n")[0].decode("ascii")


def _split(seed: int, data: bytes) -> list[bytes]:
    """Cut ``data`` into chunks of sizes drawn from ``seed`` (how TCP might deliver it)."""
    rng = random.Random(seed)
    chunks, start = [], 0
    while start < len(data):
        size = 1 + rng.randrange(1 << rng.randrange(12))
        chunks.append(data[start : start + size])
        start += size
    return chunks


# ----------------------------------------------------------------------------
# WebSocket frames after the handshake


def _limit(selector: int) -> int:
    return SMALL_LIMIT if selector & 0x80 else LARGE_LIMIT


def codec_for(selector: int, *, reference: bool = False) -> object:
    """The frame codec the handshake builds (whichever implementation is live).

    ``selector``: the low bits pick the server's permessage-deflate answer,
    the high bit the small message size limit. ``reference``: the handshake
    builds the wsproto-based codec instead (the oracle of a faster one).
    """
    answer = DEFLATE_ANSWERS[(selector & 0x7F) % len(DEFLATE_ANSWERS)]
    handshake = _handshake(compression=True, limit=_limit(selector))
    if reference:
        handshake._codec_class = WsprotoFrameCodec  # type: ignore[misc]  # what tests do
    result = handshake.receive_data(upgrade_response(handshake_key(), extension=answer))
    assert result is not None
    return result.codec


def _live_codec_is_reference() -> bool:
    return getattr(ClientHandshake, "_codec_class", WsprotoFrameCodec) is WsprotoFrameCodec


def _decode(
    codec: object, chunks: list[bytes], limit: int, *, raw: bool = False
) -> tuple[list[object], int | None]:
    """Feed ``chunks``; the events up to the first fault, and the fault's close code.

    ``raw``: through ``receive_raw`` (what the session uses, when the codec
    has it), its payloads and control frames merged back into events.
    """
    receive: Callable[[bytes], list[object]] = codec.receive  # type: ignore[attr-defined]
    receive_raw = getattr(codec, "receive_raw", None)
    merge = getattr(frames_module, "merge_events", None)
    if raw and receive_raw is not None and merge is not None:

        def receive(chunk: bytes) -> list[object]:
            return list(merge(*receive_raw(chunk)))

    events: list[object] = []
    for chunk in chunks:
        try:
            batch = receive(chunk)
        except WebSocketFault as fault:
            events += fault.events
            _check_fault(fault, limit)
            return events, fault.close_code
        events += batch
    return events, None


def _check_fault(fault: WebSocketFault, limit: int) -> None:
    if not (1000 <= fault.close_code <= 4999) or fault.close_code in (1004, 1005, 1006):
        raise Violation("bad-fault-code", f"close code {fault.close_code}")
    if fault.size is not None and fault.size <= limit:
        raise Violation("bad-fault-size", f"size {fault.size} within the limit")


def target_frames(data: bytes) -> None:
    """Server frames after a 101: byte 0 picks deflate and the limit, byte 1 the chunking.

    Invariants: ``receive`` returns frame events or raises ``WebSocketFault``
    (carrying the events before the fault); no message exceeds
    ``max_message_size`` bytes; cutting the same bytes into other chunks
    changes neither the events nor whether there is a fault; and when the
    live codec is not the wsproto-based one, it decodes the same chunks as
    that one does (same events, same close code; it may refuse an oversized
    frame from its header where wsproto reads on into it).
    """
    r = ByteReader(data)
    selector, cut_seed = r.u8(), r.u8()
    payload, limit = r.rest(), _limit(selector)
    whole, whole_fault = _decode(codec_for(selector), [payload], limit)
    cuts = _split(cut_seed, payload)
    chunked, chunked_fault = _decode(codec_for(selector), cuts, limit, raw=True)
    for event in whole:
        if not isinstance(event, WsMessage | WsPing | WsPong | WsClose):
            raise Violation("unknown-frame-event", repr(event)[:80])
        if isinstance(event, WsMessage):
            raw = event.data.encode("utf-8") if isinstance(event.data, str) else event.data
            if len(raw) > limit:
                raise Violation("message-over-limit", f"{len(raw)} bytes")
        if isinstance(event, WsPing | WsPong) and len(event.payload) > 125:
            raise Violation("control-over-125", f"{len(event.payload)} bytes")
    # The close code may depend on the cut when a frame breaks two rules at
    # once (wsproto checks them in an order that depends on how much of the
    # frame has arrived: see docs/fuzzing.md); the events and whether there
    # is a fault may not.
    if whole != chunked or (whole_fault is None) != (chunked_fault is None):
        raise Violation(
            "chunking-changes-result",
            f"whole: {len(whole)} events, fault {whole_fault};"
            f" chunked: {len(chunked)} events, fault {chunked_fault}",
        )
    if not _live_codec_is_reference():
        for chunks, events, fault in (
            ([payload], whole, whole_fault),
            (cuts, chunked, chunked_fault),
        ):
            oracle, oracle_fault = _decode(codec_for(selector, reference=True), chunks, limit)
            # A frame that announces more than the limit may be refused from
            # its header (1009) before wsproto has read far enough into it to
            # find another fault, or any: the same bytes refused sooner.
            early = fault == CLOSE_MESSAGE_TOO_BIG and oracle_fault != CLOSE_MESSAGE_TOO_BIG
            if events != oracle or (fault != oracle_fault and not early):
                raise Violation(
                    "codec-differs-from-wsproto",
                    f"live: {len(events)} events, fault {fault};"
                    f" wsproto: {len(oracle)} events, fault {oracle_fault}",
                )


# ----------------------------------------------------------------------------
# The handshake response


def target_handshake(data: bytes) -> None:
    """The answer to the upgrade: byte 0 picks the offer and the limit, byte 1 the chunking.

    Allowed outcomes: a result (101 accepted, with a codec), ``None`` (needs
    more), ``HttpFault`` or ``HandshakeRejected``; then EOF is fed if no
    result came. The response is bounded by ``max_response_size``.
    """
    r = ByteReader(data)
    selector, cut_seed = r.u8(), r.u8()
    limit = _limit(selector)
    handshake = _handshake(
        compression=selector & 1 == 1,
        subprotocols=("chat", "v2") if selector & 2 else (),
        limit=limit,
    )
    payload = r.rest()
    result: HandshakeResult | None = None
    try:
        for chunk in _split(cut_seed, payload):
            result = handshake.receive_data(chunk)
            if result is not None:
                break
        else:
            result = handshake.receive_eof()
    except HttpFault as fault:
        if fault.size is not None and fault.size <= limit:
            raise Violation("bad-fault-size", f"size {fault.size} within the limit") from None
        return
    except HandshakeRejected as rejected:
        _check_response(rejected.response, limit)
        return
    _check_response(result.response, limit)
    if result.response.status_code != 101:
        raise Violation("accepted-non-101", str(result.response.status_code))
    expected = accept_token(handshake_key())
    if result.response.header("sec-websocket-accept") != expected:
        raise Violation("accepted-wrong-key", "")
    if result.subprotocol is not None and result.subprotocol not in ("chat", "v2"):
        raise Violation("accepted-unoffered-subprotocol", result.subprotocol)
    # The codec the handshake built must take the trailing bytes without raising
    # anything but its documented fault.
    with contextlib.suppress(WebSocketFault):
        result.codec.receive(result.response.trailing_data)


def _check_response(response: HttpResponse, limit: int) -> None:
    if len(response.body) > limit:
        raise Violation("http-body-over-limit", f"{len(response.body)} bytes")


# ----------------------------------------------------------------------------
# HTTP responses (the login channel)


def target_http_response(data: bytes) -> None:
    """Any HTTP response to ``POST /api/login``: byte 0 chooses the chunking and the limit.

    ``HttpExchange`` returns the response (body within the limit), asks for
    more, or raises ``HttpFault``; after the bytes, EOF gives a response or
    ``HttpFault``.
    """
    r = ByteReader(data)
    cut_seed = r.u8()
    limit = _limit(cut_seed)
    exchange = HttpExchange(
        "POST",
        "/api/login",
        [("Host", "octo.test:5000"), ("Content-Type", "application/json")],
        b'{"passive":true}',
        max_response_size=limit,
    )
    try:
        response = None
        for chunk in _split(cut_seed, r.rest()):
            response = exchange.receive_data(chunk)
            if response is not None:
                break
        if response is None:
            response = exchange.receive_eof()
    except HttpFault as fault:
        if fault.size is not None and fault.size <= limit:
            raise Violation("bad-fault-size", f"size {fault.size} within the limit") from None
        return
    _check_response(response, limit)


def _open_octoprint(variant: int) -> Driver:
    """An OctoPrint client whose session is up (``connected`` received), driven and checked."""
    driver = Driver(OctoPrintClient(octoprint_variant(1, variant, compression=False)))
    driver.connect()
    driver.transport_opened(Channel.SOCKET)
    driver.progress(ByteReader(b""))  # the 101
    driver.progress(ByteReader(b""))  # o + connected
    if driver.client.state is not SessionState.OPEN:
        raise Violation("setup-failed", str(driver.client.state))
    return driver


def target_octoprint_login(data: bytes) -> None:
    """OctoPrint's login path fed any HTTP answers: byte 0 picks API key or password login.

    The session is up; then, while a login request is under way, the input
    is read as the server's answers on the HTTP channel (length-prefixed
    chunks, EOFs, failures, timeouts). Nothing may raise; every invariant of
    the harness holds after each input.
    """
    r = ByteReader(data)
    driver = _open_octoprint(2 + 2 * (r.u8() % 2))  # SockJS with API key / with password
    for _ in range(64):
        if not r.remaining:
            break
        if driver.http.state == "pending":
            driver.transport_opened(Channel.HTTP)
        action = r.u8() % 8
        if action < 4:
            driver.receive(Channel.HTTP, r.chunk(600))
        elif action == 4:
            driver.receive_eof(Channel.HTTP)
        elif action == 5:
            driver.transport_failed(Channel.HTTP, "reset")
        elif action == 6:
            deadline = driver.client.get_timer()
            if deadline is not None:
                driver.advance(deadline - driver.now)
        else:
            driver.octoprint_call(9, 0)  # login() again


# ----------------------------------------------------------------------------
# SockJS frames and OctoPrint messages


def target_sockjs(data: bytes) -> None:
    """``parse_frame`` on any text: a frame, or ``SockJSFramingError`` and nothing else."""
    text = data.decode("utf-8", "replace")
    try:
        frame = parse_frame(text)
    except SockJSFramingError:
        return
    if isinstance(frame, SockJSMessages):
        if not isinstance(frame.messages, tuple):
            raise Violation("bad-sockjs-frame", "messages not a tuple")
    elif isinstance(frame, SockJSClose):
        if not isinstance(frame.code, int) or isinstance(frame.code, bool):
            raise Violation("bad-sockjs-frame", f"close code {frame.code!r}")
    elif not isinstance(frame, SockJSOpen | SockJSHeartbeat):
        raise Violation("bad-sockjs-frame", repr(frame)[:80])


def target_octoprint_wire(data: bytes) -> None:
    """``parse_json_text`` then ``split_push_message``: pairs, or ``OctoPrintWireError``.

    Byte 0 chooses whether the text goes through a SockJS ``a`` frame first
    (each element of the batch is then split on its own).
    """
    r = ByteReader(data)
    via_sockjs = r.flag()
    text = r.rest().decode("utf-8", "replace")
    values: list[object] = []
    try:
        if via_sockjs:
            frame = parse_frame("a" + text)
            assert isinstance(frame, SockJSMessages)
            values = list(frame.messages)
        else:
            values = [parse_json_text(text)]
    except (OctoPrintWireError, SockJSFramingError):
        return
    for value in values:
        try:
            pairs = split_push_message(value)
        except OctoPrintWireError:
            continue
        if not all(isinstance(key, str) for key, _ in pairs):
            raise Violation("bad-push-pairs", "a non-str message type")
        if isinstance(value, dict) and len(pairs) != len(value):
            raise Violation("bad-push-pairs", "pairs lost")


def target_octoprint_client(data: bytes) -> None:
    """The whole ``OctoPrintClient`` fed any post-handshake text messages.

    Byte 0 picks the set-up (SockJS or raw endpoint; anonymous, API key or
    password). The session is brought up, then the rest is cut at ``\\x00``
    bytes into text messages, each sent to the client as one WebSocket text
    frame; a ``\\x01`` prefix sends the piece as raw bytes instead (framing
    garbage). Login requests are answered, timers fire between messages.
    Nothing may raise; every invariant of the harness holds after each input.
    """
    r = ByteReader(data)
    driver = _open_octoprint(r.u8() % 6)
    for piece in r.rest().split(b"\x00")[:200]:
        if driver.client.state is not SessionState.OPEN:
            break
        if driver.http.state in ("pending", "open"):
            driver.progress(ByteReader(b""))
        if piece.startswith(b"\x01"):
            driver.receive(Channel.SOCKET, piece[1:])
        elif piece.startswith(b"\x02"):
            driver.advance(len(piece) / 10.0)
        else:
            text = piece.decode("utf-8", "replace")
            driver.receive(Channel.SOCKET, driver.message_frames(text, ByteReader(b"")))


def octoprint_text_messages(texts: list[str]) -> bytes:
    """The ``octoprint_client`` input that delivers ``texts`` (SockJS, API-key set-up)."""
    return bytes([2]) + b"\x00".join(text.encode("utf-8") for text in texts)


# ----------------------------------------------------------------------------
# The whole session engine


def target_session(data: bytes) -> None:
    """The whole session engine driven by a program read from the input.

    Byte 0 picks the client (plain WebSocket, or OctoPrint SockJS/raw with
    or without credentials; with or without compression); every following
    operation (``fuzz.harness.OPS``) is a user call, a transport event,
    server bytes (raw, a valid 101, frames, SockJS, login answers), a timer
    firing or a stale report. Nothing may raise but ``LocalProtocolError``
    from user calls (which must then change nothing); every invariant of the
    harness holds after each input.
    """
    run_program(data)


# ----------------------------------------------------------------------------
# Configuration values (the caller's side of the boundary)

_TIMES: tuple[float | None, ...] = (
    None,
    0.0,
    -1.0,
    1e-9,
    0.01,
    0.3,
    1.0,
    5.0,
    1e9,
    math.nan,
    math.inf,
    -math.inf,
)
_COUNTS: tuple[float, ...] = (0, 1, 2, 3, 100, -1, 1.5, 10**30, math.nan, math.inf, -math.inf)
_TIME_FIELDS = ("connect_timeout", "close_timeout", "ping_interval", "dead_link_timeout")
_SIZE_FIELDS = ("max_message_size", "max_http_response_size", "max_queued_messages")
_WARNING_FIELDS = ("warning_ms", "warning_bs", "min_ms")
_OCTOPRINT_TIMES = ("login_timeout", "login_retry_delay")


def target_config(data: bytes) -> None:
    """Numeric settings from the input, then a session run with them.

    The first bytes choose a value (from a table of edge cases: 0, negative,
    tiny, huge, NaN, infinities, ``None``) for each timer, size and warning
    setting, the reconnect schedule and OctoPrint's login timers. A setting
    the core cannot work with must be refused at construction with
    ``LocalProtocolError``; one it accepts must not be NaN (a NaN limit is no
    limit: every comparison with it is false); and with what it accepted, a
    session (the rest of the input, read as a ``session`` program) must run
    without an exception, a hang or a broken invariant.
    """
    r = ByteReader(data)
    octoprint = r.flag()
    options: dict[str, object] = {}
    for name in _TIME_FIELDS + (_OCTOPRINT_TIMES if octoprint else ()):
        if r.flag():
            options[name] = r.pick(_TIMES)
    for name in _SIZE_FIELDS + _WARNING_FIELDS:
        if r.flag():
            options[name] = r.pick(_COUNTS)
    if r.flag():
        delays = tuple(r.pick((0.0, 0.5, 1e-9, 1e9)) for _ in range(r.u8() % 3))
        attempts = r.pick((None, 0, 1, 3))
        try:
            options["reconnect"] = ReconnectSchedule(
                delays=delays, attempts=attempts, jitter=r.pick((0.0, 0.5, 1.0))
            )
        except LocalProtocolError:
            return
    try:
        config = (
            octoprint_variant(1, r.u8() % 6, overrides=options)
            if octoprint
            else plain_config(1, **options)
        )
    except LocalProtocolError:
        return
    for name, value in options.items():
        if isinstance(value, float) and math.isnan(value):
            raise Violation(f"config-accepts-nan-{name}", "")
    client = (
        OctoPrintClient(config) if isinstance(config, OctoPrintConfig) else WebSocketClient(config)
    )
    run_ops(Driver(client), r, 200)


TARGETS: dict[str, Target] = {
    target.name: target
    for target in (
        Target(
            "frames",
            target_frames,
            8192,
            "WebSocket frames after the handshake (FrameCodec)",
            ("octoproto", "wsproto"),
        ),
        Target(
            "handshake",
            target_handshake,
            4096,
            "the upgrade response (ClientHandshake)",
            ("octoproto", "h11"),
        ),
        Target(
            "http_response",
            target_http_response,
            4096,
            "HTTP login responses (HttpExchange)",
            ("octoproto", "h11"),
        ),
        Target(
            "octoprint_login",
            target_octoprint_login,
            4096,
            "OctoPrint's login path (OctoPrintClient, HTTP channel)",
            ("octoproto", "h11"),
        ),
        Target("sockjs", target_sockjs, 4096, "SockJS frames (parse_frame)"),
        Target(
            "socketio_wire",
            target_socketio_wire,
            4096,
            "Engine.IO / Socket.IO packets and binary reassembly (_socketio_wire)",
        ),
        Target(
            "socketio_client",
            target_socketio_client,
            4096,
            "a SocketIOClient fed any server messages between emits, acks and timeouts",
        ),
        Target(
            "rpc_client",
            target_rpc_client,
            8192,
            "RpcClient (JSON and MessagePack) fed any server messages between calls",
            ("octoproto", "msgpack"),
        ),
        Target(
            "octoprint_wire",
            target_octoprint_wire,
            4096,
            "OctoPrint messages (parse_json_text, split_push_message)",
        ),
        Target(
            "octoprint_client",
            target_octoprint_client,
            8192,
            "OctoPrintClient fed any post-handshake text",
            ("octoproto", "wsproto"),
        ),
        Target("config", target_config, 2048, "settings at their edges, then a session"),
        Target(
            "session",
            target_session,
            16384,
            "the session engine, any input at any stage",
        ),
    )
}
