"""Small helpers shared by several layers of the core.

Each exists once here so that every layer gets the same robustness:
bounded renderings of untrusted values, one JSON decoder for remote text,
and one way to join URL paths under a reverse-proxy prefix.
"""

from __future__ import annotations

import json
import reprlib
from collections.abc import Callable

from ._errors import LocalProtocolError

# Values rendered for a human may come from the remote side or be huge (a
# list of a million plugin ids); reprlib bounds both the time and the text.
_short = reprlib.Repr()
_short.maxstring = 60
_short.maxother = 60
_short.maxlist = 5
_short.maxtuple = 5
_short.maxdict = 5
_short.maxlevel = 2


def preview(value: object) -> str:
    """A bounded ``repr`` for log lines and error messages; never raises."""
    try:
        return _short.repr(value)
    except Exception:
        # An int beyond the interpreter's str-conversion digit limit, or a
        # __repr__ that raises: the type is still worth reporting.
        return f"<{type(value).__qualname__}>"


def _accelerator() -> Callable[[str], object] | None:
    """msgspec's JSON decoder, when it is installed (``pip install octoproto[fast]``)."""
    try:
        from msgspec.json import decode  # noqa: PLC0415 (optional, found at import)
    except ImportError:
        return None
    return decode


#: A faster decoder tried first (msgspec's, or ``None``); :func:`json.loads`
#: decides everything it refuses. It gives what :func:`json.loads` gives
#: for what it accepts (big integers included; a differential test holds
#: it to that), and refuses what only ``json`` takes: ``NaN``, ``Infinity``,
#: numbers beyond a float, lone surrogates. About 2× faster on OctoPrint's
#: ``current`` messages, the bulk of a push socket's work.
fast_json_loads = _accelerator()


def loads_json_or_raise(text: str, error_type: Callable[[str], Exception]) -> object:
    """Decode JSON text from the remote side, raising only ``error_type``.

    Accepts everything tornado (OctoPrint's web server) emits, including
    ``NaN`` / ``Infinity`` and ``<\\/`` escapes, which :func:`json.loads`
    already allows. What :func:`json.loads` can raise besides
    :class:`json.JSONDecodeError` is what makes this helper necessary:
    deeply nested arrays raise :class:`RecursionError`, and an integer
    literal longer than the interpreter's digit limit raises a plain
    :class:`ValueError`. All of them become ``error_type(message)``.

    The message says what is wrong and where, never the text itself (it may
    be large, and it may carry secrets). The original exception is not
    chained for the same reason: a :class:`json.JSONDecodeError` keeps the
    whole document in its ``doc`` attribute.
    """
    fast = fast_json_loads
    if fast is not None:
        try:
            return fast(text)
        except Exception:  # anything it refuses, json.loads decides (and words the error)
            pass
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        message = f"invalid JSON: {error.msg} at position {error.pos}"
    except RecursionError:
        message = "invalid JSON: nested too deeply"
    except ValueError as error:
        # Today this is the integer digit limit; its text holds only sizes.
        message = f"invalid JSON: {error}"
    raise error_type(message) from None


def join_path(base_path: str, *parts: str) -> str:
    """Join URL path segments under ``base_path`` with exactly one ``/`` between them.

    ``base_path`` is where the server is mounted: ``""`` or ``"/"`` normally,
    ``"/octoprint"`` behind a reverse proxy; a trailing slash or a missing
    leading one is fine. The result always starts with ``/``.
    """
    if not isinstance(base_path, str):
        raise LocalProtocolError(f"base path must be a str, got {type(base_path).__qualname__}")
    if "?" in base_path or "#" in base_path:
        # A query or fragment would swallow the SockJS part of the path.
        raise LocalProtocolError("base path must be a URL path, without '?' or '#'")
    base = base_path.strip("/")
    return "/" + "/".join((base, *parts) if base else parts)
