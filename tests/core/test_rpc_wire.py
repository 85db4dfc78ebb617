"""Tests for octoproto._rpc_wire: RPC messages in JSON and MessagePack."""

from __future__ import annotations

import builtins
import json
import math
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from octoproto import LocalProtocolError, MsgpackMissingError, RpcError, RpcValueError
from octoproto._rpc_wire import (
    MAX_DEPTH,
    MAX_SAFE_INTEGER,
    Notification,
    Response,
    RpcCodec,
    RpcWireError,
)

JSON = RpcCodec("json")
MSGPACK = RpcCodec("msgpack")


def packed(value: object) -> bytes:
    return msgpack.packb(value)  # type: ignore[no-any-return]


# --- requests ------------------------------------------------------------------


def test_a_json_request_is_compact_text_with_the_jsonrpc_key() -> None:
    message = JSON.request("sum", [1, 2], 7)
    assert JSON.encode(message) == '{"jsonrpc":"2.0","method":"sum","params":[1,2],"id":7}'


def test_a_notification_has_no_id_and_no_params_when_there_are_none() -> None:
    assert JSON.encode(JSON.request("ping", None, None)) == '{"jsonrpc":"2.0","method":"ping"}'


def test_a_msgpack_request_is_a_binary_map_with_the_jsonrpc_key() -> None:
    payload = MSGPACK.encode(MSGPACK.request("echo", {"a": "é"}, "x1"))
    assert isinstance(payload, bytes)
    assert msgpack.unpackb(payload) == {
        "jsonrpc": "2.0",
        "method": "echo",
        "params": {"a": "é"},
        "id": "x1",
    }


def test_a_batch_is_an_array() -> None:
    batch = [JSON.request("a", None, 1), JSON.request("b", [1], 2)]
    assert json.loads(JSON.encode(batch)) == batch


def test_tuples_become_lists() -> None:
    assert JSON.request("m", (1, (2,)), 1)["params"] == [1, [2]]


@pytest.mark.parametrize("method", ["", 5, None])
def test_a_method_name_is_a_non_empty_str(method: Any) -> None:
    with pytest.raises(RpcValueError, match="method name"):
        JSON.request(method, None, 1)


@pytest.mark.parametrize("params", ["text", 5, b"x", 1.5])
def test_params_are_structured(params: object) -> None:
    with pytest.raises(RpcValueError, match="structured params"):
        JSON.request("m", params, 1)


@pytest.mark.parametrize("request_id", [0, "", True, -1, 1.0, MAX_SAFE_INTEGER + 1, [1]])
def test_ids_the_server_would_take_for_no_id_or_cannot_echo_are_refused(request_id: Any) -> None:
    with pytest.raises(RpcValueError, match="request id"):
        JSON.request("m", None, request_id)


@pytest.mark.parametrize(
    "params",
    [[b"bytes"], [object()], [{1: "int key"}], [math.nan], [math.inf], {"x": {1, 2}}],
)
def test_values_json_cannot_carry_are_refused(params: object) -> None:
    with pytest.raises(RpcValueError):
        JSON.request("m", params, 1)


def test_nesting_is_bounded() -> None:
    deep: list[object] = []
    for _ in range(MAX_DEPTH):
        deep = [deep]
    with pytest.raises(RpcValueError, match="deeper"):
        JSON.request("m", deep, 1)
    JSON.request("m", deep[0], 1)  # one level less is fine


def test_msgpack_carries_non_finite_floats() -> None:
    payload = MSGPACK.encode(MSGPACK.request("m", [math.inf], 1))
    assert msgpack.unpackb(payload)["params"] == [math.inf]


@pytest.mark.parametrize("value", [-(2**31), 2**32 - 1, 0, -1, 127])
def test_msgpack_sends_32_bit_ints_as_ints(value: int) -> None:
    payload = MSGPACK.encode(MSGPACK.request("m", [value], 1))
    assert not any(marker in payload for marker in (b"\xcf", b"\xd3", b"\xcb"))
    assert msgpack.unpackb(payload)["params"] == [value]


