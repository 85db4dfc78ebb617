"""Tests for octoproto._octoprint_wire: parsing server messages, validating client ones."""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from octoproto._errors import InvalidMessageError, LocalProtocolError
from octoproto._octoprint_wire import (
    OctoPrintWireError,
    encode_auth,
    encode_message,
    encode_subscribe,
    encode_throttle,
    parse_json_text,
    split_push_message,
)
from octoproto._sockjs import SockJSMessages, encode_messages, parse_frame

SECRET = "Zq9s3cr3tSess10n"

# ---------------------------------------------------------------- server to client


def test_parse_json_text_decodes_what_the_raw_endpoint_sends() -> None:
    assert parse_json_text('{"current": {"progress": {"completion": 12.5}}}') == {
        "current": {"progress": {"completion": 12.5}}
    }
    value = parse_json_text('{"temps": [NaN], "log": "<\\/b>"}')
    assert isinstance(value, dict)
    assert math.isnan(value["temps"][0])
    assert value["log"] == "</b>"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "invalid JSON: Expecting value at position 0"),
        ("not json", "invalid JSON: Expecting value at position 0"),
        ('{"a": 1', "invalid JSON: Expecting ',' delimiter at position 7"),
        ("[" * 100_000, "invalid JSON: nested too deeply"),
    ],
)
def test_parse_json_text_raises_only_the_wire_error(text: str, message: str) -> None:
    with pytest.raises(OctoPrintWireError) as excinfo:
        parse_json_text(text)
    assert str(excinfo.value) == message
    assert not isinstance(excinfo.value, LocalProtocolError)


@given(st.text())
def test_parse_json_text_never_raises_anything_else(text: str) -> None:
    with contextlib.suppress(OctoPrintWireError):
        parse_json_text(text)


def test_split_push_message_dispatches_each_key_in_order() -> None:
    message = {"event": {"type": "ClientAuthed"}, "current": {"state": {}}, "zzz": None}
    assert split_push_message(message) == [
        ("event", {"type": "ClientAuthed"}),
        ("current", {"state": {}}),
        ("zzz", None),
    ]


def test_split_push_message_of_an_empty_object_is_nothing() -> None:
    assert split_push_message({}) == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([{"current": {}}], "an OctoPrint message must be a JSON object, got list"),
        ("current", "an OctoPrint message must be a JSON object, got str"),
        (None, "an OctoPrint message must be a JSON object, got NoneType"),
        (3, "an OctoPrint message must be a JSON object, got int"),
        ({1: "x"}, "OctoPrint message types must be strings, got int"),
    ],
)
def test_split_push_message_refuses_anything_but_an_object(value: object, message: str) -> None:
    with pytest.raises(OctoPrintWireError) as excinfo:
        split_push_message(value)
    assert str(excinfo.value) == message


def test_a_sockjs_frame_splits_into_dispatches() -> None:
    frame = parse_frame('a[{"connected": {"version": "1.11.8"}}, {"history": {}, "x": 1}]')
    assert isinstance(frame, SockJSMessages)
    assert [pair for message in frame.messages for pair in split_push_message(message)] == [
        ("connected", {"version": "1.11.8"}),
        ("history", {}),
        ("x", 1),
    ]


# ---------------------------------------------------------------- auth


def test_encode_auth() -> None:
    assert encode_auth("alice", SECRET) == '{"auth":"alice:' + SECRET + '"}'


def test_encode_auth_escapes_non_ascii_user_names() -> None:
    assert encode_auth("zoë", "s") == '{"auth":"zo\\u00eb:s"}'


@pytest.mark.parametrize(
    ("user", "session", "message"),
    [
        ("", SECRET, "auth: the user must be a non-empty str, got str"),
        (None, SECRET, "auth: the user must be a non-empty str, got NoneType"),
        (b"alice", SECRET, "auth: the user must be a non-empty str, got bytes"),
        ("ali:ce", SECRET, "auth: a user name containing ':' cannot authenticate"),
        ("alice", "", "auth: the session must be a non-empty str, got str"),
        ("alice", None, "auth: the session must be a non-empty str, got NoneType"),
        ("alice", SECRET.encode(), "auth: the session must be a non-empty str, got bytes"),
    ],
)
def test_encode_auth_refuses_what_cannot_authenticate(
    user: object, session: object, message: str
) -> None:
    with pytest.raises(InvalidMessageError) as excinfo:
        encode_auth(user, session)  # type: ignore[arg-type]
    assert str(excinfo.value) == message
    assert SECRET not in repr(excinfo.value)


