"""The simulated OctoPrint on a real socket: ``with run_simulator() as sim: ...``.

The server itself is the pure :class:`octoproto.testing.SimulatedOctoPrint`;
this module only gives it a listening socket on loopback and a clock. One
background thread runs one selector over every socket (no thread per
connection, so a fleet of hundreds of clients is fine), and the client under
test may run in the main thread on trio, asyncio or blocking sockets.

The pure server is not thread-safe, so every fault method of the handle runs
on the server's thread and returns once it has taken effect.
"""

from __future__ import annotations

import contextlib
import ipaddress
import queue
import secrets
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, TypeVar

from octoproto.testing import ServerConnection, SimulatedOctoPrint, SimulatorConfig

__all__ = ["SimulatorHandle", "run_simulator"]

T = TypeVar("T")

_READ_SIZE = 65536
_CALL_TIMEOUT = 10.0  # seconds a fault method waits for the server's thread
_RELISTEN_RETRY = 0.05  # seconds between attempts to bind the port again after restart()
_WAKE, _LISTENER = "wake", "listener"  # selector keys that are not client connections


class _Peer:
    """One accepted socket, its server-side connection, and the bytes not yet written."""

    __slots__ = ("conn", "out", "sock", "writing")

    def __init__(self, sock: socket.socket, conn: ServerConnection) -> None:
        self.sock = sock
        self.conn = conn
        self.out = bytearray()
        self.writing = False  # registered for EVENT_WRITE too


class SimulatorHandle:
    """A running simulated OctoPrint; get one from :func:`run_simulator`.

    ``url``, ``host``, ``port``, ``base_path``, ``api_key``, ``username``
    and ``password`` say how to reach and log in to it. Every method below
    is thread-safe and returns once the server has applied it.
    """

    def __init__(self, loop: _Loop, base_path: str, config: SimulatorConfig) -> None:
        self._loop = loop
        self.host = loop.host
        self.port = loop.port
        self.base_path = base_path
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{host}:{self.port}{base_path}"
        self.api_key = config.api_key
        self.username = config.username
        self.password = config.password

    def __repr__(self) -> str:
        return f"<SimulatorHandle {self.url} user={self.username!r}>"

    def call(self, function: Callable[[SimulatedOctoPrint, float], T]) -> T:
        """Run ``function(server, now)`` on the server's thread and return its result."""
        return self._loop.call(function)

    @property
    def connection_count(self) -> int:
        """TCP connections currently open (HTTP and websocket)."""
        return self.call(lambda server, now: len(server.connections))

    def drop_connections(self) -> None:
        """Abort every connection (no close frame)."""
        self.call(lambda server, now: server.drop_connections(now))

    def stop_heartbeats(self) -> None:
        """SockJS sockets stop getting ``h`` frames."""
        self.call(lambda server, now: server.stop_heartbeats(now))

    def start_heartbeats(self) -> None:
        """Heartbeats again, the next one ``heartbeat_interval`` from now."""
        self.call(lambda server, now: server.start_heartbeats(now))

    def send_garbage(self, *, broken_frame: bool = False) -> None:
        """Every websocket gets a text frame that is neither SockJS nor JSON (or a bad frame)."""
        self.call(lambda server, now: server.send_garbage(now, broken_frame=broken_frame))

    def send_close(self, code: int = 3000, reason: str = "Go away!") -> None:
        """Close every websocket (SockJS: ``c[code,"reason"]`` first)."""
        self.call(lambda server, now: server.send_close(now, code=code, reason=reason))

    def close_sessions(self, reason: str | None = "stale") -> None:
        """Forget every login session; authenticated sockets get ``reauthRequired``."""
        self.call(lambda server, now: server.close_sessions(now, reason=reason))

    def fail_logins(self, status: int | None) -> None:
        """Answer every login with ``status`` (403, 429, 500 ...); ``None`` to stop."""
        self.call(lambda server, now: server.fail_logins(status, now))

    def delay_responses(self, seconds: float) -> None:
        """Hold every HTTP response (and ``101``) ``seconds``; 0 to stop."""
        self.call(lambda server, now: server.delay_responses(seconds, now))

    def fire_event(self, event_type: str, payload: object = None) -> None:
        """Send an ``event`` message to the sockets that may have it."""
        self.call(lambda server, now: server.fire_event(event_type, payload, now))

    def send_plugin_message(self, plugin: str, data: object = None) -> None:
        """Send a ``plugin`` message to the sockets that may have it."""
        self.call(lambda server, now: server.send_plugin_message(plugin, data, now))

    def restart(self, downtime: float = 0.0) -> None:
        """Stop listening and drop everything; listen again on the port after ``downtime``.

        Returns once the server is down. The server that comes back is a
        fresh one: every session is stale and every fault is cleared. See
        :meth:`wait_listening`.
        """
        self._loop.call(lambda server, now: self._loop.restart(now, downtime))

    def wait_listening(self, timeout: float = 5.0) -> None:
        """Block until the server accepts connections (after :meth:`restart`)."""
        if not self._loop.listening.wait(timeout):
            raise TimeoutError(f"the simulator did not listen again within {timeout} s")


