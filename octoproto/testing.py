"""A simulated OctoPrint server, sans-I/O: for fast tests and demos.

:class:`SimulatedOctoPrint` is the server side of OctoPrint's push socket in
the same clock-driven style as the client core: nothing here reads a clock,
a random source or a socket. It holds a small printer model (temperatures
approaching their targets, a looping print job, terminal log lines) and one
user, and it speaks the wire facts of ``shared/protocols.md`` §1: the
SockJS-framed and raw websocket endpoints (with permessage-deflate when
offered), ``POST /api/login`` (passive with an API key, active with user,
password and OctoPrint's CSRF cookie), ``GET /api/version``, the push
messages (``connected``, ``history``, ``current``, ``event``,
``reauthRequired`` ...), the throttle and subscriptions, and the real
server's reaction to malformed input, including its abrupt drops.

Driving it::

    server = SimulatedOctoPrint(SimulatorConfig(entropy=SeededEntropy(1)))
    conn = server.accept(now)                  # a new TCP connection
    conn.receive_data(request_bytes, now)      # bytes from the client
    reply = conn.data_to_send()                # bytes for the client
    if conn.closed: ...                        # close the TCP connection
    server.handle_timer(now)                   # at server.get_timer()

The I/O side, a real listening socket on a background thread, is
``octoproto.adapters.simulator.run_simulator``. This is a stand-in for fast
tests, never for the real OctoPrint in integration tests; what it leaves out
is listed in :class:`SimulatedOctoPrint`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie

import h11
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.handshake import server_extensions_handshake
from wsproto.utilities import generate_accept_token

from ._entropy import Entropy, SeededEntropy
from ._errors import LocalProtocolError
from ._util import join_path

__all__ = ["ServerConnection", "SimulatedOctoPrint", "SimulatorConfig"]

_MAX_REQUEST_HEAD = 16 * 1024
_MAX_REQUEST_BODY = 64 * 1024
_CLOSE_TIMEOUT = 2.0  # seconds we wait for the client's close frame after ours
_MAX_THROTTLE = 10**9  # beyond this 0.5 s × factor no longer fits a float; it means "never"
_SOCKJS_PATH = re.compile(r"/sockjs/[^/.]+/[^/.]+/websocket")
_AMBIENT = 21.3
_HOTEND, _BED = 210.0, 60.0
_LAYER_HEIGHT, _LAYERS = 0.2, 240
_FILE_NAME, _FILE_SIZE = "simulated_benchy.gcode", 2418532
_FILE: dict[str, object] = {
    "name": _FILE_NAME,
    "display": _FILE_NAME,
    "path": _FILE_NAME,
    "origin": "local",
    "size": _FILE_SIZE,
    "date": 1700000000,
}


@dataclass(frozen=True, kw_only=True)
class SimulatorConfig:
    """Settings of a :class:`SimulatedOctoPrint`; the defaults suit tests.

    ``entropy(n) -> bytes`` draws session ids and CSRF tokens (the I/O side
    passes ``secrets.token_bytes``); ``port`` only names the CSRF cookie
    (``csrf_token_P<port>``); ``wall_clock + now`` is the ``serverTime``.
    """

    username: str = "octo"
    password: str = field(default="octoprint", repr=False)
    api_key: str = field(default="SIMULATED0API0KEY", repr=False)
    entropy: Entropy = field(default_factory=lambda: SeededEntropy("simulator"), repr=False)
    port: int = 80
    base_path: str = ""
    #: SockJS ``h`` frames, on a fixed timer from the socket's opening.
    heartbeat_interval: float = 25.0
    #: ``current`` goes out at most every ``update_interval × throttle factor``.
    update_interval: float = 0.5
    #: The printer model changes this often (so ``current`` is due every tick).
    tick_interval: float = 0.5
    #: The job loops: this long Operational, then this long Printing.
    idle_duration: float = 5.0
    print_duration: float = 60.0
    #: A session nobody uses goes stale after this long (``None``: never).
    session_timeout: float | None = 900.0
    wall_clock: float = 1.7e9
    version: str = "1.11.8"
    #: Largest client message; a bigger one is closed with 1009, like tornado.
    max_message_size: int = 1 << 20
    #: Events kept for a socket while it is anonymous, flushed on auth.
    max_held_back: int = 100
    #: Temperature entries and log lines kept for ``history``.
    history_size: int = 300

    def __post_init__(self) -> None:
        if not self.username or ":" in self.username:
            raise LocalProtocolError("the username must be non-empty and without ':'")
        positive = ("heartbeat_interval", "update_interval", "tick_interval", "print_duration")
        for name in positive:
            if not getattr(self, name) > 0:
                raise LocalProtocolError(f"{name} must be > 0")
        if self.idle_duration < 0:
            raise LocalProtocolError("idle_duration must be >= 0")
        join_path(self.base_path)  # refuses a query or fragment


@dataclass
class _Session:
    user: str
    touched: float
    sockets: int = 0  # authenticated sockets using it: while > 0 it cannot go stale


@dataclass(frozen=True)
class _Subscription:
    """What a socket in subscription mode gets; ``True``/``False`` or a filter."""

    state: bool = False
    logs: bool | re.Pattern[str] = False
    messages: bool | re.Pattern[str] = False
    plugins: bool | tuple[object, ...] = False
    events: bool | tuple[object, ...] = False


class _Drop(Exception):
    """Where the real server's message handler raises, dropping the TCP connection."""


