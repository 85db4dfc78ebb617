"""The RPC dialect on trio: calls, errors, a timeout, a batch, a login and an event.

Written for the project's rpc-websockets test server (it registers ``sum``,
``slow``, ``trigger`` and the event ``tick``, and a login)::

    python tests/servers/rpc_server.py start    # prints its JSON and MessagePack URLs
    OCTOPROTO_USER=octoproto OCTOPROTO_PASSWORD=let-me-in \
        python docs/examples/rpc/rpc_client.py ws://127.0.0.1:PORT/ [json|msgpack]
"""

import os
import sys

import trio
from octoproto.adapters.trio import connect_rpc

from octoproto import CallTimeoutError, RpcError, RpcNotification


async def main(url: str, encoding: str, user: str, password: str) -> None:
    async with connect_rpc(url, encoding=encoding) as client:

        @client.on("tick")  # runs on the client's loop for each `tick` notification
        def on_tick(event: RpcNotification) -> None:
            print(f"tick: {event.args}")

        # A call made before the connection is up waits for it.
        print("sum:", await client.call("sum", [1, 2, 3]))
        try:
            await client.call("no_such_method")
        except RpcError as error:
            print(f"error {error.code}: {error.message}")
        try:
            await client.call("slow", [2000], timeout=0.2)
        except CallTimeoutError:
            print("no reply within 0.2 s")
        print("batch:", await client.call_batch([("sum", [1, 1]), ("nope", None)]))
        # Login and subscriptions are repeated by the client after every reconnect.
        await client.login({"user": user, "password": password})
        print("subscribed:", await client.subscribe("tick"))
        await client.call("trigger", ["object"])  # the server emits `tick`
        await trio.sleep(0.2)
    # Leaving the block closed the session (close code 1000).
    print("state:", client.state.value)


if __name__ == "__main__":
    encoding = sys.argv[2] if len(sys.argv) > 2 else "json"
    trio.run(
        main, sys.argv[1], encoding, os.environ["OCTOPROTO_USER"], os.environ["OCTOPROTO_PASSWORD"]
    )
