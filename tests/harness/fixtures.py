"""Fixtures shared by the adapter suite and the integration tests.

A conftest imports them by name (pytest then registers them there)::

    from harness.fixtures import adapter, nothing_left_running

A conftest whose tests need a server torn down *after* the adapter (the
simulator) defines its own ``adapter`` fixture that depends on the server
fixture and yields from :func:`facade_for`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest

from harness.facade import ADAPTERS, Facade, make_facade

__all__ = [
    "adapter",
    "all_adapters",
    "client_sockets",
    "facade_for",
    "nothing_left_running",
    "open_fds",
]


def open_fds() -> dict[int, str]:
    """This process's open file descriptors and what each points at."""
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except FileNotFoundError:  # the listing's own descriptor, closed by now
            continue
    return fds


def client_sockets(port: int) -> list[str]:
    """This process's open TCP sockets connected to ``port`` (any state): a client's side.

    Read from ``/proc/net/tcp*`` (the socket's inode) and ``/proc/self/fd``,
    so it tells a leaked client socket from the server's own while the
    server still runs in this process.
    """
    inodes: dict[str, str] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as lines:
                next(lines)  # the header
                for line in lines:
                    fields = line.split()
                    remote_port = int(fields[2].rpartition(":")[2], 16)
                    if remote_port == port and fields[9] != "0":
                        inodes[f"socket:[{fields[9]}]"] = f"{fields[1]} -> {fields[2]}"
        except FileNotFoundError:  # no IPv6
            continue
    return [
        f"fd {fd} {target} {inodes[target]}"
        for fd, target in sorted(open_fds().items())
        if target in inodes
    ]


@pytest.fixture
def nothing_left_running() -> Iterator[None]:
    """After the test (and every fixture that depends on this one): no new thread, no new fd.

    A descriptor counts as new when its number was not open before, or now
    points elsewhere (a socket closed and another opened in its place).
    """
    threads = set(threading.enumerate())
    fds = open_fds()
    yield
    new_threads = [thread.name for thread in threading.enumerate() if thread not in threads]
    new_fds = {fd: target for fd, target in open_fds().items() if fds.get(fd) != target}
    assert not new_threads, f"threads left running: {new_threads}"
    assert not new_fds, f"file descriptors left open: {new_fds}"


@pytest.fixture(params=ADAPTERS)
def adapter(request: pytest.FixtureRequest, nothing_left_running: None) -> Iterator[Facade]:
    """A fresh, unstarted :class:`~harness.facade.Facade` over each adapter in turn.

    Teardown leaves the block if the test did not, then checks that the
    adapter's loop is over with no task left; ``nothing_left_running``
    then checks threads and file descriptors.
    """
    yield from facade_for(request.param)


@pytest.fixture
def all_adapters(nothing_left_running: None) -> Iterator[dict[str, Facade]]:
    """One unstarted facade per adapter, all at once: ``{"trio": ..., "asyncio": ..., ...}``.

    For tests that mostly wait on a server (a throttled stream, a restart):
    the three adapters wait together, each still checked on its own.
    Teardown closes every one, then checks each as ``adapter`` does.
    """
    facades = {name: make_facade(name) for name in ADAPTERS}
    try:
        yield facades
    finally:
        errors = []
        for facade in facades.values():
            try:
                facade.close()
            except BaseException as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
    for facade in facades.values():
        facade.assert_stopped()


def facade_for(name: str) -> Iterator[Facade]:
    """The body of an ``adapter`` fixture: a facade, closed and checked at teardown."""
    facade = make_facade(name)
    try:
        yield facade
    finally:
        facade.close()
    facade.assert_stopped()
