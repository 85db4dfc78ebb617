"""The Socket.IO dialect's surface on every adapter (``connect_socketio``), python-socketio style.

Each adapter's ``SocketIOSession`` is its ``Session`` driving a
:class:`~octoproto.SocketIOClient` plus a mixin from here: :class:`AsyncSocketIO`
(trio and asyncio: ``await sio.emit(...)``, handlers may be coroutines) or
:class:`BlockingSocketIO` (methods block their thread; handlers run on the
loop thread). What both share lives once in :class:`SocketIOHandling`:
the handler registry (:class:`Handlers`: ``@sio.event``, ``@sio.on(name,
namespace=...)``, class-based :class:`ClientNamespace`), the dispatch of
events to handlers, acks from handlers' return values, and the outcome of
the first connection attempt that ``connect_socketio`` waits for.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar, overload

from octoproto import (
    BatchItem,
    CallFailed,
    CallSucceeded,
    Connected,
    ConnectFailed,
    ReconnectSchedule,
    SocketIOClient,
    SocketIOConfig,
    SocketIOConnected,
    SocketIOConnectError,
    SocketIODisconnected,
    SocketIOEvent,
    socketio_reconnect_schedule,
)

from ._common import DEFAULT_MAX_SEND_BACKLOG, BaseSession, CallOutcome, Transport

__all__ = [
    "AsyncSocketIO",
    "BlockingSocketIO",
    "ClientNamespace",
    "Handlers",
    "SocketIOHandling",
    "socketio_core",
]

T = TypeVar("T", bound=Transport)
F = TypeVar("F", bound=Callable[..., Any])

#: Handler errors (ERROR); at DEBUG, every event received and emitted, by name
#: only (python-socketio's ``logger=True``): arguments may hold secrets.
logger = logging.getLogger("octoproto.socketio")

#: The handler names python-socketio reserves for connection events.
_SPECIAL = ("connect", "connect_error", "disconnect")


class ClientNamespace:
    """Class-based handlers for one namespace: a method ``on_<event>`` per event.

    Register an instance with ``sio.register_namespace(MyNamespace("/chat"))``;
    ``on_connect()``, ``on_connect_error(data)`` and ``on_disconnect(reason)``
    work as the special handlers do. ``self.client`` is the session once
    registered; :meth:`emit` and :meth:`call` default to this namespace.
    """

    def __init__(self, namespace: str = "/") -> None:
        self.namespace = namespace
        self.client: Any = None

    def handler(self, event: str) -> Callable[..., Any] | None:
        """The method that handles ``event``, or ``None``."""
        method = getattr(self, f"on_{event}", None)
        return method if callable(method) else None

    def emit(self, event: str, data: object = None, namespace: str | None = None, **kw: Any) -> Any:
        """The session's ``emit``, on this namespace unless told otherwise."""
        return self.client.emit(event, data, namespace=namespace or self.namespace, **kw)

    def call(self, event: str, data: object = None, namespace: str | None = None, **kw: Any) -> Any:
        """The session's ``call``, on this namespace unless told otherwise."""
        return self.client.call(event, data, namespace=namespace or self.namespace, **kw)


