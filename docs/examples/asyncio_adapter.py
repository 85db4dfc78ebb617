"""The asyncio adapter: wait for the login with a timeout, then read updates from a queue.

python asyncio_adapter.py                     # against the simulated OctoPrint
OCTOPROTO_API_KEY=... python asyncio_adapter.py http://octopi.local
"""

import asyncio
import os
import sys
from typing import Any

from octoproto.adapters.asyncio import Client, connect

from octoproto import Authenticated, ConnectFailed, LoginFailed


async def authenticated(client: Client) -> str:
    async for event in client:
        if isinstance(event, Authenticated):
            return event.user
        if isinstance(event, (ConnectFailed, LoginFailed)):
            raise ConnectionError(event.reason)
    raise ConnectionError("closed before authentication")


async def main(url: str, api_key: str, updates: int = 3) -> None:
    async with connect(url, api_key=api_key) as client:
        user = await asyncio.wait_for(authenticated(client), timeout=10)
        print(f"authenticated as {user}")

        queue: asyncio.Queue[Any] = asyncio.Queue()
        client.on("current", lambda message: queue.put_nowait(message.data))
        # Only what this client shows: no log lines, no plugin messages.
        await client.subscribe({"state": {"logs": False}, "events": True, "plugins": False})

        for _ in range(updates):
            current = await asyncio.wait_for(queue.get(), timeout=10)
            print(f"{current['state']['text']:<12} progress {current['progress']['completion']}")
    print(f"closed: {client.state.value}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(sys.argv[1], os.environ["OCTOPROTO_API_KEY"]))
    else:
        from octoproto.adapters.simulator import run_simulator

        with run_simulator() as server:  # a simulated OctoPrint on 127.0.0.1
            asyncio.run(main(server.url, server.api_key))
