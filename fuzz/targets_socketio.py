"""Fuzz targets of the Socket.IO dialect (registered in :mod:`fuzz.targets`).

``socketio_client``: a whole :class:`~octoproto.SocketIOClient` fed any
server messages. Byte 0 picks the namespaces (``/`` alone, or ``/`` and
``/chat``) and whether the namespaces get their CONNECT replies first (the
session up) or the program starts in the middle of the open. Then each step
is a flag byte and a length-prefixed chunk: a text message (flag 0), a
binary message (1), raw bytes (2: framing garbage), an emit with an ack
(3, with bytes in it on odd lengths), an ack for a server event (4), the
clock moved (5: heartbeats and call timeouts fire), the server's EOF (6: a
reconnect follows) or a step of a healthy connection (7). Nothing the server
sends may raise from the client; the Driver's invariants hold.

``socketio_wire``: a run of WebSocket messages as the server would send them
goes through the Engine.IO and Socket.IO parsers and the binary reassembler,
as the client feeds them. Input: byte 0 picks the reassembler's limits; then
each message is a flag byte (odd: binary) and a length-prefixed chunk (text
is decoded as UTF-8 with replacement). The only exception allowed is
:class:`~octoproto._socketio_wire.SocketIOWireError`; every packet that comes
out whole must have the shape the client relies on.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from octoproto import Channel, SeededEntropy, SessionState, SocketIOClient, SocketIOConfig
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

from .harness import ByteReader, Driver, Violation

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


#: The server's open packet (fast heartbeats: 2 s + 1 s) and CONNECT replies.
_OPEN = '0{"sid":"e","upgrades":[],"pingTimeout":1000,"pingInterval":2000,"maxPayload":2000}'


class _SocketIODriver(Driver):
    """The Driver with the Socket.IO client's accounting instead of the plain client's.

    The client writes its own packets (CONNECT, pongs, emits, acks), which
    the plain client's count of user messages does not fit; the engine's
    call table and the per-namespace queues are checked instead.
    """

    def _check_accounting(self) -> None:
        client = self.client
        assert isinstance(client, SocketIOClient)
        config = client._sio
        if not 0 <= client.pending_calls <= config.max_pending_calls:
            raise Violation("socketio-pending-calls", str(client.pending_calls))
        for name, state in client._namespaces.items():
            if len(state.queue) > config.max_queued_messages:
                raise Violation("socketio-queue-over-limit", name)
            if len(state.early) > config.max_early_events:
                raise Violation("socketio-early-over-limit", name)
        if len(client._owed) > config.max_pending_calls:
            raise Violation("socketio-owed-acks", str(len(client._owed)))


def _open_client(variant: int, r: ByteReader) -> Driver:
    namespaces = ("/", "/chat") if variant & 1 else ("/",)
    config = SocketIOConfig(
        url="ws://127.0.0.1:8080/",
        entropy=SeededEntropy(1),
        compression=False,
        namespaces=namespaces,
        auth={"token": "t"},
        max_queued_messages=8,
        max_early_events=4,
        max_attachments=4,
        max_pending_calls=16,
    )
    driver = _SocketIODriver(SocketIOClient(config))
    driver.connect()
    driver.transport_opened(Channel.SOCKET)
    driver.progress(ByteReader(b""))  # the 101
    driver.receive(Channel.SOCKET, driver.message_frames(_OPEN, r))
    if variant & 2:
        for namespace in namespaces:
            prefix = "" if namespace == "/" else f"{namespace},"
            reply = f'40{prefix}{{"sid":"s"}}'
            driver.receive(Channel.SOCKET, driver.message_frames(reply, r))
        if driver.client.state is not SessionState.OPEN:
            raise Violation("setup-failed", str(driver.client.state))
    return driver


def _user(driver: Driver, start: Callable[[], object]) -> None:
    """A user input whose return value (a call id, whether an ack went out) is not needed."""

    def call() -> None:
        start()

    driver.call(call)


def target_socketio_client(data: bytes) -> None:
    """A SocketIOClient fed any server messages between emits, acks, timeouts and reconnects."""
    r = ByteReader(data)
    variant = r.u8()
    driver = _open_client(variant, r)
    client = driver.client
    assert isinstance(client, SocketIOClient)
    namespaces = client._sio.namespaces
    steps = 0
    while r.remaining and steps < 200:
        steps += 1
        flag = r.u8() % 8
        chunk = r.chunk()
        if flag == 0:
            driver.receive(
                Channel.SOCKET, driver.message_frames(chunk.decode("utf-8", "replace"), r)
            )
        elif flag == 1:
            driver.receive(Channel.SOCKET, driver.message_frames(chunk, r))
        elif flag == 2:
            driver.receive(Channel.SOCKET, chunk)
        elif flag == 3:
            args: tuple[object, ...] = (chunk,) if len(chunk) % 2 else (chunk.hex(),)
            namespace = namespaces[len(chunk) % len(namespaces)]
            call = partial(client.call, "e", *args, namespace=namespace, now=driver.now)
            _user(driver, partial(call, timeout=1.0))
        elif flag == 4:
            _user(driver, partial(client.ack, namespaces[0], len(chunk), [chunk], now=driver.now))
        elif flag == 5:
            driver.advance(len(chunk) / 32.0)
        elif flag == 6:
            driver.receive_eof(Channel.SOCKET)
        else:
            driver.progress(r)
