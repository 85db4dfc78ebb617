"""The fault matrix: each scripted server fault, against every adapter (design musts 3, 6, 7).

Each case is one test, run once per adapter through the suite's facade
(:mod:`harness.facade`), and checks the same five things:

* the **end state** (open again, or closed for good when the policy gives up);
* the **reconnect** when the reconnect schedule says so (and none otherwise);
* the **events** that tell the user what happened;
* **no leak**: the fixture checks threads and file descriptors after the
  test, the facade the loop's tasks; mid-test, no socket but the current one
  is left open to the server;
* **no lost message**: what the user sends while the link is down is
  delivered after the reconnect, or handed back in ``SendFailed``.

The faults come from the simulated OctoPrint (login and restart faults) or
from :mod:`harness.faultserver`, a tiny server that misbehaves on purpose
(the wire faults). Every case is marked ``fault_case``; a run with
``OCTOPROTO_WRITE_FAULT_MATRIX=1`` writes the outcomes to
``docs/fault-matrix.md`` (see ``harness.faultmatrix``). Everything is on
127.0.0.1 and every wait is bounded; the whole file takes well under a
minute.
"""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.facade import ADAPTERS, Facade, describe, in_order, is_event, is_message
from harness.faultserver import FaultServer, Peer, Script, deflated, fault_server, frame, sockjs
from harness.fixtures import client_sockets, facade_for
from octoproto.adapters.simulator import SimulatorHandle
from wsproto.utilities import generate_accept_token

from octoproto import (
    Authenticated,
    AuthState,
    Connected,
    ConnectFailed,
    Disconnected,
    Event,
    LimitExceeded,
    LoginFailed,
    LoginSucceeded,
    ProtocolError,
    PushMessage,
    ReconnectFailed,
    ReconnectSchedule,
    ReconnectScheduled,
    SendFailed,
    SendQueueFullError,
    SessionState,
)
from octoproto.testing import ServerConnection

Simulator = Callable[..., SimulatorHandle]
Faults = Callable[..., FaultServer]

#: Seconds for anything that takes a few round trips on loopback.
SOON = 3.0
#: Redial after 0.1 s, for ever: long enough to send while the link is down.
RETRY = ReconnectSchedule(delays=(0.1,), attempts=None)
#: Two quick attempts, then give up.
GIVE_UP = ReconnectSchedule(delays=(0.05,), attempts=2)
#: Options for the fault server's clients: anonymous, so the session is up
#: at ``connected`` and user messages flow at once; plain timeouts.
ANONYMOUS: dict[str, Any] = {"api_key": None, "reconnect": RETRY, "connect_timeout": 2.0}

fault_case = pytest.mark.fault_case


# --- fixtures -----------------------------------------------------------------------


@pytest.fixture
def faults(nothing_left_running: None) -> Iterator[Faults]:
    """Start fault servers: ``server = faults(script, ...)``; stopped after the adapter."""
    with contextlib.ExitStack() as stack:

        def start(*scripts: Script, **options: Any) -> FaultServer:
            return stack.enter_context(fault_server(*scripts, **options))

        yield start


@pytest.fixture(params=ADAPTERS)
def adapter(
    request: pytest.FixtureRequest, simulator: Simulator, faults: Faults
) -> Iterator[Facade]:
    """The suite's facade, closed while both kinds of server still run."""
    yield from facade_for(request.param)


@pytest.fixture
def sent_to_simulator(monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, str | None]]:
    """Every message the simulated OctoPrint receives: (message, the socket's user then)."""
    received: list[tuple[object, str | None]] = []
    original = ServerConnection._receive_message

    def record(self: ServerConnection, text: object, now: float) -> None:
        if isinstance(text, str):
            received.append((json.loads(text), self.user))
        original(self, text, now)

    monkeypatch.setattr(ServerConnection, "_receive_message", record)
    return received


# --- helpers ------------------------------------------------------------------------


def eventually(condition: Callable[[], bool], timeout: float = SOON) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s"
        time.sleep(0.01)


