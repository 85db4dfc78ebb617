"""What the three adapters share: configuration, handler dispatch, TLS, the event buffer.

None of this is protocol logic (that is all in the core); it is the glue
every adapter would otherwise write three times.
"""

from __future__ import annotations

import os
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any

from octoproto import (
    Endpoint,
    Event,
    OctoPrintClient,
    OctoPrintConfig,
    OpenTransport,
    PushMessage,
    Secret,
)

#: Bytes asked of the OS per read.
READ_SIZE = 65536
#: Events kept for ``async for`` / ``events()`` before reading pauses.
DEFAULT_MAX_QUEUE = 1024


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


def run_handlers(core: OctoPrintClient, event: Event, clock: Callable[[], float]) -> None:
    """Run the user's handlers for a push message and report their time to the throttle.

    Handler errors are logged by the registry and do not stop the others.
    """
    if not isinstance(event, PushMessage):
        return
    started = clock()
    core.handlers.dispatch(event.type, event)
    finished = clock()
    core.message_processed(finished - started, finished)


def tls_context(
    command: OpenTransport, user_context: ssl.SSLContext | None
) -> ssl.SSLContext | None:
    """The TLS context for a transport: the user's, or a verifying default.

    ``None`` for plain TCP.
    """
    if not command.tls:
        return None
    return user_context if user_context is not None else ssl.create_default_context()


class EventBuffer:
    """Events waiting for the user's iterator, bounded.

    Buffering starts when iteration starts (a handler-only user never pays
    for it). When ``max_queue`` events wait, :attr:`full` is true and the
    adapter stops reading from the socket until the user catches up: the
    kernel's buffers and the server's throttle take the pressure, and no
    event is dropped.
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
