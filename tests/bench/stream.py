"""A realistic OctoPrint stream, made with the simulated server (``octoproto.testing``).

:func:`current_payloads` runs an :class:`~octoproto.OctoPrintClient` against
:class:`~octoproto.testing.SimulatedOctoPrint` in memory (no sockets, a fake
clock), logged in with the API key, and keeps the payloads of the
``current`` messages it gets: state, job, progress, temperatures and
terminal lines of a printer mid-print, 1–2 KB of JSON each. The benchmarks
send those (Node server) or feed them to the core (``core_speed.py``).
"""

from __future__ import annotations

import json
import math
import struct

from octoproto import (
    Channel,
    CloseTransport,
    OctoPrintClient,
    OctoPrintConfig,
    OpenTransport,
    PushMessage,
    SeededEntropy,
    SendData,
)
from octoproto.testing import ServerConnection, SimulatedOctoPrint, SimulatorConfig


def current_payloads(count: int = 64, *, start: float = 20.0) -> list[dict[str, object]]:
    """``count`` consecutive ``current`` payloads, from ``start`` s into a print on."""
    server = SimulatedOctoPrint(SimulatorConfig(api_key="KEY", idle_duration=5.0))
    config = OctoPrintConfig(
        url="http://octopi.local", api_key="KEY", entropy=SeededEntropy(1), auto_throttle=False
    )
    client = OctoPrintClient(config)
    payloads: list[dict[str, object]] = []
    now = 0.0
    links: dict[Channel, ServerConnection] = {}
    client.connect(now)
    while len(payloads) < count and now < start + count * 10:
        busy = False
        while (command := client.next_command()) is not None:
            busy = True
            if isinstance(command, OpenTransport):
                links[command.channel] = server.accept(now)
                client.transport_opened(now, channel=command.channel)
            elif isinstance(command, SendData):
                links[command.channel].receive_data(command.data, now)
            elif isinstance(command, CloseTransport) and command.channel in links:
                links.pop(command.channel).receive_eof(now)
        for channel, link in list(links.items()):
            if data := link.data_to_send():
                busy = True
                client.receive_data(data, now, channel=channel)
            if link.closed:
                busy = True
                del links[channel]
                client.receive_eof(now, channel=channel)
        for event in client.next_events():
            busy = True
            if isinstance(event, PushMessage) and event.type == "current" and now >= start:
                assert isinstance(event.data, dict)
                payloads.append(event.data)
            if isinstance(event, PushMessage):
                client.message_processed(0.0, now)
        if not busy:
            deadline = client.get_timer()
            deadline = math.inf if deadline is None else deadline
            now = max(now, min(deadline, server.get_timer()))
            client.handle_timer(now)
            server.handle_timer(now)
    assert len(payloads) == count, f"the simulator sent {len(payloads)} current messages"
    return payloads


def server_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One final, unmasked server frame."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return header + payload


def sockjs_frame(payload: dict[str, object]) -> bytes:
    """The websocket frame of ``a[{"current": payload}]``, as OctoPrint's sockjs-tornado sends."""
    return server_frame(("a" + json.dumps([{"current": payload}])).encode())


if __name__ == "__main__":
    sizes = [len(sockjs_frame(p)) for p in current_payloads()]
    print(
        f"{len(sizes)} frames, {min(sizes)}-{max(sizes)} bytes, mean {sum(sizes) / len(sizes):.0f}"
    )
