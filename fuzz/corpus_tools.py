"""Turn captured traffic into seed inputs for every fuzz target.

A *capture* is what a server sent on each connection of a real session (and
what the client sent), kept in ``fuzz/captures/<source>.json``:

* ``octoprint.json``: the real OctoPrint, recorded by ``fuzz/capture_octoprint.py``;
* ``simulator.json``: ``octoproto.testing.SimulatedOctoPrint``, recorded
  (pure, no sockets) by ``fuzz/seed_simulated.py``.

:func:`build` cuts them into each target's input format (see
``fuzz/targets.py``) and writes ``fuzz/corpus/<target>/<source>-<n>``, plus a
few hand-made seeds (``seed-<n>``) from the harness's generators that reach
states captures rarely show. Run ``python fuzz/corpus_tools.py`` to rebuild
the corpus from the captures without a server.
"""

from __future__ import annotations

import base64
import json
import random
import re
import struct
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.frame_protocol import FrameProtocol, Opcode

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fuzz import harness  # noqa: E402
from fuzz.harness import ByteReader, chunk16, op  # noqa: E402
from fuzz.targets import DEFLATE_ANSWERS, TARGETS, handshake_key  # noqa: E402

CAPTURES = ROOT / "fuzz" / "captures"
CORPUS = ROOT / "fuzz" / "corpus"
#: Inputs kept per target and source, and the size of each.
MAX_FILES = 40
MAX_SIZE = 8192


@dataclass
class Connection:
    """One captured transport: what each side sent."""

    channel: str  # "socket" or "http"
    label: str
    sent: bytes
    received: bytes
    endpoint: str | None = None  # "sockjs", "raw" or None (plain / HTTP)
    login: str | None = None  # "apikey", "password" or None


def save_capture(path: Path, source: str, connections: list[Connection]) -> None:
    """Write a capture file (bytes as base64)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    records = [
        {
            "channel": c.channel,
            "label": c.label,
            "endpoint": c.endpoint,
            "login": c.login,
            "sent": base64.b64encode(c.sent).decode("ascii"),
            "received": base64.b64encode(c.received).decode("ascii"),
        }
        for c in connections
    ]
    path.write_text(json.dumps({"source": source, "connections": records}, indent=1) + "\n")


def load_capture(path: Path) -> list[Connection]:
    """Read a capture file."""
    data = json.loads(path.read_text())
    return [
        Connection(
            channel=r["channel"],
            label=r["label"],
            endpoint=r["endpoint"],
            login=r["login"],
            sent=base64.b64decode(r["sent"]),
            received=base64.b64decode(r["received"]),
        )
        for r in data["connections"]
    ]


# ----------------------------------------------------------------------------
# Taking captured bytes apart


def split_head(data: bytes) -> tuple[bytes, bytes]:
    """An HTTP response head (up to the blank line) and what follows it."""
    end = data.find(b"\r\n\r\n")
    return (data, b"") if end < 0 else (data[: end + 4], data[end + 4 :])


def header(head: bytes, name: str) -> str | None:
    """A header of a response head (case-insensitive), or ``None``."""
    match = re.search(rb"(?im)^" + re.escape(name.encode()) + rb":[ \t]*(.*?)\r$", head)
    return match.group(1).decode("latin-1") if match else None


def with_our_accept(head: bytes) -> bytes:
    """The head with its ``Sec-WebSocket-Accept`` replaced by the one the targets expect."""
    accept = harness.accept_token(handshake_key()).encode()
    return re.sub(rb"(?im)^(sec-websocket-accept:[ \t]*)\S+", lambda m: m.group(1) + accept, head)


def frame_ends(data: bytes) -> list[int]:
    """Offsets at which whole server frames end in ``data``."""
    ends, pos = [], 0
    while pos + 2 <= len(data):
        size, offset = data[pos + 1] & 0x7F, 2
        if size == 126:
            if pos + 4 > len(data):
                break
            size, offset = struct.unpack_from("!H", data, pos + 2)[0], 4
        elif size == 127:
            if pos + 10 > len(data):
                break
            size, offset = struct.unpack_from("!Q", data, pos + 2)[0], 10
        offset += 4 if data[pos + 1] & 0x80 else 0
        if pos + offset + size > len(data):
            break
        pos += offset + size
        ends.append(pos)
    return ends


def pieces(data: bytes, limit: int) -> Iterator[bytes]:
    """``data`` cut at frame boundaries into pieces of at most ``limit`` bytes (when possible)."""
    start = 0
    ends = frame_ends(data)
    while start < len(data):
        fitting = [end for end in ends if start < end <= start + limit]
        stop = fitting[-1] if fitting else min(len(data), start + limit)
        yield data[start:stop]
        start = stop


def text_messages(head: bytes, frames: bytes) -> list[str]:
    """The text messages in a server's frames, inflated if the head negotiated that."""
    extensions: list[Extension] = []
    offer = header(head, "Sec-WebSocket-Extensions")
    if offer is not None and offer.startswith("permessage-deflate"):
        deflate = PerMessageDeflate()
        deflate.finalize(offer)
        extensions.append(deflate)
    decoder = FrameProtocol(client=True, extensions=extensions)
    decoder.receive_bytes(frames)
    texts, parts = [], []
    try:
        for frame in decoder.received_frames():
            if frame.opcode in (Opcode.TEXT, Opcode.CONTINUATION) and isinstance(
                frame.payload, str
            ):
                parts.append(frame.payload)
                if frame.message_finished:
                    texts.append("".join(parts))
                    parts = []
    except Exception:  # a capture cut short mid-frame: keep what decoded
        pass
    return texts


