"""A Socket.IO client on asyncio, as python-socketio's ``AsyncClient`` would be written.

Usage: python socketio_client.py URL [TOKEN]

Against the test server (python tests/servers/socketio_server.py serve),
whose token is "letmein". The handlers are registered before connecting, so
the event the server emits from its connect handler is not missed.
"""

from __future__ import annotations

import asyncio
import sys

from octoproto.adapters.asyncio import ClientNamespace, Handlers, connect_socketio

sio = Handlers()


@sio.event
def connect() -> None:
    print("connected")


@sio.event
def connect_error(data: object) -> None:
    print("connection refused:", data)


@sio.event
def disconnect(reason: str) -> None:
    print("disconnected:", reason)


@sio.event
def welcome(data: dict[str, object]) -> None:
    print("welcome, sid", data["sid"])


@sio.on("question")
async def question(text: str) -> str:
    # The return value goes back to the server as the ack.
    return f"the answer to {text!r} is 42"


class Chat(ClientNamespace):
    """Class-based handlers for the /chat namespace."""

    def on_hello(self, greeting: str) -> None:
        print("/chat says:", greeting)


sio.register_namespace(Chat("/chat"))


async def main(url: str, token: str) -> None:
    async with connect_socketio(url, handlers=sio, auth={"token": token}) as client:
        print("namespaces:", sorted(client.namespaces))
        print("echo:", await client.call("echo", "hi"))
        print("binary echo:", await client.call("echo", b"\x00\x01"))
        print("chat:", await client.call("msg", "yo", namespace="/chat"))
        print("ask:", await client.call("ask", "life", timeout=10))
        await client.emit("echo", ("with", "callback"), callback=lambda *args: print("ack:", args))
        await client.sleep(0.2)
    # Leaving the block disconnects (every namespace, then the WebSocket).


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "letmein"))
