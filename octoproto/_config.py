"""Configuration shared by every dialect: reconnect schedule, timers, limits, usage warnings."""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ._entropy import Entropy, uniform
from ._errors import LocalProtocolError
from ._url import parse_server_url

#: OctoPrint's documented reconnect schedule (seconds); it gives up after the last.
OCTOPRINT_RECONNECT_DELAYS = (1.0, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 40.0, 100.0)


class Secret:
    """A string that never shows itself in ``repr()``, ``str()`` or logs.

    Passwords, API keys and session ids are held in one; ``reveal()`` is the
    only way to the value, so every place that needs it is easy to find.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise LocalProtocolError(f"a secret must be a str, not {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        """Return the secret value itself."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def as_secret(value: str | Secret | None) -> Secret | None:
    """Wrap a plain string in :class:`Secret`; pass ``None`` and secrets through."""
    if value is None or isinstance(value, Secret):
        return value
    return Secret(value)


@dataclass(frozen=True, kw_only=True)
class ReconnectSchedule:
    """When to dial again after a connection is lost or an attempt fails.

    Attempt *n* (from 1) waits ``delays[n-1]`` seconds, or the last delay once
    the list is used up; after ``attempts`` attempts the core gives up
    (``None``: never). ``jitter`` spreads each delay uniformly over
    ``delay × (1 ± jitter)`` with the session's entropy source, so a fleet
    of clients does not redial a restarted server in lockstep. The attempt
    counter resets when a connection succeeds.

    The default is OctoPrint's client: ``1, 1, 2, 3, 5, 8, 13, 20, 40, 100``
    seconds, then give up.
    """

    #: The delay before each attempt; the last one repeats once the list is used up.
    delays: tuple[float, ...] = OCTOPRINT_RECONNECT_DELAYS
    #: Give up after this many attempts in a row (``None``: never give up).
    attempts: int | None = len(OCTOPRINT_RECONNECT_DELAYS)
    #: Spread each delay uniformly over ``delay × (1 ± jitter)``, within [0, 1].
    jitter: float = 0.0
    #: Then add uniformly ± this many seconds, never going below 0
    #: (python-socketio's ``randomization_factor``).
    jitter_seconds: float = 0.0

    def __post_init__(self) -> None:
        delays = tuple(float(delay) for delay in self.delays)
        object.__setattr__(self, "delays", delays)
        if not delays and self.attempts != 0:
            raise LocalProtocolError("a reconnect schedule needs at least one delay")
        if any(not math.isfinite(delay) or delay < 0 for delay in delays):
            raise LocalProtocolError(f"reconnect delays must be finite and >= 0: {delays}")
        if self.attempts is not None and (
            isinstance(self.attempts, bool)
            or not isinstance(self.attempts, int)
            or self.attempts < 0
        ):
            raise LocalProtocolError(f"attempts must be an int >= 0 or None: {self.attempts!r}")
        if not 0.0 <= self.jitter <= 1.0:
            raise LocalProtocolError(f"jitter must be within [0, 1]: {self.jitter!r}")
        if not (math.isfinite(self.jitter_seconds) and self.jitter_seconds >= 0):
            raise LocalProtocolError(
                f"jitter_seconds must be a finite number >= 0: {self.jitter_seconds!r}"
            )

    @classmethod
    def fixed(cls, interval: float, attempts: int | None) -> ReconnectSchedule:
        """The same delay before every attempt (rpc-websockets' ``reconnect_interval``)."""
        return cls(delays=(interval,), attempts=attempts)

    @classmethod
    def exponential(
        cls,
        first: float = 1.0,
        maximum: float = 5.0,
        factor: float = 2.0,
        attempts: int | None = None,
        jitter: float = 0.5,
    ) -> ReconnectSchedule:
        """``first``, doubling (``factor``) up to ``maximum`` (python-socketio's defaults)."""
        if not (first > 0 and factor >= 1 and maximum >= first):
            raise LocalProtocolError(
                "exponential backoff needs first > 0, factor >= 1, maximum >= first"
            )
        delays = [first]
        while delays[-1] < maximum and factor > 1:
            delays.append(min(delays[-1] * factor, maximum))
        return cls(delays=tuple(delays), attempts=attempts, jitter=jitter)

    @classmethod
    def never(cls) -> ReconnectSchedule:
        """Do not reconnect at all."""
        return cls(delays=(), attempts=0)

    def delay_before(self, attempt: int, entropy: Entropy) -> float | None:
        """Seconds to wait before attempt ``attempt`` (from 1), or ``None`` to give up."""
        if self.attempts is not None and attempt > self.attempts:
            return None
        delay = self.delays[min(attempt, len(self.delays)) - 1]
        if self.jitter:
            delay *= 1.0 + self.jitter * (2.0 * uniform(entropy) - 1.0)
        if self.jitter_seconds:
            delay = max(0.0, delay + self.jitter_seconds * (2.0 * uniform(entropy) - 1.0))
        return delay