def test_a_session_may_contain_a_colon() -> None:
    # OctoPrint splits at the first colon, so only the user must not have one.
    assert encode_auth("alice", "a:b") == '{"auth":"alice:a:b"}'


# ---------------------------------------------------------------- throttle


@pytest.mark.parametrize("factor", [1, 2, 10, 1_000_000])
def test_encode_throttle(factor: int) -> None:
    assert encode_throttle(factor) == f'{{"throttle":{factor}}}'


@pytest.mark.parametrize(
    ("factor", "message"),
    [
        (0, "throttle: the factor must be >= 1, got 0"),
        (-1, "throttle: the factor must be >= 1, got -1"),
        pytest.param(
            -(10**5000), "throttle: the factor must be >= 1, got <int>", id="beyond-digit-limit"
        ),
        (True, "throttle: the factor must be an int, got bool"),
        (2.0, "throttle: the factor must be an int, got float"),
        ("3", "throttle: the factor must be an int, got str"),
        (None, "throttle: the factor must be an int, got NoneType"),
        ([2], "throttle: the factor must be an int, got list"),
    ],
)
def test_encode_throttle_refuses_what_the_server_would_misread(
    factor: object, message: str
) -> None:
    with pytest.raises(InvalidMessageError) as excinfo:
        encode_throttle(factor)  # type: ignore[arg-type]
    assert str(excinfo.value) == message


def test_a_throttle_factor_too_long_to_print_is_refused_cleanly() -> None:
    with pytest.raises(InvalidMessageError) as excinfo:
        encode_throttle(10**5000)
    # Python 3.10 says "(4300)", later versions "(4300 digits)".
    assert re.match(
        r"'throttle' payload is not JSON-serialisable: Exceeds the limit \(4300( digits)?\)",
        str(excinfo.value),
    )


# ---------------------------------------------------------------- subscribe


@pytest.mark.parametrize(
    ("subscription", "expected"),
    [
        ({}, '{"subscribe":{}}'),
        ({"state": True}, '{"subscribe":{"state":true}}'),
        (
            {"state": {"logs": "^Recv: ok", "messages": False}, "plugins": False, "events": True},
            '{"subscribe":{"state":{"logs":"^Recv: ok","messages":false},'
            '"plugins":false,"events":true}}',
        ),
        (
            {"events": ("PrintStarted", "PrintDone"), "plugins": ["softwareupdate"]},
            '{"subscribe":{"events":["PrintStarted","PrintDone"],"plugins":["softwareupdate"]}}',
        ),
        ({"plugins": [], "state": {}}, '{"subscribe":{"plugins":[],"state":{}}}'),
        ({"state": {"logs": ""}}, '{"subscribe":{"state":{"logs":""}}}'),
        (
            MappingProxyType({"state": MappingProxyType({"logs": True})}),
            '{"subscribe":{"state":{"logs":true}}}',
        ),
    ],
)
def test_encode_subscribe(subscription: Mapping[str, object], expected: str) -> None:
    assert encode_subscribe(subscription) == expected
    assert encode_message("subscribe", subscription) == expected


