"""A complete in-memory transport: the core against the simulated OctoPrint, no sockets."""

import math
from collections.abc import Iterator

from octoproto import Channel, CloseTransport, Event, OpenTransport, SendData, SessionEngine
from octoproto.testing import ServerConnection, SimulatedOctoPrint


def run(client: SessionEngine, server: SimulatedOctoPrint, until: float) -> Iterator[Event]:
    """Drive ``client`` against ``server`` on a fake clock, from 0 to ``until`` seconds."""
    now = 0.0
    links: dict[Channel, ServerConnection] = {}  # the open transports
    client.connect(now)
    while now <= until:
        busy = False
        while (command := client.next_command()) is not None:  # 1. carry out commands
            busy = True
            if isinstance(command, OpenTransport):
                links[command.channel] = server.accept(now)
                client.transport_opened(now, channel=command.channel)
            elif isinstance(command, SendData):
                links[command.channel].receive_data(command.data, now)
            elif isinstance(command, CloseTransport) and command.channel in links:
                links.pop(command.channel).receive_eof(now)
        for channel, link in list(links.items()):  # 2. feed the core what the server sent
            if data := link.data_to_send():
                busy = True
                client.receive_data(data, now, channel=channel)
            if link.closed:
                busy = True
                del links[channel]
                client.receive_eof(now, channel=channel)
        while (event := client.next_event()) is not None:  # 3. hand events to the user
            busy = True
            yield event
        if not busy:  # 4. nothing left to do now: move the clock to the next deadline
            deadline = client.get_timer()
            deadline = math.inf if deadline is None else deadline
            now = max(now, min(deadline, server.get_timer(), until + 1))
            client.handle_timer(now)
            server.handle_timer(now)


if __name__ == "__main__":  # the demo: log in, watch for 2 simulated seconds
    from octoproto import OctoPrintClient, OctoPrintConfig, PushMessage, SeededEntropy
    from octoproto.testing import SimulatorConfig

    server = SimulatedOctoPrint(SimulatorConfig(api_key="KEY"))
    config = OctoPrintConfig(url="http://octopi.local", api_key="KEY", entropy=SeededEntropy(1))
    for event in run(OctoPrintClient(config), server, until=2.0):
        print(f"message {event.type}" if isinstance(event, PushMessage) else event)
