"""Record a session at the core's API boundary, and replay it.

Design must 2 makes the core deterministic: the same config, the same
entropy and the same inputs at the same ``now`` give the same outputs. This
module makes that something users can hold: a :class:`Recorder` writes every
input of a client, the entropy it draws and every output it gives as JSON
lines (a *trace*), and :func:`replay` feeds a trace's inputs into a fresh
client and checks that every output is the same, at the same point.

The trace format (version 1)
============================

Line 1 is the header::

    {"octoproto-trace": 1, "dialect": "octoprint", "redacted": true, "config": {...}}

``config`` holds every field of the client's configuration except the
entropy source (it is not needed: the trace holds the bytes drawn). Each
further line is one *step*: an input and the outputs taken after it, up to
the next input::

    {"in": "receive_data", "now": 3.25, "args": {"data": "<base64>", "channel": "socket"},
     "rand": "<base64>", "out": [["command", {...}], ["event", {...}], ["timer", 28.25]]}

* ``in``, ``now``, ``args``: the input method, its ``now`` and its other
  arguments (bytes as base64, channels and enums by value, JSON values as
  they are, with ``{"$b": ...}`` for bytes and ``{"$t": [...]}`` for tuples
  inside them). A step without ``in`` holds outputs taken before the first
  input. ``"unrecorded": "<argument>"`` replaces the arguments of a call
  whose argument could not be written (it raised, and so changed nothing).
* ``rand``: the entropy the input drew (the handshake nonce, frame masks,
  SockJS ids, jitter), all of it, in order. Replay hands these bytes back, so
  it needs no seed and works for sessions recorded with :func:`os.urandom`.
* ``raises``: the name of the exception the input raised.
* ``calls``: inputs made from inside ``message_processed`` by the throttle
  hooks (``on_rate_too_high``/``on_rate_too_low``, the default ones or the
  user's): replay makes the same calls from its hooks, whatever they were.
* ``out``: each ``next_command()``, ``next_event()``, ``get_timer()`` (and
  ``next_events()``/``next_batch()``) in the order they were called, with
  what it returned (``null`` included: "nothing more" is an output too).
  Commands and events are ``{"ClassName": {fields}}``.

The last line is ``{"end": {"steps": N}}``; a trace without it was cut short.

Redaction
=========

The secrets are in the client's own outgoing bytes: the API key in a login
header, the password in a login body, the session in the ``auth`` message,
and that message is compressed and masked with entropy inside a WebSocket
frame. Rewriting recorded bytes cannot reach inside that, and comparing them
"modulo secrets" at replay would need the secrets. So the recorder does not
rewrite outputs at all. It runs a second client beside the real one, a
*stand-in* built from the header's redacted config (placeholders instead of
secrets), fed the same inputs with secrets rewritten the same way and the
same entropy, and records the stand-in's outputs. A replay builds the very
same client from the same header and inputs, so it compares outputs
byte for byte, and needs to know nothing about redaction. The stand-in never
sees a secret: nothing in the trace can contain one unless an input carried
it unrecognised.

What is rewritten, each secret to a placeholder of the same length
(``redacted-session-1xxxx...``), the same placeholder wherever it appears:

* the config: ``api_key``, ``password``, and the values of the
  ``Authorization``, ``Proxy-Authorization``, ``X-Api-Key``, ``Cookie`` and
  ``X-CSRF-Token`` headers;
* HTTP responses (the login side channel): every ``Set-Cookie`` value (the
  CSRF token the client echoes in ``Cookie``/``X-CSRF-Token``) and every
  ``"session"``/``"apikey"`` string in a JSON body. Keeping the length keeps
  ``Content-Length`` right. The lines of a step are held back from the first
  byte of a response until the client closes that HTTP transport (when the
  whole response is known), because a value may be split across reads;
* the user's calls: ``send_auth``'s session, an ``auth`` message's session,
  and any known secret of 8 characters or more inside a string argument
  (a shorter one would hit innocent text);
* the ``secrets=`` you give: everywhere, including inside received bytes.

Not looked into: the WebSocket messages the server sends and the upgrade
response (OctoPrint sends no secret there; list one in ``secrets=`` if your
server does, for uncompressed messages).

The real client and the stand-in are compared as they run (kinds of
commands, events and timers, exceptions, entropy drawn); if redaction ever
made them take different paths, :attr:`Recorder.divergence` says where, and
the end line too. The trace still replays: it is the stand-in's session.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import json
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from ._commands import Channel, CloseTransport, SendData
from ._config import ReconnectSchedule, Secret, SessionConfig
from ._errors import LocalProtocolError
from ._octoprint import OctoPrintClient, OctoPrintConfig
from ._plain import WebSocketClient
from ._session import SessionEngine
from ._throttle import ThrottleSettings
from ._util import loads_json_or_raise

__all__ = [
    "TRACE_VERSION",
    "InvalidTraceError",
    "Recorder",
    "ReplayMismatch",
    "ReplayResult",
    "ReplayStep",
    "assert_replays",
    "check_replay",
    "replay",
]

#: The version of the trace format this module writes and reads.
TRACE_VERSION = 1

ClientT = TypeVar("ClientT", bound=SessionEngine)


class InvalidTraceError(LocalProtocolError):
    """The trace is not one this version can replay: not JSON, wrong version, cut short ...

    The message starts with the line number where the problem is.
    """


class ReplayMismatch(AssertionError):
    """:func:`assert_replays` found a step whose outputs differ from the trace's."""

    def __init__(self, result: ReplayResult) -> None:
        super().__init__(result.report())
        self.result = result


# --- what a client's inputs and outputs are ------------------------------------

# Argument kinds: how a value is written and read back.
_NOW, _CHANNEL, _BYTES, _SECRET, _JSON = "now", "channel", "bytes", "secret", "json"
#: A ``now`` the caller may leave out (sends take one only to start timers exactly).
_OPTIONAL_NOW = "optional now"

