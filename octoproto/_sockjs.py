"""SockJS framing over a websocket, as OctoPrint's push socket speaks it.

On ``/sockjs/<server>/<session>/websocket`` every websocket text message from
the server is one SockJS frame:

========================  ===============================================
``o``                     the session is open
``h``                     heartbeat (every 25 s, whatever the traffic)
``a[<json>, ...]``        a batch of messages, each any JSON value
``m<json>``               a single message (sockjs-client accepts it)
``c[<code>, "<reason>"]`` the server closes the session
========================  ===============================================

The client sends a JSON array of *strings*, each string one message that is
itself JSON text: ``["{\\"auth\\":\\"u:s\\"}"]``.

Frames come from the remote side, so :func:`parse_frame` never raises
anything but :class:`SockJSFramingError`; the caller turns that into an
event. This module also holds the one JSON decoder the push-socket code uses,
:func:`~octoproto._util.loads_json_or_raise`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from ._errors import InvalidMessageError, LocalProtocolError
from ._util import join_path, loads_json_or_raise

__all__ = [
    "SockJSClose",
    "SockJSFrame",
    "SockJSFramingError",
    "SockJSHeartbeat",
    "SockJSMessages",
    "SockJSOpen",
    "encode_messages",
    "parse_frame",
    "random_session_ids",
    "raw_path",
    "session_path",
]


class SockJSFramingError(Exception):
    """The server sent something that is not a valid SockJS frame.

    A remote fault, not caller misuse: the caller reports it as an event and
    closes the connection. It is therefore *not* a
    :class:`~octoproto._errors.LocalProtocolError`.
    """


@dataclass(frozen=True)
class SockJSOpen:
    """``o``: the SockJS session is open; messages may follow."""


@dataclass(frozen=True)
class SockJSHeartbeat:
    """``h``: the server is alive. Sent on a fixed 25 s timer."""


@dataclass(frozen=True)
class SockJSMessages:
    """``a[...]`` or ``m...``: one or more messages, already JSON-decoded.

    With OctoPrint each message is an object such as ``{"current": {...}}``,
    but SockJS allows any JSON value, so no type is assumed here.
    """

    messages: tuple[object, ...]


@dataclass(frozen=True)
class SockJSClose:
    """``c[code, "reason"]``: the server closes the SockJS session."""

    code: int
    reason: str


#: Any frame :func:`parse_frame` can return.
SockJSFrame: TypeAlias = SockJSOpen | SockJSHeartbeat | SockJSMessages | SockJSClose

# Both are stateless and equal to any other instance; sharing them saves an
# allocation on every heartbeat.
_OPEN = SockJSOpen()
_HEARTBEAT = SockJSHeartbeat()


def parse_frame(text: str) -> SockJSFrame:
    """Parse one SockJS frame received as a websocket text message.

    Raises :class:`SockJSFramingError` (and nothing else) for an empty
    frame, an unknown frame type, anything after ``o`` or ``h``, invalid
    JSON, an ``a`` frame whose payload is not an array, or a ``c`` frame
    whose payload is not exactly ``[int, str]`` (``true`` is not a close
    code, although Python's ``bool`` is an ``int``).
    """
    if not text:
        raise SockJSFramingError("empty SockJS frame")
    kind, payload = text[0], text[1:]
    if kind in "oh":
        if payload:
            raise SockJSFramingError(
                f"SockJS {kind!r} frame has {len(payload)} unexpected characters after it"
            )
        return _OPEN if kind == "o" else _HEARTBEAT
    if kind == "a":
        batch = loads_json_or_raise(payload, SockJSFramingError)
        if not isinstance(batch, list):
            raise SockJSFramingError(
                f"SockJS 'a' frame must carry a JSON array, got {_json_type(batch)}"
            )
        return SockJSMessages(tuple(batch))
    if kind == "m":
        return SockJSMessages((loads_json_or_raise(payload, SockJSFramingError),))
    if kind == "c":
        return _parse_close(loads_json_or_raise(payload, SockJSFramingError))
    # Only the first character: the rest of an unknown frame is not ours to
    # echo into logs.
    raise SockJSFramingError(f"unknown SockJS frame type {kind!r}")


def _parse_close(value: object) -> SockJSClose:
    if (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], int)
        and not isinstance(value[0], bool)
        and isinstance(value[1], str)
    ):
        return SockJSClose(code=value[0], reason=value[1])
    raise SockJSFramingError("SockJS 'c' frame must carry [code, reason] (an int and a string)")


def _json_type(value: object) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an object"  # the only JSON type left once arrays are accepted


def encode_messages(messages: Sequence[str]) -> str:
    """Build the client's SockJS frame: a JSON array of JSON-text strings.

    Each element must already be JSON text (the OctoPrint encoders produce
    it); it is not parsed again here, because that would double the cost of
    every send for a check the encoders already made. An empty sequence
    gives ``[]``, which the server ignores (usable as a keep-alive).

    Raises :class:`~octoproto._errors.InvalidMessageError` if ``messages``
    is a bare ``str`` (which would be sent one character per message) or
    holds anything but strings.
    """
    if isinstance(messages, str) or not isinstance(messages, Sequence):
        raise InvalidMessageError(
            f"messages must be a sequence of str, got {type(messages).__qualname__}"
        )
    for index, message in enumerate(messages):
        if not isinstance(message, str):
            raise InvalidMessageError(
                f"message {index} must be JSON text (a str), got {type(message).__qualname__}"
            )
    return json.dumps(list(messages), separators=(",", ":"))


# SockJS accepts any [^/.]+ as server and session id; this is the subset that
# needs no percent-encoding in a URL path, which every sane id fits in.
_PATH_ID = re.compile(r"[A-Za-z0-9_~-]+")


def session_path(base_path: str, server_id: str, session_id: str) -> str:
    """The path of the SockJS-framed websocket endpoint.

    ``base_path`` is where OctoPrint is mounted: ``""`` or ``"/"`` normally,
    ``"/octoprint"`` behind a reverse proxy (a trailing slash, or a missing
    leading one, is fine). Returns e.g. ``/octoprint/sockjs/123/ab12cd34/websocket``.

    Raises :class:`~octoproto._errors.LocalProtocolError` if an id is not a
    non-empty run of ``[A-Za-z0-9_~-]`` or the base path holds ``?``/``#``.
    """
    for label, value in (("server id", server_id), ("session id", session_id)):
        if not isinstance(value, str) or _PATH_ID.fullmatch(value) is None:
            # The value is not echoed: ids are not secrets, but a wrong value
            # here may be anything the caller had at hand.
            raise LocalProtocolError(
                f"SockJS {label} must be a non-empty str of letters, digits, '_', '~' or '-'"
            )
    return join_path(base_path, "sockjs", server_id, session_id, "websocket")


def raw_path(base_path: str) -> str:
    """The path of OctoPrint's raw websocket endpoint, ``<base>/sockjs/websocket``.

    ``base_path`` is handled as by :func:`session_path`.
    """
    return join_path(base_path, "sockjs", "websocket")


_SERVER_ID_BYTES = 8
_SESSION_ID_BYTES = 16
_SESSION_ID_LENGTH = 8
_SESSION_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def random_session_ids(entropy: Callable[[int], bytes]) -> tuple[str, str]:
    """Draw a SockJS server id (``"000"``-``"999"``) and session id (8 of ``[a-z0-9]``).

    ``entropy(n)`` must return exactly ``n`` bytes: ``os.urandom`` in an
    adapter, a seeded generator in tests and replays. It is called exactly
    twice, ``entropy(8)`` then ``entropy(16)``, so a replay consumes the same
    bytes every time.

    Method: the bytes are read as one big-endian integer and reduced modulo
    the number of possible ids (1000, and 36**8 for the session id, which is
    then written in base 36). Reducing a 64-bit number modulo 1000 favours
    some ids by at most 1000 / 2**64 (about 5e-17), and a 128-bit number
    modulo 36**8 (about 2**41.4) by at most 2**-86: far below anything
    observable. Rejection sampling would remove the bias entirely, but at
    the price of an unbounded, data-dependent number of draws, which makes
    replays harder to reason about.

    Raises :class:`~octoproto._errors.LocalProtocolError` if ``entropy``
    returns something other than ``n`` bytes.
    """
    server_number = int.from_bytes(_draw(entropy, _SERVER_ID_BYTES), "big") % 1000
    session_number = int.from_bytes(_draw(entropy, _SESSION_ID_BYTES), "big") % (
        len(_SESSION_ALPHABET) ** _SESSION_ID_LENGTH
    )
    characters = []
    for _ in range(_SESSION_ID_LENGTH):
        session_number, digit = divmod(session_number, len(_SESSION_ALPHABET))
        characters.append(_SESSION_ALPHABET[digit])
    return f"{server_number:03d}", "".join(characters)


def _draw(entropy: Callable[[int], bytes], size: int) -> bytes:
    data = entropy(size)
    if not isinstance(data, (bytes, bytearray)):
        raise LocalProtocolError(
            f"entropy({size}) must return bytes, got {type(data).__qualname__}"
        )
    if len(data) != size:
        raise LocalProtocolError(f"entropy({size}) must return {size} bytes, got {len(data)}")
    return bytes(data)