class Handlers:
    """Handlers by namespace and event name (python-socketio's registration surface).

    Build one before connecting so that no event is missed (the server's
    connect handler may emit at once), and pass it as ``handlers=``; the
    session's own ``on``/``event``/``register_namespace`` add to the same one.
    """

    def __init__(self) -> None:
        self._functions: dict[tuple[str, str], Callable[..., Any]] = {}
        self._classes: dict[str, ClientNamespace] = {}

    @overload
    def on(
        self, event: str, handler: None = None, namespace: str | None = None
    ) -> Callable[[F], F]: ...
    @overload
    def on(self, event: str, handler: F, namespace: str | None = None) -> F: ...
    def on(self, event: str, handler: F | None = None, namespace: str | None = None) -> Any:
        """Register ``handler`` for ``event`` (``"*"``: any event); also a decorator."""

        def register(function: F) -> F:
            self._functions[namespace or "/", event] = function
            return function

        return register if handler is None else register(handler)

    def event(self, handler: F | None = None, namespace: str | None = None) -> Any:
        """Register a function under its name (``@sio.event``, ``@sio.event(namespace=...)``)."""
        if handler is None:
            return lambda function: self.on(function.__name__, function, namespace)
        return self.on(handler.__name__, handler, namespace)

    def register_namespace(self, namespace_handler: ClientNamespace, client: object = None) -> None:
        """Register a :class:`ClientNamespace` (its ``on_<event>`` methods)."""
        namespace_handler.client = client
        self._classes[namespace_handler.namespace] = namespace_handler

    def attach(self, client: object) -> None:
        """Give every registered :class:`ClientNamespace` the session."""
        for namespace_handler in self._classes.values():
            namespace_handler.client = client

    def namespaces(self) -> tuple[str, ...]:
        """The namespaces that have handlers (python-socketio connects to those by default)."""
        names = {namespace for namespace, _event in self._functions} | set(self._classes)
        return tuple(sorted(names)) or ("/",)

    def find(self, namespace: str, event: str) -> tuple[Callable[..., Any] | None, bool]:
        """The handler of ``event`` on ``namespace``, and whether it is the catch-all."""
        namespace_handler = self._classes.get(namespace)
        if namespace_handler is not None:
            method = namespace_handler.handler(event)
            if method is not None:
                return method, False
        function = self._functions.get((namespace, event))
        if function is not None or event in _SPECIAL:
            return function, False
        return self._functions.get((namespace, "*")), True

    def __bool__(self) -> bool:
        return bool(self._functions or self._classes)


def socketio_core(
    url: str,
    *,
    handlers: Handlers | None = None,
    headers: Any = (),
    auth: object = None,
    namespaces: str | Sequence[str] | None = None,
    socketio_path: str = "socket.io",
    reconnection: bool = True,
    reconnection_attempts: int = 0,
    reconnection_delay: float = 1.0,
    reconnection_delay_max: float = 5.0,
    randomization_factor: float = 0.5,
    **options: Any,
) -> SocketIOClient:
    """Build the core a Socket.IO session drives, from python-socketio's ``connect`` options.

    ``namespaces``: by default the namespaces ``handlers`` has handlers for
    (``"/"`` when none), as python-socketio does. The ``reconnection*``
    options are python-socketio's (see
    :func:`~octoproto.socketio_reconnect_schedule`); ``reconnect=`` (a
    :class:`~octoproto.ReconnectSchedule`) overrides them. ``options`` are
    :class:`~octoproto.SocketIOConfig` fields; the entropy source is
    :func:`os.urandom` unless ``entropy=`` is given.
    """
    if namespaces is None:
        namespaces = handlers.namespaces() if handlers is not None else ("/",)
    elif isinstance(namespaces, str):
        namespaces = (namespaces,)
    schedule: ReconnectSchedule = options.pop("reconnect", None) or (
        socketio_reconnect_schedule(
            reconnection_delay, reconnection_delay_max, randomization_factor, reconnection_attempts
        )
        if reconnection
        else ReconnectSchedule.never()
    )
    options.setdefault("entropy", os.urandom)
    options.setdefault("max_send_backlog", DEFAULT_MAX_SEND_BACKLOG)
    config = SocketIOConfig(
        url=url,
        headers=headers or (),
        auth=auth,
        namespaces=namespaces,
        socketio_path=socketio_path,
        reconnect=schedule,
        **options,
    )
    return SocketIOClient(config)


def _args(data: object) -> tuple[object, ...]:
    """python-socketio's ``data``: a tuple is several arguments, ``None`` none, else one."""
    if data is None:
        return ()
    return data if isinstance(data, tuple) else (data,)


def _ack_args(result: object) -> list[object]:
    """A handler's return value as ack arguments (tuples spread, ``None``: none)."""
    return list(_args(result))


