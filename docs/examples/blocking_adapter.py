"""The blocking adapter: a background thread, a callback, handlers and events().

python blocking_adapter.py                     # against the simulated OctoPrint
OCTOPROTO_API_KEY=... python blocking_adapter.py http://octopi.local
"""

import os
import sys
import threading

from octoproto.adapters.blocking import connect

from octoproto import Authenticated, ConnectFailed, LoginFailed, PushMessage


def main(url: str, api_key: str, updates: int = 3) -> None:
    states: list[str] = []
    enough = threading.Event()

    def on_current(message: PushMessage) -> None:  # runs on the client's thread
        states.append(message.data["state"]["text"])
        if len(states) >= updates:
            enough.set()

    def on_message(message: PushMessage | None) -> None:  # every message; None when closed
        if message is None:
            print("closed for good")

    # The with block closes the client and joins its thread on the way out.
    with connect(url, api_key=api_key, callback=on_message) as client:
        client.on("current", on_current)
        for event in client.events(timeout=10):  # TimeoutError after 10 s without an event
            if isinstance(event, Authenticated):
                print(f"authenticated as {event.user}")
                break
            if isinstance(event, (ConnectFailed, LoginFailed)):
                print(f"could not connect: {event.reason}")
                return
        enough.wait(timeout=10)
    print(f"states: {', '.join(states)}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1], os.environ["OCTOPROTO_API_KEY"])
    else:
        from octoproto.adapters.simulator import run_simulator

        with run_simulator() as server:  # a simulated OctoPrint on 127.0.0.1
            main(server.url, server.api_key)
