"""OctoPrint push-socket messages, in both directions.

Server to client, every message is a JSON object whose keys are message
types (``{"current": {...}}``); each key is dispatched on its own.

Client to server, a message is a one-key object. Three types are special:
``auth``, ``throttle`` and ``subscribe``. OctoPrint handles them without
checking their shape, and any exception in its handler drops the TCP
connection with no close frame (see protocols.md, "Malformed input"). So the
encoders here validate everything they send and refuse, with
:class:`~octoproto._errors.InvalidMessageError`, what the server would choke
on or silently misread:

* ``{"auth": "<user>:<session>"}``: both parts non-empty strings; a user name
  containing ``:`` can never authenticate, so it is refused up front;
* ``{"throttle": N}``: an ``int`` >= 1 (the server would quietly coerce
  ``true`` or ``1.9`` to 1 and ignore 0);
* ``{"subscribe": {...}}``: only ``state``, ``plugins`` and ``events``, with
  the types OctoPrint expects; regexes must compile with Python's :mod:`re`
  (the server's), since a bad one fails on the server.

Error messages never contain the session or the auth string, and quote user
values only in truncated form.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from ._errors import InvalidMessageError
from ._util import loads_json_or_raise, preview

__all__ = [
    "OctoPrintWireError",
    "encode_auth",
    "encode_message",
    "encode_subscribe",
    "encode_throttle",
    "parse_json_text",
    "split_push_message",
]


class OctoPrintWireError(Exception):
    """The server sent something that is not a valid OctoPrint message.

    A remote fault, not caller misuse: the caller reports it as an event.
    It is therefore *not* a :class:`~octoproto._errors.LocalProtocolError`.
    """


def parse_json_text(text: str) -> object:
    """Decode one message's JSON text, raising only :class:`OctoPrintWireError`.

    Used on the raw endpoint, where each websocket text message is one JSON
    value. Accepts what tornado emits (``NaN``, ``<\\/`` escapes).
    """
    return loads_json_or_raise(text, OctoPrintWireError)


def split_push_message(value: object) -> list[tuple[str, object]]:
    """Split a decoded server message into ``(type, payload)`` pairs, in order.

    A message ``{"a": 1, "b": 2}`` is two dispatches, as in OctoPrint's JS
    client; ``{}`` is none. Anything but a JSON object raises
    :class:`OctoPrintWireError`.
    """
    if not isinstance(value, dict):
        raise OctoPrintWireError(
            f"an OctoPrint message must be a JSON object, got {type(value).__qualname__}"
        )
    # json.loads only makes str keys; the check guards callers who build the
    # value some other way (a msgpack decoder, a test) against a silent lie.
    pairs: list[tuple[str, object]] = []
    for key, payload in value.items():
        if not isinstance(key, str):
            raise OctoPrintWireError(
                f"OctoPrint message types must be strings, got {type(key).__qualname__}"
            )
        pairs.append((key, payload))
    return pairs


# --- client to server ------------------------------------------------------

_AUTH = "auth"
_THROTTLE = "throttle"
_SUBSCRIBE = "subscribe"

_SUBSCRIBE_KEYS = ("state", "plugins", "events")
_STATE_KEYS = ("logs", "messages")


def _dumps(message_type: str, payload: object) -> str:
    """Encode ``{message_type: payload}`` as compact JSON, or refuse it.

    ``allow_nan=False`` because ``NaN`` is not JSON: OctoPrint's decoder
    happens to take it, but nothing else should have to.
    """
    try:
        return json.dumps({message_type: payload}, separators=(",", ":"), allow_nan=False)
    except RecursionError:
        raise InvalidMessageError(
            f"{preview(message_type)} payload is nested too deeply to encode as JSON"
        ) from None
    except (TypeError, ValueError) as error:
        # json's own messages name types and limits, never values.
        raise InvalidMessageError(
            f"{preview(message_type)} payload is not JSON-serialisable: {error}"
        ) from None


def _type_name(value: object) -> str:
    return type(value).__qualname__


def _auth_value(user: object, session: object) -> str:
    """Validate the two halves of an ``auth`` message and join them."""
    if not isinstance(user, str) or not user:
        raise InvalidMessageError(f"auth: the user must be a non-empty str, got {_type_name(user)}")
    if ":" in user:
        # OctoPrint splits "user:session" at the colon; a user name with one
        # is looked up wrongly and the socket stays anonymous.
        raise InvalidMessageError("auth: a user name containing ':' cannot authenticate")
    if not isinstance(session, str) or not session:
        # Only the type: the session is a secret, even a wrong one.
        raise InvalidMessageError(
            f"auth: the session must be a non-empty str, got {_type_name(session)}"
        )
    return f"{user}:{session}"


def encode_auth(user: str, session: str) -> str:
    """``{"auth":"<user>:<session>"}``, authenticating the socket.

    ``session`` is the ``session`` field of a ``POST /api/login`` response.
    Raises :class:`~octoproto._errors.InvalidMessageError` if either part
    is not a non-empty ``str`` or ``user`` contains ``:``.
    """
    return _dumps(_AUTH, _auth_value(user, session))


def _auth_value_from_text(payload: object) -> str:
    """Validate an ``auth`` payload given already joined (``encode_message``)."""
    if not isinstance(payload, str):
        raise InvalidMessageError(
            f"auth: the payload must be a 'user:session' str, got {_type_name(payload)}"
        )
    user, colon, session = payload.partition(":")
    if not colon:
        raise InvalidMessageError("auth: the payload must be a 'user:session' str (no ':' found)")
    # Splitting at the first colon means the user part never contains one;
    # the remaining rules (both parts non-empty) still apply.
    return _auth_value(user, session)


def _throttle_value(factor: object) -> int:
    if not isinstance(factor, int) or isinstance(factor, bool):
        raise InvalidMessageError(f"throttle: the factor must be an int, got {_type_name(factor)}")
    if factor < 1:
        raise InvalidMessageError(f"throttle: the factor must be >= 1, got {preview(factor)}")
    return factor


def encode_throttle(factor: int) -> str:
    """``{"throttle":N}``: send ``current`` at most every ``0.5 s x N``.

    Raises :class:`~octoproto._errors.InvalidMessageError` unless ``factor``
    is an ``int`` (not a ``bool``) >= 1. There is no upper bound: OctoPrint
    has none (a huge factor effectively stops ``current``).
    """
    return _dumps(_THROTTLE, _throttle_value(factor))


def _regex_or_flag(where: str, value: object) -> bool | str:
    """A ``logs`` / ``messages`` filter: a bool, or a regex for Python's ``re``."""
    if isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise InvalidMessageError(
            f"subscribe: {where} must be a bool or a regex str, got {preview(value)}"
        )
    try:
        re.compile(value)
    except (re.error, OverflowError, RecursionError) as error:
        # re.error for bad syntax; OverflowError for a repeat count too big
        # for the engine; RecursionError for absurd nesting.
        raise InvalidMessageError(
            f"subscribe: {where} is not a valid regex ({preview(value)}): {error}"
        ) from None
    return value