def _call_result(args: tuple[object, ...]) -> object:
    """python-socketio's ``call`` result: one argument as it is, several as a tuple."""
    if not args:
        return None
    return args[0] if len(args) == 1 else args


def _takes_an_argument(function: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in parameters
    )


class _Settable(Protocol):
    """The event each adapter's ``connect_socketio`` waits on (trio's, asyncio's, threading's)."""

    def set(self) -> None: ...


class SocketIOHandling(BaseSession[T, SocketIOClient]):
    """What the async and blocking Socket.IO sessions share: handlers, dispatch, the sids."""

    _handlers: Handlers
    #: The first connection attempt's outcome: None while unknown, "" when connected.
    _first_outcome: str | None
    #: Set once that outcome is known: ``connect_socketio`` waits for it.
    _connect_done: _Settable

    def _setup_socketio(self, handlers: Handlers | None, connect_done: _Settable) -> None:
        self._connect_done = connect_done
        self._handlers = handlers if handlers is not None else Handlers()
        self._handlers.attach(self)
        self._first_outcome = None
        # A namespace's refusal was reported to its connect_error handler: the
        # ConnectFailed that follows for the same attempt is not reported again.
        self._refusal_reported = False

    # --- python-socketio's surface -----------------------------------------------

    @property
    def sid(self) -> str | None:
        """The first namespace's session id while connected."""
        return self.core.sid

    def get_sid(self, namespace: str | None = None) -> str | None:
        """The session id of ``namespace`` (default ``"/"``) while it is connected."""
        return self.core.get_sid(namespace or "/")

    @property
    def connected(self) -> bool:
        """Whether every namespace is connected."""
        return self.core.is_open

    @property
    def namespaces(self) -> tuple[str, ...]:
        """The namespaces connected right now."""
        return self.core.connected_namespaces

    @overload
    def on(
        self, event: str, handler: None = None, namespace: str | None = None
    ) -> Callable[[F], F]: ...
    @overload
    def on(self, event: str, handler: F, namespace: str | None = None) -> F: ...
    def on(self, event: str, handler: F | None = None, namespace: str | None = None) -> Any:
        """Register a handler for ``event`` on ``namespace``; also a decorator."""
        with self._handlers_lock:
            return self._handlers.on(event, handler, namespace)

    def event(self, handler: F | None = None, namespace: str | None = None) -> Any:
        """Register a function under its name: ``@sio.event`` or ``@sio.event(namespace=...)``."""
        with self._handlers_lock:
            return self._handlers.event(handler, namespace)

    def register_namespace(self, namespace_handler: ClientNamespace) -> None:
        """Register a class-based namespace handler."""
        with self._handlers_lock:
            self._handlers.register_namespace(namespace_handler, self)

    # --- dispatch ----------------------------------------------------------------

    def _run_handlers(self, batch: list[BatchItem]) -> bool:
        ran = False
        for item in batch:
            if self._first_outcome is None:
                self._note_first_outcome(item)
            ran = self._handle(item) or ran
        return ran and bool(self._handlers)

    def _note_first_outcome(self, item: BatchItem) -> None:
        if isinstance(item, Connected):
            self._first_outcome = ""
        elif isinstance(item, ConnectFailed):
            self._first_outcome = item.reason
        else:
            return
        self._connect_done.set()

    def _first_connect_error(self, wait_timeout: float) -> ConnectionError | None:
        """What ``connect_socketio`` raises after waiting: ``None`` when the session is up.

        As python-socketio's ``connect()``: a first attempt that failed (or
        did not finish within ``wait_timeout`` seconds) is an error, not
        retried in the background.
        """
        outcome = self._first_outcome
        if outcome == "":
            return None
        if outcome is None:
            return ConnectionError(f"not connected within wait_timeout ({wait_timeout} s)")
        return ConnectionError(outcome)

    def _handle(self, item: BatchItem) -> bool:
        handlers = self._handlers
        if isinstance(item, SocketIOEvent):
            logger.debug("received event %r [%s]", item.event, item.namespace)
            handler, catch_all = handlers.find(item.namespace, item.event)
            if handler is None:
                if item.ack_id is not None:  # the server waits: answer with nothing
                    self._feed(self.core.ack, item.namespace, item.ack_id, [])
                return False
            args = (item.event, *item.args) if catch_all else item.args
            self._invoke(handler, args, item.namespace, item.ack_id)
        elif isinstance(item, SocketIOConnected):
            logger.debug("namespace %s connected", item.namespace)
            self._special(item.namespace, "connect", ())
        elif isinstance(item, SocketIOConnectError):
            self._refusal_reported = True
            self._special(item.namespace, "connect_error", (item.data,))
        elif isinstance(item, SocketIODisconnected):
            logger.debug("namespace %s disconnected: %s", item.namespace, item.reason)
            self._special(item.namespace, "disconnect", (item.reason,))
        elif isinstance(item, ConnectFailed):
            if self._refusal_reported:
                self._refusal_reported = False
                return True
            # A transport failure fails every namespace, as in python-socketio.
            for namespace in self.core.config.namespaces:  # type: ignore[attr-defined]
                self._special(namespace, "connect_error", (item.reason,))
        else:
            return False
        return True

    def _special(self, namespace: str, name: str, args: tuple[object, ...]) -> None:
        handler, _catch_all = self._handlers.find(namespace, name)
        if handler is None:
            return
        if name == "disconnect" and not _takes_an_argument(handler):
            args = ()  # python-socketio before 5.12: disconnect() took no reason
        self._invoke(handler, args, namespace, None)

    def _invoke(
        self,
        handler: Callable[..., Any],
        args: tuple[object, ...],
        namespace: str,
        ack_id: int | None,
    ) -> None:
        try:
            result = handler(*args)
        except Exception:
            _log_handler_error(handler, namespace)
            return
        if inspect.isawaitable(result):
            self._run_async_handler(result, handler, namespace, ack_id)
        elif ack_id is not None:
            self._send_ack(namespace, ack_id, result)

    def _send_ack(self, namespace: str, ack_id: int, result: object) -> None:
        try:
            self._feed(self.core.ack, namespace, ack_id, _ack_args(result))
        except Exception:
            logger.exception("the ack of event %s on %s could not be sent", ack_id, namespace)

    def _run_async_handler(
        self, awaitable: Any, handler: Callable[..., Any], namespace: str, ack_id: int | None
    ) -> None:
        """A coroutine handler (async adapters run it as a task; blocking refuses it)."""
        awaitable.close()
        logger.error(
            "handler %s is a coroutine function: the blocking adapter takes plain functions",
            _name(handler),
        )

    def _emit_with_callback(
        self, event: str, args: tuple[object, ...], namespace: str, callback: Callable[..., Any]
    ) -> None:
        def settle(outcome: CallOutcome) -> None:
            if isinstance(outcome, CallSucceeded):
                assert isinstance(outcome.result, tuple)
                try:
                    callback(*outcome.result)
                except Exception:
                    _log_handler_error(callback, namespace)
            elif isinstance(outcome, CallFailed):
                logger.info("no ack for %r on %s: %s", event, namespace, outcome.error)

        self._start_call(settle, self.core.call, event, *args, namespace=namespace, timeout=None)


