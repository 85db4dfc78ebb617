"""Fixtures for the integration tests, which talk to real servers on 127.0.0.1.

Every test under this folder gets the ``integration`` marker, so
``pytest -m "not integration"`` runs only the fast, self-contained tests.
Set ``OCTOPROTO_SKIP_REAL_SERVERS=1`` to skip these tests (for a machine that
cannot install the servers); otherwise a server that fails to install or start
is an error, never a silent skip.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness.faultmatrix import register
from harness.fixtures import adapter, all_adapters, nothing_left_running
from servers import rpc_server, socketio_server
from servers.octoprint_server import OctoPrintServer, free_port, install, start, stop

# The adapter suite's facade fixtures, so these tests run once per adapter too.
__all__ = ["adapter", "all_adapters", "nothing_left_running", "octoprint_server"]

_HERE = Path(__file__).resolve().parent
_SKIP_REASON = "OCTOPROTO_SKIP_REAL_SERVERS=1: real-server integration tests skipped"


def _skip_real_servers() -> bool:
    return os.environ.get("OCTOPROTO_SKIP_REAL_SERVERS") == "1"


def pytest_configure(config: pytest.Config) -> None:
    """The fault matrix's marker and report (test_faults_real.py has rows in it)."""
    register(config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark (and, if asked to, skip) every test collected from this folder."""
    # This hook sees the whole session's items, not only this folder's.
    for item in items:
        if _HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.integration)
            if _skip_real_servers():
                item.add_marker(pytest.mark.skip(reason=_SKIP_REASON))


@pytest.fixture(scope="session")
def octoprint_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OctoPrintServer]:
    """A real OctoPrint with a connected virtual printer, shared by the session.

    Installed into ``.servers/octoprint-venv`` on first use. Tests may call
    ``restart()`` on it: the object is updated in place and the teardown stops
    whichever process is current. Log in afresh in each test rather than
    keeping sessions across tests, since a restart invalidates them.
    """
    if _skip_real_servers():
        pytest.skip(_SKIP_REASON)
    install()
    basedir = tmp_path_factory.mktemp("octoprint")
    began = time.monotonic()
    server = start(free_port(), basedir)
    print(f"OctoPrint ready at {server.base_url} in {time.monotonic() - began:.1f} s")
    try:
        yield server
    finally:
        stop(server)


@pytest.fixture(scope="session", name="rpc_server")
def rpc_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[rpc_server.RpcServer]:
    """A real rpc-websockets server (JSON and MessagePack ports), shared by the session.

    Installed into ``.servers/rpc-node`` on first use (needs node and npm).
    Tests may ``rpc_server.restart(server)``: the object is updated in place.
    """
    if _skip_real_servers():
        pytest.skip(_SKIP_REASON)
    rpc_server.install()
    log_file = tmp_path_factory.mktemp("rpc-server") / "server.log"
    began = time.monotonic()
    server = rpc_server.start(rpc_server.free_port(), rpc_server.free_port(), log_file)
    print(f"rpc-websockets ready at {server.url()} in {time.monotonic() - began:.2f} s")
    try:
        yield server
    finally:
        rpc_server.stop(server)


@pytest.fixture(scope="session", name="socketio_server")
def socketio_server_fixture(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[socketio_server.SocketIOServer]:
    """A real python-socketio server (see tests/servers/socketio_app.py), shared by the session.

    Fast heartbeats (pingInterval 2 s, pingTimeout 1 s), so supervision tests
    stay short. Installed into ``.servers/socketio-venv`` on first use. Tests
    may ``socketio_server.restart(server)`` or ``frozen(server, ...)`` it: the object is
    updated in place and the teardown stops whichever process is current.
    """
    if _skip_real_servers():
        pytest.skip(_SKIP_REASON)
    socketio_server.install()
    log_file = tmp_path_factory.mktemp("socketio") / "server.log"
    began = time.monotonic()
    server = socketio_server.start(
        socketio_server.free_port(), log_file, ping_interval=2.0, ping_timeout=1.0
    )
    print(f"Socket.IO server ready at {server.url} in {time.monotonic() - began:.1f} s")
    try:
        yield server
    finally:
        socketio_server.stop(server)
