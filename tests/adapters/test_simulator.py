"""The simulated OctoPrint on real sockets: start, login, websocket, faults, restart, exit.

The server's behaviour is tested in depth without sockets in
tests/core/test_testing.py; these prove the thread, the selector loop and
the cleanup, with plain blocking sockets (and once with the trio adapter).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import h11
import pytest
import trio
from octoproto.adapters.simulator import SimulatorHandle, run_simulator
from octoproto.adapters.trio import connect
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Message, Request, TextMessage

from octoproto import Authenticated, PushMessage

TIMEOUT = 5.0


def http(
    sim: SimulatorHandle, method: str, path: str, headers: list[tuple[str, str]], body: bytes = b""
) -> tuple[int, bytes]:
    """One request on a fresh connection (``Connection: close``)."""
    client = h11.Connection(h11.CLIENT)
    all_headers = [("Host", f"{sim.host}:{sim.port}"), ("Connection", "close"), *headers]
    if body:
        all_headers.append(("Content-Length", str(len(body))))
    with socket.create_connection((sim.host, sim.port), timeout=TIMEOUT) as sock:
        sock.sendall(
            client.send(
                h11.Request(method=method, target=sim.base_path + path, headers=all_headers)
            )
            + (client.send(h11.Data(data=body)) or b"")
            + (client.send(h11.EndOfMessage()) or b"")
        )
        status, data = 0, b""
        while True:
            event = client.next_event()
            if event is h11.NEED_DATA:
                client.receive_data(sock.recv(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                data += event.data
            elif isinstance(event, h11.EndOfMessage):
                return status, data


def login(sim: SimulatorHandle) -> str:
    status, body = http(
        sim, "POST", "/api/login", [("X-Api-Key", sim.api_key)], b'{"passive": true}'
    )
    assert status == 200
    session: str = json.loads(body)["session"]
    return session


class RawSockJS:
    """A blocking SockJS client on a plain socket, with wsproto for the frames."""

    def __init__(self, sim: SimulatorHandle) -> None:
        self.sock = socket.create_connection((sim.host, sim.port), timeout=TIMEOUT)
        self.ws = WSConnection(ConnectionType.CLIENT)
        target = f"{sim.base_path}/sockjs/000/abcdefgh/websocket"
        self.sock.sendall(self.ws.send(Request(host=f"{sim.host}:{sim.port}", target=target)))
        self.frames: list[str] = []
        self.closed = False
        self.eof = False
        self._accepted = False
        while not self._accepted:
            self._receive()

    def _receive(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            self.eof = True
            return
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, AcceptConnection):
                self._accepted = True
            elif isinstance(event, TextMessage):
                self.frames.append(event.data)
            elif isinstance(event, CloseConnection):
                self.closed = True

    def messages(self, kind: str) -> list[Any]:
        found = []
        for frame in self.frames:
            if frame.startswith("a"):
                found += [m[kind] for m in json.loads(frame[1:]) if kind in m]
        return found

    def wait_for(self, kind: str) -> Any:
        """Read until a message of type ``kind`` (or a SockJS frame ``kind``) has come."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and not self.eof:
            found = self.messages(kind) or [f for f in self.frames if f == kind]
            if found:
                return found[-1]
            self._receive()
        raise AssertionError(f"no {kind!r} within {TIMEOUT} s; got {self.frames}")

    def wait_eof(self) -> None:
        while not self.eof:
            self._receive()

    def send(self, message: object) -> None:
        self.sock.sendall(self.ws.send(Message(data=json.dumps([json.dumps(message)]))))

    def close(self) -> None:
        self.sock.close()


def test_login_websocket_and_updates_over_real_sockets() -> None:
    with run_simulator(base_path="/octoprint/", tick_interval=0.1) as sim:
        assert sim.url == f"http://127.0.0.1:{sim.port}/octoprint" and sim.port > 0
        assert len(sim.api_key) >= 32 and sim.username.startswith("octo-") and sim.password
        assert sim.api_key not in repr(sim) and sim.password not in repr(sim)
        status, body = http(sim, "GET", "/api/version", [])
        assert status == 200 and json.loads(body)["server"] == "1.11.8"
        client = RawSockJS(sim)
        assert client.wait_for("o") == "o"
        assert client.wait_for("connected")["version"] == "1.11.8"
        client.send({"auth": f"{sim.username}:{login(sim)}"})
        assert client.wait_for("history")["state"]["text"] == "Operational"
        current = client.wait_for("current")
        assert abs(current["serverTime"] - time.time()) < 5  # a real epoch time
        assert sim.connection_count == 1
        client.close()