def send_messages(adapter: Facade, tag: str, count: int = 3) -> list[dict[str, Any]]:
    """Send ``count`` user messages ``{"fault": {"tag": tag, "n": i}}``; return them as sent."""
    payloads = [{"tag": tag, "n": n} for n in range(count)]
    for payload in payloads:
        adapter.send_message("fault", payload)
    return [{"fault": payload} for payload in payloads]


def user_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [message for message in messages if "fault" in message]


def open_then(fault: Callable[[Peer], None]) -> Script:
    """A script: the upgrade, ``o`` and ``connected`` (the session is up), then ``fault``."""

    def script(peer: Peer) -> None:
        peer.request()
        peer.accept()
        peer.open()
        peer.pump(0.05)  # the client's first frames, if any
        fault(peer)

    return script


def recovers(adapter: Facade, server: FaultServer, *before: Callable[[Event], bool]) -> list[Event]:
    """The fault's events (``before``, in order), then the reconnect, and nothing lost.

    Waits for ``ReconnectScheduled``, sends three messages while the link is
    down, waits for the next session and checks that the server got them,
    in order, once each; that the client is open on one socket only.
    """
    events = adapter.events_until(is_event(ReconnectScheduled), SOON)
    in_order(events, *before, is_event(ReconnectScheduled, attempt=1))
    assert not [e for e in events if isinstance(e, (ReconnectFailed, SendFailed))], describe(events)
    sent = send_messages(adapter, "while down")
    events += adapter.events_until(is_event(Connected), SOON)
    eventually(lambda: len(user_messages(server.messages)) >= len(sent))
    assert user_messages(server.messages) == sent
    assert adapter.state is SessionState.OPEN and adapter.is_open
    eventually(lambda: len(client_sockets(server.port)) == 1)  # the faulty socket is closed
    return events


def gives_up(adapter: Facade, *before: Callable[[Event], bool]) -> list[Event]:
    """With :data:`GIVE_UP`: the events until the session is closed for good.

    A message sent right after starting (queued: the session never came up)
    is handed back in ``SendFailed``.
    """
    sent = send_messages(adapter, "never delivered", count=1)
    events = adapter.events_until_end(SOON)
    in_order(events, *before, is_event(ReconnectFailed, attempts=2))
    assert not [e for e in events if isinstance(e, Connected)], describe(events)
    (failed,) = [e for e in events if isinstance(e, SendFailed)]
    assert [json.loads(m) for m in failed.messages] == sent
    assert "exhausted" in failed.reason
    assert adapter.wait(1.0)
    assert adapter.state is SessionState.CLOSED and not adapter.is_open
    return events


def start(adapter: Facade, server: FaultServer, **options: Any) -> None:
    adapter.start(server.url, **(ANONYMOUS | options))


# --- TCP --------------------------------------------------------------------------------


@fault_case(
    "TCP refused, then the server listens", "ConnectFailed per attempt; connects once it listens"
)
def test_tcp_refused_until_the_server_listens(adapter: Facade, faults: Faults) -> None:
    server = faults(listen=False)  # bound, not listening: every dial is refused
    start(adapter, server)
    sent = send_messages(adapter, "before the server listens")
    events = adapter.events_until(is_event(ReconnectScheduled, attempt=2), SOON)
    failures = [e for e in events if isinstance(e, ConnectFailed)]
    assert len(failures) == 2, describe(events)
    assert all("refused" in e.reason.lower() for e in failures), failures
    server.listen()
    adapter.events_until(is_event(Connected), SOON)
    eventually(lambda: len(user_messages(server.messages)) == len(sent))
    assert user_messages(server.messages) == sent
    assert adapter.state is SessionState.OPEN


@fault_case(
    "TCP refused for good", "gives up after the schedule; queued message back in SendFailed"
)
def test_tcp_refused_gives_up(adapter: Facade, faults: Faults) -> None:
    server = faults(listen=False)
    start(adapter, server, reconnect=GIVE_UP)
    events = gives_up(adapter)
    failures = [e for e in events if isinstance(e, ConnectFailed)]
    assert len(failures) == 3 and all("refused" in e.reason.lower() for e in failures), failures