def deflated(head: bytes) -> bool:
    """Whether the 101 in ``head`` switched on permessage-deflate."""
    return (header(head, "Sec-WebSocket-Extensions") or "").startswith("permessage-deflate")


# ----------------------------------------------------------------------------
# Inputs per target


def handshake_inputs(sockets: list[Connection]) -> Iterator[bytes]:
    for conn in sockets:
        head, rest = split_head(conn.received)
        head = with_our_accept(head)
        selector = 1 if deflated(head) else 0  # offer compression when the answer has it
        yield bytes([selector, 0]) + head
        yield bytes([selector | 2, 3]) + head + rest[:512]  # with the first frames, in pieces
        yield bytes([selector | 0x80, 9]) + head + rest[:512]  # with the small limit


def frames_inputs(sockets: list[Connection]) -> Iterator[bytes]:
    for conn in sockets:
        head, rest = split_head(conn.received)
        if not head.startswith(b"HTTP/1.1 101"):
            continue
        selector = DEFLATE_ANSWERS.index("permessage-deflate") if deflated(head) else 0
        if deflated(head):  # a compressed stream only inflates from its start
            yield bytes([selector, 0]) + next(pieces(rest, MAX_SIZE - 2), b"")
            continue
        for index, piece in enumerate(pieces(rest, 2048)):
            yield bytes([selector | (0x80 if index % 3 == 2 else 0), index % 7]) + piece


def sockjs_inputs(texts: list[str]) -> Iterator[bytes]:
    for text in texts:
        yield text.encode("utf-8")[:MAX_SIZE]


def wire_inputs(texts: list[str], endpoint: str | None) -> Iterator[bytes]:
    for text in texts:
        if endpoint == "sockjs" and text.startswith("a"):
            yield b"\x01" + text[1:].encode("utf-8")[:MAX_SIZE]
            for value in json.loads(text[1:]):
                yield b"\x00" + json.dumps(value).encode("utf-8")[:MAX_SIZE]
        elif endpoint == "raw":
            yield b"\x00" + text.encode("utf-8")[:MAX_SIZE]


def client_inputs(texts: list[str], endpoint: str | None, login: str | None) -> Iterator[bytes]:
    variant = {"sockjs": 0, "raw": 1}.get(endpoint or "", 0)
    variant += {"apikey": 2, "password": 4}.get(login or "", 0)
    body = texts[2:]  # the target brings the session up itself
    for start in range(0, len(body), 12):
        batch = [text.encode("utf-8") for text in body[start : start + 12]]
        data = bytes([variant]) + b"\x00".join(batch)
        yield data[:MAX_SIZE]


