"""The RPC dialect's surface on every adapter (``connect_rpc`` in trio, asyncio, blocking).

Each adapter's ``RpcSession`` is its ``Session`` driving an
:class:`~octoproto.RpcClient` plus one of the mixins here: :class:`AsyncRpc`
(trio and asyncio: ``await client.call(...)``) or :class:`BlockingRpc`
(``client.call(...)`` blocks the calling thread). Both are thin: each method
starts the core's input with the adapter's clock and waits for the call's
outcome (``_request``); every decision is the core's. :class:`RpcHandlers`
runs the handlers registered with ``on(name)``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from octoproto import (
    BatchItem,
    CallFailed,
    Connected,
    ConnectFailed,
    Disconnected,
    LocalProtocolError,
    ProtocolError,
    ReconnectSchedule,
    RpcClient,
    RpcConfig,
    RpcNotification,
    rpc_reconnect_schedule,
)

from ._async import AsyncSession, AsyncTransport
from ._common import DEFAULT_MAX_SEND_BACKLOG, BaseSession, CallOutcome, Transport

__all__ = ["AsyncRpc", "BlockingRpc", "RpcHandlers", "rpc_client"]

T = TypeVar("T", bound=Transport)
AT = TypeVar("AT", bound=AsyncTransport)
H = TypeVar("H", bound=Callable[[Any], object])

#: The session events handlers may be registered for, besides notifications.
SESSION_EVENTS: dict[type, str] = {Connected: "open", Disconnected: "close", ConnectFailed: "error"}


def rpc_client(
    url: str,
    *,
    encoding: str = "json",
    reconnect: bool | ReconnectSchedule = True,
    reconnect_interval: float = 1.0,
    max_reconnects: int = 5,
    **options: Any,
) -> RpcClient:
    """Build the core an RPC session drives, with rpc-websockets' options.

    ``reconnect``: ``True`` follows rpc-websockets (``reconnect_interval``
    seconds apart, ``max_reconnects`` attempts in total, 0 = for ever; see
    :func:`~octoproto.rpc_reconnect_schedule`), ``False`` never redials, and
    a :class:`~octoproto.ReconnectSchedule` brings backoff and jitter.
    ``options`` are :class:`~octoproto.RpcConfig` fields. The entropy source
    is :func:`os.urandom` unless ``entropy=`` is given.
    """
    if isinstance(reconnect, ReconnectSchedule):
        schedule = reconnect
    elif reconnect:
        schedule = rpc_reconnect_schedule(reconnect_interval, max_reconnects)
    else:
        schedule = ReconnectSchedule.never()
    options.setdefault("entropy", os.urandom)
    options.setdefault("max_send_backlog", DEFAULT_MAX_SEND_BACKLOG)
    return RpcClient(RpcConfig(url=url, encoding=encoding, reconnect=schedule, **options))  # type: ignore[arg-type]


class RpcHandlers(BaseSession[T, RpcClient]):
    """Handlers for notifications by name, and for ``"open"``, ``"close"``, ``"error"``."""

    def on(self, name: str, handler: H | None = None) -> Any:
        """Run ``handler(event)`` for each notification ``name`` (``"*"``: all); also a decorator.

        The event is an :class:`~octoproto.RpcNotification`: its ``params``
        as sent, its ``args`` as rpc-websockets spreads them. ``"open"``
        gets each :class:`~octoproto.Connected`, ``"close"`` each
        :class:`~octoproto.Disconnected`, ``"error"`` each
        :class:`~octoproto.ConnectFailed` and
        :class:`~octoproto.ProtocolError`. Handlers run on the loop (the
        loop thread, for the blocking adapter); one that raises is logged
        and the others still run. Subscribing is separate: see ``subscribe``.
        """
        with self._handlers_lock:
            if handler is not None:
                return self.core.handlers.on(name, handler)
            self.core.handlers.on(name)  # refuses a bad name now, not at decoration

        def register(function: H) -> H:
            self.on(name, function)
            return function

        return register

    def off(self, name: str, handler: Callable[[Any], object] | None = None) -> None:
        """Remove a handler (or every handler of ``name``)."""
        with self._handlers_lock:
            self.core.handlers.off(name, handler)

    def _run_handlers(self, batch: list[BatchItem]) -> bool:
        registry = self.core.handlers
        if not registry:
            return False
        ran = False
        for event in batch:
            if isinstance(event, RpcNotification):
                name = event.name
            elif isinstance(event, ProtocolError):
                name = "error"
            else:
                name = SESSION_EVENTS.get(type(event), "")
                if not name:
                    continue
            registry.dispatch(name, event)  # type: ignore[arg-type]
            ran = True
        return ran


class AsyncRpc(AsyncSession[AT, RpcClient], RpcHandlers[AT]):
    """The RPC methods of the trio and asyncio ``RpcSession``."""

    async def call(  # type: ignore[override]
        self, method: str, params: object = None, *, timeout: float | None = None
    ) -> object:
        """Call ``method`` and return its result.

        Raises :class:`~octoproto.RpcError` (the server's error, with
        ``code``, ``message``, ``data``), :class:`~octoproto.CallTimeoutError`
        after ``timeout`` seconds, :class:`~octoproto.ConnectionLostError`
        when the link drops first. While disconnected the call waits for the
        next connection (``queue_while_disconnected``, the default).
        """
        return await self._request(self.core.call, method, params, timeout=timeout)

    async def call_batch(
        self, calls: Sequence[tuple[str, object]], *, timeout: float | None = None
    ) -> list[object]:
        """Send ``(method, params)`` calls as one batch; each one's result or :class:`CallError`.

        Nothing raises for a failed call: its error takes its place in the
        list (as ``asyncio.gather(..., return_exceptions=True)`` does).
        """
        if self._ended:
            raise LocalProtocolError("this client is closed; connect() a new one")
        done = self._flag()
        outcomes: dict[int, CallOutcome] = {}
        ids = _start_batch(self, calls, timeout, outcomes, done.set)
        try:
            while len(outcomes) < len(ids):
                done.clear()  # no await since the check: no outcome is missed
                await done.wait()
        finally:
            for call_id in ids:
                self._replies.pop(call_id, None)
        return [_value(outcomes[call_id]) for call_id in ids]

    async def notify(self, method: str, params: object = None) -> None:
        """Send a notification (no reply); waits in the queue while disconnected."""
        self._feed(self.core.notify, method, params)

    async def login(self, params: object, *, timeout: float | None = None) -> object:
        """Log in (``rpc.login``); raises :class:`~octoproto.RpcAuthenticationError` if refused.

        The login is repeated after every reconnect.
        """
        return await self._request(self.core.login, params, timeout=timeout)

    async def list_methods(self, *, timeout: float | None = None) -> object:
        """The names of the namespace's methods."""
        return await self._request(self.core.list_methods, timeout=timeout)

    async def subscribe(self, events: str | Sequence[str], *, timeout: float | None = None) -> Any:
        """Subscribe to an event (raises :class:`~octoproto.RpcSubscriptionError` unless
        ``"ok"``) or a list of them (returns the status map); kept across reconnects."""
        return await self._request(self.core.subscribe, events, timeout=timeout)

    async def unsubscribe(
        self, events: str | Sequence[str], *, timeout: float | None = None
    ) -> Any:
        """Unsubscribe, as :meth:`subscribe` subscribes."""
        return await self._request(self.core.unsubscribe, events, timeout=timeout)

    async def close(self, code: int = 1000, data: str | None = None) -> None:
        """Close for good with ``code`` and reason ``data`` (rpc-websockets' ``close``)."""
        await self.disconnect(code, data or "")


