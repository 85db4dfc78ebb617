"""Tests for octoproto._sockjs: frame parsing, encoding, paths and session ids."""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from octoproto._errors import InvalidMessageError, LocalProtocolError
from octoproto._sockjs import (
    SockJSClose,
    SockJSFramingError,
    SockJSHeartbeat,
    SockJSMessages,
    SockJSOpen,
    encode_messages,
    parse_frame,
    random_session_ids,
    raw_path,
    session_path,
)
from octoproto._util import loads_json_or_raise

# ---------------------------------------------------------------- parse_frame


def test_open_and_heartbeat() -> None:
    assert parse_frame("o") == SockJSOpen()
    assert parse_frame("h") == SockJSHeartbeat()
    assert SockJSOpen() != SockJSHeartbeat()  # type: ignore[comparison-overlap]


def test_array_frame_as_octoprint_sends_it() -> None:
    frame = parse_frame('a[{"connected": {"version": "1.11.8", "debug": false}}]')
    assert frame == SockJSMessages(({"connected": {"version": "1.11.8", "debug": False}},))


def test_array_frame_with_several_messages_of_any_json_type() -> None:
    frame = parse_frame('a[{"current":{}}, "text", 3, 1.5, null, true, [1]]')
    assert frame == SockJSMessages(({"current": {}}, "text", 3, 1.5, None, True, [1]))


def test_empty_array_frame_has_no_messages() -> None:
    assert parse_frame("a[]") == SockJSMessages(())


def test_what_tornado_writes_is_accepted() -> None:
    # tornado escapes "</" as "<\/" and may emit NaN / Infinity.
    frame = parse_frame('a[{"logs": ["<\\/script>"], "temp": NaN, "z": Infinity, "y": -Infinity}]')
    assert isinstance(frame, SockJSMessages)
    [message] = frame.messages
    assert isinstance(message, dict)
    assert message["logs"] == ["</script>"]
    assert math.isnan(message["temp"])
    assert (message["z"], message["y"]) == (math.inf, -math.inf)


def test_single_message_frame() -> None:
    assert parse_frame('m{"a":1}') == SockJSMessages(({"a": 1},))
    assert parse_frame('m"hello"') == SockJSMessages(("hello",))
    assert parse_frame("m[1,2]") == SockJSMessages(([1, 2],))


def test_close_frame() -> None:
    assert parse_frame('c[3000,"Go away!"]') == SockJSClose(code=3000, reason="Go away!")
    assert parse_frame('c[2010, "Another connection still open"]') == SockJSClose(
        2010, "Another connection still open"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty SockJS frame"),
        ("x", "unknown SockJS frame type 'x'"),
        ("A[]", "unknown SockJS frame type 'A'"),
        (" o", "unknown SockJS frame type ' '"),
        ("[1]", "unknown SockJS frame type '['"),
        ("oo", "SockJS 'o' frame has 1 unexpected characters after it"),
        ("o\n", "SockJS 'o' frame has 1 unexpected characters after it"),
        ("h[]", "SockJS 'h' frame has 2 unexpected characters after it"),
        ("a", "invalid JSON: Expecting value at position 0"),
        ("a[", "invalid JSON: Expecting value at position 1"),
        ("a[1 2]", "invalid JSON: Expecting ',' delimiter at position 3"),
        ("a[1] x", "invalid JSON: Extra data at position 4"),
        ("m", "invalid JSON: Expecting value at position 0"),
        ("c", "invalid JSON: Expecting value at position 0"),
        ("a{}", "SockJS 'a' frame must carry a JSON array, got an object"),
        ('a"x"', "SockJS 'a' frame must carry a JSON array, got a string"),
        ("a1", "SockJS 'a' frame must carry a JSON array, got a number"),
        ("a1.5", "SockJS 'a' frame must carry a JSON array, got a number"),
        ("anull", "SockJS 'a' frame must carry a JSON array, got null"),
        ("atrue", "SockJS 'a' frame must carry a JSON array, got a boolean"),
        ("c[3000]", "SockJS 'c' frame must carry [code, reason] (an int and a string)"),
        ('c[3000,"x",1]', "SockJS 'c' frame must carry [code, reason] (an int and a string)"),
        ('c[true,"x"]', "SockJS 'c' frame must carry [code, reason] (an int and a string)"),
        ('c[3000.0,"x"]', "SockJS 'c' frame must carry [code, reason] (an int and a string)"),
        ("c[3000,1]", "SockJS 'c' frame must carry [code, reason] (an int and a string)"),
        ('c{"code":3000}', "SockJS 'c' frame must carry [code, reason] (an int and a string)"),
        ('c"bye"', "SockJS 'c' frame must carry [code, reason] (an int and a string)"),
    ],
)
def test_malformed_frames_raise_only_the_framing_error(text: str, message: str) -> None:
    with pytest.raises(SockJSFramingError) as excinfo:
        parse_frame(text)
    assert str(excinfo.value) == message


def test_deep_nesting_is_a_framing_error_not_a_recursion_error() -> None:
    with pytest.raises(SockJSFramingError) as excinfo:
        parse_frame("a" + "[" * 100_000)
    assert str(excinfo.value) == "invalid JSON: nested too deeply"