def http_inputs(https: list[Connection]) -> Iterator[bytes]:
    for conn in https:
        yield b"\x00" + conn.received[:MAX_SIZE]
        yield b"\x05" + conn.received[:MAX_SIZE]
        yield b"\x85" + conn.received[:MAX_SIZE]  # the small limit


def login_inputs(https: list[Connection]) -> Iterator[bytes]:
    """OctoPrint login target: the answers of one login (GET /login first for a password)."""
    by_login: dict[str, list[bytes]] = {}
    for conn in https:
        if conn.login is not None:
            by_login.setdefault(conn.login, []).append(conn.received)
    for login, answers in by_login.items():
        selector = 1 if login == "password" else 0
        data = bytes([selector])
        for answer in answers[:4]:
            for piece in [answer[i : i + 600] for i in range(0, len(answer), 600)]:
                data += b"\x00" + chunk16(piece)
            data += b"\x04"  # EOF after each answer
        yield data[:MAX_SIZE]


def session_inputs(sockets: list[Connection], https: list[Connection]) -> Iterator[bytes]:
    """Programs that replay a captured connection through the whole engine.

    The client dials, the adapter opens, the server's 101 (ours, with the
    capture's compression) comes, then the captured frames up to the
    ``connected`` message, then the captured login answers on the HTTP
    channel, then the rest of the frames, a user message, a timer and a
    disconnect.
    """
    logins: dict[str, list[bytes]] = {}
    for conn in https:
        if conn.login is not None:
            logins.setdefault(conn.login, []).append(conn.received)
    for conn in sockets:
        head, rest = split_head(conn.received)
        if not head.startswith(b"HTTP/1.1 101"):
            continue
        compressed = deflated(head)
        ends = frame_ends(rest)
        ready = ends[1 if conn.endpoint == "sockjs" else 0] if len(ends) > 1 else len(rest)
        for plain in (False, True):
            if plain and conn.endpoint != "raw":
                continue
            if plain:
                variant = 6
            else:
                variant = {"sockjs": 0, "raw": 1}.get(conn.endpoint or "", 0)
                variant += {"apikey": 2, "password": 4}.get(conn.login or "", 0)
            selector = variant | (0 if compressed else 0x80)
            program = bytes([selector]) + op("connect") + op("open")
            program += op("upgrade", 1, 0, 0, 0) if compressed else op("upgrade", 0, 0)
            program += b"".join(op("raw", chunk16(p)) for p in pieces(rest[:ready], 2000))
            for answer in [] if plain else logins.get(conn.login or "", [])[:2]:
                program += op("http-open")
                for start in range(0, len(answer), 2000):
                    program += op("http-data", 12, 0, chunk16(answer[start : start + 2000]), 0)
            program += b"".join(op("raw", chunk16(p), dt=3) for p in pieces(rest[ready:], 2000))
            program += op("send", 1, b"\x05hello") + op("timer") + op("disconnect", 0, b"\x00")
            program += op("timer")
            yield program


