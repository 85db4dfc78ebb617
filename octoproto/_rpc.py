"""The RPC dialect: rpc-websockets (JSON-RPC 2.0) and msgpack-rpc-websockets.

What the server expects and sends is in ``shared/protocols.md`` §2 and
:mod:`._rpc_wire`; what this module decides on top of the session engine:

* **Calls** are the engine's calls (:class:`~octoproto.CallSucceeded` /
  :class:`~octoproto.CallFailed`): a call in flight when the link drops fails
  at once with :class:`~octoproto.ConnectionLostError` (rpc-websockets leaves
  it hanging for ever); a timeout fails it with
  :class:`~octoproto.CallTimeoutError` ("reply timeout") and a reply that
  comes later is dropped and counted (``late_replies``).
* **Request ids** count from 1 and never repeat in one client (the server
  takes ``0`` for "no id"), unless ``generate_request_id`` makes them.
* **While disconnected** calls and notifications wait for the next
  connection when ``queue_while_disconnected`` is on (the default; calls
  still time out meanwhile, and fail when the session closes for good),
  or raise :class:`~octoproto.NotConnectedError` at once when it is off,
  as rpc-websockets does.
* **After a reconnect** the client logs in again (the params of the last
  successful :meth:`RpcClient.login`) and subscribes again to every event,
  in that order, before the session counts as up (:class:`Connected`) and
  waiting calls go out: a protected method must not overtake the login.
  A step that fails is reported (:class:`RpcRestoreFailed`); the session
  is up anyway.
* **Reconnects** follow rpc-websockets: a fixed ``reconnect_interval``,
  ``max_reconnects`` attempts in total (see :func:`rpc_reconnect_schedule`),
  and none after the server closes with 1000 (normal closure).
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ._calls import CallMatch
from ._config import ReconnectSchedule, SessionConfig
from ._errors import CallError, LocalProtocolError, NotConnectedError, SendQueueFullError
from ._events import Event
from ._frames import CLOSE_NORMAL
from ._handlers import HandlerRegistry
from ._rpc_wire import (
    Encoding,
    Notification,
    RequestId,
    Response,
    RpcCodec,
    RpcValueError,
    RpcWireError,
)
from ._session import SessionEngine, SessionState
from ._util import preview

__all__ = [
    "RpcAuthenticationError",
    "RpcClient",
    "RpcConfig",
    "RpcNotification",
    "RpcRestoreFailed",
    "RpcSubscriptionError",
    "rpc_reconnect_schedule",
]

#: rpc-websockets' subscription statuses that leave the socket subscribed.
_SUBSCRIBED = ("ok", "socket has already been subscribed to event")


def rpc_reconnect_schedule(
    reconnect_interval: float = 1.0, max_reconnects: int = 5
) -> ReconnectSchedule:
    """rpc-websockets' reconnect rule as a schedule: a fixed delay, a bounded count.

    ``max_reconnects`` counts connection attempts in total, the one that was
    lost included, as rpc-websockets does: 5 (its default) means up to 4
    redials after a drop, 1 none at all; 0 means redial for ever.
    ``reconnect_interval`` is in seconds (rpc-websockets takes milliseconds).
    """
    if isinstance(max_reconnects, bool) or not isinstance(max_reconnects, int):
        raise LocalProtocolError(f"max_reconnects must be an int, not {max_reconnects!r}")
    if max_reconnects < 0:
        raise LocalProtocolError(f"max_reconnects must be >= 0, not {max_reconnects}")
    attempts = None if max_reconnects == 0 else max_reconnects - 1
    return ReconnectSchedule.fixed(reconnect_interval, attempts)


@dataclass(frozen=True, kw_only=True)
class RpcConfig(SessionConfig):
    """Settings for an RPC client; see :class:`SessionConfig` for the rest.

    The URL's path is the server's namespace (``ws://host:port/chat``); its
    query (``?socket_id=name``) goes to the server as it is. The reconnect
    default is rpc-websockets' (:func:`rpc_reconnect_schedule`); any
    :class:`ReconnectSchedule` works, with backoff and jitter.
    ``queue_while_disconnected`` (default on) makes calls and notifications
    made while the link is down wait for the next connection.
    """

    #: When to dial again; rpc-websockets' rule by default (:func:`rpc_reconnect_schedule`).
    reconnect: ReconnectSchedule = field(default_factory=rpc_reconnect_schedule)
    #: ``"json"`` (text frames, rpc-websockets) or ``"msgpack"`` (binary frames).
    encoding: Encoding = "json"
    #: Makes each call's request id from ``(method, params)``: a non-empty
    #: ``str`` or an int from 1, unique among the calls in flight. ``None``:
    #: 1, 2, 3 ..., never repeating.
    generate_request_id: Callable[[str, object], RequestId] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        RpcCodec(self.encoding)  # refuse a bad encoding (or a missing msgpack) here
        if self.generate_request_id is not None and not callable(self.generate_request_id):
            raise LocalProtocolError("generate_request_id must be callable or None")


class RpcAuthenticationError(CallError):
    """:meth:`RpcClient.login` got a falsy result: the server refused the credentials."""


class RpcSubscriptionError(CallError):
    """Subscribing to (or unsubscribing from) one event got a status other than ``"ok"``.

    ``event`` is the event, ``status`` what the server said (``"provided
    event invalid"``, ``"not subscribed"`` ...; ``None`` when it said
    nothing about it).
    """

    def __init__(self, event: str, status: object) -> None:
        super().__init__(event, status)
        self.event = event
        self.status = status

    def __str__(self) -> str:
        return f"event {preview(self.event)}: {preview(self.status)}"


@dataclass(frozen=True, slots=True)
class RpcNotification(Event):
    """The server pushed event ``name`` (one the client subscribed to) with ``params``."""

    name: str
    #: As sent: ``[]``, an object (dict) or an array (list), usually.
    params: object

    @property
    def args(self) -> tuple[object, ...]:
        """``params`` as rpc-websockets hands them to a handler.

        An empty list or object is no argument, an object one argument,
        a list its items as arguments; anything else one argument.
        """
        params = self.params
        if isinstance(params, (list, dict)) and not params:
            return ()
        if isinstance(params, list):
            return tuple(params)
        return (params,)


@dataclass(frozen=True, slots=True)
class RpcRestoreFailed(Event):
    """After a reconnect, logging in again (``step="login"``) or subscribing again failed.

    The session is up all the same; ``error`` says what went wrong.
    """

    step: str
    error: CallError


class _Kind(enum.Enum):
    """What a request's reply means to the client."""

    CALL = "call"
    LOGIN = "login"
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    RESTORE_LOGIN = "restore login"
    RESTORE_SUBSCRIBE = "restore subscribe"


@dataclass(slots=True)
class _Request:
    #: The engine's call (0 for the client's own restore requests).
    call_id: int
    request_id: RequestId
    message: dict[str, object]
    kind: _Kind = _Kind.CALL
    #: The events of a (un)subscribe; one given as a str is ``single``.
    events: tuple[str, ...] = ()
    single: bool = False


@dataclass(slots=True)
class _Waiting:
    """Requests made while disconnected: one, or a batch, and their encoded frame."""

    requests: list[_Request]
    batch: bool
    payload: str | bytes


_NO_LOGIN = object()


class RpcClient(SessionEngine):
    """A client of an rpc-websockets (or msgpack-rpc-websockets) server.

    Inputs beyond the engine's: :meth:`call`, :meth:`call_batch`,
    :meth:`notify`, :meth:`login`, :meth:`list_methods`, :meth:`subscribe`,
    :meth:`unsubscribe` (each takes ``now=``; calls return call ids whose
    outcome is a :class:`~octoproto.CallSucceeded` or
    :class:`~octoproto.CallFailed` event). ``disconnect()`` closes with 1000
    by default, like rpc-websockets' ``close()``. Server events arrive as
    :class:`RpcNotification`.
    """

    def __init__(self, config: RpcConfig) -> None:
        super().__init__(config)
        #: Handlers by notification name (and ``"open"``, ``"close"``,
        #: ``"error"``), which the adapters run; the core never calls them.
        self.handlers: HandlerRegistry[Event] = HandlerRegistry()
        self._rpc_config = config
        self._wire = RpcCodec(config.encoding)
        self._last_request_id = 0
        # Whether requests go straight out: the session is up and restored.
        self._live = False
        self._waiting: deque[_Waiting] = deque()
        # Requests on the current connection waiting for a reply, by id, and
        # the request id of each call among them.
        self._in_flight: dict[RequestId, _Request] = {}
        self._request_of_call: dict[int, RequestId] = {}
        # What a reconnect restores: the last successful login's params and
        # the events subscribed to (an ordered set).
        self._login_params: object = _NO_LOGIN
        self._subscriptions: dict[str, None] = {}
        self._restore_steps: deque[_Kind] = deque()

    @property
    def subscriptions(self) -> tuple[str, ...]:
        """The events the client is subscribed to (re-subscribed after a reconnect)."""
        return tuple(self._subscriptions)

    # --- inputs ---------------------------------------------------------------

    def call(
        self, method: str, params: object = None, *, now: float, timeout: float | None = None
    ) -> int:
        """Call ``method`` with ``params`` (a list, tuple, mapping or ``None``); its call id.

        ``timeout`` in seconds (``None``: none, as in rpc-websockets). The
        outcome is a :class:`~octoproto.CallSucceeded` with the result or a
        :class:`~octoproto.CallFailed` with an :class:`RpcError` (the
        server's), a timeout or a lost connection. Raises
        :class:`RpcValueError` for params the encoding cannot carry and
        :class:`~octoproto.NotConnectedError` when the call cannot wait.
        """
        self._advance(now)
        return self._start([(method, params)], _Kind.CALL, (), now, timeout, batch=False)[0]

    def call_batch(
        self,
        calls: Sequence[tuple[str, object]],
        *,
        now: float,
        timeout: float | None = None,
    ) -> list[int]:
        """Send several calls as one batch (one frame); their call ids, in order.

        Each call ends on its own, like one from :meth:`call`. All of them are
        checked first: if one cannot be sent, none is.
        """
        self._advance(now)
        calls = list(calls)
        if not calls:
            raise LocalProtocolError("a batch needs at least one call")
        for item in calls:
            if not (isinstance(item, tuple) and len(item) == 2):
                raise LocalProtocolError(
                    f"a batch holds (method, params) pairs, not {preview(item)}"
                )
        return self._start(calls, _Kind.CALL, (), now, timeout, batch=True)

    def notify(self, method: str, params: object = None, *, now: float) -> None:
        """Send a notification: a request with no id, which gets no reply.

        While disconnected it waits in the engine's queue (bounded by
        ``max_queued_messages``) if ``queue_while_disconnected`` is on.
        """
        self._advance(now)
        payload = self._encode(self._wire.request(method, params, None))
        self._send_user_message(payload)

    def login(self, params: object, *, now: float, timeout: float | None = None) -> int:
        """Log in with ``params`` (``rpc.login``); its call id.

        A falsy result fails the call with :class:`RpcAuthenticationError`.
        After a successful login the same params log in again after every
        reconnect.
        """
        self._advance(now)
        return self._start([("rpc.login", params)], _Kind.LOGIN, (), now, timeout, batch=False)[0]

    def list_methods(self, *, now: float, timeout: float | None = None) -> int:
        """Ask for the names of the namespace's methods (``__listMethods``); its call id."""
        self._advance(now)
        return self._start([("__listMethods", None)], _Kind.CALL, (), now, timeout, batch=False)[0]

    def subscribe(
        self, events: str | Sequence[str], *, now: float, timeout: float | None = None
    ) -> int:
        """Subscribe to one event (a ``str``) or several (a list); its call id.

        The result maps each event to the server's status. For one event a
        status other than ``"ok"`` fails the call with
        :class:`RpcSubscriptionError`; for a list the map is the result,
        whatever it says. Subscribed events are subscribed to again after
        every reconnect.
        """
        self._advance(now)
        names = _event_names(events)
        return self._start(
            [("rpc.on", list(names))],
            _Kind.SUBSCRIBE,
            names,
            now,
            timeout,
            batch=False,
            single=isinstance(events, str),
        )[0]

    def unsubscribe(
        self, events: str | Sequence[str], *, now: float, timeout: float | None = None
    ) -> int:
        """Unsubscribe from one event or several, as :meth:`subscribe` does; its call id.

        The events are no longer subscribed to after a reconnect, whatever
        the server answers.
        """
        self._advance(now)
        names = _event_names(events)
        call_id = self._start(
            [("rpc.off", list(names))],
            _Kind.UNSUBSCRIBE,
            names,
            now,
            timeout,
            batch=False,
            single=isinstance(events, str),
        )[0]
        for name in names:
            self._subscriptions.pop(name, None)
        return call_id

    # --- engine hooks ---------------------------------------------------------

    def _on_websocket_open(self, now: float) -> None:
        if self._login_params is not _NO_LOGIN:
            self._restore_steps.append(_Kind.RESTORE_LOGIN)
        if self._subscriptions:
            self._restore_steps.append(_Kind.RESTORE_SUBSCRIBE)
        self._next_restore_step(now)

    def _on_websocket_message(self, data: str | bytes, now: float) -> None:
        try:
            messages = self._wire.decode(data)
        except RpcWireError as exc:
            # rpc-websockets drops what it cannot read and carries on: so do we.
            self._protocol_error("rpc", str(exc), now, None)
            return
        for message in messages:
            if isinstance(message, Notification):
                self._emit(RpcNotification(message.name, message.params))
            else:
                self._on_response(message, now)

    def _on_connection_lost(self, now: float) -> None:
        # The engine has failed the calls in flight; their requests go too.
        self._live = False
        self._in_flight.clear()
        self._request_of_call.clear()
        self._restore_steps.clear()

    def _on_call_expired(self, call_id: int, now: float) -> None:
        request_id = self._request_of_call.pop(call_id, None)
        if request_id is not None:
            del self._in_flight[request_id]
            return
        # A call still waiting for a connection: its entry goes (the calls of
        # a batch share one deadline, so they expire together).
        for entry in self._waiting:
            if any(request.call_id == call_id for request in entry.requests):
                self._waiting.remove(entry)
                return

    def _reconnects_after(self, code: int) -> bool:
        # rpc-websockets redials after any close but a normal one (1000) the
        # server sends: then the session closes for good.
        return code != CLOSE_NORMAL

    # --- internals ------------------------------------------------------------

    def _encode(self, message: dict[str, object] | list[dict[str, object]]) -> str | bytes:
        payload = self._wire.encode(message)
        if len(payload) > self._config.max_message_size:
            raise RpcValueError(f"a message of {len(payload)} bytes exceeds max_message_size")
        return payload

    def _start(
        self,
        calls: list[tuple[str, object]],
        kind: _Kind,
        events: tuple[str, ...],
        now: float,
        timeout: float | None,
        *,
        batch: bool,
        single: bool = False,
    ) -> list[int]:
        """Check, encode, open and send (or queue) requests; their call ids.

        Everything that can refuse them runs before any state changes.
        """
        if self._state in (SessionState.CLOSED, SessionState.CLOSING):
            raise NotConnectedError("the session is closed; call connect() first")
        if not self._live and not self._config.queue_while_disconnected:
            raise NotConnectedError("not connected, and queue_while_disconnected is off")
        room = self._config.max_pending_calls - self.pending_calls
        if len(calls) > room:
            raise SendQueueFullError(
                f"{self.pending_calls} calls already wait for replies (max_pending_calls)"
            )
        generate = self._rpc_config.generate_request_id
        last_id = self._last_request_id
        ids: list[RequestId] = []
        messages = []
        for method, params in calls:
            if generate is None:
                last_id += 1
                request_id: RequestId = last_id
            else:
                request_id = generate(method, params)
                if request_id in ids or self._id_in_use(request_id):
                    # Its reply could not be told from the other call's.
                    raise RpcValueError(f"request id {preview(request_id)} is already in use")
            messages.append(self._wire.request(method, params, request_id))
            ids.append(request_id)
        payload = self._encode(messages if batch else messages[0])
        if not self.pending_calls:
            self._waiting.clear()  # only calls that ended are left in it
        # The engine checks the timeout as it opens the first call: a bad one
        # is refused before anything changes, and then nothing else can be.
        requests = [
            _Request(self._open_call(timeout, now), request_id, message, kind, events, single)
            for request_id, message in zip(ids, messages, strict=True)
        ]
        self._last_request_id = last_id
        if self._live:
            self._send(requests, payload)
        else:
            self._waiting.append(_Waiting(requests, batch, payload))
        return [request.call_id for request in requests]

    def _id_in_use(self, request_id: RequestId) -> bool:
        """Whether a pending call has ``request_id`` (sent, or waiting to be)."""
        if request_id in self._in_flight:
            return True
        return any(
            request.request_id == request_id and self._call_pending(request.call_id)
            for entry in self._waiting
            for request in entry.requests
        )

    def _send(self, requests: list[_Request], payload: str | bytes) -> None:
        for request in requests:
            self._in_flight[request.request_id] = request
            if request.call_id:
                self._bind_call(request.call_id, request.request_id)
                self._request_of_call[request.call_id] = request.request_id
        self._write_message(payload)

    def _flush_waiting(self) -> None:
        while self._waiting:
            entry = self._waiting.popleft()
            # Calls that failed since (the session closed for good) are not
            # sent; the calls of an entry end together.
            if self._call_pending(entry.requests[0].call_id):
                self._send(entry.requests, entry.payload)

    def _next_restore_step(self, now: float) -> None:
        if not self._restore_steps:
            self._session_ready(now)
            self._live = True
            self._accept_user_messages()
            self._flush_waiting()
            return
        kind = self._restore_steps[0]
        # The client's own counter, whatever generate_request_id says: these
        # are the only requests on the connection until they are answered.
        self._last_request_id += 1
        if kind is _Kind.RESTORE_LOGIN:
            message = self._wire.request("rpc.login", self._login_params, self._last_request_id)
            request = _Request(0, self._last_request_id, message, kind)
        else:
            events = tuple(self._subscriptions)
            message = self._wire.request("rpc.on", list(events), self._last_request_id)
            request = _Request(0, self._last_request_id, message, kind, events)
        self._send([request], self._wire.encode(message))

    def _on_response(self, response: Response, now: float) -> None:
        request = self._in_flight.pop(response.id, None)  # type: ignore[arg-type]
        if request is None:
            if self._settle_call(response.id) is CallMatch.UNKNOWN:
                what = "a result" if response.error is None else "an error"
                detail = "" if response.error is None else f": {response.error}"
                self._protocol_error(
                    "rpc", f"{what} for no request (id {preview(response.id)}){detail}", now, None
                )
            return
        if not request.call_id:
            self._restore_reply(request, response, now)
            return
        del self._request_of_call[request.call_id]
        result, error = self._outcome(request, response)
        self._settle_call(request.request_id, result=result, error=error)

    def _outcome(self, request: _Request, response: Response) -> tuple[object, CallError | None]:
        if response.error is not None:
            return None, response.error
        result = response.result
        if request.kind is _Kind.LOGIN:
            if not result:
                return None, RpcAuthenticationError(f"authentication failed: {preview(result)}")
            self._login_params = request.message.get("params")
            return result, None
        if request.kind is _Kind.CALL:
            return result, None
        statuses = result if isinstance(result, dict) else {}
        if request.kind is _Kind.SUBSCRIBE:
            for name in request.events:
                if statuses.get(name) in _SUBSCRIBED:
                    self._subscriptions[name] = None
        if request.single and statuses.get(request.events[0]) != "ok":
            name = request.events[0]
            return None, RpcSubscriptionError(name, statuses.get(name))
        return result, None

    def _restore_reply(self, request: _Request, response: Response, now: float) -> None:
        self._restore_steps.popleft()
        if request.kind is _Kind.RESTORE_LOGIN:
            if response.error is not None:
                self._emit(RpcRestoreFailed("login", response.error))
            elif not response.result:
                refused = RpcAuthenticationError(
                    f"authentication failed: {preview(response.result)}"
                )
                self._emit(RpcRestoreFailed("login", refused))
        elif response.error is not None:
            self._emit(RpcRestoreFailed("subscribe", response.error))
        else:
            statuses = response.result if isinstance(response.result, dict) else {}
            for name in request.events:
                if statuses.get(name) not in _SUBSCRIBED:
                    status = statuses.get(name)
                    self._emit(RpcRestoreFailed("subscribe", RpcSubscriptionError(name, status)))
        self._next_restore_step(now)


def _event_names(events: str | Sequence[str]) -> tuple[str, ...]:
    names = (events,) if isinstance(events, str) else tuple(events)
    if not names or not all(isinstance(name, str) and name for name in names):
        raise LocalProtocolError(
            f"events must be a non-empty str or a non-empty list of them, not {preview(events)}"
        )
    return names
