"""The session engine every dialect runs on.

One :class:`SessionEngine` owns one logical connection to one server: it
decides when to dial and redial, drives the WebSocket handshake and frames,
watches the link, bounds every buffer, queues what the user sends while the
link is down, keeps usage statistics, and carries dialect HTTP requests
(logins) over a second transport. Dialects (plain WebSocket, OctoPrint, ...)
subclass it and fill in a handful of hooks; none of them grows its own
reconnect loop, timers or statistics.

Nothing here reads a clock: every input carries ``now``, the caller's
monotonic time in seconds, and :meth:`SessionEngine.get_timer` says when the
core next wants :meth:`SessionEngine.handle_timer` called.

The connection's life is a table, :data:`TRANSITIONS`: ``(state, trigger) ->
state``. Every state change goes through it, and the state diagram in the
docs is generated from it.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Hashable, Mapping
from dataclasses import dataclass

from ._calls import CallMatch, CallTable
from ._commands import Channel, CloseTransport, Command, OpenTransport, SendData
from ._config import SessionConfig
from ._errors import (
    CallError,
    CallTimeoutError,
    ConnectionLostError,
    LocalProtocolError,
    NotConnectedError,
    SendQueueFullError,
)
from ._events import (
    BatchItem,
    CallFailed,
    CallSucceeded,
    Connected,
    ConnectFailed,
    Disconnected,
    Event,
    HandshakeResponse,
    LimitExceeded,
    OperationWarning,
    ProtocolError,
    ReconnectFailed,
    ReconnectScheduled,
    SendFailed,
    ThroughputWarning,
    as_event,
)
from ._frames import (
    CLOSE_ABNORMAL,
    CLOSE_GOING_AWAY,
    CLOSE_NO_STATUS,
    CLOSE_NORMAL,
    FrameCodec,
    WebSocketFault,
    WsClose,
    WsPing,
    split_events,
)
from ._handshake import ClientHandshake, HandshakeRejected, check_user_headers
from ._http import HttpExchange, HttpFault, HttpResponse
from ._url import ServerAddress, parse_server_url

#: Qore counts a transfer for throughput warnings only from this size on.
THROUGHPUT_MIN_BYTES = 1024


class SessionState(enum.Enum):
    """Where the connection is in its life."""

    #: Created; ``connect()`` not called yet.
    IDLE = "idle"
    #: A transport was requested; waiting for ``transport_opened``.
    CONNECTING = "connecting"
    #: The upgrade request is sent; waiting for ``101``.
    HANDSHAKING = "handshaking"
    #: The WebSocket is open; waiting for the dialect's first message.
    OPENING = "opening"
    #: The session is up.
    OPEN = "open"
    #: The user disconnected; waiting for the server's close frame or EOF.
    CLOSING = "closing"
    #: The link was lost; waiting for the reconnect delay to pass.
    BACKOFF = "backoff"
    #: Closed for good: the user disconnected or the core gave up.
    CLOSED = "closed"


class Trigger(enum.Enum):
    """What can move a session from one state to another."""

    CONNECT = "connect()"
    TRANSPORT_OPENED = "transport opened"
    HANDSHAKE_ACCEPTED = "101 accepted"
    SESSION_READY = "dialect ready"
    LOST_WILL_RETRY = "lost, will retry"
    LOST_GIVING_UP = "lost, schedule exhausted"
    BACKOFF_ELAPSED = "reconnect timer"
    RECONNECT = "reconnect()"
    DISCONNECT = "disconnect()"
    CLOSE_DONE = "close handshake done or timed out"


S, T = SessionState, Trigger
_LIVE = (S.CONNECTING, S.HANDSHAKING, S.OPENING, S.OPEN)

#: The connection's state machine as data: ``(state, trigger) -> next state``.
TRANSITIONS: Mapping[tuple[SessionState, Trigger], SessionState] = {
    (S.IDLE, T.CONNECT): S.CONNECTING,
    (S.CLOSED, T.CONNECT): S.CONNECTING,
    (S.CONNECTING, T.TRANSPORT_OPENED): S.HANDSHAKING,
    (S.HANDSHAKING, T.HANDSHAKE_ACCEPTED): S.OPENING,
    (S.OPENING, T.SESSION_READY): S.OPEN,
    **{(state, T.LOST_WILL_RETRY): S.BACKOFF for state in _LIVE},
    **{(state, T.LOST_GIVING_UP): S.CLOSED for state in _LIVE},
    (S.BACKOFF, T.BACKOFF_ELAPSED): S.CONNECTING,
    **{(state, T.RECONNECT): S.CONNECTING for state in (*_LIVE, S.BACKOFF, S.CLOSING)},
    (S.CONNECTING, T.DISCONNECT): S.CLOSED,
    (S.HANDSHAKING, T.DISCONNECT): S.CLOSED,
    (S.BACKOFF, T.DISCONNECT): S.CLOSED,
    (S.OPENING, T.DISCONNECT): S.CLOSING,
    (S.OPEN, T.DISCONNECT): S.CLOSING,
    (S.CLOSING, T.CLOSE_DONE): S.CLOSED,
}
del S, T


class Timer(str, enum.Enum):
    """The engine's own timers (dialects add theirs by name)."""

    CONNECT = "connect"
    RECONNECT = "reconnect"
    PING = "ping"
    DEAD_LINK = "dead-link"
    CLOSE = "close"
    HTTP = "http"
    SEND_STALL = "send-stall"
    CALLS = "calls"