def seed_inputs() -> dict[str, list[bytes]]:
    """Hand-made seeds from the harness's own generators: every kind of each, once."""
    seeds: dict[str, list[bytes]] = {name: [] for name in TARGETS}
    for kind in range(10):
        text = harness.sockjs_text(ByteReader(bytes([kind, 3, 2, 1, 5, 4, 6])))
        seeds["sockjs"].append(text.encode("utf-8"))
        seeds["octoprint_wire"].append(
            b"\x00" + harness.octoprint_json(ByteReader(bytes([kind]))).encode()
        )
    for variant in range(7):
        for compressed in (0, 0x80):
            base = (
                bytes([variant | compressed]) + op("progress", 1) * 3 + op("progress", 1, dt=4) * 3
            )
            seeds["session"].append(base + op("frames", 3, 0, 0) + op("send", 1, b"\x03abc"))
            seeds["session"].append(base + op("frames", 8, 0, 0) + op("timer") + op("timer"))
            seeds["session"].append(
                base + op("disconnect", 1, b"\x00") + op("frames", 8) + op("timer")
            )
            seeds["session"].append(base + op("frames", 12) + op("progress", 0) * 4)
            seeds["session"].append(
                base + op("octoprint", 9, 0) + op("http-open") + op("http-data", 4)
            )
    for kind in range(16):
        seeds["session"].append(bytes([2]) + op("progress", 1) * 4 + op("frames", kind, 1, 1, 1, 1))
    for answer in DEFLATE_ANSWERS:
        index = DEFLATE_ANSWERS.index(answer)
        seeds["frames"].append(bytes([index, 0]) + harness.server_frame(1, b"hello"))
    # config: which settings to set, and to what (see target_config), then a session
    rng = random.Random(5)
    session = op("progress", 1) * 4 + op("frames", 3) + op("disconnect", 0, b"\x00") + op("timer")
    for index in range(24):
        octoprint = index % 2
        fields = 4 + 2 * octoprint + 6
        choices = b"".join(
            bytes([1, rng.randrange(12)]) if rng.random() < 0.3 else b"\x00" for _ in range(fields)
        )
        schedule = bytes([1, 2, 1, 1, 0, 0]) if index % 5 == 0 else b"\x00"
        setup = bytes([index % 6]) if octoprint else b""
        seeds["config"].append(bytes([octoprint]) + choices + schedule + setup + session)
    return seeds


# ----------------------------------------------------------------------------
# Writing the corpus


def write(target: str, source: str, inputs: Iterable[bytes]) -> int:
    """Replace ``fuzz/corpus/<target>/<source>-*`` with ``inputs`` (deduplicated, capped)."""
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(f"{source}-*"):
        old.unlink()
    unique: dict[bytes, None] = {}
    limit = TARGETS[target].max_len
    for data in inputs:
        if data and len(unique) < MAX_FILES:
            unique.setdefault(data[:limit], None)
    for index, data in enumerate(unique):
        (folder / f"{source}-{index:03d}").write_bytes(data)
    return len(unique)


def build_source(source: str, connections: list[Connection]) -> dict[str, int]:
    """Write every target's inputs from one capture."""
    sockets = [c for c in connections if c.channel == "socket"]
    https = [c for c in connections if c.channel == "http"]
    texts_by_conn = []
    for conn in sockets:
        head, rest = split_head(conn.received)
        if head.startswith(b"HTTP/1.1 101"):
            texts_by_conn.append((conn, text_messages(head, rest)))
    all_texts = [text for _, texts in texts_by_conn for text in texts]
    sockjs_texts = [t for c, texts in texts_by_conn if c.endpoint == "sockjs" for t in texts]
    return {
        "handshake": write("handshake", source, handshake_inputs(sockets)),
        "frames": write("frames", source, frames_inputs(sockets)),
        "sockjs": write("sockjs", source, sockjs_inputs(sockjs_texts or all_texts)),
        "octoprint_wire": write(
            "octoprint_wire",
            source,
            (d for c, texts in texts_by_conn for d in wire_inputs(texts, c.endpoint)),
        ),
        "octoprint_client": write(
            "octoprint_client",
            source,
            (d for c, texts in texts_by_conn for d in client_inputs(texts, c.endpoint, c.login)),
        ),
        "http_response": write("http_response", source, http_inputs(https)),
        "octoprint_login": write("octoprint_login", source, login_inputs(https)),
        "session": write("session", source, session_inputs(sockets, https)),
    }


def build() -> None:
    """Rebuild the whole corpus from every capture and the hand-made seeds."""
    for path in sorted(CAPTURES.glob("*.json")):
        counts = build_source(path.stem, load_capture(path))
        print(f"{path.relative_to(ROOT)}: {counts}")
    seeds = {target: write(target, "seed", inputs) for target, inputs in seed_inputs().items()}
    print(f"hand-made seeds: {seeds}")


if __name__ == "__main__":
    build()