@fault_case("TCP reset mid-frame", "Disconnected(1006); reconnects; nothing lost")
def test_tcp_reset_mid_frame(adapter: Facade, faults: Faults) -> None:
    def reset_mid_frame(peer: Peer) -> None:
        peer.send(frame(0x1, sockjs("big", "x" * 1000).encode())[:100])
        peer.sleep(0.05)
        peer.reset()

    server = faults(open_then(reset_mid_frame))
    start(adapter, server)
    adapter.events_until(is_event(Connected), SOON)
    recovers(adapter, server, is_event(Disconnected, code=1006))


@fault_case(
    "close 1006 by drop (FIN, no close frame)", "Disconnected(1006); reconnects; nothing lost"
)
def test_server_drops_the_connection(adapter: Facade, faults: Faults) -> None:
    server = faults(open_then(lambda peer: peer.sleep(0.05)))  # then the socket closes: a FIN
    start(adapter, server)
    adapter.events_until(is_event(Connected), SOON)
    events = recovers(adapter, server, is_event(Disconnected, code=1006))
    lost = next(e for e in events if isinstance(e, Disconnected))
    assert lost.reason == "the server closed the connection"


@fault_case(
    "server silent (no heartbeats, no pongs)", "dead link detected; Disconnected(1006); reconnects"
)
def test_server_silent_is_a_dead_link(adapter: Facade, faults: Faults) -> None:
    def silent(peer: Peer) -> None:
        while True:
            peer.recv(1.0)  # reads (and drops) the client's pings; answers nothing

    server = faults(open_then(silent))
    start(adapter, server, ping_interval=0.1, dead_link_timeout=0.4)
    adapter.events_until(is_event(Connected), SOON)
    began = time.monotonic()
    events = recovers(adapter, server, is_event(Disconnected, code=1006))
    lost = next(e for e in events if isinstance(e, Disconnected))
    assert "dead link" in lost.reason, lost
    stamp = next(t for t, e in adapter.log if e is lost)
    assert 0.25 <= stamp - began < 1.5, stamp - began


def fill(adapter: Facade, count: int = 200) -> int:
    """Send up to ``count`` 64 KiB messages (13 MB: more than the OS buffers on loopback).

    Stops early when the core refuses one (its queue is full); returns how
    many it took.
    """
    pad = "x" * 65536
    for n in range(count):
        try:
            adapter.send_message("fill", {"n": n, "pad": pad})
        except SendQueueFullError:
            return n
    return count


@fault_case(
    "server hangs with the client's send buffer full",
    "writes never stall the loop: the dead link is found; reconnects; nothing lost",
)
def test_server_hangs_with_a_full_send_buffer(adapter: Facade, faults: Faults) -> None:
    # Regression: trio and asyncio awaited each write in their loop, so a
    # server that stopped reading stalled every timer, and the dead link was
    # never found (nor the connect timeout, nor the close timeout).
    server = faults(open_then(lambda peer: peer.sleep(10.0)), rcvbuf=4096)  # reads, sends nothing
    # Room in the queue for the messages sent while the link is down.
    start(adapter, server, dead_link_timeout=0.5, ping_interval=0.2, max_queued_messages=300)
    adapter.events_until(is_event(Connected), SOON)
    assert fill(adapter) == 200
    began = time.monotonic()
    events = recovers(adapter, server, is_event(Disconnected, code=1006))
    lost = next(e for e in events if isinstance(e, Disconnected))
    stamp = next(t for t, e in adapter.log if e is lost)
    assert stamp - began < 1.5, (stamp - began, lost)