class _Printer:
    """The printer: temperatures, a looping print job, terminal lines. Deterministic."""

    def __init__(self, config: SimulatorConfig, now: float) -> None:
        self._config = config
        self._started = now
        self._last = now
        self.printing = False
        self._print_started = now
        self._hotend = self._bed = _AMBIENT
        self._z: float | None = None
        self._line = 0
        self.temps: deque[dict[str, object]] = deque(maxlen=config.history_size)
        self.logs: deque[str] = deque(maxlen=config.history_size)
        self.snapshot = self._snapshot(now)

    def tick(self, now: float) -> tuple[dict[str, object], list[str], list[tuple[str, object]]]:
        """Move to ``now``: the new temperature entry, log lines and events."""
        config = self._config
        events: list[tuple[str, object]] = []
        position = (now - self._started) % (config.idle_duration + config.print_duration)
        if (position >= config.idle_duration) != self.printing:
            self.printing = not self.printing
            job = {key: _FILE[key] for key in ("name", "path", "origin", "size")}
            job |= {"owner": config.username, "user": config.username}
            if self.printing:
                self._print_started = now - (position - config.idle_duration)
                events.append(("PrintStarted", job))
            else:
                events.append(("PrintDone", job | {"time": config.print_duration}))
            state_id, text = (
                ("PRINTING", "Printing") if self.printing else ("OPERATIONAL", "Operational")
            )
            events.append(("PrinterStateChanged", {"state_id": state_id, "state_string": text}))
        # Exponential approach, the way a PID-held heater looks from outside.
        step = now - self._last
        self._last = now
        hotend, bed = (_HOTEND, _BED) if self.printing else (_AMBIENT, _AMBIENT)
        self._hotend += (hotend - self._hotend) * (1 - math.exp(-step / 8.0))
        self._bed += (bed - self._bed) * (1 - math.exp(-step / 25.0))
        wobble = 0.15 * math.sin(now * 2.1)
        targets = (_HOTEND, _BED) if self.printing else (0.0, 0.0)
        tool = {"actual": round(self._hotend + wobble, 2), "target": targets[0]}
        heatbed = {"actual": round(self._bed - wobble / 3, 2), "target": targets[1]}
        entry: dict[str, object] = {
            "time": int(config.wall_clock + now),
            "tool0": tool,
            "bed": heatbed,
            "chamber": {"actual": None, "target": None},
        }
        logs = []
        if self.printing:
            self._line += 1
            move = (
                f"N{self._line} G1 X{100 + 40 * math.sin(self._line / 7):.3f}"
                f" Y{100 + 40 * math.cos(self._line / 7):.3f} E{0.04 * self._line:.5f}"
            )
            checksum = 0
            for byte in move.encode():
                checksum ^= byte
            logs += [f"Send: {move}*{checksum}", "Recv: ok"]
            self._z = round(_LAYER_HEIGHT * (1 + int(self._progress(now) * _LAYERS)), 2)
        logs.append(
            f"Recv:  T:{tool['actual']:.2f} /{tool['target']:.2f}"
            f" B:{heatbed['actual']:.2f} /{heatbed['target']:.2f} @:64 B@:127"
        )
        self.temps.append(entry)
        self.logs.extend(logs)
        self.snapshot = self._snapshot(now)
        return entry, logs, events

    def _progress(self, now: float) -> float:
        return min(1.0, (now - self._print_started) / self._config.print_duration)

    def _snapshot(self, now: float) -> dict[str, object]:
        """Everything in ``current`` but temps, logs and messages."""
        config, printing = self._config, self.printing
        progress: dict[str, object] = dict.fromkeys(
            ("completion", "filepos", "printTime", "printTimeLeft", "printTimeLeftOrigin")
        )
        if printing:
            done = self._progress(now)
            elapsed = now - self._print_started
            progress = {
                "completion": round(100 * done, 3),
                "filepos": int(_FILE_SIZE * done),
                "printTime": int(elapsed),
                "printTimeLeft": int(config.print_duration - elapsed),
                "printTimeLeftOrigin": "linear",
            }
        flags = dict.fromkeys(
            ("cancelling", "pausing", "resuming", "finishing", "closedOrError", "error"), False
        )
        flags |= {"operational": True, "printing": printing, "paused": False}
        flags |= {"ready": not printing, "sdReady": False}
        return {
            "state": {
                "text": "Printing" if printing else "Operational",
                "flags": flags,
                "error": "",
            },
            "job": {
                "file": dict(_FILE),
                "estimatedPrintTime": config.print_duration,
                "averagePrintTime": None,
                "lastPrintTime": None,
                "filament": {"tool0": {"length": 3456.7, "volume": 8.31}},
                "user": config.username,
            },
            "progress": progress,
            "currentZ": self._z,
            "currentTool": 0,
            "offsets": {},
            "resends": {"count": 0, "transmitted": self._line, "ratio": 0},
            "plugins": {},
            "busyFiles": [{"origin": "local", "path": _FILE_NAME}] if printing else [],
            "markings": [],
        }


