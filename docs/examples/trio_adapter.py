"""The trio adapter: a handler, an event task, a throttle change and a deadline.

python trio_adapter.py                      # against the simulated OctoPrint
OCTOPROTO_API_KEY=... python trio_adapter.py http://octopi.local
"""

import os
import sys

import trio
from octoproto.adapters.trio import Client, connect

from octoproto import PushMessage


async def log_events(client: Client) -> None:
    async for event in client:  # every event, until the session is closed for good
        if not isinstance(event, PushMessage):
            print(f"event: {type(event).__name__}")


async def main(url: str, api_key: str, seconds: float = 2.5) -> None:
    updates = 0
    with trio.move_on_after(seconds):  # a deadline for the whole session
        # auto_throttle=False: the factor set below stays as it is.
        async with connect(url, api_key=api_key, auto_throttle=False) as client:

            @client.on("current")  # runs on the client's loop, one message at a time
            def count(message: PushMessage) -> None:
                nonlocal updates
                updates += 1

            async with trio.open_nursery() as nursery:
                nursery.start_soon(log_events, client)
                await trio.sleep(1.0)
                await client.set_throttle(2)  # `current` at most every 2 × 0.5 s from now on
                print(f"throttle factor {client.core.throttle_factor}")
    # Leaving the block closed the session (close handshake included).
    print(f"{updates} status updates, state {client.state.value}")
    print(f"received {client.core.usage.bytes_recv} bytes")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        trio.run(main, sys.argv[1], os.environ["OCTOPROTO_API_KEY"])
    else:
        from octoproto.adapters.simulator import run_simulator

        with run_simulator() as server:  # a simulated OctoPrint on 127.0.0.1
            trio.run(main, server.url, server.api_key)