def test_an_integer_beyond_the_digit_limit_is_a_framing_error() -> None:
    with pytest.raises(SockJSFramingError) as excinfo:
        parse_frame("a[" + "7" * 5000 + "]")
    # Python 3.10 says "(4300)", later versions "(4300 digits)".
    assert re.match(r"invalid JSON: Exceeds the limit \(4300( digits)?\)", str(excinfo.value))


def test_errors_do_not_echo_or_chain_the_frame() -> None:
    secret = "s3cr3t"
    with pytest.raises(SockJSFramingError) as excinfo:
        parse_frame('a[{"session": "' + secret + '"')
    assert secret not in str(excinfo.value)
    # A JSONDecodeError would keep the whole text in .doc: it is not chained.
    assert excinfo.value.__cause__ is None
    assert excinfo.value.__suppress_context__ is True


def test_framing_error_is_not_a_local_protocol_error() -> None:
    # Remote faults become events; only caller misuse is a LocalProtocolError.
    assert not issubclass(SockJSFramingError, LocalProtocolError)


def test_loads_json_or_raise_uses_the_given_error_type() -> None:
    class Custom(Exception):
        pass

    assert loads_json_or_raise('{"a": [1, null]}', Custom) == {"a": [1, None]}
    with pytest.raises(Custom, match=r"^invalid JSON: Expecting value at position 0$"):
        loads_json_or_raise("", Custom)


@given(st.text())
def test_parse_frame_never_raises_anything_else(text: str) -> None:
    try:
        frame = parse_frame(text)
    except SockJSFramingError:
        return
    assert isinstance(frame, (SockJSOpen, SockJSHeartbeat, SockJSMessages, SockJSClose))


@given(st.sampled_from("oahcm"), st.text())
def test_parse_frame_never_raises_anything_else_after_a_valid_prefix(
    prefix: str, rest: str
) -> None:
    with contextlib.suppress(SockJSFramingError):
        parse_frame(prefix + rest)


# JSON values without NaN, so that equality after a round trip is meaningful.
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@given(st.lists(_JSON, max_size=5))
def test_any_json_array_parses_to_its_elements(values: list[Any]) -> None:
    assert parse_frame("a" + json.dumps(values)) == SockJSMessages(tuple(values))


@given(st.integers(), st.text())
def test_any_close_payload_parses(code: int, reason: str) -> None:
    assert parse_frame("c" + json.dumps([code, reason])) == SockJSClose(code, reason)


# ---------------------------------------------------------------- encode_messages


def test_encode_messages_as_octoprint_expects() -> None:
    assert encode_messages(['{"auth":"u:s"}']) == '["{\\"auth\\":\\"u:s\\"}"]'
    assert encode_messages(('{"throttle":2}', "{}")) == '["{\\"throttle\\":2}","{}"]'


def test_encode_no_messages_is_the_keep_alive_frame() -> None:
    assert encode_messages([]) == "[]"


def test_encode_messages_escapes_non_ascii() -> None:
    assert encode_messages(['{"user":"é"}']) == '["{\\"user\\":\\"\\u00e9\\"}"]'


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ('{"auth":"u:s"}', "messages must be a sequence of str, got str"),
        ({"{}"}, "messages must be a sequence of str, got set"),
        (iter(["{}"]), "messages must be a sequence of str, got list_iterator"),
        (["{}", {"a": 1}], "message 1 must be JSON text (a str), got dict"),
        ([b"{}"], "message 0 must be JSON text (a str), got bytes"),
    ],
)
def test_encode_messages_refuses_what_is_not_a_sequence_of_str(
    messages: object, message: str
) -> None:
    with pytest.raises(InvalidMessageError) as excinfo:
        encode_messages(messages)  # type: ignore[arg-type]
    assert str(excinfo.value) == message


@given(st.lists(st.text(), max_size=5))
def test_encoded_messages_reparse_as_the_same_strings(messages: list[str]) -> None:
    encoded = encode_messages(messages)
    assert json.loads(encoded) == messages
    # The server answers with 'a' + the same kind of array; it parses back.
    assert parse_frame("a" + encoded) == SockJSMessages(tuple(messages))


# ---------------------------------------------------------------- paths


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("", "/sockjs/123/ab12cd34/websocket"),
        ("/", "/sockjs/123/ab12cd34/websocket"),
        ("/octoprint", "/octoprint/sockjs/123/ab12cd34/websocket"),
        ("/octoprint/", "/octoprint/sockjs/123/ab12cd34/websocket"),
        ("octoprint", "/octoprint/sockjs/123/ab12cd34/websocket"),
        ("//octoprint//", "/octoprint/sockjs/123/ab12cd34/websocket"),
        ("/a/b/", "/a/b/sockjs/123/ab12cd34/websocket"),
    ],
)
def test_session_path_joins_with_exactly_one_slash(base: str, expected: str) -> None:
    assert session_path(base, "123", "ab12cd34") == expected


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("", "/sockjs/websocket"),
        ("/", "/sockjs/websocket"),
        ("/octoprint/", "/octoprint/sockjs/websocket"),
        ("octoprint", "/octoprint/sockjs/websocket"),
    ],
)
def test_raw_path(base: str, expected: str) -> None:
    assert raw_path(base) == expected