@fault_case(
    "server stops reading (client send buffer full)",
    "bounded: LimitExceeded, SendQueueFullError to the caller; a stalled backlog is a dead"
    " link; what the core held back is delivered after the reconnect",
)
def test_server_stops_reading(adapter: Facade, faults: Faults) -> None:
    def stop_reading(peer: Peer) -> None:
        while True:  # a heartbeat every 0.1 s keeps the receiving side alive
            peer.sleep(0.1)
            peer.text("h")

    server = faults(open_then(stop_reading), rcvbuf=4096)
    backlog, queued = 256 * 1024, 5
    start(
        adapter,
        server,
        max_send_backlog=backlog,
        max_queued_messages=queued,
        dead_link_timeout=0.5,
        ping_interval=None,
    )
    adapter.events_until(is_event(Connected), SOON)
    # The user sends 64 KiB messages as fast as the client takes them, until
    # the client gives up on the socket (the OS buffers take a few MB first).
    pad = "x" * 65536
    accepted: list[int] = []
    refusals: list[str] = []
    events: list[Event] = []
    deadline = time.monotonic() + 10.0
    n = 0
    while not any(isinstance(e, ReconnectScheduled) for e in events):
        assert time.monotonic() < deadline, describe(events)
        try:
            adapter.send_message("fill", {"n": n, "pad": pad})
            accepted.append(n)
        except SendQueueFullError as exc:  # told, not dropped: the caller keeps it
            refusals.append(str(exc))
            time.sleep(0.02)
        n += 1
        events += adapter.drain()
    assert any("the server is not reading (max_send_backlog)" in r for r in refusals), refusals
    in_order(
        events,
        is_event(LimitExceeded, limit="max_send_backlog", maximum=backlog),
        is_event(Disconnected, code=1006),
        is_event(ReconnectScheduled, attempt=1),
    )
    lost = next(e for e in events if isinstance(e, Disconnected))
    assert lost.reason.startswith("send stalled: ") and lost.reason.endswith(" for 0.5 s"), lost
    adapter.events_until(is_event(Connected), SOON)
    # What the core held back goes out on the new connection, in order: the
    # last ones it accepted. What it had handed to the stalled socket is lost
    # with it, like any data in flight on a TCP connection that breaks.
    peer = server.peer(1)
    eventually(lambda: bool(peer.messages) and peer.messages[-1]["fill"]["n"] == accepted[-1])
    received = [m["fill"]["n"] for m in peer.messages]
    assert 1 <= len(received) <= queued, received
    assert received == accepted[-len(received) :], (received, accepted[-queued:])
    assert adapter.state is SessionState.OPEN
    eventually(lambda: len(client_sockets(server.port)) == 1)


# --- the handshake ----------------------------------------------------------------------


def refuse(status: int, body: bytes) -> Script:
    def script(peer: Peer) -> None:
        peer.request()
        peer.respond(status, body, [("Content-Type", "text/plain")])

    return script


@pytest.mark.parametrize(
    "status",
    [
        pytest.param(
            status,
            marks=fault_case(
                f"handshake answered {status}", "ConnectFailed with the response; reconnects"
            ),
        )
        for status in (200, 403, 500)
    ],
)
def test_handshake_refused(adapter: Facade, faults: Faults, status: int) -> None:
    server = faults(refuse(status, b"not a websocket"))
    start(adapter, server)
    events = recovers(adapter, server, is_event(ConnectFailed))
    failed = next(e for e in events if isinstance(e, ConnectFailed))
    assert failed.handshake is not None and failed.handshake.status_code == status
    assert failed.handshake.body == b"not a websocket"
    assert str(status) in failed.reason