def test_fault_methods_reach_the_sockets() -> None:
    with run_simulator(username="octo", password="pw", api_key="KEY") as sim:
        assert (sim.username, sim.password, sim.api_key) == ("octo", "pw", "KEY")
        client = RawSockJS(sim)
        client.send({"auth": f"octo:{login(sim)}"})
        client.wait_for("history")
        assert client.wait_for("event")["type"] == "ClientAuthed"
        client.frames.clear()
        sim.fire_event("Custom", {"x": 1})
        assert client.wait_for("event") == {"type": "Custom", "payload": {"x": 1}}
        sim.send_plugin_message("demo", [1, 2])
        assert client.wait_for("plugin") == {"plugin": "demo", "data": [1, 2]}
        sim.close_sessions("logout")
        assert client.wait_for("reauthRequired") == {"reason": "logout"}
        sim.send_close()
        assert client.wait_for('c[3000,"Go away!"]')
        client.close()
        second = RawSockJS(sim)
        second.wait_for("connected")
        sim.fail_logins(429)
        assert (
            http(sim, "POST", "/api/login", [("X-Api-Key", "KEY")], b'{"passive":true}')[0] == 429
        )
        sim.fail_logins(None)
        sim.stop_heartbeats()
        sim.start_heartbeats()
        sim.delay_responses(0.0)
        sim.send_garbage()
        assert second.wait_for("\x00garbage{")
        sim.drop_connections()
        second.wait_eof()
        assert not second.closed  # abrupt: no close frame
        assert sim.call(lambda server, now: len(server.connections)) == 0
        with pytest.raises(ZeroDivisionError):
            sim.call(lambda server, now: 1 // 0)  # raised to the caller, the server lives on
        assert sim.connection_count == 0


def test_restart_drops_everything_and_listens_again_on_the_same_port() -> None:
    with run_simulator() as sim:
        session = login(sim)
        client = RawSockJS(sim)
        client.wait_for("connected")
        sim.restart(downtime=0.3)
        client.wait_eof()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((sim.host, sim.port), timeout=TIMEOUT).close()
        sim.wait_listening()
        client = RawSockJS(sim)
        client.send({"auth": f"{sim.username}:{session}"})
        assert client.wait_for("reauthRequired") == {"reason": "stale"}  # sessions were in memory
        client.send({"auth": f"{sim.username}:{login(sim)}"})
        client.wait_for("history")
        client.close()
        sim.restart()  # no downtime: back at once
        sim.wait_listening()
        assert http(sim, "GET", "/api/version", [])[0] == 200


def test_exit_joins_the_thread_and_closes_every_socket() -> None:
    with run_simulator() as sim:
        client = RawSockJS(sim)
        client.wait_for("connected")
        port = sim.port
    assert not [t for t in threading.enumerate() if t.name == "octoproto-simulator"]
    client.wait_eof()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
    with pytest.raises(RuntimeError, match="not running"):
        sim.drop_connections()
    client.close()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "::"])
def test_loopback_only(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"), run_simulator(host=host):
        pass  # pragma: no cover


def test_localhost_and_bad_options() -> None:
    with run_simulator(host="localhost") as sim:
        assert sim.host == "127.0.0.1"
    with pytest.raises(TypeError), run_simulator(no_such_option=1):
        pass  # pragma: no cover


def test_a_busy_port_raises_at_once() -> None:
    with run_simulator() as sim, pytest.raises(OSError), run_simulator(port=sim.port):
        pass  # pragma: no cover


def test_many_sockets_on_one_thread() -> None:
    with run_simulator() as sim:
        before = threading.active_count()
        clients = [RawSockJS(sim) for _ in range(200)]
        for client in clients:
            client.wait_for("connected")
        assert sim.connection_count == 200 and threading.active_count() == before
        for client in clients:
            client.close()


async def test_trio_adapter_against_the_simulator() -> None:
    with run_simulator(tick_interval=0.1) as sim:
        with trio.fail_after(TIMEOUT):
            async with connect(sim.url, api_key=sim.api_key) as client:
                seen: set[str] = set()
                async for event in client:
                    if isinstance(event, Authenticated):
                        seen.add("authenticated")
                    elif isinstance(event, PushMessage) and event.type == "current":
                        seen.add("current")
                    if seen == {"authenticated", "current"}:
                        break
