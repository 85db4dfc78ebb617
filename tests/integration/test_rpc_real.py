"""The RPC dialect against a real rpc-websockets 10.0.1 server, on every adapter and encoding.

The server (``tests/servers/rpc_server.js``) listens on a JSON port and a
MessagePack port (binary frames); each test runs once per adapter (trio,
asyncio, blocking) and encoding.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.rpc import ADAPTERS, Connect, Sleep, run_scenario, wait_until
from octoproto.adapters._rpc import rpc_client
from servers import rpc_server as servers
from servers.rpc_server import PASSWORD, USER, RpcServer

from octoproto import (
    CallFailed,
    CallTimeoutError,
    ConnectionLostError,
    Event,
    ReconnectFailed,
    ReconnectSchedule,
    RpcAuthenticationError,
    RpcError,
    RpcNotification,
    RpcSubscriptionError,
    RpcValueError,
    SessionState,
    rpc_reconnect_schedule,
)

CASES = list(itertools.product(ADAPTERS, ("json", "msgpack")))
IDS = [f"{adapter}-{encoding}" for adapter, encoding in CASES]
LOGIN = {"user": USER, "password": PASSWORD}
#: Fast redials, so a restart is over in well under a second.
FAST = {"reconnect_interval": 0.1}


@pytest.fixture(params=CASES, ids=IDS)
def case(request: pytest.FixtureRequest) -> tuple[str, str]:
    adapter, encoding = request.param
    return adapter, encoding


def run(case: tuple[str, str], scenario: Any) -> None:
    run_scenario(case[0], scenario)


def test_calls_results_and_errors(case: tuple[str, str], rpc_server: RpcServer) -> None:
    encoding = case[1]

    async def scenario(connect: Connect, sleep: Sleep) -> None:
        async with connect(rpc_server.url(encoding), encoding=encoding) as client:
            errors: list[Event] = []
            client.on("error", errors.append)
            assert await client.call("sum", [1, 2, 3]) == 6
            assert await client.call("echo", {"a": [1, "x", None]}) == {"a": [1, "x", None]}
            assert await client.call("echo") is None
            # Ints beyond 32 bits go as float64 in msgpack mode: the server sees the number.
            assert await client.call("echo", [2**40]) == [2**40]
            with pytest.raises(RpcError) as missing:
                await client.call("nope")
            assert (missing.value.code, missing.value.message) == (-32601, "Method not found")
            with pytest.raises(RpcError) as forbidden:
                await client.call("protected_secret")
            assert forbidden.value.code == -32605
            with pytest.raises(RpcError) as thrown:
                await client.call("fail")
            assert (thrown.value.code, thrown.value.message) == (-32000, "Error")
            assert thrown.value.data == "it failed on purpose"
            structured = {"code": -1234, "message": "custom", "data": {"x": 1}}
            with pytest.raises(RpcError) as custom:
                await client.call("fail_structured", structured)
            assert custom.value == RpcError(-1234, "custom", {"x": 1})
            methods = await client.list_methods()
            assert {"__listMethods", "sum", "protected_secret", "rpc.login"} <= set(methods)
            results = await client.call_batch([("sum", [1, 1]), ("nope", None), ("echo", [3])])
            assert results == [2, RpcError(-32601, "Method not found"), [3]]
            # A notification gets no reply; the next call is answered as usual.
            await client.notify("echo", ["ignored"])
            assert await client.call("sum", [2]) == 2
            if encoding == "msgpack":
                with pytest.raises(RpcValueError):
                    await client.call("echo", [2**53 + 1])
            assert client.core.pending_calls == 0
            # Every frame had the mode's type and decoded (a text frame in
            # MessagePack mode, or a binary one in JSON mode, is an error).
            assert errors == []

    run(case, scenario)


def test_a_timeout_and_the_late_reply(case: tuple[str, str], rpc_server: RpcServer) -> None:
    encoding = case[1]

    async def scenario(connect: Connect, sleep: Sleep) -> None:
        async with connect(rpc_server.url(encoding), encoding=encoding) as client:
            with pytest.raises(CallTimeoutError, match="reply timeout"):
                await client.call("slow", [300], timeout=0.1)
            await wait_until(lambda: client.core.late_replies == 1, sleep, what="late reply")
            assert await client.call("sum", [1]) == 1

    run(case, scenario)


def test_login_subscriptions_and_notifications(
    case: tuple[str, str], rpc_server: RpcServer
) -> None:
    encoding = case[1]

    async def scenario(connect: Connect, sleep: Sleep) -> None:
        async with connect(rpc_server.url(encoding), encoding=encoding) as client:
            ticks: list[RpcNotification] = []
            client.on("tick", ticks.append)
            with pytest.raises(RpcAuthenticationError):
                await client.login({"user": USER, "password": "wrong"})
            with pytest.raises(RpcError) as forbidden:
                await client.subscribe("secret_tick")
            assert forbidden.value.code == -32606
            assert await client.login(LOGIN) is True
            assert await client.call("protected_secret") == "the secret"
            assert await client.subscribe("secret_tick") == {"secret_tick": "ok"}
            assert await client.subscribe("tick") == {"tick": "ok"}
            with pytest.raises(RpcSubscriptionError) as again:
                await client.subscribe("tick")
            assert again.value.status == "socket has already been subscribed to event"
            statuses = await client.subscribe(["tick", "nope"])
            assert statuses == {
                "tick": "socket has already been subscribed to event",
                "nope": "provided event invalid",
            }
            for shape in ("empty", "object", "array"):
                assert await client.call("trigger", [shape]) is True
            await wait_until(lambda: len(ticks) == 3, sleep, what="three ticks")
            assert [tick.params for tick in ticks] == [[], {"n": 1, "s": "x"}, [1, "two", 3.5]]
            assert [tick.args for tick in ticks] == [(), ({"n": 1, "s": "x"},), (1, "two", 3.5)]
            assert await client.unsubscribe("tick") == {"tick": "ok"}
            with pytest.raises(RpcSubscriptionError) as gone:
                await client.unsubscribe("tick")
            assert gone.value.status == "not subscribed"
            assert await client.unsubscribe(["secret_tick", "nope"]) == {
                "secret_tick": "ok",
                "nope": "provided event invalid",
            }
            assert client.core.subscriptions == ()

    run(case, scenario)


def test_a_namespace_and_the_socket_id(case: tuple[str, str], rpc_server: RpcServer) -> None:
    encoding = case[1]

    async def scenario(connect: Connect, sleep: Sleep) -> None:
        url = rpc_server.url(encoding, "/chat?socket_id=octo-1")
        async with connect(url, encoding=encoding) as chat:
            messages: list[RpcNotification] = []
            chat.on("message", messages.append)
            assert "post" in await chat.list_methods()
            with pytest.raises(RpcError):
                await chat.call("sum", [1])  # a method of "/", not of "/chat"
            assert await chat.subscribe("message") == {"message": "ok"}
            assert await chat.call("post", ["hello"]) == "posted"
            await wait_until(lambda: len(messages) == 1, sleep, what="the chat message")
            assert messages[0].args == ("hello",)
        async with connect(rpc_server.url(encoding, "/?socket_id=octo-2"), encoding=encoding) as c:
            assert await c.call("whoami") == "octo-2"

    run(case, scenario)


def test_a_server_restart_fails_calls_in_flight_then_restores_the_session(
    case: tuple[str, str], rpc_server: RpcServer
) -> None:
    encoding = case[1]

    async def scenario(connect: Connect, sleep: Sleep) -> None:
        async with connect(rpc_server.url(encoding), encoding=encoding, **FAST) as client:
            events: list[Event] = []
            client.on_batch(events.extend)
            ticks: list[RpcNotification] = []
            client.on("tick", ticks.append)
            await client.login(LOGIN)
            await client.subscribe("tick")
            in_flight = client.feed(client.core.call, "slow", [10_000])
            await sleep(0.05)  # on the wire
            servers.restart(rpc_server)
            await wait_until(
                lambda: _find_failure(events, in_flight) is not None, sleep, what="the failure"
            )
            assert isinstance(_find_failure(events, in_flight), ConnectionLostError)
            # Made while the link may still be down: it waits, and is answered.
            assert await client.call("protected_secret", timeout=5.0) == "the secret"
            assert client.core.is_open
            await client.call("trigger", ["object"])
            await wait_until(lambda: len(ticks) == 1, sleep, what="a tick after the restart")

    run(case, scenario)


def _find_failure(events: list[Event], call_id: int) -> Exception | None:
    for event in events:
        if isinstance(event, CallFailed) and event.call_id == call_id:
            return event.error
    return None


def test_a_normal_close_ends_the_session_and_another_reconnects(
    case: tuple[str, str], rpc_server: RpcServer
) -> None:
    encoding = case[1]

    async def scenario(connect: Connect, sleep: Sleep) -> None:
        async with connect(rpc_server.url(encoding), encoding=encoding, **FAST) as client:
            assert await client.call("close_me", [4000]) is True
            await wait_until(lambda: not client.core.is_open, sleep, what="the close")
            await wait_until(lambda: client.core.is_open, sleep, what="the reconnect")
            assert await client.call("close_me", [1000]) is True
            await wait_until(
                lambda: client.core.state is SessionState.CLOSED, sleep, what="closed for good"
            )

    run(case, scenario)


@pytest.fixture
def own_server() -> Iterator[RpcServer]:
    """A server of the test's own, which it may stop for good."""
    server = servers.start(servers.free_port(), servers.free_port())
    try:
        yield server
    finally:
        servers.stop(server)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_gives_up_after_max_reconnects(adapter: str, own_server: RpcServer) -> None:
    async def scenario(connect: Connect, sleep: Sleep) -> None:
        options = {"reconnect_interval": 0.05, "max_reconnects": 3}
        async with connect(own_server.url(), **options) as client:
            events: list[Event] = []
            client.on_batch(events.extend)
            await wait_until(lambda: client.core.is_open, sleep, what="open")
            servers.stop(own_server)
            await wait_until(
                lambda: client.core.state is SessionState.CLOSED, sleep, what="giving up"
            )
            # 3 attempts in total: the lost connection and two redials.
            assert [e for e in events if isinstance(e, ReconnectFailed)] == [ReconnectFailed(2)]

    run_scenario(adapter, scenario)


EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "rpc" / "rpc_client.py"


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_the_docs_example_runs(encoding: str, rpc_server: RpcServer) -> None:
    env = {**os.environ, "OCTOPROTO_USER": USER, "OCTOPROTO_PASSWORD": PASSWORD}
    run = subprocess.run(
        [sys.executable, str(EXAMPLE), rpc_server.url(encoding), encoding],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    for line in (
        "sum: 6",
        "error -32601: Method not found",
        "no reply within 0.2 s",
        "batch: [2, RpcError(-32601, 'Method not found', None)]",
        "subscribed: {'tick': 'ok'}",
        "tick: ({'n': 1, 's': 'x'},)",
        "state: closed",
    ):
        assert line in run.stdout, run.stdout


def test_connect_rpc_options_map_to_the_config() -> None:
    # Pure (no server): the rpc-websockets options every connect_rpc takes.
    default = rpc_client("ws://127.0.0.1:1/")
    assert default.config.reconnect == rpc_reconnect_schedule(1.0, 5)
    assert default.config.entropy is os.urandom
    assert rpc_client("ws://h/", reconnect_interval=0.5, max_reconnects=0).config.reconnect == (
        ReconnectSchedule.fixed(0.5, None)
    )
    assert rpc_client("ws://h/", reconnect=False).config.reconnect == ReconnectSchedule.never()
    backoff = ReconnectSchedule.exponential(jitter=0.2)
    assert rpc_client("ws://h/", reconnect=backoff).config.reconnect is backoff
    client = rpc_client("ws://h/", encoding="msgpack", queue_while_disconnected=False)
    assert client.config.encoding == "msgpack"  # type: ignore[attr-defined]
    assert not client.config.queue_while_disconnected