@fault_case("handshake answered with garbage", "ProtocolError(http) + ConnectFailed; reconnects")
def test_handshake_garbage(adapter: Facade, faults: Faults) -> None:
    def garbage(peer: Peer) -> None:
        peer.request()
        peer.send(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")

    server = faults(garbage)
    start(adapter, server)
    events = recovers(
        adapter, server, is_event(ProtocolError, layer="http"), is_event(ConnectFailed)
    )
    failed = next(e for e in events if isinstance(e, ConnectFailed))
    assert failed.handshake is None and "malformed HTTP response" in failed.reason


@fault_case("wrong Sec-WebSocket-Accept", "ConnectFailed (the 101 is refused); reconnects")
def test_wrong_accept_key(adapter: Facade, faults: Faults) -> None:
    def wrong_key(peer: Peer) -> None:
        peer.request()
        peer.accept(accept_key="dGhlIHNhbXBsZSBub25jZQ==")
        peer.open()  # frames after a bad 101 must not be read
        peer.pump(1.0)

    server = faults(wrong_key)
    start(adapter, server)
    events = recovers(adapter, server, is_event(ConnectFailed))
    failed = next(e for e in events if isinstance(e, ConnectFailed))
    assert "Sec-WebSocket-Accept" in failed.reason
    assert failed.handshake is not None and failed.handshake.status_code == 101
    # The frames after a refused 101 were never read as messages.
    assert not [e for e in events[: events.index(failed)] if isinstance(e, PushMessage)]


@fault_case(
    "slow handshake (1 byte per 100 ms)", "connect timeout: ConnectFailed(timed_out); reconnects"
)
def test_slow_handshake_times_out(adapter: Facade, faults: Faults) -> None:
    def slow_101(peer: Peer) -> None:
        peer.request()
        key = peer.header("sec-websocket-key") or ""
        head = (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {generate_accept_token(key.encode()).decode()}\r\n\r\n"
        ).encode()
        for byte in head:
            peer.send(bytes([byte]))
            peer.sleep(0.1)

    server = faults(slow_101)
    start(adapter, server, connect_timeout=0.5)
    began = time.monotonic()
    events = recovers(adapter, server, is_event(ConnectFailed, timed_out=True))
    failed = next(e for e in events if isinstance(e, ConnectFailed))
    stamp = next(t for t, e in adapter.log if e is failed)
    assert 0.4 <= stamp - began < 1.5


# --- the server's close frame -------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        pytest.param(
            code,
            marks=fault_case(
                f"close frame {code}", "Disconnected(code, reason); close echoed; reconnects"
            ),
        )
        for code in (1000, 1001, 1011, 3000, 4000)
    ],
)
def test_server_close_frame(adapter: Facade, faults: Faults, code: int) -> None:
    def close(peer: Peer) -> None:
        peer.close(code, f"bye {code}")
        peer.pump(2.0, heartbeat=None)  # reads the client's answer

    server = faults(open_then(close))
    start(adapter, server)
    adapter.events_until(is_event(Connected), SOON)
    recovers(adapter, server, is_event(Disconnected, code=code, reason=f"bye {code}"))
    assert server.peer(0).close_code == code  # echoed (RFC 6455 §5.5.1)


# --- bad frames ---------------------------------------------------------------------------


@fault_case("oversized message", "LimitExceeded + Disconnected(1009); reconnects")
def test_oversized_message(adapter: Facade, faults: Faults) -> None:
    def too_big(peer: Peer) -> None:
        peer.push("big", "x" * 5000)
        peer.pump(2.0)

    server = faults(open_then(too_big))
    start(adapter, server, max_message_size=1024)
    adapter.events_until(is_event(Connected), SOON)
    events = recovers(
        adapter,
        server,
        is_event(LimitExceeded, limit="max_message_size", maximum=1024),
        is_event(ProtocolError, layer="websocket"),
        is_event(Disconnected, code=1009),
    )
    assert not [e for e in events if isinstance(e, PushMessage) and e.type == "big"]
    assert server.peer(0).close_code == 1009


@fault_case("invalid UTF-8 in a text frame", "ProtocolError + Disconnected(1007); reconnects")
def test_invalid_utf8(adapter: Facade, faults: Faults) -> None:
    def bad_text(peer: Peer) -> None:
        peer.send(frame(0x1, b'a[{"bad":"\xff\xfe"}]'))
        peer.pump(2.0)

    server = faults(open_then(bad_text))
    start(adapter, server)
    adapter.events_until(is_event(Connected), SOON)
    recovers(
        adapter,
        server,
        is_event(ProtocolError, layer="websocket"),
        is_event(Disconnected, code=1007),
    )
    assert server.peer(0).close_code == 1007


@functools.cache
def bomb() -> bytes:
    """64 MiB of text, deflated to about 64 KiB: a permessage-deflate bomb."""
    return deflated(b'a["' + b"A" * (64 << 20) + b'"]')


