"""Record sessions with the simulated OctoPrint (pure: no sockets) and rebuild the corpus.

    python fuzz/seed_simulated.py

An ``OctoPrintClient`` is wired to ``octoproto.testing.SimulatedOctoPrint``
with a fake clock, through a few scenarios the real server is awkward to
provoke on demand: permessage-deflate, the raw endpoint with a password
login, failed logins (403, 429, 500), ``reauthRequired``, throttling, server
close frames, garbage and broken frames, dropped connections. Everything the
server sends on each connection is written to ``fuzz/captures/simulator.json``,
from which :mod:`fuzz.corpus_tools` cuts each target's seeds.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fuzz.corpus_tools import CAPTURES, Connection, build, save_capture  # noqa: E402
from octoproto import (  # noqa: E402
    Channel,
    CloseTransport,
    Endpoint,
    OctoPrintClient,
    OctoPrintConfig,
    OpenTransport,
    SeededEntropy,
    SendData,
)
from octoproto.testing import ServerConnection, SimulatedOctoPrint, SimulatorConfig  # noqa: E402

PORT = 5000


@dataclass
class Wire:
    """The client core and the simulator with a fake clock, recording every connection."""

    server: SimulatedOctoPrint
    client: OctoPrintClient
    label: str
    now: float = 0.0
    conns: dict[Channel, tuple[ServerConnection, Connection]] = field(default_factory=dict)
    recorded: list[Connection] = field(default_factory=list)

    def pump(self) -> None:
        busy = True
        while busy:
            busy = False
            while (command := self.client.next_command()) is not None:
                busy = True
                channel = command.channel
                if isinstance(command, OpenTransport):
                    config = self.client.config
                    assert isinstance(config, OctoPrintConfig)
                    login = "apikey" if config.api_key else "password" if config.username else None
                    record = Connection(
                        channel=channel.value,
                        label=self.label,
                        sent=b"",
                        received=b"",
                        endpoint=config.endpoint.value if channel is Channel.SOCKET else None,
                        login=login,
                    )
                    self.recorded.append(record)
                    self.conns[channel] = (self.server.accept(self.now), record)
                    self.client.transport_opened(self.now, channel=channel)
                elif isinstance(command, SendData):
                    conn, record = self.conns[channel]
                    record.sent += command.data
                    conn.receive_data(command.data, self.now)
                else:
                    assert isinstance(command, CloseTransport)
                    entry = self.conns.pop(channel, None)
                    if entry is not None:
                        entry[0].receive_eof(self.now)
            for channel, (conn, record) in list(self.conns.items()):
                if data := conn.data_to_send():
                    busy = True
                    record.received += data
                    self.client.receive_data(data, self.now, channel=channel)
                if conn.closed and channel in self.conns and self.conns[channel][0] is conn:
                    busy = True
                    del self.conns[channel]
                    self.client.receive_eof(self.now, channel=channel)
        while self.client.next_event() is not None:
            pass

    def run(self, seconds: float) -> None:
        """Run both sides for ``seconds`` of fake time."""
        until = self.now + seconds
        self.client.connect(self.now)
        self.pump()
        while True:
            deadlines = [t for t in (self.client.get_timer(), self.server.get_timer()) if t]
            deadline = min(deadlines)
            if deadline > until:
                break
            self.now = max(self.now, deadline)
            self.server.handle_timer(self.now)
            self.client.handle_timer(self.now)
            self.pump()
        self.now = until


def wire(label: str, seed: int, **options: object) -> Wire:
    server = SimulatedOctoPrint(
        SimulatorConfig(
            username="octo",
            password="pw",
            api_key="KEY",
            port=PORT,
            entropy=SeededEntropy(f"simulator-{seed}"),
        )
    )
    config = OctoPrintConfig(
        url=f"http://127.0.0.1:{PORT}/",
        entropy=SeededEntropy(seed),
        **options,  # type: ignore[arg-type]
    )
    return Wire(server, OctoPrintClient(config), label)


def record() -> list[Connection]:
    """The scenarios; every connection of each, in order."""
    recorded: list[Connection] = []

    w = wire("sockjs-apikey-deflate", 1, api_key="KEY", compression=True)
    w.run(6.0)
    w.client.message_processed(2.0, w.now)  # slow handlers: the factor goes up
    w.client.send_message("gcode", {"command": "M105"})
    w.pump()
    w.server.fire_event("PrintStarted", {"name": "x.gcode"}, w.now)
    w.server.send_plugin_message("demo", {"value": 1}, w.now)
    w.run(4.0)
    w.server.close_sessions(w.now, reason="stale")  # reauthRequired -> login again
    w.run(4.0)
    w.server.send_garbage(w.now)
    w.run(3.0)
    recorded += w.recorded

    w = wire(
        "raw-password",
        2,
        username="octo",
        password="pw",
        endpoint=Endpoint.RAW,
        compression=False,
        subscription={"state": {"logs": "^Recv"}, "events": True},
    )
    w.run(8.0)
    w.server.close_sessions(w.now, reason="modified")
    w.run(3.0)
    w.server.send_close(w.now, code=4000, reason="bye")
    w.run(3.0)
    recorded += w.recorded

    w = wire("sockjs-anonymous-plain", 3, compression=False)
    w.run(30.0)  # heartbeats
    w.server.send_garbage(w.now, broken_frame=True)
    w.run(3.0)
    w.server.drop_connections(w.now)
    w.run(3.0)
    recorded += w.recorded

    for status in (403, 429, 500):
        w = wire(f"login-{status}", 4, api_key="KEY", compression=False)
        w.server.fail_logins(status, w.now)
        w.run(3.0)
        recorded += w.recorded

    w = wire("password-wrong", 5, username="octo", password="nope", compression=False)
    w.run(3.0)
    recorded += w.recorded
    return recorded


def main() -> None:
    connections = record()
    path = CAPTURES / "simulator.json"
    save_capture(path, "octoproto.testing.SimulatedOctoPrint", connections)
    print(f"{len(connections)} connections -> {path.relative_to(ROOT)}")
    build()


if __name__ == "__main__":
    main()
