"""An in-memory WebSocket server and a fake-clock harness for testing the sans-I/O core.

Shared by every dialect's tests (plain, OctoPrint, later RPC and Socket.IO)::

    h = Harness(WebSocketClient(config))       # answer=Accept() by default
    h.connect_and_open()                        # -> [Connected(...)]
    h.server.send("hello"); h.pump()            # server -> client
    h.client.send("hi"); h.pump()               # client -> server
    assert h.server.received == [("text", "hi")]
    h.advance(20.0)                             # fires due timers in order, pumping after each

:class:`ServerPeer` is one server-side connection. wsproto's server role does
the handshake (so an independent implementation validates the client's
upgrade request), then wsproto's frame parser reads the client's frames (it
insists on masking). :attr:`ServerPeer.received` records what the client sent:
``("text", str)``, ``("binary", bytes)``, ``("ping", bytes)``, ``("pong",
bytes)``, ``("close", code, reason)``. An invalid client frame, or any byte
after the client's close frame, raises ``AssertionError``.

:class:`Harness` owns a client and a fake clock (:attr:`Harness.now`; nothing
sleeps). :meth:`Harness.pump` plays the adapter: it dials a new peer for each
socket ``OpenTransport`` (and reports it open when ``auto_open``), feeds
``SendData`` to the peer and the peer's output back (``chunk_size`` bytes at a
time if set), and hands each HTTP request to the ``http`` responder (request
bytes -> response bytes, followed by EOF; ``None``: no answer). Like an
adapter it keeps the stale-input rule: after ``CloseTransport(channel)`` it
feeds nothing more about that transport. ``open_socket``, ``fail_socket`` and
``server_eof`` report to the client unconditionally (to test that rule too).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, RejectConnection, RejectData, Request
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.frame_protocol import FrameProtocol, Opcode, ParseFailed
from wsproto.utilities import generate_accept_token

from octoproto import Channel, CloseTransport, Command, Event, OpenTransport, SendData
from octoproto import SessionEngine as _Engine

Received = tuple[object, ...]  #: what the client sent (see the module docstring)
HttpResponder = Callable[[bytes], "bytes | None"]


@dataclass
class Accept:
    """Answer the upgrade with ``101 Switching Protocols``."""

    subprotocol: str | None = None
    #: Makes the server-side permessage-deflate (e.g. ``PerMessageDeflate``); used if offered.
    deflate: Callable[[], PerMessageDeflate] | None = None
    headers: Sequence[tuple[str, str]] = ()
    #: Messages written together with the 101, so they arrive as its trailing data.
    greeting: Sequence[str | bytes] = ()


@dataclass
class Reject:
    """Answer the upgrade with an ordinary HTTP response."""

    status: int = 403
    body: bytes = b""
    headers: Sequence[tuple[str, str]] = ()


RawAnswer = Callable[[Request], bytes]  #: a hand-written answer: the raw bytes to send
Answer = Accept | Reject | RawAnswer


def accept_key(request: Request) -> str:
    """The correct ``Sec-WebSocket-Accept`` for ``request`` (for hand-written 101s)."""
    return generate_accept_token(dict(request.extra_headers)[b"sec-websocket-key"]).decode()


def handshake_101(request: Request, *headers: str) -> bytes:
    """A hand-written, correct 101 answer to ``request``, plus ``headers`` ("Name: value")."""
    head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    lines = [f"Sec-WebSocket-Accept: {accept_key(request)}", *headers]
    return (head + "".join(f"{line}\r\n" for line in lines) + "\r\n").encode()


def server_frame(
    opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False, mask: bytes = b""
) -> bytes:
    """A hand-written frame (unmasked unless ``mask``), for input wsproto would refuse to write."""
    n = len(payload)
    short = n if n < 126 else 126 if n < 1 << 16 else 127
    extended = b"" if n < 126 else struct.pack("!H" if n < 1 << 16 else "!Q", n)
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if mask else payload
    return bytes([first, short | (0x80 if mask else 0)]) + extended + mask + masked


class ServerPeer:
    """The server end of one WebSocket connection, in memory."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.request: Request | None = None  #: the client's upgrade request, once read
        self.received: list[Received] = []
        self.raw = bytearray()  #: every byte the client sent, handshake included
        self.auto_pong = True  #: answer the client's pings
        self.auto_close = True  #: echo the client's close frame (unless we closed first)
        self.client_closed = self.server_closed = False
        self._ws = WSConnection(ConnectionType.SERVER)
        self._frames: FrameProtocol | None = None
        self._parts: list[str | bytes] = []
        self._out = bytearray()

    def feed(self, data: bytes) -> None:
        """Bytes from the client."""
        if self.client_closed:
            raise AssertionError(f"the client sent {data!r} after its close frame")
        self.raw += data
        if self._frames is not None:
            self._frames.receive_bytes(data)
            self._read_frames(self._frames)
        elif self.request is None:
            self._ws.receive_data(data)
            for event in self._ws.events():
                if isinstance(event, Request):
                    self.request = event
                    self._answer(event)
        # else: the upgrade was refused or answered by hand; ignore the rest.

    def take_output(self) -> bytes:
        """Everything the server wrote since the last call."""
        data, self._out = bytes(self._out), bytearray()
        return data

    def start_frames(self, extensions: Sequence[Extension] = ()) -> None:
        """Switch to frames (done by :class:`Accept`; call it after a hand-written 101)."""
        self._frames = FrameProtocol(client=False, extensions=list(extensions))

    def send(self, message: str | bytes, *, fin: bool = True) -> None:
        """A text (``str``) or binary message; ``fin=False`` leaves it open for more fragments."""
        self._out += self._open().send_data(message, fin)

    def send_ping(self, payload: bytes = b"") -> None:
        self._out += self._open().ping(payload)

    def send_pong(self, payload: bytes = b"") -> None:
        self._out += self._open().pong(payload)

    def send_close(self, code: int | None = 1000, reason: str = "") -> None:
        """A close frame (``code=None``: no status code at all)."""
        self._out += self._open().close(code, reason)
        self.server_closed = True

    def send_raw(self, data: bytes) -> None:
        """Bytes written as they are (see :func:`server_frame`)."""
        self._out += data

    def _open(self) -> FrameProtocol:
        assert self._frames is not None, "the WebSocket is not open"
        return self._frames

    def _answer(self, request: Request) -> None:
        answer = self.answer
        if isinstance(answer, Accept):
            extensions = [answer.deflate()] if answer.deflate else []
            headers = [(k.encode(), v.encode()) for k, v in answer.headers]
            accept = AcceptConnection(answer.subprotocol, list(extensions), headers)
            self._out += self._ws.send(accept)
            self.start_frames(extensions)
            for message in answer.greeting:
                self.send(message)
        elif isinstance(answer, Reject):
            headers = [(k.encode(), v.encode()) for k, v in answer.headers]
            self._out += self._ws.send(RejectConnection(answer.status, headers, bool(answer.body)))
            if answer.body:
                self._out += self._ws.send(RejectData(answer.body))
        else:
            self._out += answer(request)

    def _read_frames(self, frames: FrameProtocol) -> None:
        try:
            for frame in frames.received_frames():
                # wsproto's payload: bytes (ping, pong, binary), str (text), (code, reason).
                if frame.opcode in (Opcode.PING, Opcode.PONG):
                    payload = bytes(cast("bytes", frame.payload))
                    self.received.append((frame.opcode.name.lower(), payload))
                    if frame.opcode is Opcode.PING and self.auto_pong and not self.server_closed:
                        self.send_pong(payload)
                elif frame.opcode is Opcode.CLOSE:
                    code, reason = cast("tuple[int, str]", frame.payload)
                    self.received.append(("close", int(code), reason))
                    self.client_closed = True
                    if self.auto_close and not self.server_closed:
                        self.send_close(code, reason)
                else:
                    self._parts.append(cast("str | bytes", frame.payload))
                    if frame.message_finished:
                        parts, self._parts = self._parts, []
                        if frame.opcode is Opcode.TEXT:
                            self.received.append(("text", "".join(cast("list[str]", parts))))
                        else:
                            binary = b"".join(bytes(cast("bytes", part)) for part in parts)
                            self.received.append(("binary", binary))
        except ParseFailed as exc:
            raise AssertionError(f"the client sent an invalid frame: {exc}") from None


