"""A plain WebSocket client: the core's WebSocketClient on a small blocking loop.

python websocket_client.py                  # against the simulated OctoPrint's raw socket
python websocket_client.py ws://127.0.0.1:8765/some/path
"""

import os
import selectors
import socket
import ssl
import sys
import time
from collections.abc import Iterator

from octoproto import (
    Channel,
    CloseTransport,
    Connected,
    Disconnected,
    Event,
    OpenTransport,
    ReconnectSchedule,
    SendData,
    SessionConfig,
    SessionState,
    TextMessage,
    WebSocketClient,
)


def drive(client: WebSocketClient, seconds: float) -> Iterator[Event]:
    """Carry out the client's commands on sockets and yield its events, until it is closed."""
    selector = selectors.DefaultSelector()
    sockets: dict[Channel, socket.socket] = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        while (command := client.next_command()) is not None:
            if isinstance(command, OpenTransport):
                try:
                    sock = socket.create_connection((command.host, command.port), timeout=5)
                    if command.tls:
                        context = ssl.create_default_context()
                        sock = context.wrap_socket(sock, server_hostname=command.server_hostname)
                except OSError as exc:
                    client.transport_failed(str(exc), time.monotonic(), channel=command.channel)
                    continue
                sockets[command.channel] = sock
                selector.register(sock, selectors.EVENT_READ, command.channel)
                client.transport_opened(time.monotonic(), channel=command.channel)
            elif isinstance(command, SendData):
                sockets[command.channel].sendall(command.data)
            elif isinstance(command, CloseTransport) and command.channel in sockets:
                sock = sockets.pop(command.channel)
                selector.unregister(sock)
                sock.close()
        events = list(iter(client.next_event, None))
        yield from events  # the user may call the client here: loop again before waiting
        if events:
            continue
        if client.state is SessionState.CLOSED:
            break
        timer = client.get_timer()
        wait = min(deadline, timer if timer is not None else deadline) - time.monotonic()
        for key, _ in selector.select(max(wait, 0.0)):
            sock = key.fileobj  # type: ignore[assignment]
            try:
                data = sock.recv(65536)
            except OSError as exc:
                client.transport_failed(str(exc), time.monotonic(), channel=key.data)
                continue
            if data:
                client.receive_data(data, time.monotonic(), channel=key.data)
            else:
                client.receive_eof(time.monotonic(), channel=key.data)
        client.handle_timer(time.monotonic())
    for sock in sockets.values():
        sock.close()


def main(url: str) -> None:
    config = SessionConfig(
        url=url,
        entropy=os.urandom,  # the handshake nonce and the frame masks
        reconnect=ReconnectSchedule.never(),  # the default is OctoPrint's schedule
        headers={"User-Agent": "octoproto-example"},
    )
    client = WebSocketClient(config)
    client.connect(time.monotonic())
    for event in drive(client, seconds=10):
        if isinstance(event, Connected):
            print(f"connected: HTTP {event.handshake.status_code}")
            client.send('{"throttle": 1}')  # a str goes as a text message, bytes as binary
        elif isinstance(event, TextMessage):
            print(f"text message: {event.text[:60]}")
            client.disconnect(time.monotonic(), code=1000)  # the close handshake follows
        elif isinstance(event, Disconnected):
            print(f"disconnected: {event.code} {event.reason}")
        else:
            print(event)
    print(f"sent {client.usage.bytes_sent} bytes, received {client.usage.bytes_recv}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        from octoproto.adapters.simulator import run_simulator

        with run_simulator() as server:  # its raw endpoint is a plain JSON WebSocket
            main(server.url.replace("http://", "ws://") + "/sockjs/websocket")
