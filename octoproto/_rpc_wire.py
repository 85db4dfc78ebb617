"""RPC-over-WebSocket messages (rpc-websockets, msgpack-rpc-websockets), both directions.

Two encodings carry the same messages:

* ``"json"`` (rpc-websockets): one JSON object or array per **text** frame;
* ``"msgpack"`` (msgpack-rpc-websockets, or rpc-websockets with a MessagePack
  data pack): one msgpack map or array per **binary** frame.

Client to server, a request is ``{"jsonrpc": "2.0", "method", "params", "id"}``
and a notification the same without ``id``; ``params`` is left out when there
are none. Both encodings send the ``jsonrpc`` key: rpc-websockets refuses a
request without it (``-32600``), and msgpack-rpc-websockets ignores it.

Values are JSON's (``None``, ``bool``, ``int``, ``float``, ``str``, lists,
tuples, dicts with ``str`` keys) in both encodings, nested at most
:data:`MAX_DEPTH` deep. MessagePack's reference decoder (tiny-msgpack) cannot
read 64-bit integers, so an ``int`` outside the 32-bit range is sent as a
float64 when JavaScript holds it exactly (up to :data:`MAX_SAFE_INTEGER` in
magnitude, which is all a JavaScript server could read anyway), and refused
beyond that. Whatever cannot be sent raises :class:`RpcValueError` before
anything is written.

Server to client: a response ``{id, result}`` or ``{id, error: {code,
message[, data]}}`` (with or without ``jsonrpc``), a notification
``{notification: name, params}`` (or a JSON-RPC ``{method, params}`` without
``id``), or an array of responses (a batch). Integers may come back as
floats (msgpack-rpc-websockets sends large ones so), so an integral float is
taken for the int. Anything else raises :class:`RpcWireError`: a remote
fault, which the client reports as a :class:`~octoproto.ProtocolError`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from ._errors import CallError, InvalidMessageError, LocalProtocolError
from ._util import loads_json_or_raise, preview

__all__ = [
    "MAX_DEPTH",
    "MAX_SAFE_INTEGER",
    "Encoding",
    "MsgpackMissingError",
    "Notification",
    "Response",
    "RpcCodec",
    "RpcError",
    "RpcValueError",
    "RpcWireError",
]

#: How deep params may nest (lists and dicts inside each other).
MAX_DEPTH = 100
#: JavaScript's ``Number.MAX_SAFE_INTEGER``: the largest int sent as a float in msgpack mode.
MAX_SAFE_INTEGER = 2**53 - 1
# What every msgpack decoder reads as an integer: int32 and uint32.
_INT32_MIN, _UINT32_MAX = -(2**31), 2**32 - 1

Encoding: TypeAlias = Literal["json", "msgpack"]
#: A request id as it goes on the wire; a reply's id may also be ``None`` or a float.
RequestId: TypeAlias = "int | str"
ReplyId: TypeAlias = "int | float | str | None"


class RpcError(CallError):
    """The server answered a call with an error: its ``code``, ``message`` and ``data``.

    The JSON-RPC codes rpc-websockets uses: ``-32000`` (a method threw:
    ``message`` is the error's name, ``data`` its message), ``-32600``
    invalid request, ``-32601`` method not found, ``-32602`` invalid params,
    ``-32604`` params not found, ``-32605`` method forbidden (log in first),
    ``-32606`` event forbidden, ``-32700`` parse error. A server's own
    ``createError(code, message, data)`` comes through as it is.
    """

    def __init__(self, code: int, message: str, data: object = None) -> None:
        super().__init__(code, message, data)
        #: The JSON-RPC error code.
        self.code = code
        #: The server's short description.
        self.message = message
        #: Details, when the server sent any (``None`` otherwise).
        self.data = data

    def __str__(self) -> str:
        text = f"{self.code} {self.message}"
        return text if self.data is None else f"{text}: {preview(self.data)}"


class RpcValueError(InvalidMessageError):
    """A method name, params or request id cannot be sent in the chosen encoding."""


class MsgpackMissingError(LocalProtocolError, ImportError):
    """``encoding="msgpack"`` needs the ``msgpack`` package: ``pip install octoproto[msgpack]``."""


class RpcWireError(Exception):
    """The server sent something that is not a valid RPC message (a remote fault)."""


@dataclass(frozen=True, slots=True)
class Response:
    """A server's answer to one request: ``result``, or ``error`` when it failed."""

    #: The request's id as the server echoed it (``None`` when it could not tell).
    id: ReplyId
    result: object = None
    error: RpcError | None = None


@dataclass(frozen=True, slots=True)
class Notification:
    """A message the server pushed: an event (``{notification, params}``) or a method call."""

    name: str
    params: object


ServerMessage: TypeAlias = "Response | Notification"


def _load_msgpack() -> tuple[Callable[..., bytes], Callable[..., Any]]:
    try:
        import msgpack  # noqa: PLC0415 (optional: only msgpack mode needs it)
    except ImportError:
        raise MsgpackMissingError(
            'encoding="msgpack" needs the msgpack package: pip install octoproto[msgpack]'
        ) from None
    return msgpack.packb, msgpack.unpackb


def _refuse_ext(code: int, data: bytes) -> object:
    raise RpcWireError(f"msgpack extension type {code} is not an RPC value")


# The three encodings of the timestamp extension (type -1), which the msgpack
# decoder turns into Timestamp objects without asking ext_hook.
_TIMESTAMP_MARKERS = (b"\xd6\xff", b"\xd7\xff", b"\xc7\x0c\xff")


class RpcCodec:
    """Encodes requests and decodes server messages in one encoding.

    Raises :class:`MsgpackMissingError` when made for ``"msgpack"`` without
    the ``msgpack`` package installed.
    """

    def __init__(self, encoding: Encoding) -> None:
        if encoding not in ("json", "msgpack"):
            raise LocalProtocolError(f'encoding must be "json" or "msgpack", not {encoding!r}')
        self.encoding: Encoding = encoding
        self._msgpack = encoding == "msgpack"
        if self._msgpack:
            self._packb, self._unpackb = _load_msgpack()

    # --- client to server ---------------------------------------------------

    def request(
        self, method: str, params: object, request_id: RequestId | None
    ) -> dict[str, object]:
        """One request (``request_id`` given) or notification (``None``), checked.

        ``params`` is ``None`` (left out), a list or tuple, or a mapping with
        ``str`` keys. Returns the message ready for :meth:`encode`; raises
        :class:`RpcValueError` for anything the server could not take.
        """
        if not isinstance(method, str) or not method:
            raise RpcValueError(f"a method name must be a non-empty str, not {preview(method)}")
        message: dict[str, object] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            if not isinstance(params, (list, tuple, Mapping)):
                raise RpcValueError(
                    "params must be a list, a tuple, a mapping or None (JSON-RPC's"
                    f" structured params), not {type(params).__qualname__}"
                )
            message["params"] = self._value(params, 0)
        if request_id is not None:
            message["id"] = self._request_id(request_id)
        return message

    def encode(self, message: dict[str, object] | list[dict[str, object]]) -> str | bytes:
        """The frame payload of one message or a batch of them (from :meth:`request`)."""
        if self._msgpack:
            return self._packb(message)
        # Checked by request() already: nothing here can fail.
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False)

    def _request_id(self, request_id: object) -> RequestId:
        # rpc-websockets treats a falsy id (0, "") as none: no reply would come.
        if isinstance(request_id, str) and request_id:
            return request_id
        if (
            isinstance(request_id, int)
            and not isinstance(request_id, bool)
            and 1 <= request_id <= MAX_SAFE_INTEGER
        ):
            return request_id
        raise RpcValueError(
            "a request id must be a non-empty str or an int from 1 to 2**53 - 1,"
            f" not {preview(request_id)}"
        )

    def _value(self, value: object, depth: int) -> object:
        """``value`` checked, and converted for msgpack (ints beyond 32 bits become floats)."""
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, int):
            return self._int(value)
        if isinstance(value, float):
            if not self._msgpack and not math.isfinite(value):
                raise RpcValueError(f"{value} cannot be sent as JSON")
            return value
        if depth >= MAX_DEPTH:
            raise RpcValueError(f"params nest deeper than {MAX_DEPTH} levels")
        if isinstance(value, (list, tuple)):
            return [self._value(item, depth + 1) for item in value]
        if isinstance(value, Mapping):
            converted = {}
            for key, item in value.items():
                if not isinstance(key, str):
                    raise RpcValueError(f"a mapping key must be a str, not {preview(key)}")
                converted[key] = self._value(item, depth + 1)
            return converted
        raise RpcValueError(f"{type(value).__qualname__} is not an RPC value")

    def _int(self, value: int) -> int | float:
        if not self._msgpack or _INT32_MIN <= value <= _UINT32_MAX:
            return value
        if abs(value) <= MAX_SAFE_INTEGER:
            # Exact as a float64, and the number a JavaScript server sees anyway.
            return float(value)
        raise RpcValueError(
            f"{preview(value)} is beyond 2**53 - 1 in magnitude: msgpack mode cannot send it"
            " exactly (send it as a str)"
        )

    # --- server to client ---------------------------------------------------

    def decode(self, data: str | bytes) -> list[ServerMessage]:
        """The messages of one frame: one, or a batch's responses in order."""
        value = self._decode_payload(data)
        if isinstance(value, list):
            if not value:
                raise RpcWireError("an empty batch")
            responses: list[ServerMessage] = []
            for item in value:
                message = _message(item)
                if not isinstance(message, Response):
                    raise RpcWireError("a batch holds only responses")
                responses.append(message)
            return responses
        return [_message(value)]

    def _decode_payload(self, data: str | bytes) -> object:
        if not self._msgpack:
            if not isinstance(data, str):
                raise RpcWireError("a binary frame in JSON mode (expected text)")
            return loads_json_or_raise(data, RpcWireError)
        if isinstance(data, str):
            raise RpcWireError("a text frame in msgpack mode (expected binary)")
        try:
            value = self._unpackb(data, raw=False, ext_hook=_refuse_ext)
        except RpcWireError:
            raise
        except Exception as error:  # msgpack raises ValueError, TypeError and its own
            raise RpcWireError(f"invalid msgpack: {type(error).__name__}") from None
        if any(marker in data for marker in _TIMESTAMP_MARKERS):
            _refuse_timestamps(value)
        return value