def _name(function: Callable[..., Any]) -> str:
    return f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', '?')}"


def _log_handler_error(handler: Callable[..., Any], namespace: str) -> None:
    logger.exception("Socket.IO handler %s on %s raised", _name(handler), namespace)


class AsyncSocketIO(SocketIOHandling[T]):
    """The python-socketio ``AsyncClient`` methods of the trio and asyncio sessions."""

    # Supplied by AsyncSession (first in the adapters' SocketIOSession bases).
    async def _request(self, method: Callable[..., int], *args: Any, **kwargs: Any) -> object:
        raise NotImplementedError

    def start_background_task(self, target: Callable[..., Any], *args: Any) -> None:
        """Run ``target(*args)`` (a coroutine function) as a task of the session.

        It ends with the session; an exception it raises is logged.
        """

        async def guarded() -> None:
            try:
                await target(*args)
            except Exception:
                logger.exception("background task %s raised", _name(target))

        self._start_task(guarded)

    def _start_task(self, target: Callable[[], Any]) -> None:
        raise NotImplementedError

    async def sleep(self, seconds: float = 0) -> None:
        """Sleep on the adapter's event loop."""
        raise NotImplementedError

    async def emit(
        self,
        event: str,
        data: object = None,
        namespace: str | None = None,
        callback: Callable[..., Any] | None = None,
    ) -> None:
        """Emit ``event`` (``data``: a tuple is several arguments); ``callback(*ack_args)``.

        While the namespace is not connected the emit waits in a bounded
        queue and goes out once it is (never ``BadNamespaceError``).
        """
        namespace = namespace or "/"
        logger.debug("emitting event %r [%s]", event, namespace)
        if callback is None:
            self._feed(self.core.emit, event, *_args(data), namespace=namespace)
        else:
            self._emit_with_callback(event, _args(data), namespace, callback)

    async def call(  # type: ignore[override]
        self, event: str, data: object = None, namespace: str | None = None, timeout: float = 60
    ) -> object:
        """Emit and wait for the ack: its argument (a tuple when several).

        Raises :class:`~octoproto.CallTimeoutError` after ``timeout`` seconds
        and :class:`~octoproto.ConnectionLostError` if the link drops first.
        """
        result = await self._request(
            self.core.call, event, *_args(data), namespace=namespace or "/", timeout=timeout
        )
        assert isinstance(result, tuple)
        return _call_result(result)

    async def send(self, data: object, namespace: str | None = None, callback: Any = None) -> None:
        """Emit a ``message`` event (python-socketio's ``send``)."""
        await self.emit("message", data, namespace, callback)

    async def wait(self) -> None:
        """Wait until the session is closed for good (disconnected, or reconnection gave up)."""
        await self._closed.wait()  # type: ignore[attr-defined]

    def _run_async_handler(
        self, awaitable: Any, handler: Callable[..., Any], namespace: str, ack_id: int | None
    ) -> None:
        async def run() -> None:
            try:
                result = await awaitable
            except Exception:
                _log_handler_error(handler, namespace)
                return
            if ack_id is not None:
                self._send_ack(namespace, ack_id, result)

        self.start_background_task(run)