@pytest.mark.parametrize(
    ("subscription", "message"),
    [
        ("state", "subscribe: the subscription must be a mapping, got 'state'"),
        (["state"], "subscribe: the subscription must be a mapping, got ['state']"),
        (
            {"status": True},
            "subscribe: unknown key 'status' (allowed: state, plugins, events)",
        ),
        ({1: True}, "subscribe: unknown key 1 (allowed: state, plugins, events)"),
        ({"state": "x"}, "subscribe: state must be a bool or a mapping, got 'x'"),
        ({"state": 1}, "subscribe: state must be a bool or a mapping, got 1"),
        ({"state": None}, "subscribe: state must be a bool or a mapping, got None"),
        (
            {"state": {"temps": True}},
            "subscribe: unknown state key 'temps' (allowed: logs, messages)",
        ),
        (
            {"state": {"logs": 1}},
            "subscribe: state.logs must be a bool or a regex str, got 1",
        ),
        (
            {"state": {"messages": ["a"]}},
            "subscribe: state.messages must be a bool or a regex str, got ['a']",
        ),
        (
            {"state": {"logs": "["}},
            "subscribe: state.logs is not a valid regex ('['): "
            "unterminated character set at position 0",
        ),
        (
            {"state": {"messages": "a{4294967296}"}},
            "subscribe: state.messages is not a valid regex ('a{4294967296}'): "
            "the repetition number is too large",
        ),
        ({"plugins": "all"}, "subscribe: plugins must be a bool or a list of str, got 'all'"),
        ({"plugins": None}, "subscribe: plugins must be a bool or a list of str, got None"),
        ({"plugins": {"a"}}, "subscribe: plugins must be a bool or a list of str, got {'a'}"),
        ({"plugins": ["a", 2]}, "subscribe: plugins[1] must be a str, got 2"),
        ({"events": 1}, "subscribe: events must be a bool or a list of str, got 1"),
        ({"events": [None]}, "subscribe: events[0] must be a str, got None"),
    ],
)
def test_encode_subscribe_refuses_and_names_the_offender(
    subscription: object, message: str
) -> None:
    with pytest.raises(InvalidMessageError) as excinfo:
        encode_subscribe(subscription)  # type: ignore[arg-type]
    assert str(excinfo.value) == message
    with pytest.raises(InvalidMessageError) as excinfo:
        encode_message("subscribe", subscription)
    assert str(excinfo.value) == message


def test_a_regex_nested_too_deeply_for_python_is_refused() -> None:
    with pytest.raises(InvalidMessageError) as excinfo:
        encode_subscribe({"state": {"logs": "(" * 2000 + ")" * 2000}})
    assert str(excinfo.value).startswith("subscribe: state.logs is not a valid regex ('((((")
    assert str(excinfo.value).endswith("): maximum recursion depth exceeded")


def test_huge_values_are_truncated_in_error_messages() -> None:
    cases: list[dict[str, object]] = [
        {"plugins": "p" * 100_000},
        {"events": ["e"] * 100_000 + [0]},
        {"state": {"logs": "[" + "x" * 100_000}},
        {"x" * 100_000: True},
        {"state": list(range(100_000))},
    ]
    for subscription in cases:
        with pytest.raises(InvalidMessageError) as excinfo:
            encode_subscribe(subscription)
        assert len(str(excinfo.value)) < 200, subscription.keys()