def _state_value(value: object) -> bool | dict[str, bool | str]:
    if isinstance(value, bool):
        return value
    if not isinstance(value, Mapping):
        # A string here is the case the server accepts and then goes silent.
        raise InvalidMessageError(
            f"subscribe: state must be a bool or a mapping, got {preview(value)}"
        )
    state: dict[str, bool | str] = {}
    for key, filter_value in value.items():
        if key not in _STATE_KEYS:
            raise InvalidMessageError(
                f"subscribe: unknown state key {preview(key)} (allowed: logs, messages)"
            )
        state[key] = _regex_or_flag(f"state.{key}", filter_value)
    return state


def _names_value(where: str, value: object) -> bool | list[str]:
    """``plugins`` / ``events``: a bool, or a list of names."""
    if isinstance(value, bool):
        return value
    # Only list and tuple: a str is a Sequence too, and would silently become
    # a list of one-letter names.
    if not isinstance(value, (list, tuple)):
        raise InvalidMessageError(
            f"subscribe: {where} must be a bool or a list of str, got {preview(value)}"
        )
    for index, name in enumerate(value):
        if not isinstance(name, str):
            raise InvalidMessageError(
                f"subscribe: {where}[{index}] must be a str, got {preview(name)}"
            )
    return list(value)


def _subscription_value(subscription: object) -> dict[str, object]:
    if not isinstance(subscription, Mapping):
        raise InvalidMessageError(
            f"subscribe: the subscription must be a mapping, got {preview(subscription)}"
        )
    # Copied into a plain dict (json.dumps takes no other Mapping) in the
    # caller's key order.
    result: dict[str, object] = {}
    for key, value in subscription.items():
        if key == "state":
            result[key] = _state_value(value)
        elif key in ("plugins", "events"):
            result[key] = _names_value(key, value)
        else:
            raise InvalidMessageError(
                f"subscribe: unknown key {preview(key)} (allowed: {', '.join(_SUBSCRIBE_KEYS)})"
            )
    return result


def encode_subscribe(subscription: Mapping[str, object]) -> str:
    """``{"subscribe":{...}}``: choose what the server sends (OctoPrint >= 1.8.0).

    Allowed keys, each optional (a missing key means "none of it"):

    * ``state``: a bool, or a mapping with only ``logs`` / ``messages``,
      each a bool or a regex string that compiles with :func:`re.compile`;
    * ``plugins``: a bool or a list/tuple of plugin ids (str);
    * ``events``: a bool or a list/tuple of event names (str).

    Raises :class:`~octoproto._errors.InvalidMessageError`, naming the
    offending key and a truncated repr of its value, for anything else.
    """
    return _dumps(_SUBSCRIBE, _subscription_value(subscription))


def encode_message(message_type: str, payload: object) -> str:
    """``{message_type: payload}``, for any message, validated.

    ``auth`` (payload ``"user:session"``, split at the first ``:``),
    ``throttle`` and ``subscribe`` get the checks of :func:`encode_auth`,
    :func:`encode_throttle` and :func:`encode_subscribe`. Every payload must
    be JSON-serialisable without ``NaN``/``Infinity``.

    Raises :class:`~octoproto._errors.InvalidMessageError` if
    ``message_type`` is not a non-empty ``str`` or the payload is refused.
    """
    if not isinstance(message_type, str) or not message_type:
        raise InvalidMessageError(
            f"the message type must be a non-empty str, got {preview(message_type)}"
        )
    if message_type == _AUTH:
        payload = _auth_value_from_text(payload)
    elif message_type == _THROTTLE:
        payload = _throttle_value(payload)
    elif message_type == _SUBSCRIBE:
        payload = _subscription_value(payload)
    return _dumps(message_type, payload)