class _Loop:
    """The server's thread: one selector over the listener, the wake-up pipe and every peer."""

    def __init__(
        self, host: str, port: int, backlog: int, make_config: Callable[[int], SimulatorConfig]
    ) -> None:
        self.host = host
        self._backlog = backlog
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = socket.socketpair()
        for sock in (self._wake_read, self._wake_write):
            sock.setblocking(False)
        self._selector.register(self._wake_read, selectors.EVENT_READ, _WAKE)
        # Bound here, in the caller's thread, so a busy port raises from run_simulator().
        try:
            self._listener: socket.socket | None = self._listen(port)
        except OSError:
            for resource in (self._wake_read, self._wake_write, self._selector):
                resource.close()
            raise
        self.port: int = self._listener.getsockname()[1]
        self.config = make_config(self.port)
        self.server = SimulatedOctoPrint(self.config, now=time.monotonic())
        self.listening = threading.Event()
        self.listening.set()
        self._peers: dict[socket.socket, _Peer] = {}
        self._calls: queue.SimpleQueue[
            tuple[Callable[[SimulatedOctoPrint, float], Any], Future[Any]]
        ]
        self._calls = queue.SimpleQueue()
        self._relisten_at: float | None = None
        self._stopping = False
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="octoproto-simulator", daemon=True)

    # --- the caller's side --------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._wake()
        self._thread.join(_CALL_TIMEOUT)
        if self._thread.is_alive():  # pragma: no cover - a hung loop is a bug
            raise RuntimeError("the simulator's thread did not stop")

    def call(self, function: Callable[[SimulatedOctoPrint, float], T]) -> T:
        if threading.current_thread() is self._thread:
            return function(self.server, time.monotonic())
        if not self._thread.is_alive():
            raise RuntimeError("the simulator is not running")
        future: Future[T] = Future()
        self._calls.put((function, future))
        self._wake()
        return future.result(_CALL_TIMEOUT)

    def _wake(self) -> None:
        # A full pipe means a wake-up is pending anyway; a closed one, that we stopped.
        with contextlib.suppress(OSError):
            self._wake_write.send(b"\0")

    # --- the server's thread -------------------------------------------------------

    def _listen(self, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            # Rebinding the same port right after restart() needs this.
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, port))
            listener.listen(self._backlog)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        return listener

    def _run(self) -> None:
        try:
            assert self._listener is not None
            self._selector.register(self._listener, selectors.EVENT_READ, _LISTENER)
            while not self._stopping:
                self._step()
        except BaseException as exc:  # reported by run_simulator() on exit
            self.error = exc
        finally:
            self._shut_down()

    def _step(self) -> None:
        deadline = self.server.get_timer()
        if self._relisten_at is not None:
            deadline = min(deadline, self._relisten_at)
        timeout = max(0.0, deadline - time.monotonic())
        # Only the sockets we heard from can have new output, unless a call
        # or a timer ran: then any of them may (one pass over all is O(n)).
        touched: list[_Peer] = []
        flush_all = False
        for key, mask in self._selector.select(timeout):
            if key.data == _WAKE:
                flush_all |= self._run_calls()
            elif key.data == _LISTENER:
                touched += self._accept()
            else:
                peer: _Peer = key.data
                if mask & selectors.EVENT_READ:
                    self._read(peer)
                touched.append(peer)
        now = time.monotonic()
        if self._relisten_at is not None and now >= self._relisten_at:
            self._relisten(now)
        if self.server.get_timer() <= now:
            self.server.handle_timer(now)
            flush_all = True
        for peer in list(self._peers.values()) if flush_all else touched:
            self._flush(peer)

    def _run_calls(self) -> bool:
        """Run the callers' functions; whether any ran."""
        try:
            while self._wake_read.recv(4096):
                pass
        except BlockingIOError:
            pass
        ran = False
        while True:
            try:
                function, future = self._calls.get_nowait()
            except queue.Empty:
                return ran
            ran = True
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(function(self.server, time.monotonic()))
                except Exception as exc:
                    future.set_exception(exc)

    def _accept(self) -> list[_Peer]:
        accepted = []
        while self._listener is not None:
            try:
                sock, address = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # e.g. the client reset before we got to it
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer = _Peer(sock, self.server.accept(time.monotonic(), address[0]))
            self._peers[sock] = peer
            self._selector.register(sock, selectors.EVENT_READ, peer)
            accepted.append(peer)
        return accepted

    def _read(self, peer: _Peer) -> None:
        try:
            data = peer.sock.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""  # reset by the client: as good as EOF for the server
        if data:
            peer.conn.receive_data(data, time.monotonic())
        else:
            peer.conn.receive_eof(time.monotonic())

    def _flush(self, peer: _Peer) -> None:
        if peer.sock not in self._peers:
            return
        peer.out += peer.conn.data_to_send()
        if peer.out:
            try:
                sent = peer.sock.send(peer.out)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:  # the client is gone
                peer.out.clear()
                peer.conn.drop(time.monotonic())
                sent = 0
            del peer.out[:sent]
        if peer.conn.closed and not peer.out:
            self._close(peer)
            return
        want_write = bool(peer.out)
        if want_write != peer.writing:
            peer.writing = want_write
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if want_write else 0)
            self._selector.modify(peer.sock, events, peer)

    def _close(self, peer: _Peer) -> None:
        del self._peers[peer.sock]
        self._selector.unregister(peer.sock)
        peer.sock.close()

    def restart(self, now: float, downtime: float) -> None:
        """Runs on the server's thread (through :meth:`call`)."""
        if self._listener is not None:
            self._selector.unregister(self._listener)
            self._listener.close()
            self._listener = None
        self.listening.clear()
        self.server.drop_connections(now)
        for peer in list(self._peers.values()):
            peer.out.clear()  # a dead process writes nothing more
            self._flush(peer)  # every connection is closed: this closes the sockets
        self.server = SimulatedOctoPrint(self.config, now=now)
        self._relisten_at = now + max(0.0, downtime)

    def _relisten(self, now: float) -> None:
        try:
            self._listener = self._listen(self.port)
        except OSError:
            self._relisten_at = now + _RELISTEN_RETRY  # the port is not free yet
            return
        self._selector.register(self._listener, selectors.EVENT_READ, _LISTENER)
        self._relisten_at = None
        self.listening.set()

    def _shut_down(self) -> None:
        self.listening.clear()
        for peer in list(self._peers.values()):
            self._close(peer)
        for sock in (self._listener, self._wake_read, self._wake_write):
            if sock is not None:
                sock.close()
        self._selector.close()
        while True:  # nobody may wait forever on a call that will never run
            try:
                _, future = self._calls.get_nowait()
            except queue.Empty:
                break
            future.set_exception(RuntimeError("the simulator stopped"))


