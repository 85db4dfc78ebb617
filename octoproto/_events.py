"""Events: what the core tells its user.

Every event is a frozen dataclass. Events never carry secrets: no password,
API key, session id or ``auth`` message appears in any field or ``repr``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ._errors import CallError


class Event:
    """Base class of every event the core emits."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class HandshakeResponse:
    """The server's answer to the WebSocket upgrade request (Qore's ``connect()`` result)."""

    status_code: int
    reason: str
    http_version: str
    #: Header fields in the order received, names lower-cased.
    headers: tuple[tuple[str, str], ...]
    #: The subprotocol the server chose, if any.
    subprotocol: str | None = None
    #: The extensions in force (e.g. ``("permessage-deflate",)``).
    extensions: tuple[str, ...] = ()
    #: The body of a refusal (e.g. a 403's explanation); empty for a 101.
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (case-insensitive); repeated fields are joined."""
        wanted = name.lower()
        values = [value for key, value in self.headers if key == wanted]
        return ", ".join(values) if values else None


# --- the session's life -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connected(Event):
    """The session is up and ready for messages.

    For a plain WebSocket that is the end of the handshake; for OctoPrint it
    is the server's ``connected`` message (the connect timeout covers both).
    """

    handshake: HandshakeResponse


@dataclass(frozen=True, slots=True)
class ConnectFailed(Event):
    """A connection attempt failed before the session was up."""

    reason: str
    #: True when the attempt was abandoned by the connect timeout.
    timed_out: bool = False
    #: The handshake response when the server answered with something else than 101.
    handshake: HandshakeResponse | None = None


@dataclass(frozen=True, slots=True)
class Disconnected(Event):
    """An established session ended, or the user's ``disconnect()`` took effect.

    Every ``disconnect()`` call that finds the session not yet closed ends in
    exactly one of these, whatever the state. ``code`` is the WebSocket close
    code: the one from the server's close frame, 1006 when the transport was
    lost without one, or the code the user (or the core, for a protocol fault)
    closed with.
    """

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class ReconnectScheduled(Event):
    """The core will dial again after ``delay`` seconds; this is attempt ``attempt`` (from 1).

    Call ``disconnect()`` to stop, or ``reconnect(now)`` to dial at once.
    """

    attempt: int
    delay: float


@dataclass(frozen=True, slots=True)
class ReconnectFailed(Event):
    """The reconnect schedule is exhausted: the core gave up after ``attempts`` attempts."""

    attempts: int


@dataclass(frozen=True, slots=True)
class ProtocolError(Event):
    """The server sent something the core could not accept.

    ``layer`` names where it was found (``"http"``, ``"websocket"``,
    ``"sockjs"``, ``"json"``, ``"octoprint"`` ...). What happens next is
    reported by the events that follow (a close and a reconnect, usually).
    """

    layer: str
    detail: str


@dataclass(frozen=True, slots=True)
class LimitExceeded(Event):
    """A configured bound was hit; the input that would exceed it was refused.

    ``max_send_backlog`` refuses nothing: the server is not reading what we
    send, and user messages wait in the outbound queue until it does (or
    until the stall ends the connection).
    """

    limit: str
    size: int
    maximum: int


@dataclass(frozen=True, slots=True)
class SendFailed(Event):
    """Messages queued for sending were given up (the session closed for good).

    They are handed back so the caller can decide what to do with them.
    """

    messages: tuple[str | bytes, ...]
    reason: str


# --- calls (RPC requests, Socket.IO acks) --------------------------------------


@dataclass(frozen=True, slots=True)
class CallSucceeded(Event):
    """The call ``call_id`` got its reply: ``result`` (an RPC result, a Socket.IO ack's args)."""

    call_id: int
    result: object


@dataclass(frozen=True, slots=True)
class CallFailed(Event):
    """The call ``call_id`` ended without a result: ``error`` says why.

    A :class:`~octoproto.CallTimeoutError`, a
    :class:`~octoproto.ConnectionLostError`, or the dialect's own subclass
    of :class:`~octoproto.CallError` for an error the server answered.
    """

    call_id: int
    error: CallError


# --- usage warnings (Qore WebSocketClient) -----------------------------------


@dataclass(frozen=True, slots=True)
class OperationWarning(Event):
    """An operation took at least ``warning_ms`` (Qore's SOCKET-OPERATION-WARNING)."""

    operation: str
    us: int
    timeout: int
    arg: object = None


@dataclass(frozen=True, slots=True)
class ThroughputWarning(Event):
    """A transfer ran at or below ``warning_bs`` bytes/s (Qore's SOCKET-THROUGHPUT-WARNING)."""

    direction: str
    bytes: int
    us: int
    bytes_sec: float
    threshold: int
    arg: object = None


# --- plain WebSocket -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextMessage(Event):
    """A complete text message."""

    text: str


@dataclass(frozen=True, slots=True)
class BinaryMessage(Event):
    """A complete binary message."""

    data: bytes


# --- OctoPrint -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PushMessage(Event):
    """One OctoPrint push message: ``type`` is the key (``current``, ``event`` ...)."""

    type: str
    data: object


@dataclass(frozen=True, slots=True)
class LoginSucceeded(Event):
    """``POST /api/login`` succeeded for ``user`` (``mechanism``: ``apikey`` or ``password``)."""

    user: str
    mechanism: str


@dataclass(frozen=True, slots=True)
class LoginFailed(Event):
    """``POST /api/login`` failed.

    ``status`` is the HTTP status, or 0 when no response came. ``retry_in``
    is when the core tries again (seconds), or ``None`` when it will not try
    again by itself (wrong credentials: OctoPrint rate-limits them).
    """

    status: int
    reason: str
    retry_in: float | None


@dataclass(frozen=True, slots=True)
class Authenticated(Event):
    """The socket is authenticated as ``user`` (the first ``history`` after ``auth``)."""

    user: str


@dataclass(frozen=True, slots=True)
class ReauthRequired(Event):
    """The server asked for re-authentication (``reason``: logout, stale, removed, modified).

    ``relogin`` tells whether the core is logging in again by itself.
    """

    reason: str
    relogin: bool


@dataclass(frozen=True, slots=True)
class ThrottleChanged(Event):
    """The throttle factor changed: ``current`` now comes at most every ``factor`` × 0.5 s."""

    factor: int
    previous: int


# --- the batch path ---------------------------------------------------------------

#: An item of :meth:`~octoproto.SessionEngine.next_batch`: an event, or the bare
#: payload of a plain WebSocket message (``str`` for text, ``bytes`` for binary).
BatchItem = Event | str | bytes

# TextMessage and BinaryMessage are frozen dataclasses with slots, whose
# __init__ stores the field through object.__setattr__ (a third of the cost of
# the object). as_event() sets the slot itself: the same frozen, equal object.
_new = object.__new__
_set_text: Callable[[TextMessage, str], None] = TextMessage.__dict__["text"].__set__
_set_data: Callable[[BinaryMessage, bytes], None] = BinaryMessage.__dict__["data"].__set__


def as_event(item: BatchItem) -> Event:
    """The event for an item of a batch: a bare ``str`` is a :class:`TextMessage`,
    bare ``bytes`` a :class:`BinaryMessage`, and an event is itself."""
    kind = type(item)
    if kind is str:
        text: TextMessage = _new(TextMessage)
        _set_text(text, item)  # type: ignore[arg-type]
        return text
    if kind is bytes:
        binary: BinaryMessage = _new(BinaryMessage)
        _set_data(binary, item)  # type: ignore[arg-type]
        return binary
    return item  # type: ignore[return-value]