#: Every input method: its parameters in positional order, with their kind.
_INPUTS: dict[str, tuple[tuple[str, str], ...]] = {
    "connect": (("now", _NOW),),
    "reconnect": (("now", _NOW),),
    "disconnect": (("now", _NOW), ("code", _JSON), ("reason", _JSON)),
    "transport_opened": (("now", _NOW), ("channel", _CHANNEL)),
    "transport_failed": (("reason", _JSON), ("now", _NOW), ("channel", _CHANNEL)),
    "receive_data": (("data", _BYTES), ("now", _NOW), ("channel", _CHANNEL)),
    "receive_eof": (("now", _NOW), ("channel", _CHANNEL)),
    "handle_timer": (("now", _NOW),),
    "io_completed": (("operation", _JSON), ("nbytes", _JSON), ("seconds", _JSON), ("now", _NOW)),
    "clear_stats": (),
    "send": (("message", _JSON),),
    "send_message": (("message_type", _JSON), ("payload", _JSON), ("now", _OPTIONAL_NOW)),
    "send_auth": (("user", _JSON), ("session", _SECRET), ("now", _OPTIONAL_NOW)),
    "subscribe": (("subscription", _JSON),),
    "set_throttle": (("factor", _JSON),),
    "increase_rate": (),
    "decrease_rate": (),
    "message_processed": (("seconds", _JSON), ("now", _NOW)),
    "login": (("now", _NOW),),
}

_SCHEMAS = {name: dict(schema) for name, schema in _INPUTS.items()}
_CHANNELS = {channel.value: channel for channel in Channel}

#: Every output method, by the name its results have in a trace.
_OUTPUTS = {
    "command": "next_command",
    "event": "next_event",
    "timer": "get_timer",
    "events": "next_events",
    "batch": "next_batch",
}
#: The kinds as a tuple: a value from a trace (maybe a list) may be looked up in it.
_OUTPUT_KINDS = tuple(_OUTPUTS)

#: The callouts from the core to user code; inputs made in them are recorded.
_HOOKS = ("on_rate_too_high", "on_rate_too_low")
#: The one input during which the core calls the hooks.
_HOOKED_INPUT = "message_processed"

#: The dialects a trace can name: the client class and its config class.
_DIALECTS: dict[str, tuple[type[SessionEngine], type[SessionConfig]]] = {
    "octoprint": (OctoPrintClient, OctoPrintConfig),
    "websocket": (WebSocketClient, SessionConfig),
}
#: Config fields whose value is itself a settings dataclass.
_NESTED: dict[str, Callable[..., object]] = {
    "reconnect": ReconnectSchedule,
    "throttle": ThrottleSettings,
}
#: Config fields holding secrets, and headers whose value is one.
_SECRET_FIELDS = ("api_key", "password")
_SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "cookie", "x-csrf-token"}
)

_CLOSE_HTTP = CloseTransport(Channel.HTTP)
_SOCKET = Channel.SOCKET
#: Socket writes whose sizes are kept for ``io_completed`` (adapters report at once).
_SIZES_KEPT = 1024
_STEP_KEYS = frozenset({"in", "now", "args", "unrecorded", "calls", "rand", "raises", "out"})
_CALL_KEYS = frozenset({"in", "now", "args", "unrecorded"})


# --- values to JSON and back -------------------------------------------------------


class _Unencodable(Exception):
    """A value the trace format cannot hold."""


