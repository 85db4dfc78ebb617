"""Tests for octoproto._handlers: registration, removal, dispatch order, failures."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from octoproto._errors import LocalProtocolError
from octoproto._handlers import WILDCARD, HandlerFailure, HandlerRegistry

SECRET = "s3cr3t-session-value"


def make_recorder(calls: list[str], label: str) -> Callable[[object], None]:
    """A handler that appends ``label`` to ``calls`` each time it runs."""

    def record(item: object) -> None:
        calls.append(label)

    record.__qualname__ = f"record_{label}"
    return record


def test_on_with_handler_registers_and_returns_it() -> None:
    registry: HandlerRegistry[int] = HandlerRegistry()

    def show(value: int) -> str:
        return str(value)

    assert registry.on("current", show) is show
    assert registry.handlers("current") == (show,)
    assert registry.handlers("history") == ()


def test_on_as_decorator_registers_and_returns_the_function() -> None:
    registry: HandlerRegistry[int] = HandlerRegistry()

    @registry.on("current")
    def show(value: int) -> str:
        return str(value)

    assert show(3) == "3"  # still the undecorated function
    assert registry.handlers("current") == (show,)


def test_dispatch_runs_wildcards_first_then_the_name_in_registration_order() -> None:
    registry: HandlerRegistry[object] = HandlerRegistry()
    calls: list[str] = []
    registry.on("current", make_recorder(calls, "current-1"))
    registry.on(WILDCARD, make_recorder(calls, "star-1"))
    registry.on("history", make_recorder(calls, "history"))
    registry.on("current", make_recorder(calls, "current-2"))
    registry.on("*", make_recorder(calls, "star-2"))

    assert registry.dispatch("current", {}) == []
    assert calls == ["star-1", "star-2", "current-1", "current-2"]


def test_dispatch_passes_the_item_to_every_handler() -> None:
    registry: HandlerRegistry[dict[str, int]] = HandlerRegistry()
    seen: list[tuple[str, dict[str, int]]] = []
    registry.on("*", lambda item: seen.append(("star", item)))
    registry.on("current", lambda item: seen.append(("current", item)))
    payload = {"progress": 42}

    registry.dispatch("current", payload)

    assert seen == [("star", payload), ("current", payload)]
    assert seen[0][1] is payload


def test_dispatch_of_a_name_without_handlers_runs_only_wildcards() -> None:
    registry: HandlerRegistry[object] = HandlerRegistry()
    calls: list[str] = []
    registry.on("*", make_recorder(calls, "star"))
    assert registry.dispatch("unknownType", None) == []
    assert calls == ["star"]


def test_dispatch_with_no_handlers_at_all_does_nothing() -> None:
    registry: HandlerRegistry[object] = HandlerRegistry()
    assert registry.dispatch("current", None) == []


def test_dispatching_the_wildcard_name_itself_runs_wildcards_once() -> None:
    # A server may send a message whose type is literally "*".
    registry: HandlerRegistry[object] = HandlerRegistry()
    calls: list[str] = []
    registry.on("*", make_recorder(calls, "star"))
    registry.dispatch("*", None)
    assert calls == ["star"]


def test_a_handler_registered_twice_runs_twice() -> None:
    registry: HandlerRegistry[object] = HandlerRegistry()
    calls: list[str] = []
    handler = make_recorder(calls, "twice")
    registry.on("current", handler)
    registry.on("current", handler)
    registry.dispatch("current", None)
    assert calls == ["twice", "twice"]


def test_off_removes_the_most_recent_registration() -> None:
    registry: HandlerRegistry[object] = HandlerRegistry()
    calls: list[str] = []
    first = make_recorder(calls, "f")
    other = make_recorder(calls, "g")
    registry.on("current", first)
    registry.on("current", other)
    registry.on("current", first)

    registry.off("current", first)

    assert registry.handlers("current") == (first, other)
    registry.dispatch("current", None)
    assert calls == ["f", "g"]


def test_off_of_the_last_handler_leaves_the_name_empty() -> None:
    registry: HandlerRegistry[object] = HandlerRegistry()
    calls: list[str] = []
    handler = make_recorder(calls, "only")
    registry.on("current", handler)
    registry.off("current", handler)
    assert registry.handlers("current") == ()
    registry.dispatch("current", None)
    assert calls == []
    # And the name can be used again afterwards.
    registry.on("current", handler)
    assert registry.handlers("current") == (handler,)


def test_off_without_handler_removes_all_of_that_name_only() -> None:
    registry: HandlerRegistry[object] = HandlerRegistry()
    calls: list[str] = []
    registry.on("current", make_recorder(calls, "a"))
    registry.on("current", make_recorder(calls, "b"))
    registry.on("*", make_recorder(calls, "star"))
    registry.on("history", make_recorder(calls, "history"))

    registry.off("current")

    assert registry.handlers("current") == ()
    assert len(registry.handlers("*")) == 1
    assert len(registry.handlers("history")) == 1


def test_off_star_without_handler_removes_only_wildcards() -> None:
    registry: HandlerRegistry[object] = HandlerRegistry()
    calls: list[str] = []
    registry.on("*", make_recorder(calls, "star"))
    registry.on("current", make_recorder(calls, "current"))
    registry.off("*")
    registry.dispatch("current", None)
    assert calls == ["current"]


def test_off_without_handler_on_an_unknown_name_is_a_no_op() -> None:
    registry: HandlerRegistry[object] = HandlerRegistry()
    registry.off("never-registered")
    assert registry.handlers("never-registered") == ()


def test_off_of_an_unknown_handler_raises_and_names_it() -> None:
    registry: HandlerRegistry[object] = HandlerRegistry()
    calls: list[str] = []
    registered = make_recorder(calls, "registered")
    stranger = make_recorder(calls, "stranger")
    registry.on("current", registered)

    with pytest.raises(LocalProtocolError) as excinfo:
        registry.off("current", stranger)

    assert str(excinfo.value) == (
        f"cannot remove handler {__name__}.record_stranger: it is not registered for 'current'"
    )
    assert registry.handlers("current") == (registered,)


def test_off_of_a_handler_registered_under_another_name_raises() -> None:
    registry: HandlerRegistry[object] = HandlerRegistry()
    calls: list[str] = []
    handler = make_recorder(calls, "h")
    registry.on("history", handler)
    with pytest.raises(LocalProtocolError, match="not registered for 'current'"):
        registry.off("current", handler)
    assert registry.handlers("history") == (handler,)


class Display:
    """Owns a bound-method handler."""

    def __init__(self) -> None:
        self.shown: list[object] = []

    def show(self, item: object) -> None:
        self.shown.append(item)


def test_bound_methods_can_be_removed_with_a_fresh_reference() -> None:
    registry: HandlerRegistry[object] = HandlerRegistry()
    display = Display()
    registry.on("current", display.show)
    # display.show is a new bound-method object on each access.
    registry.off("current", display.show)
    registry.dispatch("current", 1)
    assert display.shown == []


@pytest.mark.parametrize("bad_name", ["", 7, None, b"current"])
def test_on_and_off_refuse_names_that_are_not_non_empty_str(bad_name: object) -> None:
    registry: HandlerRegistry[object] = HandlerRegistry()
    with pytest.raises(LocalProtocolError, match="handler name must be a non-empty str"):
        registry.on(bad_name, print)  # type: ignore[call-overload]
    with pytest.raises(LocalProtocolError, match="handler name must be a non-empty str"):
        registry.on(bad_name)  # type: ignore[call-overload]
    with pytest.raises(LocalProtocolError, match="handler name must be a non-empty str"):
        registry.off(bad_name)  # type: ignore[arg-type]


def test_name_error_messages_are_bounded_even_for_unprintable_values() -> None:
    registry: HandlerRegistry[object] = HandlerRegistry()
    with pytest.raises(LocalProtocolError) as excinfo:
        registry.on(10**5000, print)  # type: ignore[call-overload]
    # The int is beyond Python's str-conversion limit: only its type is shown.
    assert str(excinfo.value) == "handler name must be a non-empty str, got <int>"


def test_on_refuses_a_handler_that_is_not_callable() -> None:
    registry: HandlerRegistry[object] = HandlerRegistry()
    with pytest.raises(LocalProtocolError) as excinfo:
        registry.on("current", "not a function")  # type: ignore[call-overload]
    assert str(excinfo.value) == "handler for 'current' must be callable, got str"
    decorate = registry.on("current")
    with pytest.raises(LocalProtocolError, match="must be callable"):
        decorate(42)  # type: ignore[arg-type]
    assert registry.handlers("current") == ()


def test_a_raising_handler_is_collected_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry: HandlerRegistry[dict[str, str]] = HandlerRegistry()
    calls: list[str] = []
    error = ValueError("boom")

    def explode(item: dict[str, str]) -> None:
        raise error

    registry.on("*", make_recorder(calls, "star"))
    registry.on("current", explode)
    registry.on("current", make_recorder(calls, "after"))

    with caplog.at_level(logging.ERROR, logger="octoproto.handlers"):
        failures = registry.dispatch("current", {"session": SECRET})

    assert calls == ["star", "after"]
    assert failures == [HandlerFailure(name="current", handler=explode, error=error)]
    assert len(caplog.records) == 1
    record = caplog.records[0]
    assert record.name == "octoproto.handlers"
    assert record.levelno == logging.ERROR
    assert record.getMessage() == (
        f"handler {__name__}.test_a_raising_handler_is_collected_logged_and_the_others_still_run"
        ".<locals>.explode raised while handling 'current'"
    )
    assert record.exc_info is not None
    assert record.exc_info[1] is error
    # The item's contents never reach the log.
    assert SECRET not in caplog.text


def test_failures_are_returned_in_the_order_they_happened() -> None:
    registry: HandlerRegistry[object] = HandlerRegistry()
    first_error = KeyError("a")
    second_error = RuntimeError("b")

    def fail_first(item: object) -> None:
        raise first_error

    def fail_second(item: object) -> None:
        raise second_error

    registry.on("*", fail_first)
    registry.on("event", fail_second)
    failures = registry.dispatch("event", None)
    assert [(f.name, f.handler, f.error) for f in failures] == [
        ("event", fail_first, first_error),
        ("event", fail_second, second_error),
    ]


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit, GeneratorExit])
def test_base_exceptions_propagate_and_stop_dispatch(stop: type[BaseException]) -> None:
    registry: HandlerRegistry[object] = HandlerRegistry()
    calls: list[str] = []

    def interrupt(item: object) -> None:
        raise stop

    registry.on("current", interrupt)
    registry.on("current", make_recorder(calls, "after"))
    with pytest.raises(stop):
        registry.dispatch("current", None)
    assert calls == []


def test_handlers_registered_during_dispatch_run_from_the_next_dispatch() -> None:
    registry: HandlerRegistry[object] = HandlerRegistry()
    calls: list[str] = []
    late = make_recorder(calls, "late")

    def add_late(item: object) -> None:
        calls.append("adder")
        registry.on("current", late)

    registry.on("current", add_late)
    registry.dispatch("current", None)
    assert calls == ["adder"]
    registry.dispatch("current", None)
    assert calls == ["adder", "adder", "late"]


def test_handlers_removed_during_dispatch_still_run_this_time() -> None:
    registry: HandlerRegistry[object] = HandlerRegistry()
    calls: list[str] = []
    victim = make_recorder(calls, "victim")

    def remove_victim(item: object) -> None:
        calls.append("remover")
        registry.off("current", victim)

    registry.on("*", remove_victim)
    registry.on("current", victim)
    registry.dispatch("current", None)
    assert calls == ["remover", "victim"]


def test_handlers_returns_a_snapshot() -> None:
    registry: HandlerRegistry[object] = HandlerRegistry()
    registry.on("current", print)
    snapshot = registry.handlers("current")
    registry.on("current", repr)
    assert snapshot == (print,)
    assert registry.handlers("current") == (print, repr)


class CallableObject:
    """A handler that is an instance, with no __qualname__ of its own."""

    def __call__(self, item: object) -> None:
        raise ValueError(f"bad item {item!r}")


def test_failure_repr_shows_no_item_data_and_names_odd_handlers() -> None:
    registry: HandlerRegistry[object] = HandlerRegistry()
    callable_object = CallableObject()
    registry.on("current", callable_object)
    partial_handler = functools.partial(CallableObject.__call__, callable_object)
    registry.on("current", partial_handler)

    failures = registry.dispatch("current", SECRET)

    assert [repr(failure) for failure in failures] == [
        f"HandlerFailure(name='current', handler={__name__}.CallableObject, error=ValueError)",
        "HandlerFailure(name='current', handler=functools.partial, error=ValueError)",
    ]
    # The error itself still carries the details for whoever wants them.
    assert SECRET in str(failures[0].error)


def test_a_handler_without_a_module_is_named_by_its_qualname() -> None:
    registry: HandlerRegistry[object] = HandlerRegistry()

    def nowhere(item: object) -> None:
        raise ValueError(item)

    nowhere.__module__ = None  # type: ignore[assignment]
    registry.on("x", nowhere)
    [failure] = registry.dispatch("x", None)
    assert repr(failure) == (
        "HandlerFailure(name='x', handler=test_a_handler_without_a_module_is_named_by_its_qualname"
        ".<locals>.nowhere, error=ValueError)"
    )


def test_long_remote_names_are_truncated_in_logs_and_reprs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry: HandlerRegistry[object] = HandlerRegistry()

    def explode(item: object) -> None:
        raise ValueError

    registry.on("*", explode)
    long_name = "x" * 10_000
    with caplog.at_level(logging.ERROR, logger="octoproto.handlers"):
        [failure] = registry.dispatch(long_name, None)
    assert failure.name == long_name
    assert len(repr(failure)) < 250
    assert len(caplog.records[0].getMessage()) < 250


# A reference model for on/off: a plain list per name, off removing the
# last equal element.
_OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["on", "off", "off-all"]),
        st.sampled_from(["*", "current", "event"]),
        st.integers(min_value=0, max_value=2),
    ),
    max_size=30,
)


@given(_OPERATIONS)
def test_registry_matches_a_list_model(operations: list[tuple[str, str, int]]) -> None:
    calls: list[str] = []
    handlers = [make_recorder(calls, str(index)) for index in range(3)]
    registry: HandlerRegistry[object] = HandlerRegistry()
    model: dict[str, list[Callable[[object], None]]] = {}

    for operation, name, index in operations:
        handler = handlers[index]
        if operation == "on":
            registry.on(name, handler)
            model.setdefault(name, []).append(handler)
        elif operation == "off-all":
            registry.off(name)
            model.pop(name, None)
        elif handler in model.get(name, []):
            registry.off(name, handler)
            registered = model[name]
            del registered[len(registered) - 1 - registered[::-1].index(handler)]
        else:
            with pytest.raises(LocalProtocolError):
                registry.off(name, handler)

    for name in ("*", "current", "event"):
        assert registry.handlers(name) == tuple(model.get(name, []))
    calls.clear()
    registry.dispatch("current", None)
    expected = model.get("*", []) + model.get("current", [])
    assert calls == [handler.__qualname__.removeprefix("record_") for handler in expected]
