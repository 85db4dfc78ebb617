"""Tests for octoproto._config: secrets, the reconnect schedule, session settings."""

from __future__ import annotations

import math
from typing import Any

import pytest

from octoproto import (
    OCTOPRINT_RECONNECT_DELAYS,
    LocalProtocolError,
    ReconnectSchedule,
    Secret,
    SeededEntropy,
    SessionConfig,
)
from octoproto._config import as_secret
from octoproto._entropy import uniform

# ---------------------------------------------------------------- Secret


def test_secret_hides_itself() -> None:
    secret = Secret("hunter2")
    assert secret.reveal() == "hunter2"
    assert repr(secret) == str(secret) == f"{secret}" == "Secret('***')"
    assert "hunter2" not in repr([secret, {"k": secret}])


def test_secret_equality_and_hash() -> None:
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert Secret("a") != "a"
    assert hash(Secret("a")) == hash(Secret("a"))
    assert len({Secret("a"), Secret("a"), Secret("b")}) == 2


@pytest.mark.parametrize("url", ["http://octo:hunter2@example.com/", "ws://hunter2@example.com"])
def test_credentials_in_the_url_are_refused_by_the_config_itself(url: str) -> None:
    # Found by the secrets test: refused only when a client was made, such a
    # config showed the password in its repr().
    with pytest.raises(LocalProtocolError, match="credentials in the URL") as refused:
        SessionConfig(url=url, entropy=SeededEntropy(1))
    assert "hunter2" not in str(refused.value)


def test_secret_must_be_a_str() -> None:
    with pytest.raises(LocalProtocolError, match="a secret must be a str, not bytes"):
        Secret(b"x")  # type: ignore[arg-type]


def test_as_secret() -> None:
    assert as_secret(None) is None
    secret = Secret("s")
    assert as_secret(secret) is secret
    assert as_secret("s") == secret


# ---------------------------------------------------------------- ReconnectSchedule


def _never_called(n: int) -> bytes:
    raise AssertionError("no jitter: the schedule must not draw entropy")


def test_default_schedule_is_octoprints() -> None:
    schedule = ReconnectSchedule()
    assert OCTOPRINT_RECONNECT_DELAYS == (1, 1, 2, 3, 5, 8, 13, 20, 40, 100)
    delays = [schedule.delay_before(n, _never_called) for n in range(1, 12)]
    assert delays == [1.0, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 40.0, 100.0, None]


def test_last_delay_repeats_and_unlimited_attempts() -> None:
    schedule = ReconnectSchedule(delays=(1, 2), attempts=None)
    assert schedule.delays == (1.0, 2.0)
    assert isinstance(schedule.delays[0], float)
    assert [schedule.delay_before(n, _never_called) for n in (1, 2, 3, 1000)] == [1, 2, 2, 2]


def test_more_attempts_than_delays() -> None:
    schedule = ReconnectSchedule(delays=(3,), attempts=2)
    assert [schedule.delay_before(n, _never_called) for n in (1, 2, 3)] == [3.0, 3.0, None]


def test_jitter_spreads_within_bounds_deterministically() -> None:
    schedule = ReconnectSchedule(delays=(10,), attempts=None, jitter=0.5)
    source, twin = SeededEntropy(7), SeededEntropy(7)
    for attempt in range(1, 50):
        delay = schedule.delay_before(attempt, source)
        assert delay is not None
        assert 5.0 <= delay <= 15.0
        assert delay == 10.0 * (1.0 + 0.5 * (2.0 * uniform(twin) - 1.0))
    assert schedule.delay_before(1, bytes) == 5.0
    assert schedule.delay_before(1, lambda n: b"\x80" + bytes(n - 1)) == 10.0


def test_jitter_seconds_adds_within_bounds_and_never_below_zero() -> None:
    schedule = ReconnectSchedule(delays=(1.0, 5.0), attempts=None, jitter_seconds=0.5)
    source, twin = SeededEntropy(3), SeededEntropy(3)
    for attempt in range(2, 40):
        delay = schedule.delay_before(attempt, source)
        assert delay == 5.0 + 0.5 * (2.0 * uniform(twin) - 1.0)
        assert 4.5 <= delay <= 5.5
    assert schedule.delay_before(1, bytes) == 0.5  # the lowest draw: 1 - 0.5
    wide = ReconnectSchedule(delays=(1.0,), attempts=None, jitter_seconds=3.0)
    assert wide.delay_before(1, bytes) == 0.0


def test_fixed() -> None:
    schedule = ReconnectSchedule.fixed(2.5, 3)
    assert (schedule.delays, schedule.attempts, schedule.jitter) == ((2.5,), 3, 0.0)


def test_exponential() -> None:
    schedule = ReconnectSchedule.exponential()
    assert (schedule.delays, schedule.attempts, schedule.jitter) == ((1, 2, 4, 5), None, 0.5)
    assert ReconnectSchedule.exponential(1, 100, 3, 4, 0).delays == (1, 3, 9, 27, 81, 100)
    assert ReconnectSchedule.exponential(2, 10, 1).delays == (2.0,)
    assert ReconnectSchedule.exponential(2, 2, 2).delays == (2.0,)