class _Opaque:
    """A value that could not be written (``{"$opaque": "TypeName"}``), read back.

    Only the configuration's ``warning_arg`` can be one: it is echoed in
    warning events, where the stand-in and a replay both show it as this.
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<unrecorded {self.name}>"


def _b64(data: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object, where: str) -> bytes:
    if not isinstance(text, str):
        raise InvalidTraceError(f"{where}: expected base64 text, got {type(text).__name__}")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidTraceError(f"{where}: not valid base64") from None


def _to_json(value: object) -> object:
    """An argument as JSON: exact for JSON values, bytes, tuples; refuses the rest."""
    kind = type(value)
    if value is None or kind in (str, int, float, bool):
        return value
    if kind in (bytes, bytearray, memoryview):
        return {"$b": _b64(value)}  # type: ignore[arg-type]
    if kind is list:
        return [_to_json(item) for item in value]  # type: ignore[attr-defined]
    if kind is tuple:
        return {"$t": [_to_json(item) for item in value]}  # type: ignore[attr-defined]
    if isinstance(value, Mapping):
        result: dict[str, object] = {}
        for key, item in value.items():
            if type(key) is not str:
                raise _Unencodable
            result[key] = _to_json(item)
        if len(result) == 1 and next(iter(result)).startswith("$"):
            return {"$d": result}  # a user's {"$b": ...} stays a dict
        return result
    raise _Unencodable


def _from_json(value: object, where: str) -> object:
    """The inverse of :func:`_to_json` (and of the ``$opaque`` of configs)."""
    kind = type(value)
    if kind is list:
        return [_from_json(item, where) for item in value]  # type: ignore[attr-defined]
    if kind is not dict:
        return value
    assert isinstance(value, dict)
    if len(value) == 1:
        ((tag, inner),) = value.items()
        if tag.startswith("$"):
            return _from_tag(tag, inner, where)
    return {key: _from_json(item, where) for key, item in value.items()}


def _from_tag(tag: str, inner: object, where: str) -> object:
    if tag == "$b":
        return _unb64(inner, where)
    if tag == "$t" and type(inner) is list:
        return tuple(_from_json(item, where) for item in inner)
    if tag == "$d" and type(inner) is dict:
        return {key: _from_json(item, where) for key, item in inner.items()}
    if tag == "$opaque" and type(inner) is str:
        return _Opaque(inner)
    raise InvalidTraceError(f"{where}: unknown or malformed {tag!r} value")


#: Output values of these types are written as they are (a push message's
#: data came from JSON, so it is JSON: it is not walked, which keeps replay fast).
_AS_IS = frozenset({str, int, float, bool, type(None), dict, list})
_FIELDS: dict[type, tuple[str, ...]] = {}


def _out(value: object) -> object:
    """An output (command, event, timer, batch item) as JSON, for writing and comparing."""
    kind = type(value)
    if kind in _AS_IS:
        return value
    if kind is bytes:
        return {"$b": _b64(value)}  # type: ignore[arg-type]
    if kind is tuple:
        return [_out(item) for item in value]  # type: ignore[attr-defined]
    names = _FIELDS.get(kind)
    if names is None:
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, _Opaque):
            return {"$opaque": value.name}
        if not dataclasses.is_dataclass(value):
            return {"$opaque": kind.__qualname__}
        names = _FIELDS[kind] = tuple(field.name for field in dataclasses.fields(value))
    return {kind.__name__: {name: _out(getattr(value, name)) for name in names}}


def _dump(value: object) -> str:
    # What _out passes through unwalked (a push message's data) may still
    # hold bytes or other objects: json asks _out about each of them.
    return json.dumps(value, separators=(",", ":"), default=_out)


def _same(expected: object, actual: object) -> bool:
    # ``==`` is the fast path; the text comparison catches NaN (never equal to
    # itself) and bytes inside a push message's data.
    return expected == actual or _dump(expected) == _dump(actual)


# --- secrets ---------------------------------------------------------------------------

#: Known secrets shorter than this are replaced only where they are known to be.
_SCRUB_MIN = 8
_SET_COOKIE = re.compile(rb'(?im)^set-cookie[ \t]*:[ \t]*[^=;\r\n]*=[ \t]*"?([^";\r\n]*)')
_JSON_SECRET = re.compile(rb'"(session|apikey)"[ \t\r\n]*:[ \t\r\n]*"((?:[^"\\]|\\.)*)"')


class _Redactor:
    """Which strings are secrets, and the stable placeholder of each.

    Inactive (``redact=False``), it keeps everything as it is.
    """

    def __init__(self, active: bool, extra: Iterable[str]) -> None:
        self.active = active
        self._tags: dict[str, str] = {}
        self._counts: dict[str, int] = {}
        self._extra: list[bytes] = []
        #: The secrets :meth:`scrub` looks for, longest first.
        self._scrubbed: list[str] = []
        for secret in extra:
            if not isinstance(secret, str) or not secret:
                raise LocalProtocolError("each of secrets= must be a non-empty str")
            self.learn(secret, "secret", scrub=True)
            self._extra.append(secret.encode())

    def learn(self, secret: str, kind: str, *, scrub: bool = False) -> None:
        """``secret`` has a placeholder from now on."""
        if self.active and secret and secret not in self._tags:
            count = self._counts[kind] = self._counts.get(kind, 0) + 1
            self._tags[secret] = f"redacted-{kind}-{count}"
            if scrub or len(secret) >= _SCRUB_MIN:
                self._scrubbed.append(secret)
                self._scrubbed.sort(key=len, reverse=True)

    def placeholder(self, secret: str, size: int) -> str:
        """The placeholder of a known secret, ``size`` ASCII characters long."""
        tag = self._tags[secret]
        text = (tag + "x" * size)[:size]
        if text == secret:  # a secret that looks like its own placeholder
            text = ("1" if secret.startswith("0") else "0") * size
        return text

    def secret(self, value: str, kind: str) -> str:
        """``value`` is a secret: its placeholder (itself when inactive)."""
        if not self.active or not value:
            return value
        self.learn(value, kind)
        return self.placeholder(value, len(value))

    def scrub(self, value: object) -> object:
        """``value`` with secrets in its strings replaced (lists, tuples, dicts too).

        The user's ``secrets=``, and every other known secret of at least
        :data:`_SCRUB_MIN` characters: a short one (an API key ``"KEY"`` in a
        test) would hit innocent text and change what the stand-in does.
        """
        if not self._scrubbed:
            return value
        if isinstance(value, str):
            for secret in self._scrubbed:
                if secret in value:
                    value = value.replace(secret, self.placeholder(secret, len(secret)))
            return value
        if isinstance(value, (list, tuple)):
            return type(value)(self.scrub(item) for item in value)
        if isinstance(value, Mapping):
            return {key: self.scrub(item) for key, item in value.items()}
        return value

    def scrub_bytes(self, data: bytes) -> bytes:
        """``data`` with the user's ``secrets=`` replaced (same length, so framing holds)."""
        for secret in self._extra:
            if secret in data:
                text = secret.decode()
                data = data.replace(secret, self.placeholder(text, len(secret)).encode())
        return data

    def http_response(self, raw: bytes) -> bytes:
        """``raw`` (HTTP response bytes) with cookie values and JSON session/apikey rewritten."""
        spans: list[tuple[int, int, str, str]] = []
        for match in _SET_COOKIE.finditer(raw):
            spans.append((match.start(1), match.end(1), "cookie", match[1].decode("latin-1")))
        for match in _JSON_SECRET.finditer(raw):
            kind = "session" if match[1] == b"session" else "apikey"
            spans.append((match.start(2), match.end(2), kind, _json_string(match[2])))
        rewritten = bytearray(raw)
        for start, end, kind, value in spans:
            if value:
                self.learn(value, kind)
                rewritten[start:end] = self.placeholder(value, end - start).encode()
        return self.scrub_bytes(bytes(rewritten))

    def config_value(self, name: str, value: object) -> object:
        """A config field as the header holds it."""
        if name in _SECRET_FIELDS and value is not None:
            text = value.reveal() if isinstance(value, Secret) else str(value)
            return self.secret(text, name.replace("_", ""))
        if name == "headers":
            return [
                [
                    key,
                    self.secret(item, "header")
                    if key.lower() in _SECRET_HEADERS
                    else self.scrub(item),
                ]
                for key, item in value  # type: ignore[attr-defined]
            ]
        if name in _NESTED and dataclasses.is_dataclass(value):
            return {
                field.name: self._config_json(getattr(value, field.name))
                for field in dataclasses.fields(value)
            }
        return self._config_json(value)

    def _config_json(self, value: object) -> object:
        if isinstance(value, (set, frozenset)):
            return sorted((self._config_json(item) for item in value), key=repr)
        if isinstance(value, (list, tuple)):
            return [self._config_json(item) for item in value]
        if isinstance(value, Mapping):
            return {str(key): self._config_json(item) for key, item in value.items()}
        if isinstance(value, enum.Enum):
            return self._config_json(value.value)
        try:
            return _to_json(self.scrub(value))
        except _Unencodable:
            return {"$opaque": type(value).__qualname__}