class SimulatedOctoPrint:
    """The simulated server: printer, user, sessions, and every open connection.

    Inputs take ``now`` (the caller's monotonic seconds, never decreasing):
    :meth:`accept` per TCP connection, :meth:`handle_timer` at
    :meth:`get_timer`; fault injection and :meth:`fire_event` too.

    Implemented: see the module docstring. Left out: ``/sockjs/info`` is the
    only SockJS route besides the websockets (no XHR/polling transports);
    the login rate limit (use :meth:`fail_logins`); logout/user REST APIs,
    files, connection and printer commands; ``slicingProgress``,
    ``renderProgress``; ``ClientOpened``/``ClientClosed`` events, and
    ``ClientAuthed`` goes only to the socket that authenticated (both keep a
    fleet of sockets linear); permessage-deflate inflation of client
    messages is not bounded (the client's messages are small).
    """

    def __init__(self, config: SimulatorConfig | None = None, *, now: float = 0.0) -> None:
        self.config = config or SimulatorConfig()
        self._base = join_path(self.config.base_path).rstrip("/")
        self._now = now
        self._printer = _Printer(self.config, now)
        self._started = now
        self._ticks = 0
        self._connections: dict[ServerConnection, None] = {}  # an ordered set
        self._sessions: dict[str, _Session] = {}
        self._heartbeats = True
        self._login_failure: int | None = None
        self._response_delay = 0.0
        digest = hashlib.sha256(self.config.version.encode()).hexdigest()
        self._connected: dict[str, object] = {
            "version": self.config.version,
            "display_version": self.config.version,
            "branch": None,
            "python_version": "3.11.9",
            "plugin_hash": digest[:32],
            "config_hash": digest[32:],
            "debug": False,
            "safe_mode": None,
            "online": None,
            "permissions": [
                {"key": key, "name": key.title(), "dangerous": key == "ADMIN", "needs": {}}
                for key in ("ADMIN", "STATUS", "CONNECTION", "CONTROL", "FILES_LIST")
            ],
        }

    @property
    def now(self) -> float:
        """The latest ``now`` any input brought (the server's idea of the time)."""
        return self._now

    @property
    def connections(self) -> tuple[ServerConnection, ...]:
        """The connections not yet closed, oldest first."""
        return tuple(conn for conn in self._connections if not conn.closed)

    def accept(self, now: float, remote_address: str = "127.0.0.1") -> ServerConnection:
        """A client opened a TCP connection: the object that speaks to it."""
        self._advance(now)
        conn = ServerConnection(self, remote_address)
        self._connections[conn] = None
        return conn

    def get_timer(self) -> float:
        """When :meth:`handle_timer` must next be called (the printer always ticks)."""
        deadline = self._started + (self._ticks + 1) * self.config.tick_interval
        for conn in self._connections:
            due = conn._deadline()
            if due is not None and due < deadline:
                deadline = due
        return deadline

    def handle_timer(self, now: float) -> None:
        """Printer ticks (events, ``current``), heartbeats, throttled and held-back output."""
        self._advance(now)
        interval = self.config.tick_interval
        while self._started + (self._ticks + 1) * interval <= now:
            self._ticks += 1  # computed from the start, so ticks never drift
            entry, logs, events = self._printer.tick(self._started + self._ticks * interval)
            for event_type, payload in events:
                self.fire_event(event_type, payload, now)
            for conn in self.connections:
                conn._printer_changed(entry, logs, now)
        for conn in list(self._connections):
            if conn.closed:
                del self._connections[conn]
            else:
                conn._handle_timer(now)

    def fire_event(self, event_type: str, payload: object, now: float) -> None:
        """Send ``{"event": {"type", "payload"}}`` to every socket that may have it."""
        self._advance(now)
        _check_json(payload)
        for conn in self.connections:
            conn._deliver("event", event_type, {"type": event_type, "payload": payload})

    def send_plugin_message(self, plugin: str, data: object, now: float) -> None:
        """Send ``{"plugin": {"plugin", "data"}}`` to every socket that may have it."""
        self._advance(now)
        _check_json(data)
        for conn in self.connections:
            conn._deliver("plugin", plugin, {"plugin": plugin, "data": data})

    # --- fault injection ----------------------------------------------------

    def drop_connections(self, now: float) -> None:
        """Abort every connection: no close frame, nothing more sent (a crash, a cable)."""
        self._advance(now)
        for conn in self.connections:
            conn.drop(now)

    def stop_heartbeats(self, now: float) -> None:
        """SockJS sockets stop getting ``h`` (a hung server, as the client sees it)."""
        self._advance(now)
        self._heartbeats = False

    def start_heartbeats(self, now: float) -> None:
        """Heartbeats again, each socket's next one ``heartbeat_interval`` from ``now``."""
        self._advance(now)
        self._heartbeats = True
        for conn in self.connections:
            conn._arm_heartbeat(now)

    def send_garbage(self, now: float, *, broken_frame: bool = False) -> None:
        """Every websocket gets a text frame that is neither SockJS nor JSON.

        ``broken_frame=True`` sends bytes that are not a valid WebSocket frame.
        """
        self._advance(now)
        for conn in self.connections:
            conn.send_garbage(now, broken_frame=broken_frame)

    def send_close(self, now: float, *, code: int = 3000, reason: str = "Go away!") -> None:
        """Close every websocket: ``c[code,"reason"]`` on SockJS, then a close frame."""
        self._advance(now)
        for conn in self.connections:
            conn.send_close(now, code=code, reason=reason)

    def close_sessions(self, now: float, *, reason: str | None = "stale") -> None:
        """Forget every login session, so the next ``auth`` gets ``stale``.

        Authenticated sockets get ``reauthRequired {"reason": reason}`` and
        become anonymous (their events are held back until they authenticate
        again), except with ``"modified"``, which leaves them authenticated.
        ``reason=None`` tells nobody: open sockets stay as they are.
        """
        self._advance(now)
        self._sessions.clear()
        if reason is not None:
            for conn in self.connections:
                conn._reauth_required(reason, now)

    def fail_logins(self, status: int | None, now: float) -> None:
        """Answer every ``POST /api/login`` with ``status`` (e.g. 403, 429, 500); ``None``: stop."""
        self._advance(now)
        self._login_failure = status

    def delay_responses(self, seconds: float, now: float) -> None:
        """Hold each HTTP response (the websocket's ``101`` too) ``seconds`` before sending it."""
        self._advance(now)
        self._response_delay = max(0.0, seconds)

    # --- for connections ----------------------------------------------------------

    def _advance(self, now: float) -> None:
        if not isinstance(now, (int, float)) or not math.isfinite(now):
            raise LocalProtocolError(f"now must be a finite number, not {now!r}")
        if now < self._now:
            raise LocalProtocolError(f"now went backwards: {now} < {self._now}")
        self._now = now

    def _new_session(self, user: str, now: float) -> str:
        session = self.config.entropy(16).hex()
        self._sessions[session] = _Session(user, now)
        return session

    def _use_session(self, user: str, session: str, now: float) -> _Session | None:
        """The session if ``user:session`` may authenticate a socket now, else ``None``."""
        found = self._sessions.get(session)
        if found is None or found.user != user:
            return None
        timeout = self.config.session_timeout
        if found.sockets == 0 and timeout is not None and now - found.touched > timeout:
            del self._sessions[session]
            return None
        found.touched = now
        return found

    def _state(self, now: float) -> dict[str, object]:
        """The printer's latest state, stamped with the time it is sent."""
        return self._printer.snapshot | {"serverTime": self.config.wall_clock + now}

    def _history(self, conn: ServerConnection, now: float) -> dict[str, object]:
        printer = self._printer
        return self._state(now) | conn._filtered(list(printer.temps), printer.logs)