@pytest.mark.parametrize("value", [2**32, -(2**31) - 1, MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER])
def test_msgpack_sends_larger_safe_ints_as_float64(value: int) -> None:
    payload = MSGPACK.encode(MSGPACK.request("m", {"n": value}, 1))
    # 0xcf/0xd3 (64-bit ints) are what the reference decoder cannot read.
    assert b"\xcb" in payload
    assert msgpack.unpackb(payload)["params"] == {"n": float(value)}


@pytest.mark.parametrize("value", [MAX_SAFE_INTEGER + 1, -(2**64)])
def test_msgpack_refuses_ints_it_cannot_send_exactly(value: int) -> None:
    with pytest.raises(RpcValueError, match="as a str"):
        MSGPACK.request("m", [value], 1)


def test_json_sends_big_ints_exactly() -> None:
    assert JSON.encode(JSON.request("m", [2**70], 1)) == (
        f'{{"jsonrpc":"2.0","method":"m","params":[{2**70}],"id":1}}'
    )


def test_an_unknown_encoding_is_refused() -> None:
    with pytest.raises(LocalProtocolError, match="encoding"):
        RpcCodec("xml")  # type: ignore[arg-type]


def test_msgpack_mode_without_the_package_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "msgpack":
            raise ImportError("no msgpack")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(MsgpackMissingError, match=r"octoproto\[msgpack\]"):
        RpcCodec("msgpack")
    JSON.request("still", None, 1)  # JSON mode needs nothing


# --- server messages -----------------------------------------------------------


def test_responses_with_and_without_the_jsonrpc_key() -> None:
    assert JSON.decode('{"jsonrpc":"2.0","result":3,"id":1}') == [Response(1, 3)]
    assert MSGPACK.decode(packed({"result": None, "id": "a"})) == [Response("a", None)]


def test_an_error_response() -> None:
    [response] = JSON.decode(
        '{"jsonrpc":"2.0","error":{"code":-32601,"message":"Method not found"},"id":null}'
    )
    assert response == Response(None, error=RpcError(-32601, "Method not found"))


def test_an_error_keeps_its_data() -> None:
    [response] = MSGPACK.decode(
        packed({"error": {"code": -1.0, "message": "custom", "data": {"x": 1}}, "id": 2})
    )
    assert isinstance(response, Response)
    assert response.error is not None
    assert response.error == RpcError(-1, "custom", {"x": 1})
    assert isinstance(response.error.code, int)
    assert str(response.error) == "-1 custom: {'x': 1}"
    assert str(RpcError(-32605, "Method forbidden")) == "-32605 Method forbidden"


def test_integral_float_ids_are_ints_and_other_ids_stay() -> None:
    assert MSGPACK.decode(packed({"result": 1, "id": 3.0}))[0].id == 3  # type: ignore[union-attr]
    assert JSON.decode('{"result":1,"id":1.5}')[0].id == 1.5  # type: ignore[union-attr]


def test_notifications() -> None:
    assert JSON.decode('{"notification":"tick","params":[]}') == [Notification("tick", [])]
    assert JSON.decode('{"notification":"tick"}') == [Notification("tick", None)]
    assert JSON.decode('{"jsonrpc":"2.0","method":"note","params":{"a":1}}') == [
        Notification("note", {"a": 1})
    ]


def test_a_batch_of_responses_keeps_its_order() -> None:
    batch = '[{"result":1,"id":2},{"error":{"code":1,"message":"m"},"id":1}]'
    assert JSON.decode(batch) == [Response(2, 1), Response(1, error=RpcError(1, "m"))]


def test_msgpack_reads_64_bit_ints_and_bins_from_the_server() -> None:
    [response] = MSGPACK.decode(packed({"result": [2**40, -(2**40), b"\x00"], "id": 1}))
    assert response == Response(1, [2**40, -(2**40), b"\x00"])


