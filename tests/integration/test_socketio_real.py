"""The Socket.IO dialect against the real python-socketio 5.18.1 server, on every adapter.

Each scenario is written once, as a coroutine; it runs on trio, on asyncio,
and on the blocking adapter (whose methods it calls through threads, under
asyncio). Handlers are plain functions, which every adapter takes. The server
is tests/servers/socketio_app.py (fast heartbeats: 2 s + 1 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from octoproto.adapters import asyncio as asyncio_adapter
from octoproto.adapters import blocking as blocking_adapter
from octoproto.adapters import trio as trio_adapter
from octoproto.adapters._socketio import ClientNamespace, Handlers
from servers.socketio_server import TOKEN, SocketIOServer, free_port, frozen
from servers.socketio_server import restart as socketio_restart

ADAPTERS = ["trio", "asyncio", "blocking"]
AUTH = {"token": TOKEN}
#: The longest any wait in a scenario may take, in seconds.
WAIT = 10.0


class Blocking:
    """The blocking session with awaitable methods (each runs in a thread)."""

    def __init__(self, session: blocking_adapter.SocketIOSession) -> None:
        self.session = session

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.session, name)
        if not callable(value):
            return value

        async def threaded(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(functools.partial(value, *args, **kwargs))

        return threaded


class Runner:
    """One adapter: how to run a scenario, connect, and sleep."""

    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, scenario: Callable[[Runner], Awaitable[None]]) -> None:
        if self.name == "trio":
            trio.run(scenario, self)
        else:
            asyncio.run(scenario(self))  # type: ignore[arg-type]

    async def sleep(self, seconds: float) -> None:
        if self.name == "trio":
            await trio.sleep(seconds)
        else:
            await asyncio.sleep(seconds)

    async def in_thread(self, function: Callable[..., Any], *args: Any) -> Any:
        if self.name == "trio":
            return await trio.to_thread.run_sync(function, *args)
        return await asyncio.to_thread(function, *args)

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await self.sleep(0.02)

    @contextlib.asynccontextmanager
    async def connect(self, server: SocketIOServer, **options: Any) -> AsyncIterator[Any]:
        options.setdefault("auth", AUTH)
        if self.name == "trio":
            async with trio_adapter.connect_socketio(server.url, **options) as sio:
                yield sio
        elif self.name == "asyncio":
            async with asyncio_adapter.connect_socketio(server.url, **options) as sio:
                yield sio
        else:
            session = await asyncio.to_thread(
                functools.partial(blocking_adapter.connect_socketio, server.url, **options)
            )
            try:
                yield Blocking(session)
            finally:
                await asyncio.to_thread(session.close)


class Log:
    """What the handlers saw, in order (thread-safe: blocking handlers run on their thread)."""

    def __init__(self) -> None:
        self.items: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()

    def __call__(self, *item: Any) -> None:
        with self._lock:
            self.items.append(item)

    def names(self) -> list[Any]:
        with self._lock:
            return [item[0] for item in self.items]

    def has(self, *item: Any) -> bool:
        with self._lock:
            return item in self.items


def standard_handlers(log: Log, *namespaces: str) -> Handlers:
    handlers = Handlers()
    for namespace in namespaces or ("/",):
        handlers.on("connect", lambda ns=namespace: log("connect", ns), namespace)
        handlers.on(
            "disconnect", lambda reason, ns=namespace: log("disconnect", ns, reason), namespace
        )
        handlers.on(
            "connect_error", lambda data, ns=namespace: log("connect_error", ns, data), namespace
        )
    handlers.on("welcome", lambda data: log("welcome", data["sid"]))
    if "/chat" in namespaces:
        handlers.on("hello", lambda data: log("hello", data), "/chat")
    handlers.on("question", lambda question: f"answer to {question}")
    handlers.on("binary", lambda data, second: log("binary", data, second))
    return handlers


@pytest.fixture(params=ADAPTERS)
def runner(request: pytest.FixtureRequest) -> Runner:
    return Runner(request.param)


def test_auth_accepted_and_the_connect_handlers_event_after_connect(
    runner: Runner, socketio_server: SocketIOServer
) -> None:
    async def scenario(r: Runner) -> None:
        log = Log()
        async with r.connect(socketio_server, handlers=standard_handlers(log)) as sio:
            await r.until(lambda: "welcome" in log.names(), "welcome")
            # python-socketio sends the event before the CONNECT reply; the
            # client delivers it after its namespace's connect.
            assert log.items[:2] == [("connect", "/"), ("welcome", sio.sid)]
            assert sio.connected and sio.namespaces == ("/",)

    runner.run(scenario)


def test_auth_refused(runner: Runner, socketio_server: SocketIOServer) -> None:
    async def scenario(r: Runner) -> None:
        log = Log()
        with pytest.raises(ConnectionError, match="authentication failed"):
            async with r.connect(
                socketio_server, handlers=standard_handlers(log), auth={"token": "no"}
            ):
                pass
        expected = {"message": "authentication failed", "data": {"code": 401}}
        assert [item for item in log.items if item[0] == "connect_error"] == [
            ("connect_error", "/", expected)
        ]

    runner.run(scenario)


@pytest.mark.parametrize(
    ("namespace", "message"),
    [("/nope", "Unable to connect"), ("/private", "Connection rejected by server")],
)
def test_namespaces_refused(
    runner: Runner, socketio_server: SocketIOServer, namespace: str, message: str
) -> None:
    async def scenario(r: Runner) -> None:
        log = Log()
        handlers = standard_handlers(log, "/", namespace)
        with pytest.raises(ConnectionError, match=message):
            async with r.connect(socketio_server, handlers=handlers, namespaces=["/", namespace]):
                pass
        # Reported once, to the refused namespace only.
        assert [item[:2] for item in log.items if item[0] == "connect_error"] == [
            ("connect_error", namespace)
        ]

    runner.run(scenario)


def test_namespaces_echo_acks_and_binary(runner: Runner, socketio_server: SocketIOServer) -> None:
    async def scenario(r: Runner) -> None:
        log = Log()
        handlers = standard_handlers(log, "/", "/chat")
        async with r.connect(socketio_server, handlers=handlers) as sio:  # namespaces from handlers
            assert set(sio.namespaces) == {"/", "/chat"}
            assert await sio.call("echo", "hi") == "hi"
            assert await sio.call("echo", ("a", 1, {"k": [None]})) == ("a", 1, {"k": [None]})
            assert await sio.call("msg", "yo", namespace="/chat") == ("chat", "yo")
            assert await sio.call("echo", (b"\x00\xff", {"n": b"x"})) == (b"\x00\xff", {"n": b"x"})
            await sio.emit("echo", "cb", callback=lambda *args: log("callback", *args))
            await r.until(lambda: "callback" in log.names(), "the emit's callback")
            assert log.has("callback", "cb")
            assert log.has("hello", "from /chat")
            # server -> client with an ack: the handler's return value goes back
            assert await sio.call("ask", "what?") == "answer to what?"
            await sio.emit("send_binary")
            await r.until(lambda: "binary" in log.names(), "the binary event")
            blob = {"blob": b"\x00\x01\xff", "parts": [b"a", "text", b"bc"]}
            assert log.has("binary", blob, b"2nd")

    runner.run(scenario)


def test_class_namespaces_and_the_catch_all(
    runner: Runner, socketio_server: SocketIOServer
) -> None:
    async def scenario(r: Runner) -> None:
        log = Log()

        class Chat(ClientNamespace):
            def on_connect(self) -> None:
                log("chat connect", self.client is not None)

            def on_hello(self, greeting: str) -> None:
                log("hello", greeting)

        handlers = Handlers()
        handlers.on("*", lambda event, *args: log("any", event), "/")
        handlers.register_namespace(Chat("/chat"))
        async with r.connect(socketio_server, handlers=handlers) as sio:
            await r.until(lambda: log.has("any", "welcome"), "the catch-all")
            assert log.has("chat connect", True)
            await r.until(lambda: log.has("hello", "from /chat"), "on_hello")
            # The catch-all takes the server's question and returns None: an empty ack.
            assert await sio.call("ask", "q") is None

    runner.run(scenario)


def test_async_handler_acks(socketio_server: SocketIOServer) -> None:
    async def scenario(r: Runner) -> None:
        handlers = Handlers()

        @handlers.on("question")
        async def question(text: str) -> tuple[str, int]:
            await r.sleep(0.01)
            return (f"async {text}", 2)

        async with r.connect(socketio_server, handlers=handlers) as sio:
            assert await sio.call("ask", "q") == ("async q", 2)

    for name in ("trio", "asyncio"):
        Runner(name).run(scenario)


def test_server_disconnect_ends_the_session(
    runner: Runner, socketio_server: SocketIOServer
) -> None:
    async def scenario(r: Runner) -> None:
        log = Log()
        async with r.connect(socketio_server, handlers=standard_handlers(log)) as sio:
            await sio.emit("kick")
            await r.until(lambda: "disconnect" in log.names(), "the disconnect handler")
            assert log.has("disconnect", "/", "server disconnect")
            await r.until(
                lambda: sio.state.value == "closed", f"the session to close ({sio.state})"
            )

    runner.run(scenario)


def test_dead_link_then_reconnect(runner: Runner, socketio_server: SocketIOServer) -> None:
    async def scenario(r: Runner) -> None:
        log = Log()
        async with r.connect(socketio_server, handlers=standard_handlers(log)) as sio:
            began = time.monotonic()
            with frozen(socketio_server, 8.0):
                await r.until(lambda: "disconnect" in log.names(), "the dead link")
            silent = time.monotonic() - began
            assert log.has("disconnect", "/", "transport error")
            # pingInterval + pingTimeout = 3 s after the last message at most
            assert silent < 3.5, silent
            await r.until(lambda: log.names().count("connect") == 2, "the reconnect")
            assert await sio.call("echo", "back") == "back"

    runner.run(scenario)


def test_restart_reconnects_and_restores_namespaces(
    runner: Runner, socketio_server: SocketIOServer
) -> None:
    async def scenario(r: Runner) -> None:
        log = Log()
        handlers = standard_handlers(log, "/", "/chat")
        async with r.connect(socketio_server, handlers=handlers) as sio:
            await r.in_thread(socketio_restart, socketio_server)
            await r.until(lambda: log.names().count("connect") == 4, "both namespaces back")
            assert log.has("disconnect", "/", "transport error")
            assert log.has("disconnect", "/chat", "transport error")
            # The restarted server counted one accepted CONNECT per namespace:
            # the auth went with both again.
            assert await sio.call("stats") == {"/": 1, "/chat": 1}
            assert await sio.call("msg", 1, namespace="/chat") == ("chat", 1)

    runner.run(scenario)


def test_no_server_is_a_connect_error(runner: Runner, socketio_server: SocketIOServer) -> None:
    nobody = SocketIOServer("127.0.0.1", free_port(), 0, 2.0, 1.0, socketio_server.log_file)

    async def scenario(r: Runner) -> None:
        log = Log()
        with pytest.raises(ConnectionError):
            async with r.connect(nobody, handlers=standard_handlers(log)):
                pass
        assert [item[:2] for item in log.items] == [("connect_error", "/")]

    runner.run(scenario)


def test_a_foreign_origin_is_refused(runner: Runner, socketio_server: SocketIOServer) -> None:
    async def scenario(r: Runner) -> None:
        with pytest.raises(ConnectionError, match="400"):
            async with r.connect(socketio_server, origin="http://elsewhere.example"):
                pass
        async with r.connect(socketio_server, origin=socketio_server.origin) as sio:
            assert sio.connected

    runner.run(scenario)


EXAMPLE = (
    Path(__file__).resolve().parents[2] / "docs" / "examples" / "socketio" / "socketio_client.py"
)


def test_the_docs_example_runs(socketio_server: SocketIOServer) -> None:
    run = subprocess.run(
        [sys.executable, str(EXAMPLE), socketio_server.url, TOKEN],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[:3] == ["connected", lines[1], "/chat says: from /chat"]
    assert lines[1].startswith("welcome, sid ")
    for line in (
        "namespaces: ['/', '/chat']",
        "echo: hi",
        "binary echo: b'\\x00\\x01'",
        "chat: ('chat', 'yo')",
        "ask: the answer to 'life' is 42",
        "ack: ('with', 'callback')",
        "disconnected: client disconnect",
    ):
        assert line in lines, (line, lines)
