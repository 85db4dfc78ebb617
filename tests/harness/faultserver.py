"""A tiny purpose-built server that injects the faults the simulator cannot.

The simulated OctoPrint (:mod:`octoproto.adapters.simulator`) behaves; this
one misbehaves on purpose, one *script* per TCP connection::

    def refuse(peer: Peer) -> None:
        peer.request()
        peer.respond(403, b"go away")

    with FaultServer(refuse) as server:           # then serve() for every later connection
        adapter.start(server.url, api_key=None, ...)

Connection *n* runs ``scripts[n]``; every connection after the last script
runs ``then`` (by default :func:`serve`: a well-behaved, anonymous OctoPrint
push socket), so a test can watch the client reconnect and deliver what it
queued. It speaks just enough: the upgrade with h11 (server role), frames
with wsproto (server role) or raw bytes, SockJS framing, OctoPrint's
``connected`` message and heartbeats. No login: clients connect without
credentials, so the session is up (and user messages flow) at ``connected``.

Bounded and loopback only: it listens on 127.0.0.1; one thread accepts and
one thread runs each connection's script; every wait inside a script is
bounded by :data:`PEER_TIMEOUT` and ends early when the server stops.
Leaving the ``with`` block closes every socket, joins every thread (failing
if one does not end) and raises an error a script hit (a client that went
away, :class:`PeerGone`, is no error).
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import ssl
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import h11
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.handshake import server_extensions_handshake
from wsproto.utilities import generate_accept_token

__all__ = [
    "FaultServer",
    "Peer",
    "PeerGone",
    "Script",
    "frame",
    "serve",
]

#: Seconds any single wait inside a script may take.
PEER_TIMEOUT = 10.0
#: Seconds for the threads to end when the server stops.
STOP_TIMEOUT = 5.0
#: How often a serving script sends a SockJS heartbeat.
HEARTBEAT = 0.1
#: Bytes per read.
READ_SIZE = 65536

#: What ``connected`` carries (what the client looks at: nothing in particular).
CONNECTED = {"version": "fault-server", "display_version": "fault-server"}

Script = Callable[["Peer"], None]


class PeerGone(Exception):
    """The client closed or reset the connection, or the server is stopping."""


def frame(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False) -> bytes:
    """One unmasked (server) frame, built by hand: for frames wsproto refuses to write."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", first, size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", first, 126, size)
    else:
        head = struct.pack("!BBQ", first, 127, size)
    return head + payload


