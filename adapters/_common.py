"""What the three adapters share: configuration, handler dispatch, TLS, the event buffer.

None of this is protocol logic (that is all in the core) and none of it does
I/O; it is the glue every adapter would otherwise write three times. What
differs between adapters (how to wait, how to dial, how to cancel) stays in
each adapter.
"""

from __future__ import annotations

import os
import ssl
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from octoproto import (
    Endpoint,
    Event,
    OctoPrintClient,
    OctoPrintConfig,
    OpenTransport,
    PushMessage,
    Secret,
    SessionState,
)

#: Bytes asked of the OS per read.
READ_SIZE = 65536
#: Events kept for ``async for`` / ``events()`` before reading pauses.
DEFAULT_MAX_QUEUE = 1024

H = TypeVar("H", bound=Callable[[PushMessage], object])


def octoprint_client(
    url: str,
    *,
    api_key: str | Secret | None = None,
    username: str | None = None,
    password: str | Secret | None = None,
    endpoint: Endpoint | str = Endpoint.SOCKJS,
    **options: Any,
) -> OctoPrintClient:
    """Build the core client an adapter drives; ``options`` are :class:`OctoPrintConfig` fields.

    The entropy source is :func:`os.urandom` unless ``entropy=`` is given.
    """
    options.setdefault("entropy", os.urandom)
    config = OctoPrintConfig(
        url=url,
        api_key=api_key,
        username=username,
        password=password,
        endpoint=Endpoint(endpoint),
        **options,
    )
    return OctoPrintClient(config)


def run_handlers(
    core: OctoPrintClient,
    event: Event,
    clock: Callable[[], float],
    *,
    lock: AbstractContextManager[object] | None = None,
) -> None:
    """Run the user's handlers for a push message and report their time to the throttle.

    Handler errors are logged by the registry and do not stop the others.
    With ``lock`` (a threaded adapter's core lock), the handlers run outside
    it, so they may call the client or wait for a thread that does, and only
    the report is made under it, with ``now`` read inside: another thread
    may have fed the core a later time meanwhile, and time must not go back.
    """
    if not isinstance(event, PushMessage):
        return
    started = clock()
    core.handlers.dispatch(event.type, event)
    finished = clock()
    if lock is None:
        core.message_processed(finished - started, finished)
        return
    with lock:
        core.message_processed(finished - started, clock())


def describe_error(exc: BaseException) -> str:
    """A transport error as the reason given to the core: ``"Type: message"``."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def deliver_events(core: OctoPrintClient, buffer: EventBuffer, clock: Callable[[], float]) -> bool:
    """Hand every event the core has to the handlers and to ``buffer``, in order.

    Returns whether there was any: handlers may have called the core (a
    reply, a throttle change), so the adapter must then execute commands
    again before it sleeps.
    """
    delivered = False
    while (event := core.next_event()) is not None:
        run_handlers(core, event, clock)
        buffer.push(event)
        delivered = True
    return delivered


def tls_context(
    command: OpenTransport, user_context: ssl.SSLContext | None
) -> ssl.SSLContext | None:
    """The TLS context for a transport: the user's, or a verifying default.

    ``None`` for plain TCP.
    """
    if not command.tls:
        return None
    return user_context if user_context is not None else ssl.create_default_context()


class BaseClient:
    """The part of every adapter's ``Client`` that needs no I/O: the core, its state, handlers.

    The methods that send or wait differ per adapter (``async`` or not, how
    the loop is woken), so each adapter's ``Client`` adds them.
    """

    def __init__(self, core: OctoPrintClient) -> None:
        #: The sans-I/O core this adapter drives (for state, usage, and anything not wrapped here).
        self.core = core

    @property
    def state(self) -> SessionState:
        """The core's connection state."""
        return self.core.state

    @property
    def is_open(self) -> bool:
        """Whether the session is up."""
        return self.core.is_open

    def on(self, message_type: str, handler: H | None = None) -> Any:
        """Register a handler for ``message_type`` (or ``"*"``); also a decorator.

        Handlers are plain functions called with each :class:`~octoproto.PushMessage`
        by the adapter (on its loop or its thread); how long they take drives
        the throttle.
        """
        return (
            self.core.handlers.on(message_type, handler)
            if handler
            else self.core.handlers.on(message_type)
        )

    def off(
        self, message_type: str, handler: Callable[[PushMessage], object] | None = None
    ) -> None:
        """Remove a handler (or all handlers of ``message_type``)."""
        self.core.handlers.off(message_type, handler)


class EventBuffer:
    """Events waiting for the user's iterator, bounded.

    Buffering starts when iteration starts (a handler-only user never pays
    for it) and ends with :meth:`stop` when the iterator does. When
    ``max_queue`` events wait, :attr:`full` is true and the adapter stops
    reading from the socket until the user catches up: the kernel's buffers
    and the server's throttle take the pressure, and no event is dropped.
    """

    def __init__(self, max_queue: int) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be >= 1")
        self.max_queue = max_queue
        self.active = False
        self.closed = False
        self._events: deque[Event] = deque()

    def push(self, event: Event) -> None:
        """Keep ``event`` for the iterator, if one is active."""
        if self.active:
            self._events.append(event)

    def pop(self) -> Event | None:
        """The oldest waiting event, or ``None``."""
        return self._events.popleft() if self._events else None

    @property
    def full(self) -> bool:
        """Whether reading should pause."""
        return len(self._events) >= self.max_queue

    def stop(self) -> None:
        """No iterator is left: stop buffering and drop what none will read.

        Otherwise a user who leaves the loop early (``break``) and goes on
        with handlers alone would fill the buffer and pause reading for good.
        """
        self.active = False
        self._events.clear()
