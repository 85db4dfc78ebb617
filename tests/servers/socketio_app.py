"""The Socket.IO test server: python-socketio's ``AsyncServer`` on aiohttp, on 127.0.0.1.

Runs inside ``.servers/socketio-venv`` (started by ``socketio_server.py``),
never in the project's own environment. What it offers, by namespace:

``/`` (auth required: ``{"token": TOKEN}``, else ``ConnectionRefusedError``
with data ``{"code": 401}``)
    - on connect it emits ``welcome`` (``{"sid", "auth"}``) from inside the
      connect handler, so the event goes out *before* the ``40`` reply;
    - ``echo(*args)`` acks with the same arguments (binary ones too);
    - ``ask(question)`` calls the client's ``question`` event (with an ack)
      and acks ``ask`` with whatever the client's handler returned;
    - ``send_binary()`` emits ``binary`` with bytes nested in a dict and a list;
    - ``kick()`` disconnects the client from the server side;
    - ``stats()`` acks with the connect counts per namespace (how many
      CONNECTs the server accepted since it started).

``/chat`` (the same auth)
    - on connect it emits ``hello``; ``msg(*args)`` acks ``["chat", *args]``.

``/private``
    - the connect handler refuses (returns ``False``).

Any other namespace is refused by python-socketio itself ("Unable to connect").

The ``Origin`` check is python-socketio's default (``cors_allowed_origins``
unset): only the server's own origin, ``http://127.0.0.1:<port>``, or no
``Origin`` header at all, is accepted; any other is answered with HTTP 400.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import sys
import threading
from typing import Any

import socketio  # type: ignore[import-not-found]
from aiohttp import web

TOKEN = "letmein"
"""The auth token both ``/`` and ``/chat`` accept."""


def build(ping_interval: float, ping_timeout: float) -> web.Application:
    """The aiohttp application with the Socket.IO server attached."""
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        logger=True,
        engineio_logger=True,
    )
    app = web.Application()
    sio.attach(app)
    connects: collections.Counter[str] = collections.Counter()

    def check_auth(auth: Any) -> None:
        if not isinstance(auth, dict) or auth.get("token") != TOKEN:
            raise socketio.exceptions.ConnectionRefusedError("authentication failed", {"code": 401})

    @sio.event  # type: ignore[untyped-decorator]
    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        check_auth(auth)
        connects["/"] += 1
        # Emitted before the handler returns: it reaches the client before
        # the CONNECT reply, which the client must cope with.
        await sio.emit("welcome", {"sid": sid, "auth": auth}, to=sid)

    @sio.event  # type: ignore[untyped-decorator]
    async def echo(sid: str, *args: Any) -> tuple[Any, ...]:
        return args

    @sio.event  # type: ignore[untyped-decorator]
    async def ask(sid: str, question: Any) -> Any:
        return await sio.call("question", question, to=sid, timeout=10)

    @sio.event  # type: ignore[untyped-decorator]
    async def send_binary(sid: str) -> None:
        await sio.emit(
            "binary", ({"blob": b"\x00\x01\xff", "parts": [b"a", "text", b"bc"]}, b"2nd"), to=sid
        )

    @sio.event  # type: ignore[untyped-decorator]
    async def kick(sid: str) -> None:
        await sio.disconnect(sid)

    @sio.event  # type: ignore[untyped-decorator]
    async def stats(sid: str) -> dict[str, int]:
        return dict(connects)

    @sio.on("connect", namespace="/chat")  # type: ignore[untyped-decorator]
    async def chat_connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        check_auth(auth)
        connects["/chat"] += 1
        await sio.emit("hello", "from /chat", to=sid, namespace="/chat")

    @sio.on("msg", namespace="/chat")  # type: ignore[untyped-decorator]
    async def chat_msg(sid: str, *args: Any) -> tuple[Any, ...]:
        return ("chat", *args)

    @sio.on("connect", namespace="/private")  # type: ignore[untyped-decorator]
    async def private_connect(sid: str, environ: dict[str, Any], auth: Any) -> bool:
        return False

    return app


def _exit_on_eof() -> None:
    sys.stdin.buffer.read()
    os._exit(0)


def main() -> None:
    """Serve until killed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ping-interval", type=float, default=25.0)
    parser.add_argument("--ping-timeout", type=float, default=20.0)
    parser.add_argument(
        "--exit-on-stdin-eof",
        action="store_true",
        help="exit when standard input ends (the launcher's pipe: the server cannot outlive it)",
    )
    args = parser.parse_args()
    if args.exit_on_stdin_eof:
        threading.Thread(target=_exit_on_eof, daemon=True).start()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    app = build(args.ping_interval, args.ping_timeout)
    web.run_app(app, host="127.0.0.1", port=args.port, print=lambda *_: None)


if __name__ == "__main__":
    main()
