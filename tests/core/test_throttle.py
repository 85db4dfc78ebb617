"""Tests for octoproto._throttle: settings validation and the throttle decisions."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from octoproto._errors import LocalProtocolError
from octoproto._throttle import RateTooHigh, RateTooLow, ThrottleController, ThrottleSettings

# ---------------------------------------------------------------- settings


def test_default_settings_match_octoprints_js_client() -> None:
    settings = ThrottleSettings()
    assert (settings.base, settings.window, settings.min_factor, settings.max_factor) == (
        0.5,
        20,
        1,
        None,
    )


def test_settings_are_keyword_only_and_frozen() -> None:
    with pytest.raises(TypeError):
        ThrottleSettings(0.5)  # type: ignore[call-arg]
    settings = ThrottleSettings(base=1, window=1, min_factor=2, max_factor=2)
    with pytest.raises(AttributeError):
        settings.base = 2.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base": 0}, "throttle base must be a finite number of seconds > 0, got 0"),
        ({"base": -0.5}, "throttle base must be a finite number of seconds > 0, got -0.5"),
        ({"base": math.nan}, "throttle base must be a finite number of seconds > 0, got nan"),
        ({"base": math.inf}, "throttle base must be a finite number of seconds > 0, got inf"),
        ({"base": True}, "throttle base must be a finite number of seconds > 0, got True"),
        ({"base": "0.5"}, "throttle base must be a finite number of seconds > 0, got '0.5'"),
        ({"window": 0}, "throttle window must be an int >= 1, got 0"),
        ({"window": True}, "throttle window must be an int >= 1, got True"),
        ({"window": 2.0}, "throttle window must be an int >= 1, got 2.0"),
        ({"min_factor": 0}, "throttle min_factor must be an int >= 1, got 0"),
        ({"min_factor": 1.5}, "throttle min_factor must be an int >= 1, got 1.5"),
        (
            {"min_factor": 3, "max_factor": 2},
            "throttle max_factor must be None or an int >= min_factor (3), got 2",
        ),
        (
            {"max_factor": False},
            "throttle max_factor must be None or an int >= min_factor (1), got False",
        ),
        pytest.param(
            {"max_factor": -(10**5000)},
            "throttle max_factor must be None or an int >= min_factor (1), got <int>",
            id="max_factor-beyond-str-digit-limit",
        ),
    ],
)
def test_invalid_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(LocalProtocolError) as excinfo:
        ThrottleSettings(**kwargs)  # type: ignore[arg-type]
    assert str(excinfo.value) == message


def test_integer_base_and_equal_bounds_are_accepted() -> None:
    settings = ThrottleSettings(base=2, window=1, min_factor=4, max_factor=4)
    assert settings.base == 2


def test_controller_refuses_something_other_than_settings() -> None:
    with pytest.raises(LocalProtocolError) as excinfo:
        ThrottleController({"base": 0.5})  # type: ignore[arg-type]
    assert str(excinfo.value) == "settings must be a ThrottleSettings, got dict"


# ---------------------------------------------------------------- decisions


def test_controller_starts_at_min_factor_with_its_settings() -> None:
    assert ThrottleController().factor == 1
    settings = ThrottleSettings(min_factor=3)
    controller = ThrottleController(settings)
    assert controller.factor == 3
    assert controller.settings is settings


def test_a_slow_message_is_rate_too_high() -> None:
    controller = ThrottleController()
    assert controller.record(0.6) == RateTooHigh(measured=0.6, maximum=0.5)
    # The controller only decides: the factor is unchanged until told.
    assert controller.factor == 1


def test_exactly_the_limit_is_not_too_high() -> None:
    controller = ThrottleController()
    assert controller.record(0.5) is None
    assert controller.record(0) is None


def test_at_the_minimum_factor_a_fast_client_is_never_too_low() -> None:
    controller = ThrottleController()
    for _ in range(50):
        assert controller.record(0.0) is None


def test_too_low_waits_until_the_slow_measurement_leaves_the_window() -> None:
    controller = ThrottleController(ThrottleSettings(window=3))
    assert controller.record(0.9) == RateTooHigh(measured=0.9, maximum=0.5)
    assert controller.decrease_rate() is True
    assert controller.factor == 2
    # Window [0.9, 0.1], then [0.9, 0.1, 0.2]: 0.9 is the slowest, not < 0.5.
    assert controller.record(0.1) is None
    assert controller.record(0.2) is None
    # Window [0.1, 0.2, 0.3]: everything below (2 - 1) x 0.5.
    assert controller.record(0.3) == RateTooLow(measured=0.3, minimum=0.5)
    assert controller.increase_rate() is True
    assert controller.factor == 1
    assert controller.record(0.3) is None


def test_too_low_needs_the_slowest_strictly_below_the_faster_limit() -> None:
    controller = ThrottleController(ThrottleSettings(window=2))
    controller.decrease_rate()
    controller.decrease_rate()  # factor 3: limit 1.5, faster limit 1.0
    assert controller.record(1.0) is None
    assert controller.record(0.25) is None  # window [1.0, 0.25]
    assert controller.record(0.75) == RateTooLow(measured=0.75, minimum=1.0)


def test_too_high_is_checked_before_too_low() -> None:
    controller = ThrottleController(ThrottleSettings(window=1))
    controller.decrease_rate()  # factor 2, limit 1.0
    assert controller.record(1.25) == RateTooHigh(measured=1.25, maximum=1.0)


def test_custom_base_scales_both_limits() -> None:
    controller = ThrottleController(ThrottleSettings(base=2.0, window=1))
    assert controller.record(2.5) == RateTooHigh(measured=2.5, maximum=2.0)
    controller.decrease_rate()  # factor 2: limit 4.0, faster limit 2.0
    assert controller.record(3.0) is None
    assert controller.record(1.5) == RateTooLow(measured=1.5, minimum=2.0)


def test_min_factor_generalises_octoprints_lower_bound_of_one() -> None:
    controller = ThrottleController(ThrottleSettings(min_factor=2, window=1))
    # factor 2 == min_factor: no "too low" even though 0 < (2 - 1) x 0.5.
    assert controller.record(0.0) is None
    assert controller.increase_rate() is False
    assert controller.factor == 2
    controller.decrease_rate()
    assert controller.record(0.0) == RateTooLow(measured=0.0, minimum=1.0)


def test_decrease_rate_stops_at_max_factor() -> None:
    controller = ThrottleController(ThrottleSettings(max_factor=3))
    assert [controller.decrease_rate() for _ in range(4)] == [True, True, False, False]
    assert controller.factor == 3


def test_decrease_rate_has_no_upper_bound_by_default() -> None:
    controller = ThrottleController()
    for _ in range(1000):
        assert controller.decrease_rate() is True
    assert controller.factor == 1001


def test_increase_rate_at_min_factor_does_nothing() -> None:
    controller = ThrottleController()
    assert controller.increase_rate() is False
    assert controller.factor == 1


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (-0.001, "-0.001"),
        (math.nan, "nan"),
        (math.inf, "inf"),
        (-math.inf, "-inf"),
        (True, "True"),
        ("0.1", "'0.1'"),
        (None, "None"),
        pytest.param(-(10**5000), "<int>", id="beyond-str-digit-limit"),
    ],
)
def test_record_refuses_impossible_durations_without_recording(seconds: object, shown: str) -> None:
    controller = ThrottleController(ThrottleSettings(window=1))
    controller.decrease_rate()
    with pytest.raises(LocalProtocolError) as excinfo:
        controller.record(seconds)  # type: ignore[arg-type]
    assert str(excinfo.value) == (
        f"a processing time must be a finite number of seconds >= 0, got {shown}"
    )
    # Nothing was recorded: the next fast measurement alone decides.
    assert controller.record(0.1) == RateTooLow(measured=0.1, minimum=0.5)


def test_a_huge_integer_duration_is_just_very_slow() -> None:
    controller = ThrottleController()
    assert controller.record(10**400) == RateTooHigh(measured=10**400, maximum=0.5)


# ---------------------------------------------------------------- properties

_STEPS = st.lists(
    st.one_of(
        st.floats(min_value=0, max_value=20, allow_nan=False),
        st.sampled_from(["up", "down"]),
    ),
    max_size=60,
)


@given(
    steps=_STEPS,
    window=st.integers(min_value=1, max_value=5),
    min_factor=st.integers(min_value=1, max_value=3),
    extra=st.one_of(st.none(), st.integers(min_value=0, max_value=4)),
    base=st.sampled_from([0.25, 0.5, 1.0]),
)
def test_decisions_follow_the_rule_and_the_factor_stays_in_bounds(
    steps: list[float | str], window: int, min_factor: int, extra: int | None, base: float
) -> None:
    max_factor = None if extra is None else min_factor + extra
    controller = ThrottleController(
        ThrottleSettings(base=base, window=window, min_factor=min_factor, max_factor=max_factor)
    )
    recent: list[float] = []
    for step in steps:
        factor = controller.factor
        if step == "up":
            changed = controller.increase_rate()
            assert changed == (factor > min_factor)
            assert controller.factor == factor - changed
        elif step == "down":
            changed = controller.decrease_rate()
            assert changed == (max_factor is None or factor < max_factor)
            assert controller.factor == factor + changed
        else:
            assert isinstance(step, float)
            recent = [*recent, step][-window:]
            verdict = controller.record(step)
            if step > factor * base:
                assert verdict == RateTooHigh(measured=step, maximum=factor * base)
            elif factor > min_factor and max(recent) < (factor - 1) * base:
                assert verdict == RateTooLow(measured=max(recent), minimum=(factor - 1) * base)
            else:
                assert verdict is None
        assert min_factor <= controller.factor
        assert max_factor is None or controller.factor <= max_factor


def test_set_factor_sets_within_bounds_and_reports_change() -> None:
    controller = ThrottleController(ThrottleSettings(min_factor=2, max_factor=5))
    assert controller.set_factor(4) is True
    assert controller.factor == 4
    assert controller.set_factor(4) is False
    for bad in (1, 6, True, 2.0, "3"):
        with pytest.raises(LocalProtocolError, match="within \\[2, 5\\]"):
            controller.set_factor(bad)  # type: ignore[arg-type]
    assert controller.factor == 4
    unbounded = ThrottleController()
    assert unbounded.set_factor(1000) is True