BAD_JSON = [
    ("not json", "invalid JSON"),
    ("[]", "empty batch"),
    ('[{"notification":"x"}]', "only responses"),
    ("5", "must be an object"),
    ('{"jsonrpc":"1.0","result":1,"id":1}', "jsonrpc version"),
    ('{"notification":5}', "notification name"),
    ('{"method":5}', "method name"),
    ('{"method":"m","id":1}', "not supported"),
    ('{"result":1}', "without an id"),
    ('{"result":1,"error":{},"id":1}', "exactly one"),
    ('{"id":1}', "exactly one"),
    ('{"result":1,"id":[1]}', "response id"),
    ('{"result":1,"id":true}', "response id"),
    ('{"error":"x","id":1}', "error must be an object"),
    ('{"error":{"code":"x","message":"m"},"id":1}', "error code"),
    ('{"error":{"code":1.5,"message":"m"},"id":1}', "error code"),
    ('{"error":{"code":true,"message":"m"},"id":1}', "error code"),
    ('{"error":{"code":1},"id":1}', "error message"),
]


@pytest.mark.parametrize(("text", "detail"), BAD_JSON)
def test_bad_server_messages_raise_the_wire_error(text: str, detail: str) -> None:
    with pytest.raises(RpcWireError, match=detail):
        JSON.decode(text)


def test_each_mode_takes_its_own_frame_type() -> None:
    with pytest.raises(RpcWireError, match="binary frame in JSON mode"):
        JSON.decode(b'{"result":1,"id":1}')
    with pytest.raises(RpcWireError, match="text frame in msgpack mode"):
        MSGPACK.decode('{"result":1,"id":1}')


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (b"\xc1", "invalid msgpack: FormatError"),
        (b"\x01\x02", "invalid msgpack: ExtraData"),
        (b"\x92\x01", "invalid msgpack"),
        (b"\x81\x01\x02", "invalid msgpack: ValueError"),  # an int map key
        (b"\xa2\xff\xfe", "invalid msgpack"),  # not UTF-8
        (b"\x91" * 5000, "invalid msgpack"),  # nested too deeply
        (packed({"result": msgpack.ExtType(5, b"x"), "id": 1}), "extension type 5"),
        (packed({"result": [msgpack.Timestamp(1, 0)], "id": 1}), "Timestamp is not"),
        (packed({"result": {"t": msgpack.Timestamp(2**40, 5)}, "id": 1}), "Timestamp"),
    ],
)
def test_bad_msgpack_raises_the_wire_error(data: bytes, detail: str) -> None:
    with pytest.raises(RpcWireError, match=detail):
        MSGPACK.decode(data)


def test_timestamp_markers_in_plain_data_are_fine() -> None:
    # The bytes of a timestamp header inside a string are no timestamp.
    [response] = MSGPACK.decode(packed({"result": ["\u00d6\u00ff", b"\xd6\xff"], "id": 1}))
    assert response == Response(1, ["\u00d6\u00ff", b"\xd6\xff"])


# --- round trips ---------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
params_strategy = (
    st.none()
    | st.lists(json_values, max_size=4)
    | st.dictionaries(st.text(), json_values, max_size=4)
)
ids = st.integers(1, MAX_SAFE_INTEGER) | st.text(min_size=1)


@given(params=params_strategy, request_id=ids)
def test_json_requests_round_trip(params: object, request_id: int | str) -> None:
    message = JSON.request("method", params, request_id)
    assert json.loads(JSON.encode(message)) == message
    # The server's echo of it decodes to the same id and the params as result.
    echo = json.dumps({"jsonrpc": "2.0", "result": params, "id": request_id})
    assert JSON.decode(echo) == [Response(request_id, params)]


def _as_sent(value: object) -> object:
    """What msgpack mode sends for ``value``: ints beyond 32 bits as floats."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if -(2**31) <= value < 2**32 else float(value)
    if isinstance(value, list):
        return [_as_sent(item) for item in value]
    if isinstance(value, dict):
        return {key: _as_sent(item) for key, item in value.items()}
    return value


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(params=st.lists(msgpack_values, max_size=4), request_id=ids)
def test_msgpack_requests_round_trip(params: list[object], request_id: int | str) -> None:
    payload = MSGPACK.encode(MSGPACK.request("method", params, request_id))
    assert isinstance(payload, bytes)
    decoded = msgpack.unpackb(payload)
    assert decoded["params"] == _as_sent(params)
    assert decoded["id"] == request_id
    echo = packed({"result": decoded["params"], "id": decoded["id"]})
    assert MSGPACK.decode(echo) == [Response(request_id, _as_sent(params))]
