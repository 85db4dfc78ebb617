"""Smoke tests of the blocking adapter against a tiny in-test SockJS server.

The shared adapter suite (all three adapters, parametrised) covers behaviour
in depth; these only prove the thread, the callback and the cleanup work.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from octoproto.adapters.blocking import connect
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Message, Ping, Request

from octoproto import Connected, Disconnected, PushMessage, SessionState

#: What the server sends once the upgrade is done: SockJS open, then two messages.
FRAMES = ("o", 'a[{"connected":{}}]', 'a[{"current":{}}]')
TIMEOUT = 5.0


class TinyServer:
    """Accepts one WebSocket connection on 127.0.0.1 and sends :data:`FRAMES`.

    The frames wait for :attr:`go`, so a test decides when messages flow.
    The server answers a close frame and then hangs up.
    """

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(TIMEOUT)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/"
        self.go = threading.Event()
        self.closed_by_client = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="tiny-server", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with self.listener, self.listener.accept()[0] as conn:
            conn.settimeout(TIMEOUT)
            # The client may hang up at any moment (close() while frames are
            # under way resets the connection): that ends the test's server.
            with contextlib.suppress(ConnectionError):
                self._converse(conn)

    def _converse(self, conn: socket.socket) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        while data := conn.recv(65536):
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, Request):
                    conn.sendall(ws.send(AcceptConnection()))
                    self.go.wait(TIMEOUT)
                    for frame in FRAMES:
                        conn.sendall(ws.send(Message(data=frame)))
                elif isinstance(event, Ping):
                    conn.sendall(ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    conn.sendall(ws.send(event.response()))
                    self.closed_by_client.set()
                    return


@contextmanager
def tiny_server() -> Iterator[TinyServer]:
    server = TinyServer()
    try:
        yield server
    finally:
        server.go.set()
        server.thread.join(TIMEOUT)


def adapter_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("octoproto-blocking")]


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_events_arrive_in_order() -> None:
    with tiny_server() as server, connect(server.url, connect_timeout=TIMEOUT) as client:
        events = client.events(timeout=TIMEOUT)
        server.go.set()
        received = [next(events) for _ in range(3)]
        assert isinstance(received[0], Connected)
        assert received[0].handshake.status_code == 101
        assert received[1:] == [PushMessage("connected", {}), PushMessage("current", {})]
        assert client.is_open
        client.disconnect()
        assert client.state is SessionState.CLOSED
        assert isinstance(next(events), Disconnected)
        assert list(events) == []  # closed for good: the iterator ends
        assert server.closed_by_client.wait(TIMEOUT)


def test_the_first_events_call_gets_the_events_from_connect_on() -> None:
    handled = threading.Event()
    with tiny_server() as server, connect(server.url, connect_timeout=TIMEOUT) as client:
        client.on("current", lambda message: handled.set())
        server.go.set()
        assert handled.wait(TIMEOUT)  # every event so far was delivered ...
        events = client.events(timeout=TIMEOUT)  # ... and kept for the first iterator
        assert [type(next(events)) for _ in range(3)] == [Connected, PushMessage, PushMessage]


def test_handler_and_callback_then_none_once() -> None:
    calls: list[PushMessage | None] = []
    handled = threading.Event()
    with tiny_server() as server:
        client = connect(server.url, callback=calls.append, connect_timeout=TIMEOUT)
        client.on("current", lambda message: handled.set())
        server.go.set()
        assert handled.wait(TIMEOUT)
        assert not client.wait(0.01)
        client.close()
        assert client.wait(0)
    assert calls == [PushMessage("connected", {}), PushMessage("current", {}), None]


def test_a_raising_callback_is_logged_and_the_loop_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def callback(message: PushMessage | None) -> None:
        raise RuntimeError("boom")

    with tiny_server() as server, connect(server.url, callback=callback) as client:
        events = client.events(timeout=TIMEOUT)
        server.go.set()
        assert [type(next(events)) for _ in range(3)] == [Connected, PushMessage, PushMessage]
    # Two messages and the final None: each call raised, each was logged.
    records = [r for r in caplog.records if r.name == "octoproto.adapters.blocking"]
    assert [r.getMessage().endswith("callback raised") for r in records] == [True] * 3
    assert client.state is SessionState.CLOSED


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_close_leaves_no_thread_and_no_socket() -> None:
    before = open_fds()
    with tiny_server() as server:
        client = connect(server.url, connect_timeout=TIMEOUT)
        assert adapter_threads()
        server.go.set()
        client.close()
        assert not adapter_threads()
    server.thread.join(TIMEOUT)
    assert open_fds() == before


def test_close_while_the_server_is_silent_is_prompt() -> None:
    # The kernel completes the TCP handshake, nobody answers the upgrade:
    # close() must not wait for the connect timeout, and leaves nothing.
    listener = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
    began = time.monotonic()
    with listener, connect(url) as client:
        assert client.state in (SessionState.CONNECTING, SessionState.HANDSHAKING)
    assert time.monotonic() - began < 1.0
    assert client.wait(0)
    assert not adapter_threads()