C = TypeVar("C", bound=_Engine)


class Harness(Generic[C]):
    """A client, a fake clock and the server peers it dials (see the module docstring)."""

    def __init__(
        self,
        client: C,
        *,
        answer: Answer | None = None,
        auto_open: bool = True,
        http: HttpResponder | None = None,
        now: float = 0.0,
    ) -> None:
        self.client = client
        self.now = now
        self.answer: Answer = Accept() if answer is None else answer  #: for the next dial
        self.auto_open = auto_open  #: answer a socket OpenTransport with transport_opened
        self.http = http  #: None: HTTP OpenTransport is recorded and left pending
        self.chunk_size: int | None = None  #: deliver server bytes in pieces of this size
        self.commands: list[Command] = []
        self.servers: list[ServerPeer] = []  #: one per socket dial; the last is :attr:`server`
        self.http_requests: list[bytes] = []
        self.fed = bytearray()  #: every socket byte fed to the client, all connections
        self.socket_live = False  #: a socket is dialled/open and the core has not closed it
        self._pending = bytearray()  # server output not yet fed to the client
        self._http_eof_due = False

    @property
    def server(self) -> ServerPeer:
        """The peer of the most recent dial."""
        return self.servers[-1]

    def pump(self) -> None:
        """Run the adapter loop until neither side has anything more to say."""
        while True:
            command = self.client.next_command()
            if command is not None:
                self.commands.append(command)
                self._handle(command)
            elif self._http_eof_due:
                self._http_eof_due = False
                self.client.receive_eof(self.now, channel=Channel.HTTP)
            else:
                if self.socket_live and self.servers:
                    self._pending += self.server.take_output()
                if not (self.socket_live and self._pending):
                    return
                size = self.chunk_size or len(self._pending)
                chunk = bytes(self._pending[:size])
                del self._pending[:size]
                self.fed += chunk
                self.client.receive_data(chunk, self.now)

    def advance_to(self, when: float) -> None:
        """Move the clock to ``when``, firing each timer at its own deadline and pumping."""
        while (deadline := self.client.get_timer()) is not None and deadline <= when:
            self.now = max(self.now, deadline)
            self.client.handle_timer(self.now)
            self.pump()
        self.now = max(self.now, when)

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` on (see :meth:`advance_to`)."""
        self.advance_to(self.now + seconds)

    def events(self) -> list[Event]:
        """Drain the client's events."""
        events = []
        while (event := self.client.next_event()) is not None:
            events.append(event)
        return events

    def connect_and_open(self) -> list[Event]:
        """``connect()`` and pump; return the events (``[Connected(...)]`` when all goes well)."""
        self.client.connect(self.now)
        self.pump()
        return self.events()

    def open_socket(self) -> None:
        """The dialled socket is open (for ``auto_open=False``)."""
        self.client.transport_opened(self.now)
        self.pump()

    def fail_socket(self, reason: str = "connection refused") -> None:
        self.client.transport_failed(reason, self.now)
        self.pump()

    def server_eof(self) -> None:
        """The server closes the TCP connection."""
        self.client.receive_eof(self.now)
        self.pump()

    def _handle(self, command: Command) -> None:
        if isinstance(command, OpenTransport):
            if command.channel is Channel.SOCKET:
                self.servers.append(ServerPeer(self.answer))
                self.socket_live, self._pending = True, bytearray()
                if self.auto_open:
                    self.client.transport_opened(self.now)
            elif self.http is not None:
                self.client.transport_opened(self.now, channel=Channel.HTTP)
        elif isinstance(command, SendData):
            if command.channel is Channel.SOCKET:
                assert self.socket_live, "SendData on a socket the core has closed"
                self.server.feed(command.data)
                return
            self.http_requests.append(command.data)
            reply = self.http(command.data) if self.http is not None else None
            if reply is not None:
                if reply:
                    self.client.receive_data(reply, self.now, channel=Channel.HTTP)
                self._http_eof_due = True
        elif isinstance(command, CloseTransport):
            if command.channel is Channel.SOCKET:
                self.socket_live, self._pending = False, bytearray()
            else:
                self._http_eof_due = False
