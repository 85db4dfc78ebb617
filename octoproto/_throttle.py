"""OctoPrint's client-side adaptive throttle, as a pure decision maker.

OctoPrint sends ``current`` at most every ``0.5 s x factor``; a client that
cannot keep up asks for a larger factor with ``{"throttle": N}``. OctoPrint's
JS client measures how long all message handlers take for each message,
keeps the last ``rateSlidingWindowSize`` measurements, and:

* if one measurement exceeds ``factor x 0.5 s``, the client is too slow:
  ``onRateTooHigh`` fires, whose default raises the factor by one;
* otherwise, if the factor is above 1 and even the slowest measurement in the
  window is below ``(factor - 1) x 0.5 s``, the client would keep up with the
  next faster rate: ``onRateTooLow`` fires, whose default lowers the factor.

:class:`ThrottleController` makes exactly those decisions and nothing else:
it is told the measurements (it never reads a clock) and returns a verdict;
the dialect decides what to do with it and sends ``{"throttle": N}``.

Differences from the JS client, on purpose:

* OctoPrint's documentation says the rate is too low when processing takes
  less than "half the current rate"; its code compares with
  ``(factor - 1) x base``. The code is what servers and users have lived
  with, so this module follows the code.
* The base period, window size and factor bounds are settings. The JS client
  hard-codes 500 ms and a lower bound of 1, and has no upper bound; with the
  defaults here the behaviour is the same.
* Measurements that cannot be durations (negative, NaN, infinite) are refused
  instead of silently poisoning the window.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from ._errors import LocalProtocolError
from ._util import preview

__all__ = ["RateTooHigh", "RateTooLow", "ThrottleController", "ThrottleSettings"]


def _is_integer(value: object) -> bool:
    # bool is an int subclass, but True as a window size is a bug, not a 1.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite_number(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    # An int is always finite; math.isfinite would overflow converting a huge
    # one to float.
    return _is_integer(value)


@dataclass(frozen=True, kw_only=True)
class ThrottleSettings:
    """How the throttle controller measures and bounds the factor.

    Raises :class:`LocalProtocolError` on construction if a value is out of
    range, so a bad setting fails where it is written, not at the first
    message.
    """

    #: Seconds per factor step: the server sends ``current`` at most every
    #: ``base x factor`` seconds. OctoPrint uses 0.5 s.
    base: float = 0.5
    #: How many recent measurements the "too low" decision looks at
    #: (OctoPrint's ``rateSlidingWindowSize``).
    window: int = 20
    #: The smallest factor the controller will ask for (and starts at).
    min_factor: int = 1
    #: The largest factor the controller will ask for; ``None`` for no limit
    #: (OctoPrint has none).
    max_factor: int | None = None

    def __post_init__(self) -> None:
        if not _is_finite_number(self.base) or self.base <= 0:
            raise LocalProtocolError(
                f"throttle base must be a finite number of seconds > 0, got {preview(self.base)}"
            )
        if not _is_integer(self.window) or self.window < 1:
            raise LocalProtocolError(
                f"throttle window must be an int >= 1, got {preview(self.window)}"
            )
        if not _is_integer(self.min_factor) or self.min_factor < 1:
            raise LocalProtocolError(
                f"throttle min_factor must be an int >= 1, got {preview(self.min_factor)}"
            )
        if self.max_factor is not None and (
            not _is_integer(self.max_factor) or self.max_factor < self.min_factor
        ):
            raise LocalProtocolError(
                "throttle max_factor must be None or an int >= min_factor "
                f"({self.min_factor}), got {preview(self.max_factor)}"
            )


@dataclass(frozen=True)
class RateTooHigh:
    """One message took longer to handle than the current period allows.

    The default reaction is :meth:`ThrottleController.decrease_rate` and then
    sending the new factor.
    """

    #: How long handling the message took, in seconds.
    measured: float
    #: The current period, ``factor x base``, in seconds.
    maximum: float


@dataclass(frozen=True)
class RateTooLow:
    """Every recent message was handled faster than the next faster period.

    The default reaction is :meth:`ThrottleController.increase_rate` and then
    sending the new factor.
    """

    #: The slowest measurement in the window, in seconds.
    measured: float
    #: The next faster period, ``(factor - 1) x base``, in seconds.
    minimum: float


class ThrottleController:
    """Decides when the server should send faster or slower.

    Feed it one measurement per handled message with :meth:`record`; act on
    what it returns. The factor only changes through :meth:`decrease_rate`
    and :meth:`increase_rate`, so a user hook that replaces the default
    reaction (OctoPrint's ``onRateTooHigh`` / ``onRateTooLow``) stays in
    control. The factor outlives a reconnect on purpose: the server forgets
    it, and the dialect re-sends it.
    """

    def __init__(self, settings: ThrottleSettings | None = None) -> None:
        if settings is None:
            settings = ThrottleSettings()
        elif not isinstance(settings, ThrottleSettings):
            raise LocalProtocolError(
                f"settings must be a ThrottleSettings, got {type(settings).__qualname__}"
            )
        self._settings = settings
        self._factor = settings.min_factor
        self._window: deque[float] = deque(maxlen=settings.window)

    @property
    def settings(self) -> ThrottleSettings:
        """The settings this controller was created with."""
        return self._settings

    @property
    def factor(self) -> int:
        """The current throttle factor (what ``{"throttle": N}`` should say)."""
        return self._factor

    def record(self, seconds: float) -> RateTooHigh | RateTooLow | None:
        """Add how long the handlers took for one message, and judge it.

        Returns :class:`RateTooHigh` if this measurement exceeds
        ``factor x base``; else :class:`RateTooLow` if the factor is above
        ``min_factor`` and the slowest of the last ``window`` measurements
        (this one included) is below ``(factor - 1) x base``; else ``None``.

        Raises :class:`LocalProtocolError`, without recording anything, if
        ``seconds`` is not a finite number >= 0.
        """
        if not _is_finite_number(seconds) or seconds < 0:
            raise LocalProtocolError(
                f"a processing time must be a finite number of seconds >= 0, got {preview(seconds)}"
            )
        self._window.append(seconds)
        base = self._settings.base
        limit = self._factor * base
        if seconds > limit:
            return RateTooHigh(measured=seconds, maximum=limit)
        if self._factor > self._settings.min_factor:
            faster_limit = (self._factor - 1) * base
            slowest = max(self._window)
            if slowest < faster_limit:
                return RateTooLow(measured=slowest, minimum=faster_limit)
        return None

    def decrease_rate(self) -> bool:
        """Ask for fewer messages: raise the factor by one.

        Returns whether the factor changed (it does not beyond
        ``max_factor``), i.e. whether there is a new factor to send.
        """
        maximum = self._settings.max_factor
        if maximum is not None and self._factor >= maximum:
            return False
        self._factor += 1
        return True

    def set_factor(self, factor: int) -> bool:
        """Set the factor outright; returns whether it changed.

        Raises :class:`LocalProtocolError` if ``factor`` is not an int within
        ``[min_factor, max_factor]``.
        """
        settings = self._settings
        if (
            not _is_integer(factor)
            or factor < settings.min_factor
            or (settings.max_factor is not None and factor > settings.max_factor)
        ):
            raise LocalProtocolError(
                f"throttle factor must be an int within [{settings.min_factor}, "
                f"{settings.max_factor}], got {preview(factor)}"
            )
        changed = factor != self._factor
        self._factor = factor
        return changed

    def increase_rate(self) -> bool:
        """Ask for more messages: lower the factor by one.

        Returns whether the factor changed (it does not below
        ``min_factor``), i.e. whether there is a new factor to send.
        """
        if self._factor <= self._settings.min_factor:
            return False
        self._factor -= 1
        return True
