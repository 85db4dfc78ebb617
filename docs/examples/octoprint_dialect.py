"""OctoPrint's push socket: an active login, a subscription, handlers, the throttle, reconnects.

python octoprint_dialect.py                   # against the simulated OctoPrint
OCTOPROTO_USER=... OCTOPROTO_PASSWORD=... python octoprint_dialect.py http://octopi.local
"""

import os
import sys
from collections import Counter

import trio
from octoproto.adapters.trio import connect

from octoproto import (
    Authenticated,
    ConnectFailed,
    Disconnected,
    LoginFailed,
    PushMessage,
    ReauthRequired,
    ReconnectSchedule,
    ReconnectScheduled,
    ThrottleChanged,
    ThrottleSettings,
)

SUBSCRIPTION = {
    "state": {"logs": False, "messages": False},  # status without terminal lines
    "events": ["PrintStarted", "PrintDone", "PrintFailed"],
    "plugins": False,
}


async def main(url: str, username: str, password: str, updates: int = 3) -> None:
    counts: Counter[str] = Counter()
    async with connect(
        url,
        username=username,  # an active login; or api_key=... for a passive one
        password=password,
        subscription=SUBSCRIPTION,  # sent after every `connected`, before `auth`
        throttle=ThrottleSettings(max_factor=10),  # never slower than every 5 s
        reconnect=ReconnectSchedule.exponential(first=1.0, maximum=30.0, attempts=None),
        connect_timeout=10.0,
    ) as client:

        @client.on("*")  # every message, before the handlers of its type
        def count(message: PushMessage) -> None:
            counts[message.type] += 1

        @client.on("event")
        def on_event(message: PushMessage) -> None:
            print(f"OctoPrint event {message.data['type']}")

        async for event in client:
            if isinstance(event, Authenticated):
                print(f"authenticated as {event.user}; throttle x{client.core.throttle_factor}")
            elif isinstance(event, (ConnectFailed, LoginFailed)):
                print(f"failed: {event.reason}")
                return
            elif isinstance(event, ReauthRequired):
                print(f"re-authentication asked ({event.reason}); automatic: {event.relogin}")
            elif isinstance(event, ThrottleChanged):
                print(f"throttle x{event.previous} -> x{event.factor}")
            elif isinstance(event, (Disconnected, ReconnectScheduled)):
                print(event)
            elif isinstance(event, PushMessage) and event.type == "current":
                updates -= 1
                if updates == 0:
                    break
    print(f"messages by type: {dict(sorted(counts.items()))}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        user, password = os.environ["OCTOPROTO_USER"], os.environ["OCTOPROTO_PASSWORD"]
        trio.run(main, sys.argv[1], user, password)
    else:
        from octoproto.adapters.simulator import run_simulator

        with run_simulator() as server:  # a simulated OctoPrint on 127.0.0.1
            trio.run(main, server.url, server.username, server.password)