@fault_case(
    "decompression bomb (permessage-deflate)",
    "inflation stops at the limit: LimitExceeded + Disconnected(1009)",
)
def test_decompression_bomb(adapter: Facade, faults: Faults) -> None:
    limit = 1 << 20

    def open_deflated(peer: Peer) -> None:
        peer.request()
        peer.accept(deflate=True)
        peer.open()
        peer.pump(0.05)
        peer.send(frame(0x1, bomb(), rsv1=True))
        peer.pump(2.0)

    server = faults(open_deflated)
    start(adapter, server, max_message_size=limit)
    connected = adapter.events_until(is_event(Connected), SOON)[-1]
    assert isinstance(connected, Connected)
    assert connected.handshake.extensions == ("permessage-deflate",)
    events = recovers(
        adapter,
        server,
        is_event(LimitExceeded, limit="max_message_size", maximum=limit),
        is_event(Disconnected, code=1009),
    )
    exceeded = next(e for e in events if isinstance(e, LimitExceeded))
    assert limit < exceeded.size <= limit + 1  # never inflated past the bound
    assert server.peer(0).close_code == 1009


# --- a slow server --------------------------------------------------------------------------


@fault_case(
    "slow server (1 byte per 100 ms)", "a trickle is no dead link: the message arrives whole"
)
def test_slow_server(adapter: Facade, faults: Faults) -> None:
    def trickle(peer: Peer) -> None:
        data = frame(0x1, sockjs("slow", {"ok": True}).encode())
        for byte in data:
            peer.send(bytes([byte]))
            peer.sleep(0.1)
        peer.pump(5.0)

    server = faults(open_then(trickle))
    # Each byte comes long before the dead-link timeout; the whole message after it.
    start(adapter, server, dead_link_timeout=0.5, ping_interval=None)
    adapter.events_until(is_event(Connected), SOON)
    began = time.monotonic()
    events = adapter.events_until(is_message("slow"), SOON)
    assert time.monotonic() - began > 0.5 * 2  # it did take its time
    assert events[-1] == PushMessage("slow", {"ok": True})
    assert not [e for e in events if isinstance(e, (Disconnected, ProtocolError))], describe(events)
    sent = send_messages(adapter, "to a slow server")
    eventually(lambda: user_messages(server.messages) == sent)
    assert adapter.state is SessionState.OPEN and server.connection_count == 1