@dataclass(frozen=True, slots=True)
class Usage:
    """Usage statistics (Qore's ``getUsageInfo``): bytes and microseconds each way."""

    bytes_sent: int = 0
    bytes_recv: int = 0
    us_sent: int = 0
    us_recv: int = 0


class SessionEngine:
    """The shared engine; use a dialect client (e.g. ``WebSocketClient``) rather than this.

    Inputs (each takes ``now``): :meth:`connect`, :meth:`reconnect`,
    :meth:`disconnect`, :meth:`transport_opened`, :meth:`transport_failed`,
    :meth:`receive_data`, :meth:`receive_eof`, :meth:`handle_timer`,
    :meth:`io_completed`. Outputs: :meth:`next_command`, :meth:`next_event`,
    :meth:`get_timer`. Inputs never raise for anything the *server* does;
    they raise :class:`LocalProtocolError` when the *caller* misuses them,
    and then change nothing.
    """

    #: The close code :meth:`disconnect` uses when none is given.
    default_close_code = CLOSE_NORMAL

    def __init__(self, config: SessionConfig) -> None:
        self._config = config
        self._address: ServerAddress = parse_server_url(config.url)
        check_user_headers(config.headers)  # type: ignore[arg-type]
        self._state = SessionState.IDLE
        self._now = -math.inf
        # Events, and (plain WebSocket) the bare payloads of messages, which
        # become TextMessage/BinaryMessage only when taken as events.
        self._events: deque[BatchItem] = deque()
        self._commands: deque[Command] = deque()
        self._timers: dict[str, float] = {}
        self._attempt = 0
        # The push socket: whether a transport is requested/open, and the
        # protocol objects of the current connection.
        self._socket_active = False
        self._handshake: ClientHandshake | None = None
        self._codec: FrameCodec | None = None
        self._handshake_response: HandshakeResponse | None = None
        self._dialled_at = 0.0
        self._handshake_sent_at = 0.0
        self._closing_code = CLOSE_NORMAL
        self._closing_reason = ""
        # User messages waiting for the session to accept them.
        self._queue: deque[str | bytes] = deque()
        self._accepting_user_messages = False
        # Bytes sent on this socket not yet reported written (with
        # max_send_backlog), and whether the bound was hit: user messages
        # then wait until the backlog is down to half of it.
        self._unwritten = 0
        self._backlog_full = False
        # The dialect's HTTP request, when one is under way.
        self._http: HttpExchange | None = None
        self._http_active = False
        # Usage counters, kept as plain ints: they move on every chunk.
        self._bytes_sent = self._bytes_recv = self._us_sent = self._us_recv = 0
        # The received transfer under way: when its first byte came, and how many.
        self._transfer_started_at: float | None = None
        self._transfer_bytes = 0
        # Calls waiting for their reply (dialects with request/response).
        self._calls = CallTable()

    # ------------------------------------------------------------------
    # Outputs

    @property
    def config(self) -> SessionConfig:
        """The configuration this session was made with."""
        return self._config

    @property
    def state(self) -> SessionState:
        """The connection's current state."""
        return self._state

    @property
    def is_open(self) -> bool:
        """Whether the session is up (Qore's ``isOpen()``)."""
        return self._state is SessionState.OPEN

    @property
    def usage(self) -> Usage:
        """Bytes and microseconds sent and received on the push socket since the last clear."""
        return Usage(self._bytes_sent, self._bytes_recv, self._us_sent, self._us_recv)

    @property
    def pending_calls(self) -> int:
        """How many calls (RPC requests, Socket.IO acks) wait for their reply."""
        return len(self._calls)

    @property
    def late_replies(self) -> int:
        """Replies that came after their call had timed out or failed (dropped)."""
        return self._calls.late_replies

    def clear_stats(self) -> None:
        """Reset :attr:`usage` to zero (Qore's ``clearStats()``)."""
        self._bytes_sent = self._bytes_recv = self._us_sent = self._us_recv = 0

    def next_event(self) -> Event | None:
        """The next event for the user, or ``None`` when there is none."""
        return as_event(self._events.popleft()) if self._events else None

    def next_events(self) -> list[Event]:
        """Every event waiting for the user, in order (``next_event()`` until ``None``)."""
        items = self._events
        if not items:
            return []
        events = [as_event(item) for item in items]
        items.clear()
        return events

    def next_batch(self) -> list[BatchItem]:
        """Every event waiting, in order, with a plain WebSocket's messages as bare payloads.

        The same as :meth:`next_events` except that each message of a
        :class:`~octoproto.WebSocketClient` is its ``str`` (text) or
        ``bytes`` (binary) rather than a :class:`~octoproto.TextMessage` or
        :class:`~octoproto.BinaryMessage` (:func:`~octoproto.as_event` makes
        the event of an item). No object is made per message, which is what
        makes the adapters' batch path fast. Other dialects' items are all
        events.
        """
        batch = list(self._events)
        self._events.clear()
        return batch

    def next_command(self) -> Command | None:
        """The next command for the transport, or ``None`` when there is none."""
        return self._commands.popleft() if self._commands else None

    def get_timer(self) -> float | None:
        """The earliest deadline at which :meth:`handle_timer` must be called, or ``None``."""
        return min(self._timers.values()) if self._timers else None

    # ------------------------------------------------------------------
    # Inputs from the user

    def connect(self, now: float) -> None:
        """Start connecting (no effect while already connecting or connected)."""
        self._advance(now)
        if self._state in (SessionState.IDLE, SessionState.CLOSED):
            self._attempt = 0
            self._dial(Trigger.CONNECT, now)

    def reconnect(self, now: float) -> None:
        """Drop the current connection, if any, and dial again at once.

        The attempt counter starts afresh: the user has taken over.
        """
        self._advance(now)
        if self._state in (SessionState.IDLE, SessionState.CLOSED):
            self.connect(now)
            return
        if self._state is SessionState.OPEN:
            self._emit(Disconnected(CLOSE_NORMAL, "reconnect() was called"))
        elif self._state is SessionState.CLOSING:
            self._emit(Disconnected(self._closing_code, self._closing_reason))
        self._close_socket(CLOSE_NORMAL, "reconnecting")
        self._connection_lost(now)
        self._attempt = 0
        self._dial(Trigger.RECONNECT, now)

    def disconnect(self, now: float, *, code: int | None = None, reason: str = "") -> None:
        """Close for good (no reconnect). Idempotent.

        An open session closes with the WebSocket close handshake (``code``
        defaults to :attr:`default_close_code`); a :class:`Disconnected`
        event follows once it is done. Messages still queued are handed back
        in a :class:`SendFailed` event.
        """
        self._advance(now)
        code = self.default_close_code if code is None else code
        if not (
            code == CLOSE_NORMAL
            or 3000 <= code <= 4999
            or (1001 <= code <= 1014 and code not in (1004, 1005, 1006))
        ):
            raise LocalProtocolError(f"close code {code} may not be sent")
        if self._state in (SessionState.IDLE, SessionState.CLOSED, SessionState.CLOSING):
            return
        self._fail_waiting("disconnect() was called")
        if self._state in (SessionState.OPENING, SessionState.OPEN):
            # The session is over for the dialect at once (no login answer or
            # dialect timer may write after our close frame); the transport
            # lives on until the server answers the close.
            self._end_session(now)
            assert self._codec is not None
            self._write(self._codec.close(code, reason))
            self._closing_code, self._closing_reason = code, reason
            self._set_timer(Timer.CLOSE, now + self._config.close_timeout)
            self._move(Trigger.DISCONNECT)
            return
        self._close_socket(None, "")
        self._connection_lost(now)
        self._move(Trigger.DISCONNECT)
        self._emit(Disconnected(code, reason))

    # ------------------------------------------------------------------
    # Inputs from the transport

    def transport_opened(self, now: float, *, channel: Channel = Channel.SOCKET) -> None:
        """The transport requested by :class:`OpenTransport` is open.

        Like every transport input, it is ignored when it concerns a
        transport the core has already given up on (closed with
        :class:`CloseTransport`), so an adapter need not filter stale reports.
        """
        self._advance(now)
        if channel is Channel.HTTP:
            if self._http is not None and not self._http_active:
                self._http_active = True
                self._commands.append(SendData(Channel.HTTP, self._http.request_bytes))
            return
        if not self._socket_active or self._handshake is not None:
            return
        self._check_operation("connect", now - self._dialled_at)
        self._move(Trigger.TRANSPORT_OPENED)
        self._handshake = ClientHandshake(
            host_header=self._address.host_header,
            target=self._handshake_target(),
            headers=self._config.headers,  # type: ignore[arg-type]
            subprotocols=self._config.subprotocols,
            origin=self._config.origin,
            compression=self._config.compression,
            max_message_size=self._config.max_message_size,
            max_response_size=self._config.max_http_response_size,
            entropy=self._config.entropy,
        )
        self._handshake_sent_at = now
        self._write(self._handshake.request_bytes)

    def transport_failed(
        self, reason: str, now: float, *, channel: Channel = Channel.SOCKET
    ) -> None:
        """The transport could not be opened, or broke (reset, TLS failure ...)."""
        self._advance(now)
        if channel is Channel.HTTP:
            if self._http is not None:
                self._http_done()
                self._on_http_failed(f"HTTP request failed: {reason}", now)
            return
        if self._socket_active:
            # _lose() still issues CloseTransport, so an adapter releases a
            # broken transport the same way as any other.
            self._lose(CLOSE_ABNORMAL, reason, now)

    def receive_data(self, data: bytes, now: float, *, channel: Channel = Channel.SOCKET) -> None:
        """Bytes arrived from a transport. Input from a closed transport is ignored."""
        self._advance(now)
        if channel is Channel.HTTP:
            self._receive_http(data, now)
            return
        if not self._socket_active or not data:
            return
        if self._handshake is None:
            raise LocalProtocolError("data received before transport_opened()")
        self._bytes_recv += len(data)
        if self._codec is None:
            self._receive_handshake(data, now)
        else:
            self._receive_frames(data, now)

    def receive_eof(self, now: float, *, channel: Channel = Channel.SOCKET) -> None:
        """The transport was closed by the other side."""
        self._advance(now)
        if channel is Channel.HTTP:
            self._receive_http(None, now)
            return
        if not self._socket_active:
            return
        if self._state is SessionState.CLOSING:
            self._finish_closing(now)
        elif self._codec is None and self._handshake is not None:
            self._receive_handshake(None, now)
        else:
            self._lose(CLOSE_ABNORMAL, "the server closed the connection", now)

    def io_completed(self, operation: str, nbytes: int, seconds: float, now: float) -> None:
        """The adapter reports how long writing one ``SendData`` of ``nbytes`` took.

        ``operation`` is ``"send"``. Feeds ``us_sent`` and the operation and
        throughput warnings; optional (without it only the byte counters
        move), except with ``max_send_backlog``, which counts on a report
        for every ``SendData`` of the push socket, made while the transport
        is current. Receiving needs no report: the core times each received
        message itself, from the input that brought its first byte to the
        one that completed it.
        """
        self._advance(now)
        if operation != "send" or nbytes < 0 or not 0 <= seconds < math.inf:
            raise LocalProtocolError(
                f"io_completed({operation!r}, {nbytes!r}, {seconds!r}): expected 'send',"
                " bytes >= 0 and seconds >= 0"
            )
        self._us_sent += round(seconds * 1e6)
        self._check_transfer(operation, nbytes, seconds)
        limit = self._config.max_send_backlog
        if limit is None:
            return
        self._unwritten = max(0, self._unwritten - nbytes)
        if not self._backlog_full:
            return
        if self._unwritten > limit // 2:
            # Still full, but moving: the stall is measured from now.
            if self._config.dead_link_timeout is not None:
                self._set_timer(Timer.SEND_STALL, now + self._config.dead_link_timeout)
            return
        self._backlog_full = False
        self._clear_timer(Timer.SEND_STALL)
        if self._accepting_user_messages:
            self._flush_queue()

    def _check_transfer(self, operation: str, nbytes: int, seconds: float) -> None:
        """Qore's operation and throughput warnings for one transfer."""
        micros = round(seconds * 1e6)
        self._check_operation(operation, seconds)
        config = self._config
        if (
            config.warning_bs
            and nbytes >= THROUGHPUT_MIN_BYTES
            and seconds * 1000 >= config.min_ms
            and seconds > 0
            and nbytes / seconds <= config.warning_bs
        ):
            self._emit(
                ThroughputWarning(
                    direction=operation,
                    bytes=nbytes,
                    us=micros,
                    bytes_sec=nbytes / seconds,
                    threshold=config.warning_bs,
                    arg=config.warning_arg,
                )
            )

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at ``now``, earliest first, each at most once per call.

        A timer re-armed at or before ``now`` by what fired (a tiny timeout
        that rounds to nothing at a large ``now``, after a zero reconnect
        delay) waits for the next call: looping on it here would never return.
        """
        self._advance(now)
        fired: set[str] = set()
        while self._timers:
            name, deadline = min(self._timers.items(), key=lambda item: item[1])
            if deadline > now or name in fired:
                return
            fired.add(name)
            del self._timers[name]
            self._fire(name, now)

    # ------------------------------------------------------------------
    # Hooks for dialects

    def _handshake_target(self) -> str:
        """The request target of the upgrade (path and query) for a new connection."""
        return self._address.target(self._address.path)

    def _on_websocket_open(self, now: float) -> None:
        """The handshake succeeded. Plain WebSocket: the session is ready at once."""
        self._session_ready(now)
        self._accept_user_messages()

    def _on_websocket_messages(self, messages: list[str | bytes], now: float) -> None:
        """Complete messages arrived, in order (state OPENING or OPEN).

        By default each goes to :meth:`_on_websocket_message`, until one of
        them ends the connection. A dialect may take the whole run at once.
        """
        for data in messages:
            if self._codec is None:
                return  # a message ended the connection: the rest is not read
            self._on_websocket_message(data, now)

    def _on_websocket_message(self, data: str | bytes, now: float) -> None:
        """A complete message arrived (state OPENING or OPEN)."""
        raise NotImplementedError

    def _on_connection_lost(self, now: float) -> None:
        """The connection is gone, for whatever reason: forget per-connection state."""

    def _on_timer(self, name: str, now: float) -> None:
        """A dialect timer set with :meth:`_set_timer` fired."""
        raise NotImplementedError

    def _on_http_response(self, response: HttpResponse, now: float) -> None:
        """The dialect's HTTP request got its response."""
        raise NotImplementedError

    def _on_http_failed(self, reason: str, now: float) -> None:
        """The dialect's HTTP request failed (transport error, timeout, bad response)."""
        raise NotImplementedError

    def _reconnects_after(self, code: int) -> bool:
        """Whether losing the connection with close ``code`` may redial (the schedule decides when).

        Every close does by default; rpc-websockets' clients stop after a
        normal one (1000) from the server.
        """
        return True

    def _on_call_expired(self, call_id: int, now: float) -> None:
        """A call's timeout fired (its :class:`CallFailed` is out): drop its queued request."""

    # ------------------------------------------------------------------
    # Services for dialects

    def _emit(self, event: Event) -> None:
        self._events.append(event)

    def _session_ready(self, now: float) -> None:
        """The session is up: stop the connect timer, reset the attempt counter."""
        self._move(Trigger.SESSION_READY)
        self._clear_timer(Timer.CONNECT)
        self._attempt = 0
        assert self._handshake_response is not None
        self._emit(Connected(self._handshake_response))

    def _accept_user_messages(self) -> None:
        """From now on user messages go straight out; the queue is flushed first."""
        self._accepting_user_messages = True
        self._flush_queue()

    def _flush_queue(self) -> None:
        """Write queued user messages, in order, while the server reads.

        Called when the session accepts messages again and when the send
        backlog drains; a dialect with queues of its own (Socket.IO's per
        namespace) extends it to flush those too.
        """
        while self._queue and not self._backlog_full:
            self._write_message(self._queue.popleft())

    def _send_user_message(self, message: str | bytes) -> None:
        """Send a user message now, or queue it (bounded), or refuse it.

        While the send backlog is full (the server is not reading) it waits
        in the queue too, behind those already there: nothing goes out of
        order. (Accepting with the backlog not full means the queue is empty.)
        """
        if self._accepting_user_messages and not self._backlog_full:
            self._write_message(message)
            return
        if self._state in (SessionState.CLOSED, SessionState.CLOSING):
            raise NotConnectedError("the session is closed; call connect() first")
        if not self._accepting_user_messages and not self._config.queue_while_disconnected:
            raise NotConnectedError("not connected, and queue_while_disconnected is off")
        if len(self._queue) >= self._config.max_queued_messages:
            why = "; the server is not reading (max_send_backlog)" if self._backlog_full else ""
            raise SendQueueFullError(
                f"{len(self._queue)} messages are already queued (max_queued_messages){why}"
            )
        self._queue.append(message)

    def _write_message(self, message: str | bytes) -> None:
        """Frame a dialect message and send it on the open socket."""
        assert self._codec is not None
        self._write(self._codec.message(self._wrap_outgoing(message)))

    def _wrap_outgoing(self, message: str | bytes) -> str | bytes:
        """Dialect framing around one outgoing message (SockJS wraps it in an array)."""
        return message

    def _protocol_error(self, layer: str, detail: str, now: float, close_code: int | None) -> None:
        """Report bad input from the server; close (and so reconnect) if ``close_code`` is given."""
        self._emit(ProtocolError(layer, detail))
        if close_code is not None:
            self._close_socket(close_code, detail[:100])
            self._lose(close_code, detail, now)

    def _set_timer(self, name: str, deadline: float) -> None:
        self._timers[name] = deadline

    def _clear_timer(self, name: str) -> None:
        self._timers.pop(name, None)

    def _start_http(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        now: float,
        timeout: float,
    ) -> None:
        """Send one HTTP request to the server on the HTTP channel."""
        assert self._http is None, "one HTTP request at a time"
        all_headers = [("Host", self._address.host_header), ("Connection", "close"), *headers]
        self._http = HttpExchange(
            method,
            path,
            all_headers,
            body,
            max_response_size=self._config.max_http_response_size,
        )
        self._commands.append(self._open_command(Channel.HTTP))
        self._set_timer(Timer.HTTP, now + timeout)

    def _open_call(self, timeout: float | None, now: float) -> int:
        """Start a call that fails after ``timeout`` seconds (``None``: no timeout); its id.

        It waits until :meth:`_bind_call` puts it on the wire; waiting, it
        survives a lost connection, and it fails when the session closes
        for good. Refused beyond ``max_pending_calls``.
        """
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not 0 < timeout < math.inf
        ):
            raise LocalProtocolError(
                f"a call's timeout must be a positive number or None: {timeout!r}"
            )
        limit = self._config.max_pending_calls
        if len(self._calls) >= limit:
            raise SendQueueFullError(f"{limit} calls already wait for replies (max_pending_calls)")
        call_id = self._calls.open(None if timeout is None else now + timeout)
        self._arm_call_timer()
        return call_id

    def _bind_call(self, call_id: int, key: Hashable) -> None:
        """The request of ``call_id`` is on the wire under ``key``: a lost connection fails it."""
        self._calls.bind(call_id, key)

    def _call_pending(self, call_id: int) -> bool:
        """Whether ``call_id`` still waits (not answered, timed out or failed)."""
        return call_id in self._calls

    def _settle_call(
        self, key: Hashable, *, result: object = None, error: CallError | None = None
    ) -> CallMatch:
        """A reply for ``key`` came: emit the call's outcome (``error`` if given, else ``result``).

        Returns what the reply matched: the dialect reports an UNKNOWN one.
        """
        match, call_id = self._calls.settle(key)
        if match is CallMatch.SETTLED:
            self._emit(
                CallSucceeded(call_id, result) if error is None else CallFailed(call_id, error)
            )
            self._arm_call_timer()
        return match

    def _fail_call(self, call_id: int, error: CallError) -> None:
        """End a pending call now with ``error`` (a later reply to it counts as late)."""
        if self._calls.end(call_id):
            self._emit(CallFailed(call_id, error))
            self._arm_call_timer()

    def _arm_call_timer(self) -> None:
        deadline = self._calls.next_deadline()
        if deadline is None:
            self._clear_timer(Timer.CALLS)
        else:
            self._set_timer(Timer.CALLS, deadline)

    def _cancel_http(self) -> None:
        if self._http is not None:
            self._http_done()

    @property
    def _address_info(self) -> ServerAddress:
        return self._address

    # ------------------------------------------------------------------
    # Internals

    def _advance(self, now: float) -> None:
        if not isinstance(now, (int, float)) or not math.isfinite(now):
            raise LocalProtocolError(f"now must be a finite number, not {now!r}")
        if now < self._now:
            raise LocalProtocolError(f"now went backwards: {now} < {self._now}")
        self._now = now

    def _move(self, trigger: Trigger) -> None:
        try:
            self._state = TRANSITIONS[self._state, trigger]
        except KeyError:
            raise LocalProtocolError(
                f"{trigger.value!r} is not possible in state {self._state.value!r}"
            ) from None

    def _open_command(self, channel: Channel) -> OpenTransport:
        address = self._address
        return OpenTransport(
            channel, address.host, address.port, address.tls, address.host if address.tls else None
        )

    def _dial(self, trigger: Trigger, now: float) -> None:
        self._move(trigger)
        self._socket_active = True
        self._dialled_at = now
        self._commands.append(self._open_command(Channel.SOCKET))
        if self._config.connect_timeout is not None:
            self._set_timer(Timer.CONNECT, now + self._config.connect_timeout)

    def _write(self, data: bytes) -> None:
        """Send bytes on the push socket (counted in :attr:`usage` and the send backlog)."""
        self._bytes_sent += len(data)
        self._commands.append(SendData(Channel.SOCKET, data))
        limit = self._config.max_send_backlog
        if limit is None:
            return
        self._unwritten += len(data)
        if self._unwritten >= limit and not self._backlog_full:
            # The server is not reading (or not fast enough): say so once,
            # hold user messages back, and watch for a stall.
            self._backlog_full = True
            self._emit(LimitExceeded("max_send_backlog", self._unwritten, limit))
            if self._config.dead_link_timeout is not None:
                self._set_timer(Timer.SEND_STALL, self._now + self._config.dead_link_timeout)

    def _receive_handshake(self, data: bytes | None, now: float) -> None:
        handshake = self._handshake
        assert handshake is not None
        try:
            result = handshake.receive_data(data) if data is not None else handshake.receive_eof()
        except HttpFault as exc:
            self._report_http_fault(exc)
            self._close_socket(None, "")
            self._lose(CLOSE_ABNORMAL, str(exc), now)
            return
        except HandshakeRejected as exc:
            self._close_socket(None, "")
            self._lose(CLOSE_ABNORMAL, exc.detail, now, handshake=exc.response.as_handshake())
            return
        if result is None:
            return
        self._check_operation("handshake", now - self._handshake_sent_at)
        self._codec = result.codec
        self._handshake_response = result.response.as_handshake(
            result.subprotocol, result.extensions
        )
        self._move(Trigger.HANDSHAKE_ACCEPTED)
        self._arm_link_timers(now)
        self._on_websocket_open(now)
        if result.response.trailing_data and self._codec is not None:
            self._receive_frames(result.response.trailing_data, now)

    def _receive_frames(self, data: bytes, now: float) -> None:
        assert self._codec is not None
        if self._state is not SessionState.CLOSING:
            self._arm_link_timers(now)
        fault: WebSocketFault | None = None
        if self._transfer_started_at is None:
            self._transfer_started_at = now
        self._transfer_bytes += len(data)
        try:
            # The payloads of the messages, with no object per message (the
            # hot path), and the control frames with their place among them.
            messages, controls = self._codec.receive_raw(data)
        except WebSocketFault as exc:
            # What came before the fault is delivered first: how the bytes were
            # cut into chunks must not change what the user gets.
            fault = exc
            messages, controls = split_events(exc.events)
        if messages:
            # A message is complete: that transfer took from the input that
            # brought its first byte to this one. (A message that starts in
            # this chunk and ends later is timed from the next chunk on.)
            seconds = now - self._transfer_started_at
            self._us_recv += round(seconds * 1e6)
            self._check_transfer("recv", self._transfer_bytes, seconds)
            self._transfer_started_at, self._transfer_bytes = None, 0
        # In order: each run of messages, then the control frame after it.
        done = 0
        for index, control in controls:
            if index > done:
                self._deliver_messages(messages[done:index], now)
                done = index
            if self._codec is None:
                return  # an earlier event in this batch ended the connection
            if isinstance(control, WsPing):
                if self._state is not SessionState.CLOSING:  # nothing may follow our close
                    self._write(self._codec.pong(control.payload))
            elif isinstance(control, WsClose):
                self._receive_close(control, now)
            # A pong needs nothing: arriving at all re-armed the link timers.
        if done < len(messages):
            self._deliver_messages(messages[done:] if done else messages, now)
        if fault is not None and self._codec is not None:
            if fault.size is not None:
                self._emit(
                    LimitExceeded("max_message_size", fault.size, self._config.max_message_size)
                )
            self._protocol_error("websocket", fault.detail, now, fault.close_code)

    def _deliver_messages(self, messages: list[str | bytes], now: float) -> None:
        if self._codec is not None and self._state is not SessionState.CLOSING:
            self._on_websocket_messages(messages, now)

    def _receive_close(self, close: WsClose, now: float) -> None:
        if self._state is SessionState.CLOSING:
            self._finish_closing(now)
            return
        # Echo the code back (RFC 6455 §5.5.1), then let go of the transport.
        self._close_socket(CLOSE_NORMAL if close.code == CLOSE_NO_STATUS else close.code, "")
        self._lose(close.code, close.reason, now)

    def _finish_closing(self, now: float) -> None:
        self._close_socket(None, "")
        self._clear_timer(Timer.CLOSE)
        self._drop_transport()
        self._move(Trigger.CLOSE_DONE)
        self._emit(Disconnected(self._closing_code, self._closing_reason))

    def _close_socket(self, close_code: int | None, reason: str) -> None:
        """Send a close frame (when a WebSocket is open and a code is given) and close."""
        if not self._socket_active:
            return
        # In CLOSING our close frame is already out, and nothing may follow it.
        if (
            close_code is not None
            and self._codec is not None
            and self._state is not SessionState.CLOSING
        ):
            self._write(self._codec.close(close_code, reason))
        self._socket_active = False
        self._commands.append(CloseTransport(Channel.SOCKET))

    def _connection_lost(self, now: float) -> None:
        """Forget everything that belonged to the connection that just ended."""
        self._drop_transport()
        self._end_session(now)

    def _drop_transport(self) -> None:
        self._transfer_started_at, self._transfer_bytes = None, 0
        self._unwritten, self._backlog_full = 0, False
        self._socket_active = False
        self._handshake = None
        self._codec = None

    def _end_session(self, now: float) -> None:
        """The session is over for the dialect: no timer, no HTTP request, no user sends.

        Calls sent on it fail now; calls not sent yet wait for the next
        connection (their deadlines still run).
        """
        self._timers.clear()
        self._accepting_user_messages = False
        self._cancel_http()
        for call_id in self._calls.drop_in_flight():
            lost = ConnectionLostError("the connection was lost before the reply")
            self._emit(CallFailed(call_id, lost))
        self._arm_call_timer()
        self._on_connection_lost(now)

    def _lose(
        self,
        code: int,
        reason: str,
        now: float,
        *,
        timed_out: bool = False,
        handshake: HandshakeResponse | None = None,
    ) -> None:
        """The connection ended without the user asking: report it and plan the next dial."""
        if self._state is SessionState.CLOSING:
            self._finish_closing(now)  # the user is leaving anyway: no reconnect
            return
        was_open = self._state is SessionState.OPEN
        self._close_socket(None, "")
        self._connection_lost(now)
        if was_open:
            self._emit(Disconnected(code, reason))
        else:
            self._emit(ConnectFailed(reason, timed_out=timed_out, handshake=handshake))
        self._attempt += 1
        delay = (
            self._config.reconnect.delay_before(self._attempt, self._config.entropy)
            if self._reconnects_after(code)
            else None
        )
        if delay is None:
            self._move(Trigger.LOST_GIVING_UP)
            self._emit(ReconnectFailed(self._attempt - 1))
            self._fail_waiting("the reconnect schedule is exhausted")
            return
        self._move(Trigger.LOST_WILL_RETRY)
        self._emit(ReconnectScheduled(self._attempt, delay))
        self._set_timer(Timer.RECONNECT, now + delay)

    def _fail_waiting(self, reason: str) -> None:
        """The session closes for good: hand back queued messages, fail every pending call.

        A dialect with queues of its own extends it to hand those back too.
        """
        if self._queue:
            messages, self._queue = tuple(self._queue), deque()
            self._emit(SendFailed(messages, reason))
        # An error each: whoever waits for a call raises it (with its traceback).
        for call_id in self._calls.drop_all():
            self._emit(CallFailed(call_id, ConnectionLostError(f"the session closed: {reason}")))
        self._clear_timer(Timer.CALLS)

    def _arm_link_timers(self, now: float) -> None:
        config = self._config
        if config.ping_interval is not None:
            self._timers[Timer.PING] = now + config.ping_interval
        if config.dead_link_timeout is not None:
            self._timers[Timer.DEAD_LINK] = now + config.dead_link_timeout

    def _fire(self, name: str, now: float) -> None:
        config = self._config
        if name == Timer.RECONNECT:
            self._dial(Trigger.BACKOFF_ELAPSED, now)
        elif name == Timer.CONNECT:
            self._close_socket(CLOSE_NORMAL if self._codec else None, "connect timeout")
            self._lose(
                CLOSE_ABNORMAL, f"connect timeout ({config.connect_timeout} s)", now, timed_out=True
            )
        elif name == Timer.PING:
            assert self._codec is not None and config.ping_interval is not None
            self._write(self._codec.ping(b""))
            self._timers[Timer.PING] = now + config.ping_interval
        elif name == Timer.DEAD_LINK:
            detail = f"dead link: nothing received for {config.dead_link_timeout} s"
            self._close_socket(CLOSE_GOING_AWAY, "dead link")
            self._lose(CLOSE_ABNORMAL, detail, now)
        elif name == Timer.SEND_STALL:
            detail = (
                f"send stalled: {self._unwritten} bytes not written"
                f" for {config.dead_link_timeout} s"
            )
            self._close_socket(None, "")  # a close frame would wait behind the rest
            self._lose(CLOSE_ABNORMAL, detail, now)
        elif name == Timer.CLOSE:
            self._finish_closing(now)
        elif name == Timer.HTTP:
            self._http_done()
            self._on_http_failed("HTTP request timed out", now)
        elif name == Timer.CALLS:
            for call_id in self._calls.expire(now):
                self._emit(CallFailed(call_id, CallTimeoutError("reply timeout")))
                self._on_call_expired(call_id, now)
            self._arm_call_timer()
        else:
            self._on_timer(name, now)

    def _check_operation(self, operation: str, seconds: float) -> None:
        config = self._config
        if config.warning_ms and seconds * 1000 >= config.warning_ms:
            self._emit(
                OperationWarning(
                    operation, round(seconds * 1e6), config.warning_ms, config.warning_arg
                )
            )

    def _report_http_fault(self, fault: HttpFault) -> None:
        if fault.size is not None:
            limit = self._config.max_http_response_size
            self._emit(LimitExceeded("max_http_response_size", fault.size, limit))
        self._emit(ProtocolError("http", str(fault)))

    def _receive_http(self, data: bytes | None, now: float) -> None:
        exchange = self._http
        if exchange is None or not self._http_active:
            return
        try:
            response = exchange.receive_data(data) if data is not None else exchange.receive_eof()
        except HttpFault as exc:
            self._http_done()
            self._report_http_fault(exc)
            self._on_http_failed(str(exc), now)
            return
        if response is not None:
            self._http_done()
            self._on_http_response(response, now)

    def _http_done(self) -> None:
        # OpenTransport was issued when the exchange began, so close even a
        # transport that is still being dialled: the adapter cancels the dial.
        self._commands.append(CloseTransport(Channel.HTTP))
        self._http = None
        self._http_active = False
        self._clear_timer(Timer.HTTP)