def _json_string(raw: bytes) -> str:
    """The value of a JSON string's inside (escapes and all)."""
    try:
        return str(json.loads(b'"' + raw + b'"'))
    except ValueError:
        return raw.decode("utf-8", "replace")


def _dialect_of(client_class: type[SessionEngine]) -> str:
    for cls in client_class.__mro__:
        for name, (base, _config) in _DIALECTS.items():
            if cls is base:
                return name
    raise LocalProtocolError(
        f"cannot record {client_class.__qualname__}: not a client of a known dialect"
    )


def _build(
    dialect: str,
    config: object,
    entropy: Callable[[int], bytes],
    client_class: type[SessionEngine] | None,
    where: str,
) -> SessionEngine:
    """A client from a header's config (the stand-in, or the replayed client)."""
    base, config_class = _DIALECTS[dialect]
    if not isinstance(config, dict):
        raise InvalidTraceError(f"{where}: 'config' must be an object")
    names = {field.name for field in dataclasses.fields(config_class)} - {"entropy"}
    options: dict[str, Any] = {}
    for name, value in config.items():
        if name not in names:
            raise InvalidTraceError(f"{where}: {dialect} has no config field {name!r}")
        options[name] = _from_json(value, f"{where}: config {name}")
    try:
        for name, make in _NESTED.items():
            if isinstance(options.get(name), dict):
                options[name] = make(**options[name])
        return (client_class or base)(config_class(entropy=entropy, **options))
    except Exception as exc:  # whatever the config's checks or the client's use of it raise
        raise InvalidTraceError(f"{where}: the config is not valid: {exc}") from None


# --- one input, as written and as replayed --------------------------------------------


class _Feed:
    """The entropy source of a stand-in or replayed client: one step's recorded bytes.

    Drawing past them gives zeros (and the step is reported: the session went
    another way).
    """

    __slots__ = ("_data", "_used")

    def __init__(self) -> None:
        self._data = b""
        self._used = 0

    def load(self, data: bytes) -> None:
        self._data, self._used = data, 0

    def __call__(self, count: int) -> bytes:
        start = self._used
        self._used = start + count
        chunk = self._data[start : self._used]
        return chunk if len(chunk) == count else chunk + bytes(count - len(chunk))

    def drawn(self) -> bytes:
        """Every byte handed out since :meth:`load`."""
        data = self._data[: self._used]
        return data + bytes(self._used - len(data))

    def problem(self) -> str | None:
        if self._used == len(self._data):
            return None
        return f"the input drew {self._used} bytes of entropy, the trace holds {len(self._data)}"


class _Hooks:
    """The throttle hooks of a stand-in or replayed client: they make the recorded calls."""

    def __init__(self, client: SessionEngine) -> None:
        self.client = client
        self.pending: list[tuple[str, dict[str, object] | None]] = []
        for name in _HOOKS:
            if hasattr(client, name):
                setattr(client, name, self)

    def __call__(self, measured: float, bound: float) -> None:
        calls, self.pending = self.pending, []
        for name, kwargs in calls:
            if kwargs is not None:
                getattr(self.client, name)(**kwargs)


def _bind(name: str, args: tuple[object, ...], kwargs: dict[str, object]) -> dict[str, object]:
    """A call's arguments by parameter name; raises :class:`_Unencodable` if they do not fit."""
    schema = _INPUTS[name]
    if len(args) > len(schema):
        raise _Unencodable
    bound = {param: value for (param, _kind), value in zip(schema, args, strict=False)}
    for key, value in kwargs.items():
        if key in bound or all(key != param for param, _kind in schema):
            raise _Unencodable
        bound[key] = value
    return bound


def _decode_call(
    record: object, where: str, client: SessionEngine, keys: frozenset[str]
) -> tuple[str, dict[str, object] | None]:
    """A recorded input: its name and keyword arguments (``None``: unrecorded)."""
    if not isinstance(record, dict):
        raise InvalidTraceError(f"{where}: a step must be a JSON object")
    if not record.keys() <= keys:
        raise InvalidTraceError(f"{where}: unknown key {sorted(record.keys() - keys)[0]!r}")
    name = record.get("in")
    schema = _SCHEMAS.get(name) if isinstance(name, str) else None
    if schema is None or not hasattr(client, name):  # type: ignore[arg-type]
        raise InvalidTraceError(f"{where}: {name!r} is not an input of this dialect")
    assert isinstance(name, str)
    if "unrecorded" in record:
        return name, None
    kwargs: dict[str, object] = {}
    if "args" in record:
        args = record["args"]
        if not isinstance(args, dict):
            raise InvalidTraceError(f"{where}: 'args' must be an object")
        for param, value in args.items():
            kind = schema.get(param, _NOW)
            if kind in (_NOW, _OPTIONAL_NOW):
                raise InvalidTraceError(f"{where}: {name}() has no argument {param!r} in 'args'")
            kwargs[param] = _decode_arg(kind, value, where, param)
    if schema.get("now") == _NOW or (schema.get("now") == _OPTIONAL_NOW and "now" in record):
        now = record.get("now")
        if type(now) not in (int, float):
            raise InvalidTraceError(f"{where}: 'now' must be a number")
        kwargs["now"] = now
    elif "now" in record:
        raise InvalidTraceError(f"{where}: {name}() takes no 'now'")
    return name, kwargs


