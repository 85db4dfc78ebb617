"""Watch an OctoPrint's status for a few updates, on trio.

python quickstart.py                      # against the simulated OctoPrint
OCTOPROTO_API_KEY=... python quickstart.py http://octopi.local
"""

import os
import sys

import trio
from octoproto.adapters.trio import connect

from octoproto import Authenticated, ConnectFailed, LoginFailed, PushMessage


async def watch(url: str, api_key: str, updates: int = 4) -> None:
    async with connect(url, api_key=api_key) as client:
        async for event in client:  # connection progress and every message
            if isinstance(event, Authenticated):
                print(f"authenticated as {event.user}")
            elif isinstance(event, (ConnectFailed, LoginFailed)):
                print(f"could not connect: {event.reason}")
                return  # leaving the block closes the client
            elif isinstance(event, PushMessage) and event.type == "current":
                state = event.data["state"]["text"]
                temps = event.data["temps"][-1] if event.data["temps"] else {}
                hotend = temps.get("tool0", {}).get("actual")
                print(f"{state:<12} hotend {hotend} °C")
                updates -= 1
                if updates == 0:
                    return


if __name__ == "__main__":
    if len(sys.argv) > 1:
        trio.run(watch, sys.argv[1], os.environ["OCTOPROTO_API_KEY"])
    else:
        from octoproto.adapters.simulator import run_simulator

        with run_simulator() as server:  # a simulated OctoPrint on 127.0.0.1
            trio.run(watch, server.url, server.api_key)