@pytest.mark.parametrize(
    ("first", "maximum", "factor"), [(0, 5, 2), (-1, 5, 2), (1, 5, 0.5), (2, 1, 2)]
)
def test_exponential_refuses_nonsense(first: float, maximum: float, factor: float) -> None:
    with pytest.raises(LocalProtocolError, match="exponential backoff needs first > 0"):
        ReconnectSchedule.exponential(first, maximum, factor)


def test_never() -> None:
    schedule = ReconnectSchedule.never()
    assert (schedule.delays, schedule.attempts) == ((), 0)
    assert schedule.delay_before(1, _never_called) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"delays": ()}, "a reconnect schedule needs at least one delay"),
        ({"delays": (), "attempts": None}, "a reconnect schedule needs at least one delay"),
        ({"delays": (1, -1)}, "reconnect delays must be finite and >= 0: (1.0, -1.0)"),
        ({"delays": (math.inf,)}, "reconnect delays must be finite and >= 0: (inf,)"),
        ({"delays": (math.nan,)}, "reconnect delays must be finite and >= 0: (nan,)"),
        ({"attempts": -1}, "attempts must be an int >= 0 or None: -1"),
        ({"attempts": True}, "attempts must be an int >= 0 or None: True"),
        ({"attempts": 2.0}, "attempts must be an int >= 0 or None: 2.0"),
        ({"jitter": -0.1}, "jitter must be within [0, 1]: -0.1"),
        ({"jitter": 1.5}, "jitter must be within [0, 1]: 1.5"),
        ({"jitter_seconds": -1}, "jitter_seconds must be a finite number >= 0: -1"),
        ({"jitter_seconds": math.nan}, "jitter_seconds must be a finite number >= 0: nan"),
    ],
)
def test_schedule_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(LocalProtocolError) as info:
        ReconnectSchedule(**kwargs)
    assert str(info.value) == message


def test_zero_delay_and_full_jitter_are_allowed() -> None:
    schedule = ReconnectSchedule(delays=(0,), attempts=1, jitter=1.0)
    assert schedule.delay_before(1, SeededEntropy(1)) == 0.0


# ---------------------------------------------------------------- SessionConfig


def _config(**kwargs: Any) -> SessionConfig:
    return SessionConfig(url="ws://h", entropy=SeededEntropy(0), **kwargs)


def test_config_defaults() -> None:
    config = _config()
    assert config.headers == ()
    assert config.subprotocols == ()
    assert config.origin is None
    assert config.compression is True
    assert config.reconnect == ReconnectSchedule()
    assert (config.connect_timeout, config.close_timeout) == (5.0, 5.0)
    assert (config.ping_interval, config.dead_link_timeout) == (20.0, 30.0)
    assert config.max_message_size == 16 * 1024 * 1024
    assert config.max_http_response_size == 1024 * 1024
    assert (config.max_queued_messages, config.queue_while_disconnected) == (100, True)
    assert (config.warning_ms, config.warning_bs, config.min_ms, config.warning_arg) == (
        0,
        0,
        1000,
        None,
    )
    assert "entropy" not in repr(config)


def test_config_normalises_headers_and_subprotocols() -> None:
    assert _config(headers={"X-A": "1", "X-B": 2}).headers == (("X-A", "1"), ("X-B", "2"))
    assert _config(headers=[("X-A", "1")]).headers == (("X-A", "1"),)
    assert _config(subprotocols=["a", "b"]).subprotocols == ("a", "b")


def test_config_allows_disabling_timers() -> None:
    config = _config(connect_timeout=None, ping_interval=None, dead_link_timeout=None)
    assert (config.connect_timeout, config.ping_interval, config.dead_link_timeout) == (
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"entropy": b"seed"}, "entropy must be a callable like os.urandom"),
        ({"connect_timeout": 0}, "connect_timeout must be a positive number or None, not 0"),
        ({"close_timeout": -1.0}, "close_timeout must be a positive number or None, not -1.0"),
        ({"ping_interval": math.inf}, "ping_interval must be a positive number or None, not inf"),
        (
            {"dead_link_timeout": math.nan},
            "dead_link_timeout must be a positive number or None, not nan",
        ),
        ({"max_message_size": 0}, "max_message_size must be >= 1"),
        ({"max_http_response_size": 0}, "max_http_response_size must be >= 1"),
        ({"max_queued_messages": -1}, "max_queued_messages must be >= 0"),
        ({"warning_ms": -1}, "warning_ms, warning_bs and min_ms must be >= 0"),
        ({"warning_bs": -1}, "warning_ms, warning_bs and min_ms must be >= 0"),
        ({"min_ms": -1}, "warning_ms, warning_bs and min_ms must be >= 0"),
    ],
)
def test_config_validation(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"url": "ws://h", "entropy": SeededEntropy(0), **kwargs}
    with pytest.raises(LocalProtocolError) as info:
        SessionConfig(**arguments)
    assert str(info.value) == message


def test_config_is_frozen_and_keyword_only() -> None:
    config = _config()
    with pytest.raises(AttributeError):
        config.url = "ws://other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        SessionConfig("ws://h", SeededEntropy(0))  # type: ignore[call-arg]
