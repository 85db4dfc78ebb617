"""Run one ``async`` RPC scenario on each adapter: trio, asyncio and blocking.

A scenario is ``async def scenario(connect, sleep)``: ``connect(url,
**options)`` is an async context manager giving a client with the async
surface of ``connect_rpc`` (``await client.call(...)``), ``sleep`` the
event loop's. :func:`run_scenario` runs it with trio (``trio.run``), with
asyncio (``asyncio.run``), or with the blocking adapter, whose methods are
wrapped in coroutines that simply block (its loop is its own thread, so a
blocked event loop stalls nothing there).

Also: :func:`wait_until`, a bounded poll.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import trio
from octoproto.adapters import asyncio as asyncio_adapter
from octoproto.adapters import blocking
from octoproto.adapters import trio as trio_adapter

ADAPTERS = ("trio", "asyncio", "blocking")

Sleep = Callable[[float], Awaitable[object]]
Connect = Callable[..., AbstractAsyncContextManager[Any]]
Scenario = Callable[[Connect, Sleep], Awaitable[None]]

#: The methods of the RPC surface that are ``async`` on trio and asyncio.
_ASYNC_METHODS = frozenset(
    {"call", "call_batch", "notify", "login", "list_methods", "subscribe", "unsubscribe", "close"}
)


class _BlockingAsAsync:
    """A blocking ``RpcSession`` with the async surface: each RPC method a coroutine."""

    def __init__(self, session: blocking.RpcSession) -> None:
        self.session = session

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.session, name)
        if name not in _ASYNC_METHODS:
            return attribute

        async def method(*args: Any, **kwargs: Any) -> Any:
            return attribute(*args, **kwargs)

        return method


@asynccontextmanager
async def _connect_blocking(url: str, **options: Any) -> AsyncIterator[_BlockingAsAsync]:
    session = blocking.connect_rpc(url, **options)
    try:
        yield _BlockingAsAsync(session)
    finally:
        session.close()


def run_scenario(adapter: str, scenario: Scenario) -> None:
    """Run ``scenario`` on ``adapter`` (one of :data:`ADAPTERS`)."""
    if adapter == "trio":
        trio.run(scenario, trio_adapter.connect_rpc, trio.sleep)
    elif adapter == "asyncio":
        asyncio.run(scenario(asyncio_adapter.connect_rpc, asyncio.sleep))  # type: ignore[arg-type]
    else:
        asyncio.run(scenario(_connect_blocking, asyncio.sleep))  # type: ignore[arg-type]


async def wait_until(
    condition: Callable[[], bool], sleep: Sleep, timeout: float = 5.0, what: str = ""
) -> None:
    """Poll ``condition`` every 10 ms; fail after ``timeout`` seconds."""
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await sleep(0.01)
    raise AssertionError(f"not within {timeout} s: {what or condition}")