def _decode_arg(kind: str, value: object, where: str, param: str) -> object:
    if kind == _CHANNEL:
        channel = _CHANNELS.get(value) if type(value) is str else None
        if channel is None:
            raise InvalidTraceError(f"{where}: {param}: not a channel: {value!r}")
        return channel
    if kind == _BYTES:
        return _unb64(value, f"{where}: {param}")
    if type(value) in (int, float, str):  # the usual: no walk needed
        return value
    return _from_json(value, f"{where}: {param}")


def _call(client: SessionEngine, name: str, kwargs: dict[str, object]) -> str | None:
    """Make one input; the name of what it raised, if anything."""
    try:
        getattr(client, name)(**kwargs)
    except Exception as exc:
        return type(exc).__name__
    return None


# --- recording ---------------------------------------------------------------------------


class _Step:
    """One input of the real client (``name`` None: outputs before the first), as it ran."""

    __slots__ = ("args", "calls", "draws", "name", "raised", "rand")

    def __init__(self, name: str | None, args: dict[str, object] | None = None) -> None:
        self.name = name
        #: The arguments by name (``None``: they did not fit the method).
        self.args = args
        self.calls: list[tuple[str, dict[str, object] | None]] = []
        self.rand = bytearray()
        self.raised: BaseException | None = None
        self.draws: list[tuple[str, object]] = []

    def http_data(self) -> bytes | None:
        """The bytes of a ``receive_data`` on the HTTP channel."""
        args = self.args
        if self.name != "receive_data" or args is None or args.get("channel") is not Channel.HTTP:
            return None
        data = args.get("data")
        return bytes(data) if isinstance(data, (bytes, bytearray, memoryview)) else None