def _refuse_timestamps(value: object) -> None:
    """Refuse a decoded value holding msgpack Timestamps (not RPC values)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif not isinstance(item, (str, bytes, int, float, type(None))):
            raise RpcWireError(f"msgpack {type(item).__name__} is not an RPC value")


def _as_id(value: object) -> ReplyId:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        # A float that holds an int is that int (msgpack peers send ints as floats).
        return int(value) if isinstance(value, float) and value.is_integer() else value
    raise RpcWireError(f"a response id must be a number, a str or null, not {preview(value)}")


def _message(value: object) -> ServerMessage:
    if not isinstance(value, dict):
        raise RpcWireError(f"an RPC message must be an object, not {type(value).__qualname__}")
    if "jsonrpc" in value and value["jsonrpc"] != "2.0":
        raise RpcWireError(f"unsupported jsonrpc version {preview(value['jsonrpc'])}")
    if "notification" in value:
        name = value["notification"]
        if not isinstance(name, str):
            raise RpcWireError(f"a notification name must be a str, not {preview(name)}")
        return Notification(name, value.get("params"))
    if "method" in value:
        name = value["method"]
        if not isinstance(name, str):
            raise RpcWireError(f"a method name must be a str, not {preview(name)}")
        if value.get("id") is not None:
            raise RpcWireError(f"the server called method {preview(name)}: not supported")
        return Notification(name, value.get("params"))
    if "id" not in value:
        raise RpcWireError("a response without an id")
    reply_id = _as_id(value["id"])
    if ("result" in value) == ("error" in value):
        raise RpcWireError("a response needs exactly one of result and error")
    if "result" in value:
        return Response(reply_id, value["result"])
    return Response(reply_id, error=_error(value["error"]))


def _error(value: object) -> RpcError:
    if not isinstance(value, dict):
        raise RpcWireError(f"an error must be an object, not {type(value).__qualname__}")
    code, message = value.get("code"), value.get("message")
    if isinstance(code, float) and code.is_integer():
        code = int(code)
    if not isinstance(code, int) or isinstance(code, bool):
        raise RpcWireError(f"an error code must be an int, not {preview(code)}")
    if not isinstance(message, str):
        raise RpcWireError(f"an error message must be a str, not {preview(message)}")
    return RpcError(code, message, value.get("data"))
