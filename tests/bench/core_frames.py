"""How fast the frame codecs decode, with no I/O: messages/s through ``receive()``.

Not a test (pytest collects ``test_*.py`` only). Run it in the project's venv::

    python tests/bench/core_frames.py            # the three workloads, both codecs
    python tests/bench/core_frames.py --quick    # a tenth of the messages
    python tests/bench/core_frames.py --mask     # client-frame masking: big-int XOR vs translate

(``mask_payload`` switches from the one to the other at 1 KiB, where they cross.)

Workloads (the issue's a–c): server frames built in advance, fed in 64 KiB
chunks (sliced in advance too, so only ``receive`` is timed):

* (a) 100,000 × 64 B text
* (b) 20,000 × 4 KiB text
* (c) 200 × 1 MiB binary

Each codec runs each workload ``--repeat`` times, interleaved; the best run
is reported (the least disturbed by the rest of the machine), with the ratio
fast/wsproto.
"""

from __future__ import annotations

import argparse
import gc
import os
import struct
import sys
import timeit
from collections.abc import Callable
from functools import partial
from time import perf_counter

from octoproto import SeededEntropy
from octoproto._fastframes import FastFrameCodec
from octoproto._frames import _XOR_TABLE, WsprotoFrameCodec, mask_payload

CHUNK = 64 * 1024
Codec = type[FastFrameCodec] | type[WsprotoFrameCodec]


def _frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return header + payload


def _chunks(count: int, opcode: int, size: int) -> list[bytes]:
    payload = (b"0123456789abcdef" * (size // 16 + 1))[:size]
    data = _frame(opcode, payload) * count
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


def _run(codec_class: Codec, chunks: list[bytes], max_size: int) -> tuple[float, int]:
    codec = codec_class(SeededEntropy(0), max_size, None)
    receive = codec.receive
    messages = 0
    gc.disable()
    try:
        start = perf_counter()
        for chunk in chunks:
            messages += len(receive(chunk))
        seconds = perf_counter() - start
    finally:
        gc.enable()
    return seconds, messages


def bench_frames(scale: float, repeat: int) -> None:
    workloads = [
        ("(a) 64 B text", int(100_000 * scale), 0x1, 64),
        ("(b) 4 KiB text", int(20_000 * scale), 0x1, 4096),
        ("(c) 1 MiB binary", max(1, int(200 * scale)), 0x2, 1 << 20),
    ]
    codecs: list[tuple[str, Codec]] = [("wsproto", WsprotoFrameCodec), ("fast", FastFrameCodec)]
    print(f"python {sys.version.split()[0]}, {CHUNK // 1024} KiB chunks, best of {repeat}")
    print(f"{'workload':<18} {'codec':<8} {'msgs/s':>12} {'MiB/s':>9} {'µs/msg':>8}")
    for name, count, opcode, size in workloads:
        chunks = _chunks(count, opcode, size)
        best: dict[str, float] = {}
        for _ in range(repeat):
            for label, codec_class in codecs:  # interleaved
                seconds, messages = _run(codec_class, chunks, max(size, 1 << 20))
                assert messages == count, (label, messages, count)
                best[label] = min(best.get(label, seconds), seconds)
        for label, _ in codecs:
            seconds = best[label]
            print(
                f"{name:<18} {label:<8} {count / seconds:>12,.0f}"
                f" {count * size / seconds / 2**20:>9,.0f} {seconds / count * 1e6:>8.2f}"
            )
        print(f"{name:<18} {'ratio':<8} {best['wsproto'] / best['fast']:>11.1f}×")
        del chunks


def bench_mask() -> None:
    def translate(payload: bytes, mask: bytes) -> bytes:
        data = bytearray(payload)
        for i in range(4):
            data[i::4] = data[i::4].translate(_XOR_TABLE[mask[i]])
        return bytes(data)

    def big_int(payload: bytes, mask: bytes) -> bytes:
        length = len(payload)
        key = (mask * (length // 4 + 1))[:length]
        value = int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")
        return value.to_bytes(length, "little")

    variants: list[tuple[str, Callable[[bytes, bytes], bytes]]] = [
        ("big-int", big_int),
        ("translate", translate),
        ("mask_payload", mask_payload),
    ]
    mask = os.urandom(4)
    print(f"{'size':>9} " + " ".join(f"{label + ' µs':>16}" for label, _ in variants))
    for size in (64, 512, 1024, 2048, 4096, 65536, 1 << 20):
        payload = os.urandom(size)
        number = max(3, 2_000_000 // size)
        times = [
            min(timeit.repeat(partial(f, payload, mask), number=number, repeat=5)) / number
            for _, f in variants
        ]
        print(f"{size:>9} " + " ".join(f"{t * 1e6:>16.2f}" for t in times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the messages")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--mask", action="store_true", help="time client-frame masking instead")
    args = parser.parse_args()
    if args.mask:
        bench_mask()
    else:
        bench_frames(0.1 if args.quick else 1.0, args.repeat)


if __name__ == "__main__":
    main()