class ServerConnection:
    """One TCP connection to the simulated server: HTTP, then maybe a websocket.

    Feed it :meth:`receive_data` / :meth:`receive_eof`, send what
    :meth:`data_to_send` returns, and close the transport once
    :attr:`closed` is true (after sending the last bytes). Timers are the
    server's: call :meth:`SimulatedOctoPrint.handle_timer`.
    """

    def __init__(self, server: SimulatedOctoPrint, remote_address: str) -> None:
        self._server = server
        self._config = server.config
        self.remote_address = remote_address
        self._http = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_REQUEST_HEAD)
        self._request: h11.Request | None = None
        self._body = bytearray()
        self._ws: Connection | None = None
        self._sockjs = False
        self._parts: list[str] = []  # the text message being received, in fragments
        self._size = 0
        self._out = bytearray()
        self._closing = False
        self._hold_until: float | None = None  # delay_responses(): output waits until then
        self._close_due: float | None = None
        self._heartbeat_due: float | None = None
        # The push socket's state, as the real server keeps it per socket.
        self._user: str | None = None
        self._session: _Session | None = None
        self._throttle = 1
        self._subscription: _Subscription | None = None  # None: not in subscription mode
        self._held_back: deque[tuple[str, str, object]] = deque(maxlen=self._config.max_held_back)
        self._history_sent = False  # OctoPrint sends history once per socket
        self._pending: tuple[list[object], list[str]] | None = None  # temps, logs for `current`
        self._last_current: float | None = None
        self._current_due: float | None = None

    # --- the public surface -----------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether the transport should be closed now (every byte has been taken)."""
        return self._closing and not self._out and self._hold_until is None

    @property
    def endpoint(self) -> str | None:
        """``"sockjs"`` or ``"raw"`` once the websocket is open, else ``None``."""
        if self._ws is None:
            return None
        return "sockjs" if self._sockjs else "raw"

    @property
    def user(self) -> str | None:
        """The user the socket is authenticated as, if any."""
        return self._user

    @property
    def throttle_factor(self) -> int:
        """The socket's throttle factor (``current`` at most every 0.5 s × factor)."""
        return self._throttle

    def receive_data(self, data: bytes, now: float) -> None:
        """Bytes from the client; anything after the connection closed is ignored."""
        self._server._advance(now)
        if self._closing or not data:
            return
        if self._ws is not None:
            self._receive_frames(data, now)
        else:
            self._http.receive_data(data)
            self._process_http(now)

    def receive_eof(self, now: float) -> None:
        """The client closed its side of the TCP connection: we close too."""
        self._server._advance(now)
        self._closing = True
        self._release_session(now)

    def data_to_send(self) -> bytes:
        """The bytes to send to the client now (held back during a response delay)."""
        if self._hold_until is not None or not self._out:
            return b""
        data = bytes(self._out)
        self._out.clear()
        return data

    def drop(self, now: float) -> None:
        """Abort: close the TCP connection with no close frame; unsent bytes are lost."""
        self._server._advance(now)
        self._out.clear()
        self._hold_until = None
        self._closing = True
        self._release_session(now)

    def send_garbage(self, now: float, *, broken_frame: bool = False) -> None:
        """A text frame that is neither SockJS nor JSON, or (``broken_frame``) a bad frame."""
        self._server._advance(now)
        if self._open_socket() is not None:
            # 0x8F: a final frame with the reserved opcode 0xF.
            self._out += b"\x8f\x00" if broken_frame else self._text("\x00garbage{")

    def send_close(self, now: float, *, code: int = 3000, reason: str = "Go away!") -> None:
        """Close the websocket: SockJS ``c[code,"reason"]`` then a close frame (1000).

        The raw endpoint gets the close frame with ``code`` and ``reason``
        itself. The TCP connection closes when the client's close frame
        arrives, or abruptly after 2 s without it.
        """
        self._server._advance(now)
        ws = self._open_socket()
        if ws is None:
            return
        if self._sockjs:
            self._out += self._text("c" + json.dumps([code, reason], separators=(",", ":")))
            code, reason = 1000, ""
        self._out += ws.send(CloseConnection(code=code, reason=reason))
        self._close_due = now + _CLOSE_TIMEOUT
        self._heartbeat_due = self._current_due = None

    # --- HTTP -------------------------------------------------------------------

    def _process_http(self, now: float) -> None:
        while self._ws is None and not self._closing:
            try:
                event = self._http.next_event()
            except h11.RemoteProtocolError as exc:
                self._respond(exc.error_status_hint, {"error": str(exc)}, now, close=True)
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self._request, self._body = event, bytearray()
            elif isinstance(event, h11.Data):
                self._body += event.data
                if len(self._body) > _MAX_REQUEST_BODY:
                    self._respond(413, {"error": "Request Entity Too Large"}, now, close=True)
            else:
                # EOF reaches us through receive_eof(), never h11, so this
                # is the end of the request, not ConnectionClosed.
                assert isinstance(event, h11.EndOfMessage) and self._request is not None
                self._route(self._request, bytes(self._body), now)

    def _route(self, request: h11.Request, body: bytes, now: float) -> None:
        path = request.target.decode("latin-1").partition("?")[0]
        method = request.method.decode("latin-1")
        relative = path[len(self._server._base) :] if path.startswith(self._server._base) else ""
        routes: dict[str, tuple[str, Callable[[h11.Request, bytes, float], None]]] = {
            "/api/version": ("GET", self._version),
            "/api/login": ("POST", self._login),
            "/login": ("GET", self._login_page),
            "/sockjs/info": ("GET", self._sockjs_info),
            "/sockjs/websocket": ("GET", self._upgrade),
        }
        self._sockjs = _SOCKJS_PATH.fullmatch(relative) is not None
        if self._sockjs:
            relative = "/sockjs/websocket"
        if relative not in routes:
            self._respond(404, {"error": "Not Found"}, now)
        elif routes[relative][0] != method:
            self._respond(405, {"error": "Method Not Allowed"}, now)
        else:
            routes[relative][1](request, body, now)

    def _respond(
        self,
        status: int,
        body: object,
        now: float,
        *,
        headers: tuple[tuple[str, str], ...] = (),
        close: bool = False,
    ) -> None:
        """One HTTP response; ``body`` is JSON-encoded unless it is already ``bytes``."""
        content_type = "text/html; charset=UTF-8" if isinstance(body, bytes) else "application/json"
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        all_headers = [("Content-Type", content_type), ("Content-Length", str(len(data))), *headers]
        if close:
            all_headers.append(("Connection", "close"))
        response = h11.Response(status_code=status, headers=all_headers)
        self._out += self._http.send(response) or b""
        self._out += self._http.send(h11.Data(data=data)) or b""
        self._out += self._http.send(h11.EndOfMessage()) or b""
        self._hold(now)
        if self._http.our_state is h11.MUST_CLOSE:
            self._closing = True  # Connection: close, ours or the client's
        else:
            # Keep-alive. We answer only complete requests (a refused
            # upgrade proposal counts as complete once answered).
            self._http.start_next_cycle()

    def _hold(self, now: float) -> None:
        delay = self._server._response_delay
        if delay > 0:
            self._hold_until = max(self._hold_until or now, now + delay)

    def _version(self, request: h11.Request, body: bytes, now: float) -> None:
        version = self._config.version
        self._respond(200, {"api": "0.1", "server": version, "text": f"OctoPrint {version}"}, now)

    def _login_page(self, request: h11.Request, body: bytes, now: float) -> None:
        # Like the real one, the login page hands out the CSRF cookie that an
        # active (cookie) login must echo in X-CSRF-Token.
        token = self._config.entropy(16).hex()
        cookie = f"csrf_token_P{self._config.port}={token}; Path=/; SameSite=Lax"
        page = b"<!doctype html><title>OctoPrint Login</title><form></form>"
        self._respond(200, page, now, headers=(("Set-Cookie", cookie),))

    def _sockjs_info(self, request: h11.Request, body: bytes, now: float) -> None:
        info = {"websocket": True, "cookie_needed": False, "origins": ["*:*"]}
        info["entropy"] = int.from_bytes(self._config.entropy(4), "big")
        self._respond(200, info, now)

    def _login(self, request: h11.Request, body: bytes, now: float) -> None:
        config = self._config
        if self._server._login_failure is not None:
            self._respond(self._server._login_failure, {"error": "simulated failure"}, now)
            return
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            data = None
        if not isinstance(data, dict):
            self._respond(400, {"error": "Expected a JSON object"}, now)
            return
        bearer = _header(request, "authorization") or ""
        api_key = _header(request, "x-api-key") or (bearer[7:] if bearer[:7] == "Bearer " else None)
        mechanism = "apikey"
        if api_key is not None and api_key == config.api_key:
            # API-key requests skip CSRF; user/pass next to a key log in
            # without a session, as observed.
            with_session = "user" not in data and data.get("passive") is True
        else:
            # An unknown API key counts for nothing, as on OctoPrint 1.11.8:
            # the request is a browser's and needs the CSRF cookie (so a
            # wrong key is answered 400, not 403).
            cookies: SimpleCookie = SimpleCookie()
            with contextlib.suppress(CookieError):  # a broken Cookie header: no cookie
                cookies.load(_header(request, "cookie") or "")
            cookie = cookies.get(f"csrf_token_P{config.port}")
            if (
                cookie is None
                or not cookie.value
                or cookie.value != _header(request, "x-csrf-token")
            ):
                self._respond(400, b"CSRF validation failed", now)
                return
            if data.get("user") != config.username or data.get("pass") != config.password:
                self._respond(403, {"error": "User unknown or password incorrect"}, now)
                return
            with_session, mechanism = True, "password"
        if not with_session and "user" not in data:
            self._respond(400, {"error": "Expected passive or user and pass"}, now)
            return
        record: dict[str, object] = {
            "name": config.username,
            "active": True,
            "user": True,
            "admin": True,
            "apikey": None,
            "settings": {},
            "groups": ["admins", "users"],
            "needs": {"group": ["admins", "users"], "role": ["admin", "status", "control"]},
            "permissions": [],
            "roles": ["admin", "user"],
            "has_password": True,
            "_is_external_client": False,
            "_login_mechanism": mechanism,
        }
        if with_session:
            record["session"] = self._server._new_session(config.username, now)
        self._respond(200, record, now)

    def _upgrade(self, request: h11.Request, body: bytes, now: float) -> None:
        key = _header(request, "sec-websocket-key") or ""
        connection = (_header(request, "connection") or "").lower()
        if (
            (_header(request, "upgrade") or "").lower() != "websocket"
            or "upgrade" not in connection
            or _header(request, "sec-websocket-version") != "13"
            or len(key) != 24
        ):
            self._respond(400, b'Can "Upgrade" only to "WebSocket".', now)
            return
        origin, host = _header(request, "origin"), _header(request, "host")
        if origin is not None and origin != f"http://{host}":
            # Like the real server without CORS: Origin must match Host.
            self._respond(403, b"Cross origin websockets not allowed", now)
            return
        headers = [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", generate_accept_token(key.encode()).decode()),
        ]
        extensions: list[Extension] = []
        offers = [o for o in (_header(request, "sec-websocket-extensions") or "").split(",") if o]
        deflate = PerMessageDeflate()
        try:
            accepted = server_extensions_handshake(offers, [deflate])
        except ValueError:  # an offer with unparsable parameters: no compression
            accepted = None
        if accepted is not None:
            headers.append(("Sec-WebSocket-Extensions", accepted.decode("ascii")))
            extensions.append(deflate)
        self._out += self._http.send(h11.InformationalResponse(status_code=101, headers=headers))
        self._hold(now)
        trailing, _ = self._http.trailing_data
        self._ws = Connection(ConnectionType.SERVER, extensions)
        if self._sockjs:
            self._out += self._text("o")
            self._arm_heartbeat(now)
        self._push("connected", self._server._connected)
        if trailing:
            self._receive_frames(bytes(trailing), now)

    # --- WebSocket ----------------------------------------------------------------

    def _open_socket(self) -> Connection | None:
        """The websocket, if it is open and not closing."""
        ws = self._ws
        return (
            ws
            if ws is not None and ws.state is ConnectionState.OPEN and not self._closing
            else None
        )

    def _text(self, text: str) -> bytes:
        assert self._ws is not None
        return self._ws.send(TextMessage(data=text))

    def _push(self, message_type: str, payload: object) -> None:
        """Send one message object ``{message_type: payload}``."""
        if self._sockjs:
            text = "a" + json.dumps([{message_type: payload}], separators=(",", ":"))
        else:
            # Tornado's encoding, as the raw endpoint shows it.
            text = json.dumps({message_type: payload}).replace("</", "<\\/")
        self._out += self._text(text)

    def _receive_frames(self, data: bytes, now: float) -> None:
        ws = self._ws
        assert ws is not None
        ws.receive_data(data)
        for event in ws.events():
            if isinstance(event, CloseConnection):
                if ws.state is ConnectionState.REMOTE_CLOSING:
                    self._out += ws.send(event.response())  # the client closed: echo it
                elif ws.state is ConnectionState.OPEN:  # a broken frame: wsproto says why
                    self._out += ws.send(CloseConnection(code=event.code, reason=event.reason))
                self._closing = True  # (or the client answered our close)
                self._release_session(now)
                return
            if isinstance(event, Ping):
                self._out += ws.send(event.response())
            elif isinstance(event, (TextMessage, BytesMessage)):
                self._size += len(event.data)
                if self._size > self._config.max_message_size:
                    self._out += ws.send(CloseConnection(code=1009, reason="Message too big"))
                    self._closing = True
                    self._release_session(now)
                    return
                if isinstance(event, TextMessage):
                    self._parts.append(event.data)
                if event.message_finished:
                    # A binary message is dropped unread: OctoPrint expects text.
                    text, self._parts, self._size = "".join(self._parts), [], 0
                    if isinstance(event, TextMessage) and ws.state is ConnectionState.OPEN:
                        self._receive_text(text, now)
                        if self._closing:
                            return

    def _receive_text(self, text: str, now: float) -> None:
        try:
            if not self._sockjs:
                self._receive_message(text, now)
            elif text:  # SockJS ignores an empty frame
                try:
                    batch = json.loads(text)
                except (ValueError, RecursionError):
                    raise _Drop from None
                for item in batch if isinstance(batch, list) else [batch]:
                    self._receive_message(item, now)
        except _Drop:
            self.drop(now)

    def _receive_message(self, text: object, now: float) -> None:
        """One client message; raises :class:`_Drop` where the real handler raises."""
        try:
            message = json.loads(text)  # type: ignore[arg-type]
        except (TypeError, ValueError, RecursionError):
            return  # not JSON text (or not text at all): ignored
        # The real handler asks `"auth" in message`, then `message["auth"]`:
        # a number or null fails the first, a string or array that contains
        # the word fails the second. Only the first special key counts.
        if not isinstance(message, (dict, list, str)):
            raise _Drop
        key = next((k for k in ("auth", "throttle", "subscribe") if k in message), None)
        if key is None:
            return  # unknown keys, or an array or string without the words: ignored
        if not isinstance(message, dict):
            raise _Drop
        if key == "auth":
            self._auth(message[key], now)
        elif key == "throttle":
            self._set_throttle(message[key], now)
        else:
            self._subscribe(message[key], now)

    def _auth(self, value: object, now: float) -> None:
        if not isinstance(value, str):
            raise _Drop
        parts = value.split(":")
        if len(parts) != 2:
            return  # ignored, like a user name with a colon
        session = self._server._use_session(parts[0], parts[1], now)
        if session is None:
            self._push("reauthRequired", {"reason": "stale"})
            self._release_session(now)
            return
        previous = self._session
        if previous is not None:
            previous.sockets -= 1
            previous.touched = now
        self._user, self._session = parts[0], session
        session.sockets += 1
        if previous is not None:
            return  # re-auth while authenticated: nothing new is sent
        held = list(self._held_back)
        self._held_back.clear()
        for kind, name, payload in held:
            self._deliver(kind, name, payload)
        if self._wants_state() and not self._history_sent:
            # OctoPrint 1.11.8 sends history once per socket: a later auth
            # (after a logout or a stale session) brings none.
            self._history_sent = True
            self._push("history", self._server._history(self, now))
            self._push("timelapse", {"type": "off"})
        # Real OctoPrint broadcasts this event; here only this socket gets it.
        event = {"username": self._user, "remoteAddress": self.remote_address}
        self._deliver("event", "ClientAuthed", {"type": "ClientAuthed", "payload": event})

    def _set_throttle(self, value: object, now: float) -> None:
        # The real server applies int() and ignores what it refuses with
        # ValueError; anything else int() raises drops the connection.
        try:
            factor = int(value)  # type: ignore[call-overload]
        except ValueError:
            return
        except (TypeError, OverflowError):
            raise _Drop from None
        if factor >= 1:
            self._throttle = factor
            self._send_current_if_due(now)

    def _subscribe(self, value: object, now: float) -> None:
        # Subscription mode starts here for good, whatever follows.
        if self._subscription is None:
            self._subscription = _Subscription()
        if not isinstance(value, dict):
            raise _Drop
        state = value.get("state", False)
        if isinstance(state, bool):
            wants, logs, messages = state, _filter(state), _filter(state)
        elif isinstance(state, dict):
            wants, logs, messages = True, _filter(state.get("logs")), _filter(state.get("messages"))
        else:  # the real server takes it, then fails on every state update: silence
            wants, logs, messages = False, False, False
        plugins, events = _names(value.get("plugins", False)), _names(value.get("events", False))
        if logs is None or messages is None or plugins is None or events is None:
            return  # invalid: the previous subscription stays
        old = self._subscription
        self._subscription = _Subscription(wants, logs, messages, plugins, events)
        if not wants:
            self._pending = self._current_due = None
        elif self._user is not None and (old.state, old.logs, old.messages) != (
            wants,
            logs,
            messages,
        ):
            self._push("history", self._server._history(self, now))

    def _reauth_required(self, reason: str, now: float) -> None:
        if self._open_socket() is not None and self._user is not None:
            self._push("reauthRequired", {"reason": reason})
            if reason != "modified":
                self._release_session(now)

    def _release_session(self, now: float) -> None:
        """The socket is anonymous from now on; its session may go stale."""
        if self._session is not None:
            self._session.sockets -= 1
            self._session.touched = now
        self._user = self._session = None
        self._pending = self._current_due = None

    # --- push ---------------------------------------------------------------------

    def _wants_state(self) -> bool:
        subscription = self._subscription
        return self._user is not None and (subscription is None or subscription.state)

    def _deliver(self, kind: str, name: str, payload: object) -> None:
        """An ``event`` or ``plugin`` message: sent, held back (anonymous) or filtered out."""
        if self._open_socket() is None:
            return
        if self._user is None:
            self._held_back.append((kind, name, payload))
            return
        subscription = self._subscription
        if subscription is None or _allows(
            subscription.events if kind == "event" else subscription.plugins, name
        ):
            self._push(kind, payload)

    def _filtered(self, temps: list[object], logs: Iterable[str]) -> dict[str, object]:
        subscription = self._subscription or _Subscription(logs=True, messages=True)
        return {
            "temps": temps,
            "logs": _matching(subscription.logs, logs),
            "messages": [],  # the model has no printer messages (M117 and friends)
        }

    def _printer_changed(self, entry: dict[str, object], logs: list[str], now: float) -> None:
        if self._open_socket() is None or not self._wants_state():
            return
        # Inside the throttle window the latest state wins and temps and
        # logs accumulate (bounded), as on the real server.
        temps, lines = self._pending or ([], [])
        temps.append(entry)
        lines.extend(logs)
        limit = self._config.history_size
        self._pending = (temps[-limit:], lines[-limit:])
        self._send_current_if_due(now)

    def _send_current_if_due(self, now: float) -> None:
        if self._pending is None:
            return
        interval = self._config.update_interval * min(self._throttle, _MAX_THROTTLE)
        due = now if self._last_current is None else self._last_current + interval
        if now + 1e-9 < due:
            self._current_due = due
            return
        temps, logs = self._pending
        self._pending = self._current_due = None
        self._last_current = now
        self._push("current", self._server._state(now) | self._filtered(temps, logs))

    def _arm_heartbeat(self, now: float) -> None:
        if self._sockjs and self._open_socket() is not None:
            self._heartbeat_due = now + self._config.heartbeat_interval

    def _deadline(self) -> float | None:
        if self._closing:
            return self._hold_until
        deadlines = [self._hold_until, self._close_due, self._heartbeat_due, self._current_due]
        return min((d for d in deadlines if d is not None), default=None)

    def _handle_timer(self, now: float) -> None:
        if self._hold_until is not None and self._hold_until <= now:
            self._hold_until = None
        if self._close_due is not None and self._close_due <= now:
            self.drop(now)  # the client never answered our close frame
            return
        if self._heartbeat_due is not None and self._heartbeat_due <= now:
            # A fixed timer, whatever the traffic; stopped heartbeats just skip,
            # and so does a socket that is closing (its close may still be queued).
            if self._server._heartbeats and self._open_socket() is not None:
                self._out += self._text("h")
            self._heartbeat_due += self._config.heartbeat_interval
            if self._heartbeat_due <= now:  # we were called late: no burst of catch-up beats
                self._heartbeat_due = now + self._config.heartbeat_interval
        if self._current_due is not None and self._current_due <= now:
            self._send_current_if_due(now)