def _loopback(host: str) -> str:
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None or not address.is_loopback:
        raise ValueError(f"the simulator listens on loopback only, not {host!r}")
    return host


@contextmanager
def run_simulator(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    base_path: str = "",
    api_key: str | None = None,
    username: str | None = None,
    password: str | None = None,
    heartbeat_interval: float = 25.0,
    backlog: int = 1024,
    **options: Any,
) -> Iterator[SimulatorHandle]:
    """Run a simulated OctoPrint on ``host:port`` (loopback only) for the ``with`` block.

    ``port=0`` picks a free port. Credentials not given are generated with
    :mod:`secrets`; read them from the handle. ``options`` are further
    :class:`~octoproto.testing.SimulatorConfig` fields (``tick_interval``,
    ``print_duration``, ``session_timeout`` ...). On exit the thread is
    joined and every socket closed; an error inside the server's thread is
    raised then.
    """
    bind_host = _loopback(host)
    api_key = api_key or secrets.token_urlsafe(24)
    username = username or f"octo-{secrets.token_hex(3)}"
    password = password or secrets.token_urlsafe(12)
    path = base_path.rstrip("/")
    if path and not path.startswith("/"):
        path = "/" + path
    wall_clock = time.time() - time.monotonic()  # serverTime as a real epoch time

    def make_config(bound_port: int) -> SimulatorConfig:
        return SimulatorConfig(
            port=bound_port,
            base_path=path,
            heartbeat_interval=heartbeat_interval,
            entropy=secrets.token_bytes,
            wall_clock=wall_clock,
            api_key=api_key,
            username=username,
            password=password,
            **options,
        )

    make_config(port)  # refuse bad options before binding anything
    loop = _Loop(bind_host, port, backlog, make_config)
    handle = SimulatorHandle(loop, path, loop.config)
    loop.start()
    try:
        yield handle
    finally:
        loop.stop()
    if loop.error is not None:
        raise RuntimeError("the simulator's thread failed") from loop.error
