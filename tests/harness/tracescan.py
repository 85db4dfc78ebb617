"""Everything a recorded trace holds, as text to search for secrets.

A trace (``record=path``, ``octoproto record``) keeps bytes as base64, and
the WebSocket frames inside them are masked (ours) and often compressed
(permessage-deflate, with context takeover): a secret in an ``auth``
message is not a substring of the file. :func:`trace_text` decodes it all:
the JSON lines themselves, every byte string they carry, and every message
of every WebSocket connection in them, unmasked and inflated.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
import zlib
from pathlib import Path
from typing import Any

__all__ = ["trace_text"]

_TAIL = b"\x00\x00\xff\xff"  # RFC 7692: stripped from every compressed message


def trace_text(path: Path) -> str:
    """The file's text, its byte strings (latin-1) and its WebSocket messages, one per line."""
    raw = path.read_text(encoding="utf-8")
    parts = [raw]
    up: list[bytearray] = []  # per socket connection: what the client sent, what it received
    down: list[bytearray] = []
    for line in raw.splitlines():
        step = json.loads(line)
        if not isinstance(step, dict):
            continue
        found = step.get("args")
        args: dict[str, Any] = found if isinstance(found, dict) else {}
        socket = args.get("channel", "socket") == "socket"
        if step.get("in") == "transport_opened" and socket:
            up.append(bytearray())
            down.append(bytearray())
        if step.get("in") == "receive_data" and isinstance(args.get("data"), str):
            data = _b64(args["data"])
            parts.append(data.decode("latin-1"))
            if socket and down:
                down[-1] += data
        for output in step.get("out") or []:
            command = output[1] if isinstance(output, list) and len(output) == 2 else None
            send = command.get("SendData") if isinstance(command, dict) else None
            if isinstance(send, dict) and isinstance(send.get("data"), dict):
                data = _b64(send["data"].get("$b", ""))
                parts.append(data.decode("latin-1"))
                if send.get("channel") == "socket" and up:
                    up[-1] += data
    for stream in (*up, *down):
        parts += _messages(bytes(stream))
    return "\n".join(parts)


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return b""


def _messages(stream: bytes) -> list[str]:
    """The messages of one direction of a connection, after its HTTP head (masked or not)."""
    head_end = stream.find(b"\r\n\r\n")
    if head_end < 0:
        return []
    data = memoryview(stream)[head_end + 4 :]
    inflater = zlib.decompressobj(-15)
    messages: list[str] = []
    parts: list[bytes] = []
    compressed = False
    while len(data) >= 2:
        first, second = data[0], data[1]
        size, offset = second & 0x7F, 2
        if size == 126:
            if len(data) < 4:
                break
            size, offset = struct.unpack("!H", data[2:4])[0], 4
        elif size == 127:
            if len(data) < 10:
                break
            size, offset = struct.unpack("!Q", data[2:10])[0], 10
        mask = b""
        if second & 0x80:
            mask, offset = bytes(data[offset : offset + 4]), offset + 4
        if len(data) < offset + size:
            break  # cut short at the end of the recording
        payload = bytes(data[offset : offset + size])
        data = data[offset + size :]
        if mask:
            payload = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        opcode = first & 0x0F
        if opcode & 0x8:
            messages.append(payload.decode("latin-1"))  # control: a close reason, a ping
            continue
        if opcode:  # the first frame of a message
            parts, compressed = [], bool(first & 0x40)
        parts.append(payload)
        if first & 0x80:
            message = b"".join(parts)
            if compressed:
                message = inflater.decompress(message + _TAIL)
            messages.append(message.decode("utf-8", "replace"))
    return messages
