"""The Socket.IO dialect: Socket.IO v5 over Engine.IO v4, websocket transport only.

Wire facts are in ``shared/protocols.md`` §3 and :mod:`._socketio_wire`;
what this module decides on top of the session engine:

* **Target.** ``<url path>/<socketio_path>/?EIO=4&transport=websocket`` (the
  URL's own query string kept in front).
* **Ready.** After the Engine.IO ``open`` packet the client sends a CONNECT
  (with ``auth``) for every namespace of the config; the session is up
  (:class:`~octoproto.Connected`) once *every* namespace has answered with its
  CONNECT reply, so the connect timeout covers the namespaces too. Each
  namespace reports :class:`SocketIOConnected` as its reply comes. A
  namespace refused (CONNECT_ERROR: :class:`SocketIOConnectError`) fails the
  whole attempt, as python-socketio's ``connect()`` does; the attempt is
  retried on the reconnect schedule, with the same ``auth``.
* **Early events.** Events the server emits from its connect handler arrive
  before that namespace's CONNECT reply: they are kept (bounded by
  ``max_early_events``) and delivered right after its
  :class:`SocketIOConnected`, in order.
* **Heartbeats.** The server pings (``2``), the client answers ``3``. Nothing
  received for ``pingInterval + pingTimeout`` (from the ``open`` packet) is a
  dead link: the connection is dropped and redialled. The engine's generic
  WebSocket pings and dead-link timer are off by default.
* **Emits and acks.** :meth:`SocketIOClient.emit` sends at once when its
  namespace is connected, and otherwise waits in a bounded per-namespace
  queue (so an emit right after ``connect()`` never races the CONNECT reply,
  and one during a reconnect goes out once the namespace is back). Ack ids
  count per namespace from 1 and never repeat in one client; an emit with an
  ack is an engine call (:class:`~octoproto.CallSucceeded` with the ack's
  arguments as a tuple). Every packet respects the server's ``maxPayload``.
* **Disconnects.** Reasons as in python-socketio: ``"client disconnect"``
  (:meth:`disconnect`), ``"server disconnect"`` (the server's DISCONNECT of
  the last namespace, or Engine.IO ``close``: the session then ends for good,
  no reconnect), ``"transport error"`` (anything else: reconnect).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from ._calls import CallMatch
from ._config import ReconnectSchedule, SessionConfig
from ._errors import (
    CallError,
    InvalidMessageError,
    LocalProtocolError,
    NotConnectedError,
    SendQueueFullError,
)
from ._events import Event, SendFailed
from ._frames import CLOSE_NORMAL, CLOSE_PROTOCOL_ERROR
from ._session import SessionEngine, SessionState
from ._socketio_wire import (
    BinaryAssembler,
    EngineIOType,
    PacketType,
    SocketIOPacket,
    SocketIOWireError,
    check_event,
    check_namespace,
    encode_packet,
    parse_engineio,
    parse_open,
    parse_packet,
)
from ._util import join_path, preview

__all__ = [
    "CLIENT_DISCONNECT",
    "SERVER_DISCONNECT",
    "TRANSPORT_ERROR",
    "SocketIOClient",
    "SocketIOConfig",
    "SocketIOConnectError",
    "SocketIOConnected",
    "SocketIODisconnected",
    "SocketIOEvent",
    "socketio_reconnect_schedule",
]

#: Disconnect reasons (python-socketio's ``Client.reason``).
CLIENT_DISCONNECT = "client disconnect"
SERVER_DISCONNECT = "server disconnect"
TRANSPORT_ERROR = "transport error"

#: The default ``call`` timeout (python-socketio's), in seconds.
DEFAULT_CALL_TIMEOUT = 60.0

_HEARTBEAT_TIMER = "socketio-heartbeat"
#: A namespace's list of calls in flight is pruned of ended ones at this length.
_PRUNE_AT = 64
_EIO_PONG = "3"
_EIO_CLOSE = "1"


def socketio_reconnect_schedule(
    delay: float = 1.0,
    delay_max: float = 5.0,
    randomization_factor: float = 0.5,
    attempts: int = 0,
) -> ReconnectSchedule:
    """python-socketio's reconnection options as a :class:`~octoproto.ReconnectSchedule`.

    ``delay`` seconds, doubling up to ``delay_max``; ``attempts`` 0 means for
    ever; each delay moved by up to ``± randomization_factor`` seconds, as
    python-socketio does.
    """
    exponential = ReconnectSchedule.exponential(delay, delay_max, 2.0, attempts or None, 0.0)
    return dataclasses.replace(exponential, jitter_seconds=randomization_factor)


@dataclass(frozen=True, kw_only=True)
class SocketIOConfig(SessionConfig):
    """Settings for a Socket.IO client; see :class:`SessionConfig` for the rest."""

    #: The namespaces to connect, in order (python-socketio's ``namespaces``).
    namespaces: Sequence[str] = ("/",)
    #: Sent with every namespace's CONNECT, on every connection (any JSON value;
    #: ``None`` sends none). Never shown in ``repr()``.
    auth: object = field(default=None, repr=False)
    #: The Socket.IO endpoint's path under the URL's path.
    socketio_path: str = "socket.io"
    #: Events a namespace may receive before its CONNECT reply (kept, then delivered).
    max_early_events: int = 100
    #: Binary attachments accepted in one packet.
    max_attachments: int = 256
    #: python-socketio's reconnection: 1 s doubling to 5 s, ±50 %, for ever.
    reconnect: ReconnectSchedule = field(default_factory=socketio_reconnect_schedule)
    #: Off: the server's Engine.IO pings supervise the link.
    ping_interval: float | None = None
    #: Off: ``pingInterval + pingTimeout`` from the server is the dead-link limit.
    dead_link_timeout: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        namespaces = tuple(self.namespaces)
        if not namespaces or len(set(namespaces)) != len(namespaces):
            raise LocalProtocolError(f"namespaces must be distinct and not empty: {namespaces}")
        for namespace in namespaces:
            check_namespace(namespace)
        object.__setattr__(self, "namespaces", namespaces)
        encode_packet(PacketType.CONNECT, "/", self.auth)  # refuses what is not JSON now
        if not isinstance(self.socketio_path, str) or "?" in self.socketio_path:
            raise LocalProtocolError(f"socketio_path must be a path: {self.socketio_path!r}")
        for name in ("max_early_events", "max_attachments"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise LocalProtocolError(f"{name} must be an int >= 0, not {value!r}")


@dataclass(frozen=True, slots=True)
class SocketIOConnected(Event):
    """A namespace is connected (its CONNECT reply came); ``sid`` is its session id."""

    namespace: str
    sid: str


@dataclass(frozen=True, slots=True)
class SocketIOConnectError(Event):
    """The server refused a namespace: ``data`` as it sent it.

    Usually ``{"message": ..., "data": ...}`` (a ``ConnectionRefusedError``),
    or a bare string (``"Unable to connect"`` for an unknown namespace).
    """

    namespace: str
    data: object


@dataclass(frozen=True, slots=True)
class SocketIODisconnected(Event):
    """A connected namespace is gone: ``reason`` is ``"client disconnect"``,
    ``"server disconnect"`` or ``"transport error"``."""

    namespace: str
    reason: str


@dataclass(frozen=True, slots=True)
class SocketIOEvent(Event):
    """The server emitted ``event`` with ``args`` on ``namespace``.

    ``ack_id`` is not ``None`` when the server waits for an acknowledgement:
    answer with :meth:`SocketIOClient.ack`.
    """

    namespace: str
    event: str
    args: tuple[object, ...]
    ack_id: int | None = None


@dataclass
class _Namespace:
    """What the client knows about one namespace."""

    #: Emits waiting for the namespace: (packet messages, ack id, call id).
    queue: deque[tuple[list[str | bytes], int | None, int | None]] = field(default_factory=deque)
    sid: str | None = None
    #: Events that came before the CONNECT reply on this connection.
    early: list[SocketIOEvent] = field(default_factory=list)
    last_ack_id: int = 0
    #: The server disconnected it: emits refused until the next connection.
    dropped: bool = False
    #: Calls sent on this connection (some may have ended since; pruned as it grows).
    in_flight: list[int] = field(default_factory=list)


class SocketIOClient(SessionEngine):
    """A Socket.IO v5 client (python-socketio's ``Client`` in sans-I/O form).

    Inputs besides the engine's: :meth:`emit`, :meth:`call`, :meth:`ack`.
    Events: :class:`SocketIOConnected`, :class:`SocketIOConnectError`,
    :class:`SocketIOEvent`, :class:`SocketIODisconnected`, the engine's
    (:class:`~octoproto.Connected` once every namespace is connected) and
    :class:`~octoproto.CallSucceeded` / :class:`~octoproto.CallFailed` for
    emits with an ack.
    """

    def __init__(self, config: SocketIOConfig) -> None:
        super().__init__(config)
        self._sio = config
        self._namespaces = {name: _Namespace() for name in config.namespaces}
        self._assembler = BinaryAssembler(config.max_attachments, config.max_message_size)
        self._max_payload: int | None = None
        self._heartbeat: float | None = None
        self._eio_sid: str | None = None
        # Acks the server waits for on this connection, oldest first (bounded).
        self._owed: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._leaving: str | None = None

    @property
    def sid(self) -> str | None:
        """The first namespace's session id while it is connected (python-socketio's ``sid``)."""
        return self.get_sid(self._sio.namespaces[0])

    def get_sid(self, namespace: str = "/") -> str | None:
        """The session id of ``namespace`` while it is connected, else ``None``."""
        state = self._namespaces.get(namespace)
        return None if state is None else state.sid

    @property
    def connected_namespaces(self) -> tuple[str, ...]:
        """The namespaces connected right now, in the config's order."""
        return tuple(name for name, state in self._namespaces.items() if state.sid is not None)

    # ------------------------------------------------------------------
    # Inputs from the user

    def emit(
        self,
        event: str,
        *args: object,
        namespace: str = "/",
        now: float,
        ack: bool = False,
        timeout: float | None = None,
    ) -> int | None:
        """Emit ``event`` with ``args`` on ``namespace``; with ``ack``, a call id.

        ``bytes`` anywhere in ``args`` travel as binary attachments. Waits in
        the namespace's queue (bounded by ``max_queued_messages``) while the
        namespace is not connected. With ``ack`` the server's acknowledgement
        arrives as :class:`~octoproto.CallSucceeded` (its arguments, a tuple)
        or the call fails (``timeout`` seconds, ``None``: none).
        """
        self._advance(now)
        state = self._namespace(namespace)
        check_event(event)
        ack_id = state.last_ack_id + 1 if ack else None
        messages = encode_packet(PacketType.EVENT, namespace, [event, *args], ack_id)
        self._check_size(messages)
        if state.dropped:
            raise NotConnectedError(f"the server disconnected namespace {namespace}")
        if self.state in (SessionState.CLOSED, SessionState.CLOSING):
            raise NotConnectedError("the session is closed; call connect() first")
        sending = state.sid is not None and not self._backlog_full and not state.queue
        if not sending:
            if self.state is not SessionState.OPEN and not self._config.queue_while_disconnected:
                raise NotConnectedError("not connected, and queue_while_disconnected is off")
            if len(state.queue) >= self._config.max_queued_messages:
                raise SendQueueFullError(
                    f"{len(state.queue)} emits already wait for namespace {namespace}"
                    " (max_queued_messages)"
                )
        call_id = None
        if ack_id is not None:
            call_id = self._open_call(timeout, now)
            state.last_ack_id = ack_id
        if sending:
            self._send_emit(namespace, messages, ack_id, call_id)
        else:
            state.queue.append((messages, ack_id, call_id))
        return call_id

    def call(
        self,
        event: str,
        *args: object,
        namespace: str = "/",
        now: float,
        timeout: float | None = DEFAULT_CALL_TIMEOUT,
    ) -> int:
        """Emit with an ack and a timeout (60 s by default, as python-socketio); the call id."""
        call_id = self.emit(event, *args, namespace=namespace, now=now, ack=True, timeout=timeout)
        assert call_id is not None
        return call_id

    def ack(self, namespace: str, ack_id: int, args: Sequence[object], *, now: float) -> bool:
        """Acknowledge the server's event ``ack_id`` on ``namespace`` with ``args``.

        Returns whether it was sent: an ack the current connection does not
        wait for (answered already, or the connection changed since the
        event came) is dropped, since the server would not know it.
        """
        self._advance(now)
        self._namespace(namespace)
        messages = encode_packet(PacketType.ACK, namespace, list(args), ack_id)
        self._check_size(messages)
        if (namespace, ack_id) not in self._owed:
            return False
        del self._owed[namespace, ack_id]
        self._write_packet(messages)
        return True

    def disconnect(self, now: float, *, code: int | None = None, reason: str = "") -> None:
        """Leave every namespace (DISCONNECT), close Engine.IO and the WebSocket; for good."""
        self._leave(CLIENT_DISCONNECT, now, code=code, reason=reason)

    # ------------------------------------------------------------------
    # Engine hooks

    def _handshake_target(self) -> str:
        address = self._address_info
        path = join_path(address.path, self._sio.socketio_path.strip("/"), "")
        query = "EIO=4&transport=websocket"
        return f"{path}?{address.query}&{query}" if address.query else f"{path}?{query}"

    def _on_websocket_open(self, now: float) -> None:
        pass  # the session is up when every namespace has answered

    def _on_websocket_message(self, data: str | bytes, now: float) -> None:
        if self._heartbeat:
            self._set_timer(_HEARTBEAT_TIMER, now + self._heartbeat)
        try:
            kind, payload = parse_engineio(data)
            if self._eio_sid is None:
                if kind is not EngineIOType.OPEN or not isinstance(payload, str):
                    raise SocketIOWireError(f"expected the Engine.IO open packet: {preview(data)}")
                self._on_open(payload, now)
            elif kind is EngineIOType.MESSAGE:
                packet = (
                    self._assembler.feed_binary(payload)
                    if isinstance(payload, bytes)
                    else self._assembler.feed_packet(parse_packet(payload))
                )
                if packet is not None:
                    self._on_packet(packet, now)
            elif kind is EngineIOType.PING:
                self._write_message(_EIO_PONG)
            elif kind is EngineIOType.CLOSE:
                self._leave(SERVER_DISCONNECT, now)
            elif kind is EngineIOType.OPEN:
                raise SocketIOWireError("a second Engine.IO open packet")
            # pong, upgrade, noop: nothing to do on the websocket transport
        except SocketIOWireError as exc:
            self._protocol_error("socketio", str(exc), now, CLOSE_PROTOCOL_ERROR)

    def _on_timer(self, name: str, now: float) -> None:
        assert name == _HEARTBEAT_TIMER
        detail = f"dead link: no ping from the server for {self._heartbeat} s"
        self._close_socket(CLOSE_NORMAL, "dead link")
        self._lose(CLOSE_NORMAL, detail, now)

    def _on_connection_lost(self, now: float) -> None:
        why = self._leaving or TRANSPORT_ERROR
        writable = self._leaving is not None and self.state in (
            SessionState.OPENING,
            SessionState.OPEN,
        )
        for name, state in self._namespaces.items():
            if state.sid is not None:
                if writable and why == CLIENT_DISCONNECT:
                    self._write_packet(encode_packet(PacketType.DISCONNECT, name))
                self._emit(SocketIODisconnected(name, why))
            state.sid, state.early, state.dropped, state.in_flight = None, [], False, []
        if writable:
            self._write_message(_EIO_CLOSE)
        self._assembler.reset()
        self._owed.clear()
        self._max_payload = self._heartbeat = self._eio_sid = None

    def _on_call_expired(self, call_id: int, now: float) -> None:
        for state in self._namespaces.values():
            for entry in state.queue:
                if entry[2] == call_id:
                    state.queue.remove(entry)
                    return

    def _flush_queue(self) -> None:
        super()._flush_queue()
        for name in self._namespaces:
            self._flush_namespace(name)

    def _fail_waiting(self, reason: str) -> None:
        handed_back: list[str | bytes] = []
        for state in self._namespaces.values():
            while state.queue:
                messages, _ack_id, call_id = state.queue.popleft()
                if call_id is None:
                    handed_back.extend(messages)
        if handed_back:
            self._emit(SendFailed(tuple(handed_back), reason))
        super()._fail_waiting(reason)

    # ------------------------------------------------------------------
    # Internals

    def _namespace(self, namespace: str) -> _Namespace:
        state = self._namespaces.get(namespace)
        if state is None:
            raise LocalProtocolError(
                f"{preview(namespace)} is not one of this client's namespaces"
                f" {list(self._namespaces)}"
            )
        return state

    def _check_size(self, messages: list[str | bytes]) -> None:
        limit = self._max_payload
        if limit is not None and any(_size(message) > limit for message in messages):
            raise InvalidMessageError(f"a packet larger than the server's maxPayload ({limit})")

    def _leave(self, why: str, now: float, **close: object) -> None:
        self._leaving = why
        try:
            super().disconnect(now, **close)  # type: ignore[arg-type]
        finally:
            self._leaving = None

    def _on_open(self, payload: str, now: float) -> None:
        opened = parse_open(payload)
        self._eio_sid = opened.sid
        self._max_payload = opened.max_payload
        self._heartbeat = opened.ping_interval + opened.ping_timeout
        if self._heartbeat:
            self._set_timer(_HEARTBEAT_TIMER, now + self._heartbeat)
        for name in self._namespaces:
            self._write_packet(encode_packet(PacketType.CONNECT, name, self._sio.auth))

    def _on_packet(self, packet: SocketIOPacket, now: float) -> None:
        state = self._namespaces.get(packet.namespace)
        if state is None:
            self._protocol_error(
                "socketio", f"a packet for namespace {preview(packet.namespace)}", now, None
            )
            return
        kind = packet.type
        if kind is PacketType.CONNECT:
            self._on_namespace_connected(packet.namespace, state, packet.data, now)
        elif kind is PacketType.CONNECT_ERROR:
            self._emit(SocketIOConnectError(packet.namespace, packet.data))
            if state.sid is None and self.state is SessionState.OPENING:
                detail = f"namespace {packet.namespace} refused: {preview(packet.data)}"
                self._close_socket(CLOSE_NORMAL, "")
                self._lose(CLOSE_NORMAL, detail, now)
        elif kind is PacketType.DISCONNECT:
            if state.sid is not None:
                self._drop_namespace(packet.namespace, state, now)
        elif kind in (PacketType.EVENT, PacketType.BINARY_EVENT):
            assert isinstance(packet.data, list)
            name, *args = packet.data
            event = SocketIOEvent(packet.namespace, name, tuple(args), packet.ack_id)
            self._on_event(state, event, now)
        else:
            self._on_ack(packet, now)

    def _on_namespace_connected(
        self, namespace: str, state: _Namespace, data: object, now: float
    ) -> None:
        assert isinstance(data, dict)
        if state.sid is not None:
            self._protocol_error("socketio", f"a second CONNECT for {namespace}", now, None)
            return
        state.sid = data["sid"]
        self._emit(SocketIOConnected(namespace, data["sid"]))
        early, state.early = state.early, []
        for event in early:
            self._deliver(event)
        self._flush_namespace(namespace)
        if self.state is SessionState.OPENING and all(
            other.sid is not None for other in self._namespaces.values()
        ):
            self._session_ready(now)
            self._accept_user_messages()

    def _on_event(self, state: _Namespace, event: SocketIOEvent, now: float) -> None:
        if state.sid is not None:
            self._deliver(event)
        elif len(state.early) < self._sio.max_early_events:
            state.early.append(event)
        else:
            detail = (
                f"more than {self._sio.max_early_events} events before the CONNECT reply"
                f" of {event.namespace}"
            )
            self._protocol_error("socketio", detail, now, CLOSE_PROTOCOL_ERROR)

    def _deliver(self, event: SocketIOEvent) -> None:
        if event.ack_id is not None:
            owed = self._owed
            owed[event.namespace, event.ack_id] = None
            if len(owed) > self._config.max_pending_calls:
                owed.popitem(last=False)
        self._emit(event)

    def _on_ack(self, packet: SocketIOPacket, now: float) -> None:
        assert isinstance(packet.data, list)
        match = self._settle_call((packet.namespace, packet.ack_id), result=tuple(packet.data))
        if match is CallMatch.UNKNOWN:
            detail = f"an ACK {packet.ack_id} on {packet.namespace} for no emit"
            self._protocol_error("socketio", detail, now, None)

    def _drop_namespace(self, namespace: str, state: _Namespace, now: float) -> None:
        """The server disconnected ``namespace``; the last one ends the session for good."""
        if all(other is state or other.sid is None for other in self._namespaces.values()):
            self._leave(SERVER_DISCONNECT, now)
            return
        state.sid, state.dropped = None, True
        self._emit(SocketIODisconnected(namespace, SERVER_DISCONNECT))
        error = CallError(f"the server disconnected {namespace}")
        waiting = [entry[2] for entry in state.queue]
        for call_id in [*state.in_flight, *waiting]:
            if call_id is not None:
                self._fail_call(call_id, error)
        state.queue.clear()
        state.in_flight = []

    def _flush_namespace(self, namespace: str) -> None:
        state = self._namespaces[namespace]
        while state.sid is not None and state.queue and not self._backlog_full:
            messages, ack_id, call_id = state.queue.popleft()
            limit = self._max_payload
            if limit is not None and any(_size(message) > limit for message in messages):
                reason = f"larger than the server's maxPayload ({limit})"
                if call_id is None:
                    self._emit(SendFailed(tuple(messages), reason))
                else:
                    self._fail_call(call_id, CallError(f"the emit is {reason}"))
                continue
            self._send_emit(namespace, messages, ack_id, call_id)

    def _send_emit(
        self, namespace: str, messages: list[str | bytes], ack_id: int | None, call_id: int | None
    ) -> None:
        if call_id is not None:
            self._bind_call(call_id, (namespace, ack_id))
            in_flight = self._namespaces[namespace].in_flight
            if len(in_flight) >= _PRUNE_AT:
                in_flight[:] = [other for other in in_flight if self._call_pending(other)]
            in_flight.append(call_id)
        self._write_packet(messages)

    def _write_packet(self, messages: list[str | bytes]) -> None:
        """Write a packet's messages: its text, then its binary attachments."""
        for message in messages:
            self._write_message(message)


def _size(message: str | bytes) -> int:
    return len(message) if isinstance(message, bytes) else len(message.encode())