class Unprintable:
    """A value whose repr itself fails."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


def test_values_whose_repr_fails_are_named_by_type() -> None:
    with pytest.raises(InvalidMessageError) as excinfo:
        encode_subscribe({"events": Unprintable()})
    # reprlib already falls back to the type (and address) for these.
    assert re.fullmatch(
        r"subscribe: events must be a bool or a list of str, "
        r"got <Unprintable instance at 0x[0-9a-f]+>",
        str(excinfo.value),
    )


# ---------------------------------------------------------------- encode_message


def test_encode_message_of_a_user_type() -> None:
    assert encode_message("myPlugin", {"a": [1, 2.5, None, "é"]}) == (
        '{"myPlugin":{"a":[1,2.5,null,"\\u00e9"]}}'
    )
    assert encode_message("ping", None) == '{"ping":null}'


def test_encode_message_routes_auth_through_the_auth_rules() -> None:
    assert encode_message("auth", "alice:" + SECRET) == encode_auth("alice", SECRET)
    # Split at the first colon: the rest is the session.
    assert encode_message("auth", "alice:a:b") == '{"auth":"alice:a:b"}'


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (SECRET, "auth: the payload must be a 'user:session' str (no ':' found)"),
        (":" + SECRET, "auth: the user must be a non-empty str, got str"),
        ("alice:", "auth: the session must be a non-empty str, got str"),
        (["alice", SECRET], "auth: the payload must be a 'user:session' str, got list"),
        (
            {"user": "alice", "session": SECRET},
            "auth: the payload must be a 'user:session' str, got dict",
        ),
    ],
)
def test_encode_message_refuses_bad_auth_without_leaking_it(payload: object, message: str) -> None:
    with pytest.raises(InvalidMessageError) as excinfo:
        encode_message("auth", payload)
    assert str(excinfo.value) == message
    assert SECRET not in repr(excinfo.value)


def test_encode_message_routes_throttle_through_the_throttle_rules() -> None:
    assert encode_message("throttle", 3) == '{"throttle":3}'
    for bad in (0, True, "2", 1.5, None):
        with pytest.raises(InvalidMessageError, match=r"^throttle: the factor must be"):
            encode_message("throttle", bad)


@pytest.mark.parametrize(
    ("message_type", "message"),
    [
        ("", "the message type must be a non-empty str, got ''"),
        (None, "the message type must be a non-empty str, got None"),
        (1, "the message type must be a non-empty str, got 1"),
    ],
)
def test_encode_message_refuses_a_bad_type(message_type: object, message: str) -> None:
    with pytest.raises(InvalidMessageError) as excinfo:
        encode_message(message_type, {})  # type: ignore[arg-type]
    assert str(excinfo.value) == message


def _circular() -> list[object]:
    loop: list[object] = []
    loop.append(loop)
    return loop


def _deep() -> list[object]:
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    return deep


_NOT_JSON = "'x' payload is not JSON-serialisable: "


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            math.nan,
            _NOT_JSON + "Out of range float values are not JSON compliant",
        ),
        (
            {"t": [math.inf]},
            _NOT_JSON + "Out of range float values are not JSON compliant",
        ),
        (
            {1, 2},
            _NOT_JSON + "Object of type set is not JSON serializable",
        ),
        (
            b"bytes",
            _NOT_JSON + "Object of type bytes is not JSON serializable",
        ),
        (
            {(1, 2): 3},
            _NOT_JSON + "keys must be str, int, float, bool or None, not tuple",
        ),
        (_circular(), _NOT_JSON + "Circular reference detected"),
        (_deep(), "'x' payload is nested too deeply to encode as JSON"),
    ],
)
def test_encode_message_refuses_payloads_that_are_not_strict_json(
    payload: object, message: str
) -> None:
    with pytest.raises(InvalidMessageError) as excinfo:
        encode_message("x", payload)
    # Python >= 3.12 appends the offending float (": nan") to json's message.
    assert re.fullmatch(re.escape(message) + r"(: -?(nan|inf))?", str(excinfo.value))
    assert excinfo.value.__cause__ is None


def test_invalid_message_error_is_a_local_protocol_error() -> None:
    with pytest.raises(LocalProtocolError):
        encode_message("throttle", 0)


# ---------------------------------------------------------------- properties

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)

_CONTROL_TYPES = ("auth", "throttle", "subscribe")


@given(st.text(min_size=1).filter(lambda name: name not in _CONTROL_TYPES), _JSON)
def test_any_json_payload_round_trips(message_type: str, payload: Any) -> None:
    encoded = encode_message(message_type, payload)
    assert json.loads(encoded) == {message_type: payload}
    # And it survives the SockJS layer both ways.
    assert json.loads(json.loads(encode_messages([encoded]))[0]) == {message_type: payload}


@given(st.sampled_from(_CONTROL_TYPES), _JSON | st.sets(st.integers()) | st.just(math.nan))
def test_control_messages_are_valid_or_refused_never_anything_else(
    message_type: str, payload: object
) -> None:
    try:
        encoded = encode_message(message_type, payload)
    except InvalidMessageError:
        return
    decoded = json.loads(encoded)
    assert list(decoded) == [message_type]


_REGEX_OR_FLAG = st.booleans() | st.sampled_from(["", "^Recv:", "ok|wait", r"T\d+"])
_NAMES = st.booleans() | st.lists(st.text(max_size=10), max_size=3)
_SUBSCRIPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "state": st.booleans()
        | st.fixed_dictionaries({}, optional={"logs": _REGEX_OR_FLAG, "messages": _REGEX_OR_FLAG}),
        "plugins": _NAMES,
        "events": _NAMES,
    },
)


@given(_SUBSCRIPTIONS)
def test_every_valid_subscription_encodes_and_round_trips(subscription: dict[str, Any]) -> None:
    assert json.loads(encode_subscribe(subscription)) == {"subscribe": subscription}


@given(st.text(min_size=1).filter(lambda user: ":" not in user), st.text(min_size=1))
def test_every_valid_auth_round_trips_and_never_leaks(user: str, session: str) -> None:
    encoded = encode_auth(user, session)
    assert json.loads(encoded) == {"auth": f"{user}:{session}"}
    assert encode_message("auth", f"{user}:{session}") == encoded
