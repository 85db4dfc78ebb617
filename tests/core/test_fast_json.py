"""The fast JSON decoder (msgspec, when installed) gives exactly what ``json.loads`` gives.

``loads_json_or_raise`` tries ``fast_json_loads`` first and lets
``json.loads`` decide whatever it refuses, so the result (and any error) is
``json.loads``'s for every input. These tests hold it to that, differentially,
on arbitrary JSON values, arbitrary number literals and arbitrary text.
"""

from __future__ import annotations

import json
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from octoproto import _util
from octoproto._util import loads_json_or_raise

pytestmark = pytest.mark.skipif(_util.fast_json_loads is None, reason="msgspec not installed")


class Refused(Exception):
    pass


def _reference(text: str) -> str:
    """What json.loads makes of ``text`` (``repr``, so that NaN equals NaN), or ``"error"``."""
    try:
        return repr(json.loads(text))
    except (ValueError, RecursionError):
        return "error"


def _ours(text: str) -> str:
    try:
        return repr(loads_json_or_raise(text, Refused))
    except Refused:
        return "error"


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values, st.booleans())
def test_json_values_decode_alike(value: object, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert _ours(text) == repr(json.loads(text))


@given(
    st.from_regex(r"-?(0|[1-9][0-9]{0,45})(\.[0-9]{1,30})?([eE][+-]?[0-9]{1,4})?", fullmatch=True)
)
def test_number_literals_decode_alike(literal: str) -> None:
    for text in (literal, f"[{literal}]", f'{{"n": {literal}}}'):
        assert _ours(text) == _reference(text)


@given(st.text(alphabet=st.sampled_from('[]{}:,"\\ 0123456789.eE+-truefalsnNIyu\ud800abc')))
def test_any_text_decodes_alike(text: str) -> None:
    assert _ours(text) == _reference(text)


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "b": 2, "a": 3}',  # duplicate keys: the last value, at the first place
        "NaN",
        "[Infinity, -Infinity]",
        "1e400",
        '"\\ud800"',  # a lone surrogate
        "123456789012345678901234567890",
        "-9223372036854775809",
        '"<\\/script>"',
        "[" * 5000 + "]" * 5000,
    ],
)
def test_what_the_fast_decoder_may_refuse_is_json_loads(text: str) -> None:
    assert _ours(text) == _reference(text)


def test_without_the_fast_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_util, "fast_json_loads", None)
    assert loads_json_or_raise('{"a": [1, 2.5, null]}', Refused) == {"a": [1, 2.5, None]}
    with pytest.raises(Refused, match="invalid JSON"):
        loads_json_or_raise("{", Refused)


def test_the_accelerator_is_optional(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "msgspec.json", None)
    assert _util._accelerator() is None