class BlockingRpc(RpcHandlers[T]):
    """The RPC methods of the blocking ``RpcSession``: each blocks its calling thread.

    Calls are refused on the loop thread (in a handler), where they would
    wait for themselves.
    """

    # Supplied by the blocking Session (it comes first in RpcSession's bases).
    def _request(self, method: Callable[..., int], *args: Any, **kwargs: Any) -> object:
        raise NotImplementedError

    def call(  # type: ignore[override]
        self, method: str, params: object = None, *, timeout: float | None = None
    ) -> object:
        """Call ``method`` and return its result (see the async ``call`` for the errors)."""
        return self._request(self.core.call, method, params, timeout=timeout)

    def call_batch(
        self, calls: Sequence[tuple[str, object]], *, timeout: float | None = None
    ) -> list[object]:
        """Send ``(method, params)`` calls as one batch; each one's result or :class:`CallError`."""
        self._refuse_on_loop_thread("a call")
        done = threading.Event()
        outcomes: dict[int, CallOutcome] = {}
        count = len(calls)

        def settled() -> None:
            if len(outcomes) == count:
                done.set()

        ids = _start_batch(self, calls, timeout, outcomes, settled)
        done.wait()
        return [_value(outcomes[call_id]) for call_id in ids]

    def _refuse_on_loop_thread(self, what: str) -> None:
        raise NotImplementedError

    def notify(self, method: str, params: object = None) -> None:
        """Send a notification (no reply); waits in the queue while disconnected."""
        self._feed(self.core.notify, method, params)

    def login(self, params: object, *, timeout: float | None = None) -> object:
        """Log in (``rpc.login``); raises :class:`~octoproto.RpcAuthenticationError` if refused."""
        return self._request(self.core.login, params, timeout=timeout)

    def list_methods(self, *, timeout: float | None = None) -> object:
        """The names of the namespace's methods."""
        return self._request(self.core.list_methods, timeout=timeout)

    def subscribe(self, events: str | Sequence[str], *, timeout: float | None = None) -> Any:
        """Subscribe to an event or a list of them, as the async ``subscribe`` does."""
        return self._request(self.core.subscribe, events, timeout=timeout)

    def unsubscribe(self, events: str | Sequence[str], *, timeout: float | None = None) -> Any:
        """Unsubscribe, as :meth:`subscribe` subscribes."""
        return self._request(self.core.unsubscribe, events, timeout=timeout)


def _start_batch(
    session: BaseSession[Any, RpcClient],
    calls: Sequence[tuple[str, object]],
    timeout: float | None,
    outcomes: dict[int, CallOutcome],
    on_outcome: Callable[[], None],
) -> list[int]:
    """Start a batch and register a reply callback for each call, in the same locked step.

    A session closed for good refuses the batch (the core raises
    :class:`~octoproto.NotConnectedError`); a session that ends later fails
    every call still registered.
    """

    def settle(outcome: CallOutcome) -> None:
        outcomes[outcome.call_id] = outcome
        on_outcome()

    with session._lock:
        ids = session._feed(session.core.call_batch, calls, timeout=timeout)
        for call_id in ids:
            session._replies[call_id] = settle
    return ids


def _value(outcome: CallOutcome) -> object:
    return outcome.error if isinstance(outcome, CallFailed) else outcome.result
