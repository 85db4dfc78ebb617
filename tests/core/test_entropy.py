"""Tests for octoproto._entropy: the seeded source and uniform draws."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from octoproto import SeededEntropy
from octoproto._entropy import uniform


def test_stream_is_sha256_in_counter_mode() -> None:
    seed = b"seed"
    expected = b"".join(hashlib.sha256(seed + i.to_bytes(8, "big")).digest() for i in range(3))
    assert SeededEntropy(seed)(80) == expected[:80]


def test_reads_continue_the_stream_whatever_their_sizes() -> None:
    whole = SeededEntropy("x")(100)
    source = SeededEntropy("x")
    assert source(0) == b""
    assert source(3) + source(40) + source(1) + source(56) == whole


@pytest.mark.parametrize(
    ("seed", "same_as"),
    [
        (0, b"\x00"),
        (255, b"\x00\xff"),
        (-1, b"\xff"),
        (1 << 64, b"\x01" + bytes(8)),
        ("é", "é".encode()),
        (bytearray(b"ab"), b"ab"),
    ],
)
def test_seed_forms(seed: int | str | bytes, same_as: bytes) -> None:
    assert SeededEntropy(seed)(32) == SeededEntropy(same_as)(32)


def test_different_seeds_differ() -> None:
    assert SeededEntropy(1)(16) != SeededEntropy(2)(16)
    assert SeededEntropy(1)(16) != SeededEntropy(-1)(16)


def test_repr_hides_the_seed() -> None:
    assert repr(SeededEntropy(b"secret!")) == "SeededEntropy(<7-byte seed>)"


def test_uniform_uses_seven_bytes_big_endian() -> None:
    assert uniform(bytes) == 0.0
    assert uniform(lambda n: b"\x80" + bytes(n - 1)) == 0.5
    assert uniform(lambda n: b"\xff" * n) == (2**56 - 1) / 2**56
    calls: list[int] = []
    uniform(lambda n: calls.append(n) or bytes(n))  # type: ignore[func-returns-value]
    assert calls == [7]


@given(st.binary(max_size=8))
def test_uniform_is_in_range_and_deterministic(seed: bytes) -> None:
    value = uniform(SeededEntropy(seed))
    assert 0.0 <= value < 1.0
    assert uniform(SeededEntropy(seed)) == value