class BlockingSocketIO(SocketIOHandling[T]):
    """python-socketio ``Client``'s methods for the blocking session: each blocks its thread."""

    # Supplied by the blocking Session (first in SocketIOSession's bases).
    def _request(self, method: Callable[..., int], *args: Any, **kwargs: Any) -> object:
        raise NotImplementedError

    def emit(
        self,
        event: str,
        data: object = None,
        namespace: str | None = None,
        callback: Callable[..., Any] | None = None,
    ) -> None:
        """Emit ``event``; ``callback(*ack_args)`` runs on the loop thread when the ack comes."""
        namespace = namespace or "/"
        logger.debug("emitting event %r [%s]", event, namespace)
        if callback is None:
            self._feed(self.core.emit, event, *_args(data), namespace=namespace)
        else:
            self._emit_with_callback(event, _args(data), namespace, callback)

    def call(  # type: ignore[override]
        self, event: str, data: object = None, namespace: str | None = None, timeout: float = 60
    ) -> object:
        """Emit and block until the ack (refused inside a handler, which would deadlock)."""
        result = self._request(
            self.core.call, event, *_args(data), namespace=namespace or "/", timeout=timeout
        )
        assert isinstance(result, tuple)
        return _call_result(result)

    def send(self, data: object, namespace: str | None = None, callback: Any = None) -> None:
        """Emit a ``message`` event (python-socketio's ``send``)."""
        self.emit("message", data, namespace, callback)