def _positive_or_none(name: str, value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise LocalProtocolError(f"{name} must be a positive number or None, not {value!r}")


@dataclass(frozen=True, kw_only=True)
class SessionConfig:
    """Settings every dialect shares. All times are seconds, all sizes bytes.

    ``entropy`` is required: the core reads no random source of its own
    (pass :func:`os.urandom`, which the adapters do by default, or a
    :class:`~octoproto.SeededEntropy` for reproducible tests).
    """

    #: ``ws://``, ``wss://``, ``http://`` or ``https://`` URL of the server.
    url: str
    #: Where the handshake nonce, frame masks, ids and jitter come from.
    entropy: Entropy = field(repr=False)
    #: Extra handshake request headers (Qore's ``hdr``).
    headers: Sequence[tuple[str, str]] | Mapping[str, str] = ()
    #: Subprotocols to offer in ``Sec-WebSocket-Protocol``.
    subprotocols: Sequence[str] = ()
    #: The ``Origin`` header to send; ``None`` sends none.
    origin: str | None = None
    #: Offer permessage-deflate.
    compression: bool = True
    #: When to dial again.
    reconnect: ReconnectSchedule = field(default_factory=ReconnectSchedule)
    #: From dialling to the session being up (handshake and first dialect message).
    connect_timeout: float | None = 5.0
    #: How long to wait for the server's close frame or EOF after ours.
    close_timeout: float = 5.0
    #: Send a WebSocket ping after this long without receiving anything.
    ping_interval: float | None = 20.0
    #: The link is dead after this long without receiving anything.
    dead_link_timeout: float | None = 30.0
    #: Largest message accepted, after decompression.
    max_message_size: int = 16 * 1024 * 1024
    #: Largest handshake (or HTTP login) response accepted.
    max_http_response_size: int = 1024 * 1024
    #: Messages kept while disconnected; beyond this ``send`` raises.
    max_queued_messages: int = 100
    #: Calls (RPC requests, Socket.IO acks) waiting for replies; beyond this a call raises.
    max_pending_calls: int = 1000
    #: Queue messages sent while disconnected (else ``send`` raises at once).
    queue_while_disconnected: bool = True
    #: Bytes sent on the push socket that the adapter has not yet reported
    #: written (``io_completed``) at which the server counts as not reading:
    #: ``LimitExceeded``, user messages wait in the queue until the backlog is
    #: down to half of this, and a backlog that does not move for
    #: ``dead_link_timeout`` is a dead link. ``None``: no bound. Needs an
    #: adapter that reports every write; the adapters in
    #: ``octoproto.adapters`` do, and set 1 MiB.
    max_send_backlog: int | None = None
    #: Qore: warn when an operation takes at least this long (ms, 0 = off).
    warning_ms: int = 0
    #: Qore: warn when a transfer runs at or below this rate (bytes/s, 0 = off).
    warning_bs: int = 0
    #: Qore: only transfers that took at least this long count for ``warning_bs`` (ms).
    min_ms: int = 1000
    #: Qore: echoed back in every warning event.
    warning_arg: object = None

    def __post_init__(self) -> None:
        # Refused here, not only when a client is made: a URL with a password
        # in it would otherwise live on in the config's repr().
        parse_server_url(self.url)
        headers = self.headers.items() if isinstance(self.headers, Mapping) else self.headers
        header_pairs = tuple((str(name), str(value)) for name, value in headers)
        object.__setattr__(self, "headers", header_pairs)
        object.__setattr__(self, "subprotocols", tuple(self.subprotocols))
        if not callable(self.entropy):
            raise LocalProtocolError("entropy must be a callable like os.urandom")
        _positive_or_none("connect_timeout", self.connect_timeout)
        if self.close_timeout is None:  # disconnect() adds it to now
            raise LocalProtocolError("close_timeout must be a positive number, not None")
        _positive_or_none("close_timeout", self.close_timeout)
        _positive_or_none("ping_interval", self.ping_interval)
        _positive_or_none("dead_link_timeout", self.dead_link_timeout)
        for name in (
            "max_message_size",
            "max_http_response_size",
            "max_queued_messages",
            "max_pending_calls",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                # A NaN limit bounds nothing (every comparison with it is false),
                # and a fractional one is not the bound it says.
                raise LocalProtocolError(f"{name} must be an int, not {value!r}")
            if value > sys.maxsize:  # zlib's output bound, for one, is a C ssize_t
                raise LocalProtocolError(f"{name} must be at most {sys.maxsize}")
        for name in ("max_message_size", "max_http_response_size"):
            if getattr(self, name) < 1:
                raise LocalProtocolError(f"{name} must be >= 1")
        for name in ("max_queued_messages", "max_pending_calls"):
            if getattr(self, name) < 0:
                raise LocalProtocolError(f"{name} must be >= 0")
        backlog = self.max_send_backlog
        if backlog is not None and (
            isinstance(backlog, bool) or not isinstance(backlog, int) or backlog < 1
        ):
            raise LocalProtocolError(f"max_send_backlog must be an int >= 1 or None: {backlog!r}")
        if not all(value >= 0 for value in (self.warning_ms, self.warning_bs, self.min_ms)):
            raise LocalProtocolError("warning_ms, warning_bs and min_ms must be >= 0")
