"""Record what a real OctoPrint sends, and rebuild the fuzz corpus from it.

    python fuzz/capture_octoprint.py [--seconds 12]

Starts the real OctoPrint of the integration tests (``tests/servers/
octoprint_server.py``: installed into ``.servers/`` on first use, bound to
127.0.0.1, virtual printer connected) in a temporary directory, and records
every byte it sends on each connection:

* sessions driven by the project's own core over plain blocking sockets (the
  adapter loop in miniature, so every byte is seen as it came): the SockJS
  endpoint with an API-key login, the raw endpoint with a password login
  (``GET /login`` for the CSRF cookie, then ``POST /api/login``), both with
  compression offered; a wrong password (403);
* hand-written requests the core would never send: an upgrade to a wrong
  path, a plain ``GET`` of the websocket endpoint, a SockJS frame that is not
  JSON, a malformed ``auth`` (after which OctoPrint drops the connection).

The capture goes to ``fuzz/captures/octoprint.json`` (bytes as base64) and
:func:`fuzz.corpus_tools.build` cuts each target's seeds from it. The server
is stopped at the end, whatever happens; every wait is bounded.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for entry in (ROOT, ROOT / "tests"):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

from servers.octoprint_server import OctoPrintServer, free_port, start, stop  # noqa: E402

from fuzz.corpus_tools import CAPTURES, Connection, build, save_capture  # noqa: E402
from octoproto import (  # noqa: E402
    Channel,
    CloseTransport,
    Endpoint,
    Event,
    OctoPrintClient,
    OctoPrintConfig,
    OpenTransport,
    SeededEntropy,
    SendData,
)
from octoproto._frames import encode_client_frame  # noqa: E402
from octoproto._handshake import ClientHandshake  # noqa: E402

IO_TIMEOUT = 5.0


def drive(client: OctoPrintClient, seconds: float, label: str) -> list[Connection]:
    """Run ``client`` against the server for ``seconds`` over blocking sockets, recording."""
    config = client.config
    assert isinstance(config, OctoPrintConfig)
    login = "apikey" if config.api_key else "password" if config.username else None
    sockets: dict[Channel, socket.socket] = {}
    records: dict[Channel, Connection] = {}
    recorded: list[Connection] = []
    events: list[Event] = []
    deadline = time.monotonic() + seconds
    client.connect(time.monotonic())
    while time.monotonic() < deadline:
        while (command := client.next_command()) is not None:
            channel = command.channel
            if isinstance(command, OpenTransport):
                sock = socket.create_connection((command.host, command.port), timeout=IO_TIMEOUT)
                sockets[channel] = sock
                records[channel] = Connection(
                    channel=channel.value,
                    label=label,
                    sent=b"",
                    received=b"",
                    endpoint=config.endpoint.value if channel is Channel.SOCKET else None,
                    login=login,
                )
                recorded.append(records[channel])
                client.transport_opened(time.monotonic(), channel=channel)
            elif isinstance(command, SendData):
                sockets[channel].sendall(command.data)
                records[channel].sent += command.data
            else:
                assert isinstance(command, CloseTransport)
                if channel in sockets:
                    sockets.pop(channel).close()
        while (event := client.next_event()) is not None:
            events.append(event)
        timer = client.get_timer()
        wait = min(0.5, max(0.0, (timer or time.monotonic() + 0.5) - time.monotonic()))
        readable, _, _ = select.select(list(sockets.values()), [], [], wait)
        for channel, sock in list(sockets.items()):
            if sock in readable:
                data = sock.recv(65536)
                now = time.monotonic()
                if data:
                    records[channel].received += data
                    client.receive_data(data, now, channel=channel)
                else:
                    sockets.pop(channel).close()
                    client.receive_eof(now, channel=channel)
        client.handle_timer(time.monotonic())
    client.disconnect(time.monotonic())
    for sock in sockets.values():
        sock.close()
    kinds: dict[str, int] = {}
    for event in events:
        kinds[type(event).__name__] = kinds.get(type(event).__name__, 0) + 1
    print(f"  {label}: {len(recorded)} connections, events {kinds}")
    return recorded


def exchange(
    server: OctoPrintServer, request: bytes, label: str, *, frames: bytes = b"", wait: float = 2.0
) -> Connection:
    """Send ``request`` (``frames`` once the answer's head came); record until EOF or ``wait``."""
    received = b""
    with socket.create_connection((server.host, server.port), timeout=IO_TIMEOUT) as sock:
        sock.sendall(request)
        deadline = time.monotonic() + wait
        sent_frames = False
        while time.monotonic() < deadline:
            readable, _, _ = select.select([sock], [], [], 0.2)
            if readable:
                data = sock.recv(65536)
                if not data:
                    break
                received += data
            if frames and not sent_frames and b"\r\n\r\n" in received:
                sock.sendall(frames)
                sent_frames = True
    endpoint = "sockjs" if b"/sockjs/" in request and b"/websocket" in request else None
    if endpoint and b"GET /sockjs/websocket" in request:
        endpoint = "raw"
    print(f"  {label}: {len(received)} bytes")
    return Connection("socket", label, request + frames, received, endpoint=endpoint)


def upgrade_request(server: OctoPrintServer, path: str, *, compression: bool) -> bytes:
    handshake = ClientHandshake(
        host_header=f"{server.host}:{server.port}",
        target=path,
        headers=[],
        subprotocols=(),
        origin=None,
        compression=compression,
        max_message_size=1 << 20,
        max_response_size=1 << 16,
        entropy=SeededEntropy(99),
    )
    return handshake.request_bytes


def capture(server: OctoPrintServer, seconds: float) -> list[Connection]:
    url = server.base_url + "/"
    recorded: list[Connection] = []

    def client(seed: int, **options: object) -> OctoPrintClient:
        config = OctoPrintConfig(url=url, entropy=SeededEntropy(seed), **options)  # type: ignore[arg-type]
        return OctoPrintClient(config)

    recorded += drive(client(1, api_key=server.api_key), seconds, "sockjs-apikey")
    recorded += drive(
        client(
            2,
            username=server.username,
            password=server.password,
            endpoint=Endpoint.RAW,
            subscription={"state": {"logs": True, "messages": True}, "events": True},
        ),
        seconds / 2,
        "raw-password",
    )
    recorded += drive(
        client(3, username=server.username, password="wrong-password"), 2.0, "password-wrong"
    )
    recorded += drive(client(4, compression=False), 3.0, "sockjs-anonymous")

    mask = b"\x01\x02\x03\x04"
    recorded.append(
        exchange(
            server, upgrade_request(server, "/sockjs/nope", compression=True), "upgrade-wrong-path"
        )
    )
    recorded.append(
        exchange(
            server,
            f"GET /sockjs/websocket HTTP/1.1\r\nHost: {server.host}\r\n\r\n".encode(),
            "get-without-upgrade",
        )
    )
    recorded.append(
        exchange(
            server,
            upgrade_request(server, "/sockjs/websocket", compression=False),
            "raw-not-json",
            frames=encode_client_frame(1, b"not json", mask),
        )
    )
    recorded.append(
        exchange(
            server,
            upgrade_request(server, "/sockjs/7/abcdefgh/websocket", compression=False),
            "sockjs-not-json",
            frames=encode_client_frame(1, b"{nope", mask),
        )
    )
    recorded.append(
        exchange(
            server,
            upgrade_request(server, "/sockjs/websocket", compression=False),
            "raw-bad-auth",
            frames=encode_client_frame(1, b'{"auth": 5}', mask),
            wait=3.0,
        )
    )
    return recorded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="length of the main session")
    parser.add_argument("--no-build", action="store_true", help="only write the capture")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="octoproto-capture-") as basedir:
        began = time.monotonic()
        server = start(free_port(), basedir)
        print(
            f"OctoPrint at {server.base_url} (pid {server.pid}) in {time.monotonic() - began:.1f} s"
        )
        try:
            recorded = capture(server, args.seconds)
        finally:
            stop(server)
    path = CAPTURES / "octoprint.json"
    save_capture(path, "OctoPrint (tests/servers/octoprint_server.py)", recorded)
    print(f"{len(recorded)} connections -> {path.relative_to(ROOT)}")
    if not args.no_build:
        build()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