class Recorder(Generic[ClientT]):
    """Records a client's session as a trace (JSON lines); :func:`replay` plays it back.

    ``Recorder(OctoPrintClient, config)`` builds the client (:attr:`client`)
    and records it from its first input on; drive it as any client. It is
    the recorder that builds it because the entropy source must be tapped
    from the first byte drawn. Lines go to ``write(line)`` (without a line
    break) as soon as each is complete, or, without ``write``, wait for
    :meth:`take_lines`. A step is complete when the next input starts, so
    call :meth:`close` at the end: it writes the last steps and the end line,
    and the client goes on unrecorded.

    ``redact`` (default on) replaces secrets with placeholders, see the
    module's documentation; ``secrets`` are more strings to replace wherever
    they appear (a token in the URL, say). Not thread-safe: call the client
    from one thread at a time (the adapters do, under their lock).
    """

    #: Steps held back at most while an HTTP response is awaited.
    hold_limit = 1000

    def __init__(
        self,
        client_class: type[ClientT],
        config: SessionConfig,
        *,
        redact: bool = True,
        secrets: Iterable[str] = (),
        write: Callable[[str], object] | None = None,
    ) -> None:
        self.dialect = _dialect_of(client_class)
        self._redactor = _Redactor(redact, secrets)
        self._write = write
        self._lines: list[str] = []
        self._step = _Step(None)
        self._held: list[_Step] = []
        self._http: list[tuple[_Step, bytes]] = []
        self._depth = 0
        self._steps = 0
        self._closed = False
        # (real, stand-in) sizes of the socket's SendData not reported written yet.
        self._sizes: deque[tuple[int, int]] = deque(maxlen=_SIZES_KEPT)
        #: Where redaction first made the recorded session differ from the real one.
        self.divergence: str | None = None
        header_config = {
            field.name: self._redactor.config_value(field.name, getattr(config, field.name))
            for field in dataclasses.fields(config)
            if field.name != "entropy"
        }
        self._source = config.entropy
        #: The client being recorded.
        self.client: ClientT = client_class(dataclasses.replace(config, entropy=self._tap))
        self._feed = _Feed()
        self._stand_in = _build(self.dialect, header_config, self._feed, client_class, "config")
        self._hooks = _Hooks(self._stand_in)
        self._wrapped: list[str] = []
        for name in _INPUTS:
            if hasattr(self.client, name):
                self._wrap(name, self._recording_input(name, getattr(self.client, name)))
        for kind, name in _OUTPUTS.items():  # every client has all of them
            self._wrap(name, self._recording_output(kind, getattr(self.client, name)))
        self._emit(
            {
                "octoproto-trace": TRACE_VERSION,
                "dialect": self.dialect,
                "redacted": redact,
                "config": header_config,
            }
        )

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called: the client is no longer recorded."""
        return self._closed

    def take_lines(self) -> list[str]:
        """The lines completed since the last call (when no ``write`` was given)."""
        lines, self._lines = self._lines, []
        return lines

    def close(self) -> None:
        """Write what is left and the end line, and stop recording. Idempotent."""
        if self._closed:
            return
        self._finish_step()
        self._release_held()
        end: dict[str, object] = {"steps": self._steps}
        if self.divergence is not None:
            end["diverged"] = self.divergence
        self._emit({"end": end})
        self._closed = True
        for name in self._wrapped:
            delattr(self.client, name)

    # --- taps on the real client ------------------------------------------------

    def _wrap(self, name: str, wrapper: Callable[..., object]) -> None:
        setattr(self.client, name, wrapper)
        self._wrapped.append(name)

    def _tap(self, count: int) -> bytes:
        data = self._source(count)
        if not self._closed:
            self._step.rand += data
        return data

    def _recording_input(self, name: str, method: Callable[..., object]) -> Callable[..., object]:
        def record(*args: object, **kwargs: object) -> object:
            if self._depth:
                # The core calling itself (reconnect -> connect ...), or a hook.
                if self._depth == 1 and self._step.name == _HOOKED_INPUT:
                    self._step.calls.append((name, _bound_or_none(name, args, kwargs)))
                self._depth += 1
                try:
                    return method(*args, **kwargs)
                finally:
                    self._depth -= 1
            self._finish_step()
            step = self._step = _Step(name, _bound_or_none(name, args, kwargs))
            self._depth = 1
            try:
                return method(*args, **kwargs)
            except BaseException as exc:
                step.raised = exc
                raise
            finally:
                self._depth = 0

        return record

    def _recording_output(self, kind: str, method: Callable[[], object]) -> Callable[[], object]:
        def record() -> object:
            value = method()
            self._step.draws.append((kind, value))
            return value

        return record

    # --- steps to lines ---------------------------------------------------------

    def _finish_step(self) -> None:
        step = self._step
        self._step = _Step(None)
        if step.name is None and not step.draws:
            return
        self._held.append(step)
        data = step.http_data()
        if self._redactor.active and data is not None:
            self._http.append((step, data))
        # While a response comes in, wait for the whole of it (the client closes
        # the transport then): a secret may be split across reads.
        if (
            self._http
            and len(self._held) < self.hold_limit
            and not any(value == _CLOSE_HTTP for _kind, value in step.draws)
        ):
            return
        self._release_held()

    def _release_held(self) -> None:
        if self._http:
            raw = self._redactor.http_response(b"".join(chunk for _step, chunk in self._http))
            for step, chunk in self._http:
                assert step.args is not None
                step.args["data"], raw = raw[: len(chunk)], raw[len(chunk) :]
            self._http = []
        held, self._held = self._held, []
        for step in held:
            self._release(step)

    def _release(self, step: _Step) -> None:
        """Run the step on the stand-in and write its line."""
        self._steps += 1
        line: dict[str, object] = {}
        raised: str | None = None
        self._feed.load(bytes(step.rand))
        if step.name == "io_completed" and step.args and "nbytes" in step.args:
            step.args["nbytes"] = self._stand_in_size(step.args["nbytes"])
        if step.name is not None:
            line = self._encode_call(step.name, step.args)
            kwargs = self._decode(line)
            calls = [self._encode_call(name, args) for name, args in step.calls]
            if calls:
                line["calls"] = calls
            self._hooks.pending = [self._decode_nested(call) for call in calls]
            if kwargs is None:  # could not be written; it raised, so it did nothing
                raised = None if step.raised is None else type(step.raised).__name__
            else:
                raised = _call(self._stand_in, step.name, kwargs)
            if self._feed.drawn():
                line["rand"] = _b64(self._feed.drawn())
            if raised is not None:
                line["raises"] = raised
            if (raised is None) != (step.raised is None):
                self._diverged("an exception was raised by one client only")
            if self._hooks.pending:
                # The stand-in made none of them: neither will a replay.
                del line["calls"]
                self._diverged("the throttle hooks were not called the same way")
            if kwargs is None and step.raised is None:
                self._diverged(f"an argument of {step.name}() could not be written")
        outputs = []
        for kind, real in step.draws:
            value = getattr(self._stand_in, _OUTPUTS[kind])()
            outputs.append([kind, _out(value)])
            if type(value) is SendData and type(real) is SendData and real.channel is _SOCKET:
                self._sizes.append((len(real.data), len(value.data)))
            if _shape(value) != _shape(real):
                self._diverged(f"{_OUTPUTS[kind]}() gave {_shape(value)}, not {_shape(real)}")
        if outputs:
            line["out"] = outputs
        if self._feed.drawn() != step.rand:
            # Checked last: another path draws other entropy, and the above say
            # which path.
            self._diverged("it drew other entropy")
        self._emit(line)

    def _stand_in_size(self, nbytes: object) -> object:
        """The stand-in's size of the write an ``io_completed`` reports.

        An ``auth`` message compresses to another size with a placeholder in
        it; the stand-in must count its own bytes (the send backlog, usage).
        Writes are reported in order, one per ``SendData``, some maybe not.
        """
        while self._sizes:
            real, stand_in = self._sizes.popleft()
            if real == nbytes:
                return stand_in
        return nbytes

    def _diverged(self, what: str) -> None:
        if self.divergence is None:
            self.divergence = f"step {self._steps}: {what}"

    def _encode_call(self, name: str, args: dict[str, object] | None) -> dict[str, object]:
        line: dict[str, object] = {"in": name}
        if args is None:
            line["unrecorded"] = "arguments"
            return line
        encoded: dict[str, object] = {}
        for param, kind in _INPUTS[name]:
            if param in args and not (kind == _OPTIONAL_NOW and args[param] is None):
                try:
                    value = self._encode_arg(name, kind, args[param], args)
                except _Unencodable:
                    return {"in": name, "unrecorded": param}
                if kind in (_NOW, _OPTIONAL_NOW):
                    line["now"] = value
                else:
                    encoded[param] = value
        if encoded:
            line["args"] = encoded
        return line

    def _encode_arg(self, name: str, kind: str, value: object, args: dict[str, object]) -> object:
        redactor = self._redactor
        if kind in (_NOW, _OPTIONAL_NOW):
            if type(value) not in (int, float):
                raise _Unencodable
            return value
        if kind == _CHANNEL:
            if not isinstance(value, Channel):
                raise _Unencodable
            return value.value
        if kind == _BYTES:
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise _Unencodable
            return _b64(redactor.scrub_bytes(bytes(value)))
        if kind == _SECRET:
            text = value.reveal() if isinstance(value, Secret) else value
            if not isinstance(text, str):
                raise _Unencodable
            return redactor.secret(text, "session")
        if name == "send_message" and args.get("message_type") == "auth" and type(value) is str:
            user, colon, session = value.partition(":")
            value = user + colon + redactor.secret(session, "session")
        return _to_json(redactor.scrub(value))

    def _decode(self, line: dict[str, object]) -> dict[str, object] | None:
        return _decode_call(line, "recording", self._stand_in, _STEP_KEYS)[1]

    def _decode_nested(self, line: dict[str, object]) -> tuple[str, dict[str, object] | None]:
        return _decode_call(line, "recording", self._stand_in, _CALL_KEYS)

    def _emit(self, line: dict[str, object]) -> None:
        text = _dump(line)
        if self._write is None:
            self._lines.append(text)
        else:
            self._write(text)


def _bound_or_none(
    name: str, args: tuple[object, ...], kwargs: dict[str, object]
) -> dict[str, object] | None:
    try:
        return _bind(name, args, kwargs)
    except _Unencodable:
        return None


def _shape(value: object) -> object:
    """What the real client's output and the stand-in's must share: kinds, channels, times."""
    if value is None or type(value) in (int, float):
        return value
    if isinstance(value, list):
        return [_shape(item) for item in value]
    return (type(value).__name__, getattr(value, "channel", None))


# --- replaying -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ReplayStep:
    """One step of a replay: an input and the outputs compared after it."""

    #: The step's number, from 1.
    number: int
    #: Its line in the trace (the header is line 1).
    line: int
    #: The input's name (``None``: outputs taken before the first input).
    input: str | None
    #: The input's ``now``, if it has one.
    now: float | None
    #: ``None`` when the step replayed identically; else what differs, for a human.
    difference: str | None

    @property
    def identical(self) -> bool:
        """Whether this step replayed identically."""
        return self.difference is None


@dataclasses.dataclass(frozen=True)
class ReplayResult:
    """What :func:`check_replay` found: how far it got, and the first differing step."""

    #: Steps replayed (up to and including the first differing one).
    steps: int
    #: The first step that differs, or ``None``.
    first_difference: ReplayStep | None

    @property
    def identical(self) -> bool:
        """Whether every step replayed identically."""
        return self.first_difference is None

    def __bool__(self) -> bool:
        return self.identical

    def report(self) -> str:
        """A readable account: identical, or the first differing step and what differs."""
        step = self.first_difference
        if step is None:
            return f"identical: {self.steps} steps replayed"
        at = "" if step.now is None else f" at now={step.now!r}"
        return (
            f"step {step.number} (line {step.line}) differs:"
            f" {step.input or '(outputs before the first input)'}{at}\n{step.difference}"
        )


def replay(
    lines: Iterable[str | bytes] | str | bytes,
    *,
    client_class: type[SessionEngine] | None = None,
) -> Iterator[ReplayStep]:
    """Replay a trace step by step: each :class:`ReplayStep` says whether it was identical.

    ``lines`` is the trace: an open file (text or binary), a list of lines,
    or the whole text. A fresh client is built from the header (of
    ``client_class``, default the dialect's) with the trace's entropy, each
    step's input is made and the outputs taken in the recorded order are
    compared with the recorded ones. Replay goes on after a difference (the
    later steps will mostly differ too). A trace that cannot be replayed
    (not JSON, another version, cut short, wrong types) raises
    :class:`InvalidTraceError` when the iteration reaches the problem.
    """
    numbered = _numbered(lines)
    player = _Player(next(numbered, None), client_class)
    for number, text in numbered:
        record = _parse(text, number)
        if "end" in record:
            player.end(record, number)
            for extra, _text in numbered:
                raise InvalidTraceError(f"line {extra}: a line after the end line")
            return
        yield player.step(record, number)
    raise InvalidTraceError(
        f"the trace ends after step {player.number} without its end line: it was cut short"
    )


def check_replay(
    lines: Iterable[str | bytes] | str | bytes,
    *,
    client_class: type[SessionEngine] | None = None,
) -> ReplayResult:
    """Replay a trace up to its first differing step; see :func:`replay`."""
    steps = 0
    for step in replay(lines, client_class=client_class):
        steps += 1
        if step.difference is not None:
            return ReplayResult(steps, step)
    return ReplayResult(steps, None)


def assert_replays(
    lines: Iterable[str | bytes] | str | bytes,
    *,
    client_class: type[SessionEngine] | None = None,
) -> ReplayResult:
    """Replay a trace; raise :class:`ReplayMismatch` (an ``AssertionError``) if a step differs.

    For tests: ``with open("session.trace") as trace: assert_replays(trace)``.
    """
    result = check_replay(lines, client_class=client_class)
    if not result.identical:
        raise ReplayMismatch(result)
    return result


def _numbered(lines: Iterable[str | bytes] | str | bytes) -> Iterator[tuple[int, str]]:
    """The non-blank lines with their numbers (from 1), as text."""
    if isinstance(lines, str):
        lines = lines.split("\n")
    elif isinstance(lines, bytes):
        lines = lines.split(b"\n")
    for number, line in enumerate(lines, 1):
        if isinstance(line, bytes):
            try:
                text = line.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise InvalidTraceError(f"line {number}: not UTF-8 text") from None
        elif isinstance(line, str):
            text = line.strip()
        else:
            raise InvalidTraceError(f"line {number}: not text but {type(line).__name__}")
        if text:
            yield number, text


def _parse(text: str, number: int) -> dict[str, Any]:
    def damaged(detail: str) -> InvalidTraceError:
        return InvalidTraceError(f"line {number}: not JSON, a damaged or truncated line ({detail})")

    record = loads_json_or_raise(text, damaged)
    if not isinstance(record, dict):
        raise InvalidTraceError(f"line {number}: expected a JSON object")
    return record


class _Player:
    """The replayed client and its step counter."""

    def __init__(
        self, first: tuple[int, str] | None, client_class: type[SessionEngine] | None
    ) -> None:
        if first is None:
            raise InvalidTraceError("the trace is empty")
        number, text = first
        header = _parse(text, number)
        where = f"line {number}"
        version = header.get("octoproto-trace")
        if version is None:
            raise InvalidTraceError(f"{where}: not an octoproto trace (no header)")
        if version != TRACE_VERSION:
            raise InvalidTraceError(
                f"{where}: trace format version {version!r}; this octoproto reads {TRACE_VERSION}"
            )
        dialect = header.get("dialect")
        if type(dialect) is not str or dialect not in _DIALECTS:
            raise InvalidTraceError(f"{where}: unknown dialect {dialect!r}")
        self.feed = _Feed()
        self.client = _build(dialect, header.get("config"), self.feed, client_class, where)
        self.hooks = _Hooks(self.client)
        self.number = 0

    def step(self, record: dict[str, Any], number: int) -> ReplayStep:
        self.number += 1
        where = f"line {number}"
        client = self.client
        name: str | None = None
        kwargs: dict[str, object] | None = None
        if "in" in record:
            name, kwargs = _decode_call(record, where, client, _STEP_KEYS)
        elif record.keys() - {"out"}:
            raise InvalidTraceError(f"{where}: a step without 'in' holds only 'out'")
        calls = record.get("calls", ())
        if type(calls) not in (list, tuple):
            raise InvalidTraceError(f"{where}: 'calls' must be a list")
        self.hooks.pending = [
            _decode_call(call, f"{where}: calls[{index}]", client, _CALL_KEYS)
            for index, call in enumerate(calls)
        ]
        self.feed.load(_unb64(record["rand"], f"{where}: rand") if "rand" in record else b"")
        expected = record.get("raises")
        if expected is not None and not isinstance(expected, str):
            raise InvalidTraceError(f"{where}: 'raises' must be a string")
        outputs = record.get("out", ())
        if type(outputs) not in (list, tuple):
            raise InvalidTraceError(f"{where}: 'out' must be a list of [kind, value] pairs")
        difference = None
        if name is not None:
            difference = self._input(name, kwargs, expected)
        if difference is None:
            difference = self._outputs(outputs, where)
        now: Any = kwargs.get("now") if kwargs else None
        return ReplayStep(self.number, number, name, now, difference)

    def _input(
        self, name: str, kwargs: dict[str, object] | None, expected: str | None
    ) -> str | None:
        """Make the step's input; what differs about it, if anything."""
        if kwargs is None:
            # Written without its arguments because they could not be: if it
            # raised, it did nothing (the core changes nothing when it raises).
            if expected is None:
                return "  the trace does not hold this input's arguments: it cannot be replayed"
            return None
        raised = _call(self.client, name, kwargs)
        if raised != expected:
            return f"  it raised {raised or 'nothing'}; the trace says {expected or 'nothing'}"
        problem = self.feed.problem()
        if problem is not None:
            return "  " + problem
        if self.hooks.pending:
            return "  the throttle hooks did not make the recorded calls"
        return None

    def _outputs(self, outputs: list[Any], where: str) -> str | None:
        client = self.client
        for index, output in enumerate(outputs, 1):
            if type(output) is not list or len(output) != 2 or output[0] not in _OUTPUT_KINDS:
                raise InvalidTraceError(f"{where}: 'out' must be a list of [kind, value] pairs")
            kind, expected = output
            method = _OUTPUTS[kind]
            take = getattr(client, method, None)
            if not callable(take):
                return f"  the client has no {method}()"
            actual = _out(take())
            if not _same(expected, actual):
                return f"  {method}() (output {index} of {len(outputs)}) differs:\n" + _diff(
                    expected, actual
                )
        return None

    def end(self, record: dict[str, Any], number: int) -> None:
        end = record["end"]
        if not isinstance(end, dict) or end.get("steps") != self.number:
            raise InvalidTraceError(
                f"line {number}: the end line does not match the {self.number} steps before it"
            )


def _diff(expected: object, actual: object) -> str:
    """Both values, around where they first differ."""
    old, new = _sent_bytes(expected), _sent_bytes(actual)
    if old is not None and new is not None:
        first = _common_prefix(old, new)
        start = max(0, first - 24)
        return (
            f"    bytes differ from offset {first} (expected {len(old)} bytes, got {len(new)})\n"
            f"    expected: {old[start : first + 24]!r}\n"
            f"    actual:   {new[start : first + 24]!r}"
        )
    old_text, new_text = _dump(expected), _dump(actual)
    first = _common_prefix(old_text, new_text)
    start = max(0, first - 60)
    lead = "..." if start else ""

    def window(text: str) -> str:
        return lead + text[start : first + 60] + ("..." if first + 60 < len(text) else "")

    return (
        f"    expected: {window(old_text)}\n"
        f"    actual:   {window(new_text)}\n"
        f"              {' ' * (len(lead) + first - start)}^ first difference"
    )


def _sent_bytes(value: object) -> bytes | None:
    """The bytes of a ``SendData`` output, else ``None``."""
    send = value.get("SendData") if isinstance(value, dict) else None
    data = send.get("data") if isinstance(send, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("$b"), str):
        return None
    return _unb64(data["$b"], "SendData")


def _common_prefix(old: bytes | str, new: bytes | str) -> int:
    """Where ``old`` and ``new`` first differ."""
    pairs = zip(old, new, strict=False)
    return next((i for i, (a, b) in enumerate(pairs) if a != b), min(len(old), len(new)))