def _check_json(value: object) -> None:
    """Refuse, before anything is sent, a payload that cannot be encoded as JSON."""
    try:
        json.dumps(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise LocalProtocolError(f"the payload is not JSON-serialisable: {exc}") from None


def _header(request: h11.Request, name: str) -> str | None:
    """A request header's value (repeated fields joined with ``, ``)."""
    values = [v.decode("latin-1") for k, v in request.headers if k == name.encode()]
    return ", ".join(values) if values else None


def _filter(value: object) -> bool | re.Pattern[str] | None:
    """A ``logs``/``messages`` setting: a bool or a regex; ``None`` when invalid."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        try:
            return re.compile(value)
        except (re.error, OverflowError, RecursionError):
            return None
    return None


def _names(value: object) -> bool | tuple[object, ...] | None:
    """A ``plugins``/``events`` setting: a bool or a list of names; ``None`` when invalid."""
    if isinstance(value, bool):
        return value
    return tuple(value) if isinstance(value, list) else None


def _allows(setting: bool | tuple[object, ...], name: str) -> bool:
    return setting if isinstance(setting, bool) else name in setting


def _matching(setting: bool | re.Pattern[str], lines: Iterable[str]) -> list[str]:
    if isinstance(setting, bool):
        return list(lines) if setting else []
    return [line for line in lines if setting.search(line)]
