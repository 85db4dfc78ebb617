"""Regression tests for what the fuzz targets and the state machine found.

Each test names the finding: the fuzz target (``fuzz/run.py``) or the
hypothesis state machine (``tests/core/test_stateful.py``) that produced it,
and what broke. ``docs/fuzzing.md`` lists them all.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from octoproto import (
    Channel,
    CloseTransport,
    LocalProtocolError,
    OctoPrintConfig,
    OpenTransport,
    ReconnectSchedule,
    SeededEntropy,
    SessionConfig,
    WebSocketClient,
)


def session_config(**overrides: Any) -> SessionConfig:
    return SessionConfig(url="ws://fuzz.test/", entropy=SeededEntropy(1), **overrides)


def octoprint_config(**overrides: Any) -> OctoPrintConfig:
    return OctoPrintConfig(
        url="http://octo.test/", entropy=SeededEntropy(1), api_key="KEY", **overrides
    )


# --- fuzz target "config": OctoPrint's login timers at zero hung handle_timer()


@pytest.mark.parametrize("name", ["login_timeout", "login_retry_delay"])
@pytest.mark.parametrize("value", [0, 0.0, -1.0, math.nan, math.inf])
def test_octoprint_login_timers_must_be_positive(name: str, value: float) -> None:
    # With both at 0 the login request timed out at once, was retried at
    # once, timed out at once ... inside one handle_timer() call, for ever.
    with pytest.raises(LocalProtocolError) as caught:
        octoprint_config(**{name: value})
    assert str(caught.value) == f"{name} must be a positive number, not {value!r}"


def test_octoprint_login_timers_accept_positive_values() -> None:
    config = octoprint_config(login_timeout=0.25, login_retry_delay=3)
    assert (config.login_timeout, config.login_retry_delay) == (0.25, 3)


# --- fuzz target "config": NaN and fractional limits were accepted


@pytest.mark.parametrize(
    "name", ["max_message_size", "max_http_response_size", "max_queued_messages"]
)
@pytest.mark.parametrize("value", [math.nan, math.inf, 1.5, True])
def test_limits_must_be_ints(name: str, value: object) -> None:
    # Every comparison with NaN is false, so a NaN limit bounded nothing; a
    # queue bound of 1.5 let two messages wait.
    with pytest.raises(LocalProtocolError) as caught:
        session_config(**{name: value})
    assert str(caught.value) == f"{name} must be an int, not {value!r}"


@pytest.mark.parametrize("name", ["warning_ms", "warning_bs", "min_ms"])
def test_warning_settings_refuse_nan(name: str) -> None:
    # min() of (nan, 0, 1000) is nan, and nan < 0 is false: it slipped through.
    with pytest.raises(LocalProtocolError, match="must be >= 0"):
        session_config(**{name: math.nan})


# --- fuzz target "config": close_timeout=None was accepted, then disconnect() raised TypeError


def test_close_timeout_may_not_be_none() -> None:
    with pytest.raises(LocalProtocolError) as caught:
        session_config(close_timeout=None)
    assert str(caught.value) == "close_timeout must be a positive number, not None"


# --- fuzz target "config": handle_timer() never returned


def test_handle_timer_fires_each_timer_at_most_once_per_call() -> None:
    # At now = 1e9, now + 1e-9 == now in floating point: the connect timer
    # was due again as soon as it was armed, and with a zero reconnect delay
    # and no attempt limit handle_timer() timed out, redialled and timed out
    # again without end.
    config = session_config(
        connect_timeout=1e-9, reconnect=ReconnectSchedule(delays=(0.0,), attempts=None)
    )
    client = WebSocketClient(config)
    now = 1e9
    client.connect(now)
    assert client.next_command() == OpenTransport(Channel.SOCKET, "fuzz.test", 80, False, None)
    client.handle_timer(now)  # returns
    commands = []
    while (command := client.next_command()) is not None:
        commands.append(command)
    # timed out, redialled; the new connect timer waits for the next call
    assert commands == [
        CloseTransport(Channel.SOCKET),
        OpenTransport(Channel.SOCKET, "fuzz.test", 80, False, None),
    ]
    assert client.get_timer() == now
    client.handle_timer(now)  # the adapter calls again at once; it returns again
    assert client.get_timer() == now