@pytest.mark.parametrize(
    ("server_id", "session_id", "label"),
    [
        ("", "abc", "server id"),
        ("1/2", "abc", "server id"),
        ("1.2", "abc", "server id"),
        (123, "abc", "server id"),
        ("123", "", "session id"),
        ("123", "a.b", "session id"),
        ("123", "a b", "session id"),
        ("123", "a?b", "session id"),
        ("123", None, "session id"),
    ],
)
def test_session_path_refuses_ids_that_do_not_fit_in_a_path(
    server_id: object, session_id: object, label: str
) -> None:
    with pytest.raises(LocalProtocolError) as excinfo:
        session_path("", server_id, session_id)  # type: ignore[arg-type]
    assert str(excinfo.value) == (
        f"SockJS {label} must be a non-empty str of letters, digits, '_', '~' or '-'"
    )


def test_session_path_accepts_every_safe_id_character() -> None:
    assert session_path("", "A-z_9~", "0") == "/sockjs/A-z_9~/0/websocket"


@pytest.mark.parametrize("base", ["/x?y=1", "/x#frag"])
def test_paths_refuse_a_base_with_query_or_fragment(base: str) -> None:
    for build in (raw_path, lambda b: session_path(b, "1", "a")):
        with pytest.raises(LocalProtocolError) as excinfo:
            build(base)
        assert str(excinfo.value) == "base path must be a URL path, without '?' or '#'"


def test_paths_refuse_a_base_that_is_not_a_str() -> None:
    with pytest.raises(LocalProtocolError) as excinfo:
        raw_path(None)  # type: ignore[arg-type]
    assert str(excinfo.value) == "base path must be a str, got NoneType"


# ---------------------------------------------------------------- session ids


class ScriptedEntropy:
    """Returns prepared byte strings in order and records the sizes asked for."""

    def __init__(self, *chunks: bytes | bytearray) -> None:
        self.chunks = list(chunks)
        self.requests: list[int] = []

    def __call__(self, size: int) -> bytes:
        self.requests.append(size)
        # A bytearray is passed through as is, to test that it is accepted.
        return self.chunks.pop(0)  # type: ignore[return-value]


def test_session_ids_from_zero_bytes() -> None:
    entropy = ScriptedEntropy(bytes(8), bytes(16))
    assert random_session_ids(entropy) == ("000", "aaaaaaaa")
    assert entropy.requests == [8, 16]


def test_session_ids_are_the_bytes_reduced_and_written_in_base_36() -> None:
    # 123 for the server; 1 + 26 * 36 for the session, least significant
    # digit first: "b", then "0" (index 26), then "a"s.
    entropy = ScriptedEntropy(
        (123).to_bytes(8, "big"),
        (1 + 26 * 36).to_bytes(16, "big"),
    )
    assert random_session_ids(entropy) == ("123", "b0aaaaaa")


def test_session_ids_from_all_ones() -> None:
    # (2**64 - 1) % 1000 == 615; (2**128 - 1) % 36**8 == 1684807352319, whose
    # base-36 digits, least significant first, are 3 3 25 28 22 35 17 21.
    entropy = ScriptedEntropy(b"\xff" * 8, bytearray(b"\xff" * 16))
    assert random_session_ids(entropy) == ("615", "ddz2w9rv")


@pytest.mark.parametrize(
    ("chunks", "message"),
    [
        ((bytes(7),), "entropy(8) must return 8 bytes, got 7"),
        ((bytes(8), bytes(17)), "entropy(16) must return 16 bytes, got 17"),
        (("00000000",), "entropy(8) must return bytes, got str"),
        ((None,), "entropy(8) must return bytes, got NoneType"),
    ],
)
def test_a_broken_entropy_source_is_refused(chunks: tuple[object, ...], message: str) -> None:
    entropy = ScriptedEntropy(*chunks)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError) as excinfo:
        random_session_ids(entropy)
    assert str(excinfo.value) == message


@given(st.binary(min_size=8, max_size=8), st.binary(min_size=16, max_size=16))
def test_session_ids_always_have_the_sockjs_shape(
    server_bytes: bytes, session_bytes: bytes
) -> None:
    entropy: Callable[[int], bytes] = ScriptedEntropy(server_bytes, session_bytes)
    server_id, session_id = random_session_ids(entropy)
    assert re.fullmatch(r"[0-9]{3}", server_id)
    assert re.fullmatch(r"[a-z0-9]{8}", session_id)
    assert int(server_id) == int.from_bytes(server_bytes, "big") % 1000
    # Every id is usable in the endpoint path.
    assert session_path("", server_id, session_id) == f"/sockjs/{server_id}/{session_id}/websocket"


def test_same_entropy_gives_the_same_ids() -> None:
    def seeded(size: int) -> bytes:
        return bytes(range(size))

    assert random_session_ids(seeded) == random_session_ids(seeded)
