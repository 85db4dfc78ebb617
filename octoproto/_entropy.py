"""Entropy enters the core from outside.

The core never reads a random source itself: the WebSocket handshake nonce,
the frame masks, SockJS session ids and reconnect jitter are all drawn from an
*entropy source* given in the configuration. An entropy source is any callable
``source(n) -> bytes`` returning ``n`` bytes, so :func:`os.urandom` is one as
it is (the adapters pass it by default), and :class:`SeededEntropy` is a
reproducible one for tests and replays.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

#: An entropy source: called with a byte count, returns that many bytes.
Entropy = Callable[[int], bytes]

_UNIFORM_BYTES = 7  # 56 bits, more than a float's 53-bit mantissa needs


class SeededEntropy:
    """A deterministic entropy source: SHA-256 in counter mode over a seed.

    Two instances made from the same seed return the same byte stream, which
    is what makes a recorded session replay byte for byte (handshake nonce and
    frame masks included). It is *not* for production: WebSocket masking keys
    are meant to be unpredictable to the path between client and server.
    """

    __slots__ = ("_block", "_counter", "_seed")

    def __init__(self, seed: int | str | bytes) -> None:
        if isinstance(seed, int):
            seed = seed.to_bytes((seed.bit_length() + 8) // 8, "big", signed=True)
        elif isinstance(seed, str):
            seed = seed.encode("utf-8")
        self._seed = bytes(seed)
        self._counter = 0
        self._block = b""

    def __call__(self, count: int) -> bytes:
        """Return the next ``count`` bytes of the stream."""
        while len(self._block) < count:
            self._block += hashlib.sha256(self._seed + self._counter.to_bytes(8, "big")).digest()
            self._counter += 1
        result, self._block = self._block[:count], self._block[count:]
        return result

    def __repr__(self) -> str:
        return f"SeededEntropy(<{len(self._seed)}-byte seed>)"


def uniform(entropy: Entropy) -> float:
    """Draw a float in ``[0, 1)`` from an entropy source."""
    return int.from_bytes(entropy(_UNIFORM_BYTES), "big") / float(1 << (8 * _UNIFORM_BYTES))