# --- TLS --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def untrusted_tls(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate for 127.0.0.1 (``openssl``)."""
    openssl = shutil.which("openssl")
    if openssl is None:  # pragma: no cover - depends on the machine
        pytest.skip("no openssl command to make a self-signed certificate")
    directory: Path = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    command = "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1"
    command += " -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1"
    subprocess.run(
        [openssl, *command.split(), "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=20,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


@fault_case(
    "TLS with an untrusted certificate",
    "fails closed: ConnectFailed naming the certificate; nothing sent",
)
def test_tls_untrusted_certificate(
    adapter: Facade, faults: Faults, untrusted_tls: ssl.SSLContext
) -> None:
    server = faults(tls=untrusted_tls)
    start(adapter, server, reconnect=GIVE_UP)
    events = gives_up(adapter)
    failures = [e for e in events if isinstance(e, ConnectFailed)]
    assert len(failures) == 3, describe(events)
    for failed in failures:
        assert "certificate verify failed" in failed.reason.lower(), failed.reason
    assert server.peers == []  # no connection got past TLS: not one byte of HTTP went out
    eventually(lambda: len(server.tls_errors) == 3)


# --- login and restarts (the simulated OctoPrint) ------------------------------------------------


def sim_start(adapter: Facade, sim: SimulatorHandle, **options: Any) -> None:
    options = {"api_key": sim.api_key, "reconnect": RETRY, **options}
    adapter.start(sim.url, **options)


def fault_messages(received: list[tuple[object, str | None]]) -> list[tuple[object, str | None]]:
    return [(m, user) for m, user in received if isinstance(m, dict) and "fault" in m]


@fault_case(
    "server restart during login",
    "the login is dropped with the socket; reconnects and logs in anew",
)
def test_server_restart_during_login(
    adapter: Facade, simulator: Simulator, sent_to_simulator: list[tuple[object, str | None]]
) -> None:
    sim = simulator()
    sim.delay_responses(0.5)  # the 101, then the login's answer, each held 0.5 s
    sim_start(adapter, sim)
    adapter.events_until(is_event(Connected), SOON)
    assert adapter.core.auth_state is AuthState.LOGGING_IN
    eventually(lambda: sim.connection_count == 2, 0.4)  # the push socket and the login
    sim.restart(downtime=0.3)
    events = adapter.events_until(is_event(ReconnectScheduled), SOON)
    in_order(events, is_event(Disconnected, code=1006), is_event(ReconnectScheduled, attempt=1))
    sent = send_messages(adapter, "during the restart")
    events += adapter.events_until(is_event(Authenticated), SOON)
    in_order(events, is_event(Connected), is_event(LoginSucceeded), is_event(Authenticated))
    assert not [e for e in events if isinstance(e, LoginSucceeded)][1:]
    eventually(lambda: len(fault_messages(sent_to_simulator)) == len(sent))
    # Held back until the new session is authenticated, then delivered in order.
    assert fault_messages(sent_to_simulator) == [(m, sim.username) for m in sent]
    assert adapter.state is SessionState.OPEN


@fault_case(
    "login answered 403", "LoginFailed(403), no retry (rate limits); the socket stays up, anonymous"
)
def test_login_403(
    adapter: Facade,
    simulator: Simulator,
    sent_to_simulator: list[tuple[object, str | None]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logins: list[float] = []
    original = ServerConnection._login

    def count(self: ServerConnection, *args: Any) -> None:
        logins.append(time.monotonic())
        original(self, *args)

    monkeypatch.setattr(ServerConnection, "_login", count)
    sim = simulator()
    sim.fail_logins(403)
    sim_start(adapter, sim, login_retry_delay=0.1)
    sent = send_messages(adapter, "while logging in")
    events = adapter.events_until(is_event(LoginFailed), SOON)
    assert events[-1] == LoginFailed(403, "wrong credentials", None)
    events += adapter.events_for(0.4)  # four retry delays: no retry comes
    assert len(logins) == 1
    assert not [e for e in events if isinstance(e, (LoginSucceeded, Authenticated, Disconnected))]
    eventually(lambda: len(fault_messages(sent_to_simulator)) == len(sent))
    # Not kept for a login that will not come: delivered, anonymously.
    assert fault_messages(sent_to_simulator) == [(m, None) for m in sent]
    assert adapter.state is SessionState.OPEN and adapter.core.auth_state is AuthState.ANONYMOUS


@fault_case(
    "login with a wrong API key",
    "LoginFailed(400, 'wrong credentials'), no retry (OctoPrint's answer: CSRF); stays up",
)
def test_login_with_a_wrong_api_key(adapter: Facade, simulator: Simulator) -> None:
    sim = simulator()
    sim_start(adapter, sim, api_key="not-" + sim.api_key, login_retry_delay=0.1)
    events = adapter.events_until(is_event(LoginFailed), SOON)
    assert events[-1] == LoginFailed(400, "wrong credentials", None)
    events += adapter.events_for(0.3)
    assert not [e for e in events if isinstance(e, (LoginSucceeded, Authenticated, Disconnected))]
    assert adapter.state is SessionState.OPEN and adapter.core.auth_state is AuthState.ANONYMOUS


@fault_case("login answered 429 (rate limit)", "LoginFailed(429, retry_in); logs in on the retry")
def test_login_429(
    adapter: Facade, simulator: Simulator, sent_to_simulator: list[tuple[object, str | None]]
) -> None:
    sim = simulator()
    sim.fail_logins(429)
    sim_start(adapter, sim, login_retry_delay=0.2)
    events = adapter.events_until(is_event(LoginFailed), SOON)
    assert events[-1] == LoginFailed(429, "rate limited by the server", 0.2)
    sim.fail_logins(None)
    sent = send_messages(adapter, "while rate limited")
    events = adapter.events_until(is_event(Authenticated), SOON)
    in_order(events, is_event(LoginSucceeded, user=sim.username), is_event(Authenticated))
    assert not [e for e in events if isinstance(e, Disconnected)]
    eventually(lambda: len(fault_messages(sent_to_simulator)) == len(sent))
    assert [m for m, _ in fault_messages(sent_to_simulator)] == sent
    assert adapter.state is SessionState.OPEN and adapter.core.auth_state is AuthState.AUTHENTICATED