def deflated(data: bytes) -> bytes:
    """``data`` compressed as one permessage-deflate message (RFC 7692 §7.2.1)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert body.endswith(b"\x00\x00\xff\xff")
    return body[:-4]


def sockjs(message_type: str, payload: object) -> str:
    """The SockJS ``a`` frame of one OctoPrint message."""
    return "a" + json.dumps([{message_type: payload}], separators=(",", ":"))


@dataclass
class Peer:
    """One accepted connection and what its script did with it.

    Every method raises :class:`PeerGone` when the client is gone or the
    server stops. ``messages`` collects the OctoPrint messages the client
    sent (decoded from SockJS), ``close_code`` the code of its close frame.
    """

    server: FaultServer
    sock: socket.socket
    index: int
    request_head: h11.Request | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None
    #: Bytes received after the handshake that were not frames we could read.
    raw: bytearray = field(default_factory=bytearray)
    _http: h11.Connection = field(default_factory=lambda: h11.Connection(h11.SERVER))
    _ws: Connection | None = None
    _offers: list[str] = field(default_factory=list)
    _parts: list[str] = field(default_factory=list)  # a text message arriving in fragments

    # --- bytes --------------------------------------------------------------

    def _check(self) -> None:
        if self.server.stopping.is_set():
            raise PeerGone("the server is stopping")

    def recv(self, timeout: float = PEER_TIMEOUT) -> bytes:
        """Some bytes from the client, within ``timeout``; b"" when nothing came."""
        deadline = time.monotonic() + timeout
        while True:
            self._check()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return b""
            pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()
            if not pending:
                readable, _, _ = select.select([self.sock], [], [], min(remaining, 0.05))
                if not readable:
                    continue
            try:
                data = self.sock.recv(READ_SIZE)
            except (BlockingIOError, ssl.SSLWantReadError):
                continue
            except OSError as exc:
                raise PeerGone(f"recv: {exc}") from None
            if not data:
                raise PeerGone("the client closed the connection")
            return data

    def send(self, data: bytes) -> None:
        """All of ``data``, bounded by :data:`PEER_TIMEOUT`."""
        view = memoryview(data)
        deadline = time.monotonic() + PEER_TIMEOUT
        while view:
            self._check()
            if time.monotonic() > deadline:
                raise PeerGone("send: the client does not read")
            _, writable, _ = select.select([], [self.sock], [], 0.05)
            if not writable:
                continue
            try:
                sent = self.sock.send(view)
            except (BlockingIOError, ssl.SSLWantWriteError):
                continue
            except OSError as exc:
                raise PeerGone(f"send: {exc}") from None
            view = view[sent:]

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (or until the server stops), reading nothing."""
        if self.server.stopping.wait(seconds):
            raise PeerGone("the server is stopping")

    def reset(self) -> None:
        """Abort with a TCP RST (SO_LINGER 0), not a FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    # --- HTTP ---------------------------------------------------------------

    def request(self) -> h11.Request:
        """Read the client's request head (the upgrade request)."""
        while True:
            event = self._http.next_event()
            if isinstance(event, h11.Request):
                self.request_head = event
                self._offers = [
                    offer.strip()
                    for name, value in event.headers
                    if name == b"sec-websocket-extensions"
                    for offer in value.decode("latin-1").split(",")
                    if offer.strip()
                ]
                return event
            if event is not h11.NEED_DATA:
                raise AssertionError(f"unexpected HTTP event {event!r}")
            data = self.recv()
            if not data:
                raise PeerGone("no request came")
            self._http.receive_data(data)

    def header(self, name: str) -> str | None:
        assert self.request_head is not None
        for key, value in self.request_head.headers:
            if key == name.lower().encode():
                return value.decode("latin-1")
        return None

    def respond(
        self, status: int, body: bytes = b"", headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        """A complete HTTP response (e.g. a refused upgrade)."""
        all_headers = [("Content-Length", str(len(body))), *headers]
        self.send(self._http.send(h11.Response(status_code=status, headers=all_headers)) or b"")
        self.send(self._http.send(h11.Data(data=body)) or b"")
        self.send(self._http.send(h11.EndOfMessage()) or b"")

    def accept(self, *, accept_key: str | None = None, deflate: bool = False) -> None:
        """Answer the upgrade with 101 (with ``accept_key`` instead of the right one, if given).

        ``deflate``: accept permessage-deflate (the client offers it by
        default); otherwise no extension is in force and frames are plain.
        """
        key = self.header("sec-websocket-key") or ""
        headers = [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", accept_key or generate_accept_token(key.encode()).decode()),
        ]
        extensions: list[Extension] = []
        if deflate:
            extension = PerMessageDeflate()
            accepted = server_extensions_handshake(self._offers, [extension])
            assert accepted is not None, f"the client offered no deflate: {self._offers}"
            headers.append(("Sec-WebSocket-Extensions", accepted.decode("ascii")))
            extensions.append(extension)
        self.send(self._http.send(h11.InformationalResponse(status_code=101, headers=headers)))
        self._ws = Connection(ConnectionType.SERVER, extensions)
        trailing, _ = self._http.trailing_data
        if trailing:
            self._receive(bytes(trailing))

    # --- WebSocket ----------------------------------------------------------

    def text(self, text: str) -> None:
        """One text message (through wsproto: compressed if deflate is in force)."""
        assert self._ws is not None
        self.send(self._ws.send(TextMessage(data=text)))

    def push(self, message_type: str, payload: object) -> None:
        """One OctoPrint message, SockJS-framed."""
        self.text(sockjs(message_type, payload))

    def open(self) -> None:
        """SockJS ``o``, then OctoPrint's ``connected``: the client's session is up."""
        self.text("o")
        self.push("connected", CONNECTED)

    def close(self, code: int, reason: str = "") -> None:
        """Our close frame (wsproto refuses none of the codes a server may send)."""
        self.send(frame(0x8, struct.pack("!H", code) + reason.encode()))

    def pump(self, seconds: float, *, heartbeat: float | None = HEARTBEAT) -> bool:
        """Serve for ``seconds``: read frames, answer pings, send heartbeats.

        Returns ``True`` when the client closed (its close frame is echoed,
        as RFC 6455 asks, and the connection is then closed).
        """
        deadline = time.monotonic() + seconds
        beat = None if heartbeat is None else time.monotonic() + heartbeat
        while (now := time.monotonic()) < deadline:
            if beat is not None and now >= beat:
                self.text("h")
                beat = now + heartbeat  # type: ignore[operator]
            wait = deadline if beat is None else min(deadline, beat)
            data = self.recv(max(0.0, wait - now))
            if data and self._receive(data):
                return True
        return False

    def _receive(self, data: bytes) -> bool:
        """Feed frames; whether the client closed."""
        ws = self._ws
        assert ws is not None
        ws.receive_data(data)
        for event in ws.events():
            if isinstance(event, CloseConnection):
                self.close_code = event.code
                if ws.state is ConnectionState.REMOTE_CLOSING:
                    with contextlib.suppress(PeerGone):
                        self.send(ws.send(event.response()))
                return True
            if isinstance(event, Ping):
                self.send(ws.send(event.response()))
            elif isinstance(event, TextMessage):
                self._parts.append(event.data)
                if event.message_finished:
                    text, self._parts = "".join(self._parts), []
                    self._message(text)
            elif isinstance(event, BytesMessage):
                self.raw += event.data
        return False

    def _message(self, text: str) -> None:
        batch = json.loads(text)  # SockJS: an array of JSON texts
        for item in batch:
            message = json.loads(item)
            self.messages.append(message)
            with self.server.lock:
                self.server.messages.append(message)


def serve(peer: Peer) -> None:
    """A well-behaved anonymous OctoPrint push socket, until the client leaves."""
    peer.request()
    peer.accept()
    peer.open()
    peer.pump(PEER_TIMEOUT * 10)


class FaultServer:
    """Listens on 127.0.0.1; connection *n* runs ``scripts[n]``, later ones ``then``.

    ``tls``: a server-side context, so every connection is TLS first (the
    handshake runs in the connection's thread before its script; a failed
    one is recorded in :attr:`tls_errors` and the script is skipped).
    ``rcvbuf``: the accepted sockets' receive buffer (set on the listener
    before ``listen``), to fill a client's send buffer sooner. ``listen``:
    False binds the port but refuses connections until :meth:`listen`.
    """

    def __init__(
        self,
        *scripts: Script,
        then: Script = serve,
        tls: ssl.SSLContext | None = None,
        rcvbuf: int | None = None,
        listen: bool = True,
    ) -> None:
        self._scripts = scripts
        self._then = then
        self._tls = tls
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        #: Every peer so far, in the order they connected.
        self.peers: list[Peer] = []
        #: Every OctoPrint message any client sent, in order.
        self.messages: list[dict[str, Any]] = []
        #: Why each failed TLS handshake failed.
        self.tls_errors: list[str] = []
        self._errors: list[BaseException] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf is not None:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self._listener.bind(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self._accepting = threading.Thread(target=self._accept, name="fault-server", daemon=True)
        self._listening = False
        if listen:
            self.listen()

    def listen(self) -> None:
        """Start accepting connections (until now they were refused)."""
        if not self._listening:
            self._listening = True
            self._listener.listen(16)
            self._accepting.start()

    def __enter__(self) -> FaultServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def peer(self, index: int, timeout: float = 5.0) -> Peer:
        """The ``index``-th connection, waiting for it to come."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if len(self.peers) > index:
                    return self.peers[index]
            assert time.monotonic() < deadline, f"connection {index} did not come in {timeout} s"
            time.sleep(0.01)

    @property
    def connection_count(self) -> int:
        with self.lock:
            return len(self.peers)

    def wait_for_messages(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The messages received, once there are at least ``count``."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            assert time.monotonic() < deadline, (
                f"{count} messages did not arrive in {timeout} s: {self.messages}"
            )
            time.sleep(0.01)

    def stop(self) -> None:
        """Close every socket, join every thread, raise what a script hit."""
        self.stopping.set()
        self._listener.close()
        for thread in self._threads_so_far():
            thread.join(STOP_TIMEOUT)
        with self.lock:
            peers = list(self.peers)
        for peer in peers:
            peer.sock.close()
        alive = [thread.name for thread in self._threads_so_far() if thread.is_alive()]
        assert not alive, f"fault server threads did not end: {alive}"
        if self._errors:
            raise AssertionError(f"a fault script failed: {self._errors[0]!r}") from self._errors[0]

    def _threads_so_far(self) -> list[threading.Thread]:
        with self.lock:
            threads = list(self._threads)
        return ([self._accepting] if self._listening else []) + threads

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                readable, _, _ = select.select([self._listener], [], [], 0.05)
                if not readable:
                    continue
                sock, _ = self._listener.accept()
            except OSError:  # closed by stop()
                return
            with self.lock:
                index = len(self._threads)
                thread = threading.Thread(
                    target=self._run, args=(sock, index), name=f"fault-peer-{index}", daemon=True
                )
                self._threads.append(thread)
            thread.start()

    def _run(self, sock: socket.socket, index: int) -> None:
        script = self._scripts[index] if index < len(self._scripts) else self._then
        try:
            sock.setblocking(False)
            if self._tls is not None:
                try:
                    sock = self._handshake(sock)
                except (ssl.SSLError, OSError, PeerGone) as exc:
                    sock.close()
                    with self.lock:
                        self.tls_errors.append(f"{type(exc).__name__}: {exc}")
                    return
            peer = Peer(self, sock, index)
            with self.lock:
                self.peers.append(peer)
            script(peer)
        except PeerGone:
            pass
        except BaseException as exc:
            with self.lock:
                self._errors.append(exc)
        finally:
            sock.close()

    def _handshake(self, sock: socket.socket) -> ssl.SSLSocket:
        assert self._tls is not None
        tls = self._tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        deadline = time.monotonic() + PEER_TIMEOUT
        while True:
            if self.stopping.is_set() or time.monotonic() > deadline:
                raise PeerGone("no TLS handshake")
            try:
                tls.do_handshake()
                return tls
            except ssl.SSLWantReadError:
                select.select([tls], [], [], 0.05)
            except ssl.SSLWantWriteError:
                select.select([], [tls], [], 0.05)


@contextlib.contextmanager
def fault_server(*scripts: Script, **options: Any) -> Iterator[FaultServer]:
    """``with fault_server(script, ...) as server:``: a :class:`FaultServer`, stopped on exit."""
    server = FaultServer(*scripts, **options)
    try:
        yield server
    finally:
        server.stop()
