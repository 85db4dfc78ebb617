"""A registry of handlers keyed by name, shared by every dialect.

OctoPrint dispatches each key of a push message (``current``, ``event``, ...)
to the handlers registered for that message type; Socket.IO dispatches events
by name and RPC dispatches notifications by method. All three need the same
small thing, so it lives here once:

* handlers are plain callables taking one argument (the payload);
* the name ``"*"`` means "every name", and those handlers run first, like
  OctoPrint's JS client;
* a handler that raises does not stop the others. The JS client has no
  ``try``/``catch`` around its handlers, so one buggy handler silences all the
  ones registered after it; here the error is logged, collected and returned.

The registry never sees bytes, clocks or sockets; it only calls functions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar, overload

from ._errors import LocalProtocolError
from ._util import preview

__all__ = ["WILDCARD", "HandlerFailure", "HandlerRegistry"]

T = TypeVar("T")
R = TypeVar("R")

#: The name under which a handler receives every dispatched item.
WILDCARD = "*"

_logger = logging.getLogger("octoproto.handlers")


def _describe_handler(handler: Callable[..., object]) -> str:
    """Name a handler for a log line without calling its ``repr``.

    A ``repr`` is arbitrary user code and, for a bound method or a
    ``functools.partial``, includes the bound object or arguments, which may
    hold secrets. The module and qualified name are enough to find the code.
    """
    qualname = getattr(handler, "__qualname__", None)
    if not isinstance(qualname, str):
        # Callable instances and functools.partial have no __qualname__ of
        # their own: name their class instead.
        qualname = type(handler).__qualname__
    module = getattr(handler, "__module__", None)
    if isinstance(module, str):
        return f"{module}.{qualname}"
    return qualname


@dataclass(frozen=True)
class HandlerFailure:
    """One handler raised while an item was being dispatched.

    The dispatched item itself is deliberately not kept: it may contain
    secrets, and the caller still has it if it needs it. The custom
    ``repr`` shows only the error's type for the same reason (exception
    messages often quote the data that caused them).
    """

    #: The name the item was dispatched under (not ``"*"``, even for a
    #: wildcard handler).
    name: str
    #: The handler that raised.
    handler: Callable[..., object]
    #: What it raised.
    error: Exception

    def __repr__(self) -> str:
        return (
            f"HandlerFailure(name={preview(self.name)}, "
            f"handler={_describe_handler(self.handler)}, "
            f"error={type(self.error).__qualname__})"
        )


class HandlerRegistry(Generic[T]):
    """Handlers ``Callable[[T], object]`` registered under string names.

    ``"*"`` (:data:`WILDCARD`) registers a handler for every name. Handlers
    for one name run in registration order; the same handler may be
    registered more than once and then runs once per registration, as in
    OctoPrint's JS client. Handlers are compared with ``==``, so a bound
    method (a new object on each attribute access) can be removed with the
    same expression that registered it.
    """

    def __init__(self) -> None:
        self._handlers: dict[str, list[Callable[[T], object]]] = {}

    @overload
    def on(
        self, name: str, handler: None = None
    ) -> Callable[[Callable[[T], R]], Callable[[T], R]]: ...

    @overload
    def on(self, name: str, handler: Callable[[T], R]) -> Callable[[T], R]: ...

    def on(
        self, name: str, handler: Callable[[T], R] | None = None
    ) -> Callable[[T], R] | Callable[[Callable[[T], R]], Callable[[T], R]]:
        """Register ``handler`` for ``name`` (``"*"`` for every name).

        Called with a handler, registers it and returns it unchanged.
        Called without one, returns a decorator that does the same::

            registry.on("current", show_state)

            @registry.on("event")
            def log_event(payload): ...

        Raises :class:`LocalProtocolError` if ``name`` is not a non-empty
        ``str`` or ``handler`` is not callable.
        """
        _check_name(name)
        if handler is None:

            def register(function: Callable[[T], R]) -> Callable[[T], R]:
                return self.on(name, function)

            return register
        if not callable(handler):
            raise LocalProtocolError(
                f"handler for {preview(name)} must be callable, got {type(handler).__qualname__}"
            )
        self._handlers.setdefault(name, []).append(handler)
        return handler

    def off(self, name: str, handler: Callable[[T], object] | None = None) -> None:
        """Remove a handler registered for ``name``.

        With a handler, removes its **most recent** registration under
        ``name`` (as Node's ``EventEmitter.removeListener`` does), so
        ``on`` followed by ``off`` undoes exactly that ``on`` even when the
        handler was registered several times. Raises
        :class:`LocalProtocolError` if it is not registered under ``name``.

        Without a handler, removes every handler registered under ``name``;
        if there are none this does nothing (there is nothing to get wrong).
        ``off("*")`` removes only the wildcard handlers.
        """
        _check_name(name)
        if handler is None:
            self._handlers.pop(name, None)
            return
        registered = self._handlers.get(name, [])
        # Search from the end so the latest registration goes first.
        for index in range(len(registered) - 1, -1, -1):
            if registered[index] == handler:
                del registered[index]
                if not registered:
                    # Drop empty lists so registering and removing handlers
                    # for many one-off names does not grow the dict forever.
                    del self._handlers[name]
                return
        raise LocalProtocolError(
            f"cannot remove handler {_describe_handler(handler)}: "
            f"it is not registered for {preview(name)}"
        )

    def __bool__(self) -> bool:
        """Whether any handler is registered, under any name."""
        return bool(self._handlers)

    def handlers(self, name: str) -> tuple[Callable[[T], object], ...]:
        """The handlers registered under exactly ``name``, in order.

        Wildcard handlers are listed only under ``"*"``. The tuple is a
        copy: changing the registry does not change it.
        """
        return tuple(self._handlers.get(name, ()))

    def dispatch(self, name: str, item: T) -> list[HandlerFailure]:
        """Call every ``"*"`` handler, then every handler for ``name``.

        Each group runs in registration order. A handler that raises an
        :class:`Exception` is logged on the ``octoproto.handlers`` logger
        (with the name and the handler's qualified name, never ``item``,
        which may contain secrets) and the remaining handlers still run; the
        failures are returned in the order they happened. A
        :class:`BaseException` that is not an :class:`Exception`
        (``KeyboardInterrupt``, a cancellation) propagates at once: it is
        not the handler's bug but a request to stop.

        The handler lists are copied before the first call, so a handler
        may call :meth:`on` / :meth:`off` freely: the change applies from the
        next dispatch on. Dispatching the name ``"*"`` itself (a remote side
        can send any name) runs the wildcard handlers once, not twice.
        """
        to_call = tuple(self._handlers.get(WILDCARD, ()))
        if name != WILDCARD:
            to_call += tuple(self._handlers.get(name, ()))
        failures: list[HandlerFailure] = []
        for handler in to_call:
            try:
                handler(item)
            except Exception as error:
                _logger.exception(
                    "handler %s raised while handling %s",
                    _describe_handler(handler),
                    preview(name),
                )
                failures.append(HandlerFailure(name=name, handler=handler, error=error))
        return failures


def _check_name(name: object) -> None:
    """Refuse names that cannot be dispatched to (caller misuse)."""
    if not isinstance(name, str) or not name:
        raise LocalProtocolError(f"handler name must be a non-empty str, got {preview(name)}")
