"""The adapter suite: every test runs against trio, asyncio and blocking (design must 5).

Each test gets ``adapter``, a synchronous facade over one adapter
(:mod:`harness.facade`), and ``simulator``, which starts the simulated
OctoPrint (:mod:`octoproto.adapters.simulator`) on loopback with short
intervals. Teardown checks that the adapter left no thread, task or file
descriptor behind. Every wait is bounded and short.
"""

from __future__ import annotations

import gc
import itertools
import json
import logging
import statistics
import time
from collections.abc import Callable
from typing import Any

import pytest
from harness.facade import Facade, describe, in_order, is_event, is_message, make_facade
from harness.fixtures import client_sockets
from octoproto.adapters.simulator import SimulatorHandle

from octoproto import (
    Authenticated,
    Connected,
    ConnectFailed,
    Disconnected,
    Endpoint,
    Event,
    LoginFailed,
    LoginSucceeded,
    ProtocolError,
    PushMessage,
    ReauthRequired,
    ReconnectFailed,
    ReconnectSchedule,
    ReconnectScheduled,
    SessionState,
    ThrottleChanged,
)
from octoproto.testing import ServerConnection

Simulator = Callable[..., SimulatorHandle]

#: Seconds for anything that takes a few round trips on loopback.
SOON = 3.0
#: Redial fast, and forever, unless a test says otherwise.
FAST_RECONNECT = ReconnectSchedule(delays=(0.05,), attempts=None)


def start(adapter: Facade, sim: SimulatorHandle, **options: Any) -> None:
    """Connect to ``sim`` with its API key and a fast reconnect schedule."""
    options.setdefault("api_key", sim.api_key)
    options.setdefault("reconnect", FAST_RECONNECT)
    adapter.start(sim.url, **options)


def server_sockets(sim: SimulatorHandle) -> list[tuple[str | None, str | None, int]]:
    """(endpoint, user, throttle factor) of each open websocket on the server."""
    return sim.call(
        lambda server, now: [
            (conn.endpoint, conn.user, conn.throttle_factor)
            for conn in server.connections
            if conn.endpoint is not None
        ]
    )


def eventually(condition: Callable[[], bool], timeout: float = SOON) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s"
        time.sleep(0.01)


# --- connecting -------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", list(Endpoint))
def test_connect_login_auth_history_then_current(
    adapter: Facade, simulator: Simulator, endpoint: Endpoint
) -> None:
    sim = simulator()
    start(adapter, sim, endpoint=endpoint)
    events = adapter.events_until(is_message("current"), SOON)
    connected, hello, _, _, history, _ = in_order(
        events,
        is_event(Connected),
        is_message("connected"),
        is_event(LoginSucceeded, user=sim.username, mechanism="apikey"),
        is_event(Authenticated, user=sim.username),
        is_message("history"),
        is_message("current"),
    )
    assert events[0] is connected  # nothing before it
    assert isinstance(connected, Connected) and connected.handshake.status_code == 101
    assert isinstance(hello, PushMessage) and hello.data["version"] == "1.11.8"  # type: ignore[index]
    assert isinstance(history, PushMessage) and "temps" in history.data  # type: ignore[operator]
    # More `current` follow, every update_interval (0.05 s).
    adapter.events_until(is_message("current"), SOON)
    assert adapter.state is SessionState.OPEN and adapter.is_open
    assert server_sockets(sim) == [(endpoint.value, sim.username, 1)]


def test_active_login_with_username_and_password(adapter: Facade, simulator: Simulator) -> None:
    sim = simulator()
    start(adapter, sim, api_key=None, username=sim.username, password=sim.password)
    events = adapter.events_until(is_event(Authenticated), SOON)
    in_order(events, is_event(LoginSucceeded, user=sim.username, mechanism="password"))


def test_anonymous_without_credentials_gets_connected_only(
    adapter: Facade, simulator: Simulator
) -> None:
    sim = simulator()
    start(adapter, sim, api_key=None)
    events = adapter.events_until(is_message("connected"), SOON)
    events += adapter.events_for(0.3)
    assert [e for e in events if isinstance(e, PushMessage)] == [events[1]]
    assert server_sockets(sim) == [("sockjs", None, 1)]


# --- handlers ----------------------------------------------------------------------


def _key(message: PushMessage) -> str:
    if message.type == "event" and isinstance(message.data, dict):
        return f"event:{message.data['type']}"
    return message.type


def test_handlers_per_type_and_wildcard_in_order_and_off(
    adapter: Facade, simulator: Simulator
) -> None:
    calls: list[tuple[str, str]] = []

    def handler(name: str) -> Callable[[PushMessage], None]:
        def handle(message: PushMessage) -> None:
            calls.append((name, _key(message)))

        handle.__qualname__ = name
        return handle

    star1, star2, star3 = handler("*1"), handler("*2"), handler("*3")
    on_current, on_history, on_event = handler("current"), handler("history"), handler("event")
    sim = simulator()
    # The blocking adapter's loop runs from connect() on, and the facade adds
    # handlers just after: hold the 101 back so they are in before `connected`.
    sim.delay_responses(0.1)
    # A "*" registered after the per-type handlers still runs before them.
    handlers = [
        ("*", star1),
        ("current", on_current),
        ("*", star2),
        ("history", on_history),
        ("event", on_event),
        ("*", star3),
    ]
    start(adapter, sim, handlers=handlers)
    events = adapter.events_until(is_message("current"), SOON)

    def expected(
        events: list[Event], stars: list[str], by_type: dict[str, str]
    ) -> list[tuple[str, str]]:
        result = []
        for event in events:
            if isinstance(event, PushMessage):
                names = [*stars, *([by_type[event.type]] if event.type in by_type else [])]
                result += [(name, _key(event)) for name in names]
        return result

    assert calls == expected(
        events,
        ["*1", "*2", "*3"],
        {"current": "current", "history": "history", "event": "event"},
    )

    adapter.off("current", on_current)
    adapter.off("*", star2)
    adapter.on("current", star2)  # the same function, now for one type only
    # Everything dispatched from this event on sees the new registrations.
    sim.fire_event("AfterOff", {})
    after_off = is_event(PushMessage, type="event", data={"type": "AfterOff", "payload": {}})
    events = adapter.events_until(after_off, SOON)
    events = events[-1:] + adapter.events_until(is_message("current"), SOON)
    later = calls[calls.index(("*1", "event:AfterOff")) :]
    assert later == expected(events, ["*1", "*3"], {"current": "*2", "event": "event"})

    adapter.off("*")  # every wildcard handler at once
    adapter.off("current")
    adapter.off("event")
    before = len(calls)
    adapter.events_until(is_message("current"), SOON)
    assert calls[before:] == []


def test_raising_handler_is_logged_and_the_others_run(
    adapter: Facade, simulator: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []

    def broken(message: PushMessage) -> None:
        raise ValueError("handler bug")

    sim = simulator()
    start(
        adapter,
        sim,
        handlers=[("*", broken), ("*", lambda m: seen.append(m.type)), ("current", broken)],
    )
    with caplog.at_level(logging.ERROR, logger="octoproto.handlers"):
        events = adapter.events_until(is_message("current"), SOON)
        events += adapter.events_until(is_message("current"), SOON)  # the loop goes on
    messages = [e.type for e in events if isinstance(e, PushMessage)]
    assert seen == messages
    failures = [r for r in caplog.records if r.name == "octoproto.handlers"]
    # One for each message from "*", one more for each `current`.
    assert len(failures) == len(messages) + messages.count("current")
    assert all(r.exc_info and isinstance(r.exc_info[1], ValueError) for r in failures)
    assert adapter.is_open


# --- sending -----------------------------------------------------------------------


def test_message_queued_before_auth_is_delivered_after_it(
    adapter: Facade, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    received: list[tuple[str, str | None]] = []  # (message key, the socket's user then)
    original = ServerConnection._receive_message

    def record(self: ServerConnection, text: object, now: float) -> None:
        if isinstance(text, str):
            received.append((next(iter(json.loads(text)), ""), self.user))
        original(self, text, now)

    monkeypatch.setattr(ServerConnection, "_receive_message", record)
    sim = simulator()
    sim.delay_responses(0.1)  # the login (and the 101) take a while: sure to be before auth
    start(adapter, sim)
    adapter.send_message("hello", {"n": 1})
    adapter.send_message("hello", {"n": 2})
    adapter.events_until(is_event(Authenticated), SOON)
    eventually(lambda: len([r for r in received if r[0] == "hello"]) == 2)
    keys = [key for key, _ in received]
    assert keys.index("auth") < keys.index("hello")
    assert [user for key, user in received if key == "hello"] == [sim.username] * 2


def test_set_throttle_changes_the_rate_and_survives_a_reconnect(
    adapter: Facade, simulator: Simulator
) -> None:
    arrivals: list[float] = []
    sim = simulator()
    start(
        adapter,
        sim,
        auto_throttle=False,
        handlers=[("current", lambda m: arrivals.append(time.monotonic()))],
    )
    adapter.events_until(is_message("current"), SOON)

    def interval(count: int) -> float:
        del arrivals[:]
        for _ in range(count + 1):
            adapter.events_until(is_message("current"), SOON)
        return statistics.median(b - a for a, b in itertools.pairwise(arrivals))

    base = interval(4)
    adapter.set_throttle(4)
    adapter.events_until(is_event(ThrottleChanged, factor=4, previous=1), SOON)
    eventually(lambda: server_sockets(sim) == [("sockjs", sim.username, 4)])
    adapter.events_until(is_message("current"), SOON)  # the last one under the old factor
    slow = interval(3)
    assert 2.5 < slow / base < 6, (base, slow)
    assert adapter.core.throttle_factor == 4
    # The server forgets the factor with the connection; the core sends it again.
    sim.drop_connections()
    adapter.events_until(is_event(Authenticated), SOON)
    eventually(lambda: server_sockets(sim) == [("sockjs", sim.username, 4)])


def test_subscribe_to_events_only_stops_current(adapter: Facade, simulator: Simulator) -> None:
    sim = simulator()
    start(adapter, sim)
    adapter.events_until(is_message("current"), SOON)
    adapter.subscribe({"events": True})
    adapter.events_for(0.1)  # what was on its way
    sim.fire_event("Subscribed", {"ok": True})
    events = adapter.events_until(is_message("event"), SOON)
    events += adapter.events_for(0.25)  # five update intervals
    assert not [e for e in events if isinstance(e, PushMessage) and e.type == "current"]
    assert adapter.is_open


# --- losing the connection --------------------------------------------------------------


def test_reconnect_after_the_server_drops_the_connection(
    adapter: Facade, simulator: Simulator
) -> None:
    sim = simulator()
    start(adapter, sim, reconnect=ReconnectSchedule(delays=(0.05, 0.05), attempts=2))
    adapter.events_until(is_message("current"), SOON)
    sim.drop_connections()
    events = adapter.events_until(is_event(Authenticated), SOON)
    in_order(
        events,
        is_event(Disconnected, code=1006),
        is_event(ReconnectScheduled, attempt=1, delay=0.05),
        is_event(Connected),
        is_event(LoginSucceeded),
        is_event(Authenticated),
    )
    assert not [e for e in events if isinstance(e, (ConnectFailed, ReconnectFailed))]
    adapter.events_until(is_message("current"), SOON)
    # The attempt counter starts afresh: the same schedule once more.
    sim.drop_connections()
    events = adapter.events_until(is_event(Authenticated), SOON)
    in_order(events, is_event(ReconnectScheduled, attempt=1), is_event(Authenticated))


def test_gives_up_after_the_schedule(adapter: Facade, simulator: Simulator) -> None:
    sim = simulator()
    start(adapter, sim, reconnect=ReconnectSchedule(delays=(0.05, 0.05), attempts=2))
    adapter.events_until(is_event(Authenticated), SOON)
    began = time.monotonic()
    sim.restart(downtime=60)  # down for longer than the test: a stopped server
    events = adapter.events_until_end(SOON)
    elapsed = time.monotonic() - began
    assert [type(e) for e in events if not isinstance(e, PushMessage)] == [
        Disconnected,
        ReconnectScheduled,
        ConnectFailed,
        ReconnectScheduled,
        ConnectFailed,
        ReconnectFailed,
    ]
    in_order(
        events,
        is_event(Disconnected, code=1006),
        is_event(ReconnectScheduled, attempt=1, delay=0.05),
        is_event(ReconnectScheduled, attempt=2, delay=0.05),
        is_event(ReconnectFailed, attempts=2),
    )
    assert events[-1] == ReconnectFailed(attempts=2)
    assert 0.1 <= elapsed < 1.5
    assert adapter.wait(1.0)
    assert adapter.state is SessionState.CLOSED and not adapter.is_open


def test_dead_link_detected_when_heartbeats_stop(adapter: Facade, simulator: Simulator) -> None:
    sim = simulator(heartbeat_interval=0.05)
    # Anonymous: only `connected` and heartbeats arrive, so silence means a dead link.
    start(adapter, sim, api_key=None, dead_link_timeout=0.25, ping_interval=None)
    adapter.events_until(is_message("connected"), SOON)
    assert not adapter.events_for(0.5)  # heartbeats keep it alive well past the timeout
    sim.stop_heartbeats()
    stopped = time.monotonic()
    events = adapter.events_until(is_event(Disconnected), SOON)
    elapsed = time.monotonic() - stopped
    lost = events[-1]
    assert isinstance(lost, Disconnected) and lost.code == 1006 and "dead link" in lost.reason
    assert 0.15 <= elapsed < 0.75, elapsed
    adapter.events_until(is_event(ReconnectScheduled, attempt=1), SOON)
    sim.start_heartbeats()
    adapter.events_until(is_event(Connected), SOON)
    assert not [e for e in adapter.events_for(0.4) if isinstance(e, Disconnected)]


def test_protocol_error_closes_and_reconnects(adapter: Facade, simulator: Simulator) -> None:
    sim = simulator()
    start(adapter, sim)
    adapter.events_until(is_event(Authenticated), SOON)
    sim.send_garbage()
    events = adapter.events_until(is_event(Authenticated), SOON)
    in_order(
        events,
        is_event(ProtocolError),
        is_event(Disconnected),
        is_event(ReconnectScheduled, attempt=1),
        is_event(Connected),
        is_event(Authenticated),
    )


def test_server_close_reconnects(adapter: Facade, simulator: Simulator) -> None:
    sim = simulator()
    start(adapter, sim)
    adapter.events_until(is_event(Authenticated), SOON)
    sim.send_close(3000, "Go away!")
    events = adapter.events_until(is_event(Authenticated), SOON)
    in_order(
        events,
        is_event(Disconnected, code=3000, reason="Go away!"),
        is_event(ReconnectScheduled, attempt=1),
        is_event(Authenticated),
    )


def test_server_restart_reconnects_and_logs_in_anew(adapter: Facade, simulator: Simulator) -> None:
    sim = simulator()
    start(adapter, sim, reconnect=ReconnectSchedule(delays=(0.1,), attempts=None))
    adapter.events_until(is_message("current"), SOON)
    sim.restart(downtime=0.25)
    events = adapter.events_until(is_message("current"), SOON)
    in_order(
        events,
        is_event(Disconnected, code=1006),
        is_event(ReconnectScheduled, attempt=1),
        is_event(ConnectFailed),
        is_event(ReconnectScheduled, attempt=2),
        is_event(Connected),
        is_event(LoginSucceeded),
        is_event(Authenticated),
        is_message("history"),
        is_message("current"),
    )


# --- authentication faults -----------------------------------------------------------


def test_stale_session_logs_in_again(adapter: Facade, simulator: Simulator) -> None:
    # The simulator sends `history` again after the new auth, which confirms it.
    # The real OctoPrint does not (the socket stays registered): see
    # tests/integration/test_octoprint_real.py, test_relogin_after_a_stale_session_is_confirmed.
    sim = simulator()
    start(adapter, sim)
    adapter.events_until(is_event(Authenticated), SOON)
    sim.close_sessions("stale")
    events = adapter.events_until(is_event(Authenticated), SOON)
    in_order(
        events,
        is_event(ReauthRequired, reason="stale", relogin=True),
        is_event(LoginSucceeded),
        is_event(Authenticated),
    )
    assert not [e for e in events if isinstance(e, Disconnected)]


def test_logout_is_not_followed_by_a_login(adapter: Facade, simulator: Simulator) -> None:
    sim = simulator()
    start(adapter, sim)
    adapter.events_until(is_event(Authenticated), SOON)
    sim.close_sessions("logout")
    events = adapter.events_until(is_event(ReauthRequired), SOON)
    assert events[-1] == ReauthRequired("logout", relogin=False)
    events = adapter.events_for(0.3)
    assert not [e for e in events if isinstance(e, (LoginSucceeded, Authenticated))]
    assert server_sockets(sim) == [("sockjs", None, 1)]


def test_failed_logins(adapter: Facade, simulator: Simulator) -> None:
    sim = simulator()
    sim.fail_logins(500)
    start(adapter, sim, login_retry_delay=0.1)
    failed = adapter.events_until(is_event(LoginFailed), SOON)[-1]
    assert isinstance(failed, LoginFailed) and (failed.status, failed.retry_in) == (500, 0.1)
    sim.fail_logins(None)
    adapter.events_until(is_event(Authenticated), SOON)
    # Wrong credentials: no retry by itself (OctoPrint rate-limits them).
    sim.fail_logins(403)
    sim.close_sessions("stale")
    events = adapter.events_until(is_event(LoginFailed), SOON)
    assert events[-1] == LoginFailed(403, "wrong credentials", None)
    assert not [e for e in adapter.events_for(0.2) if isinstance(e, LoginSucceeded)]
    assert adapter.is_open


# --- reconnect() and disconnect() ---------------------------------------------------------


def test_disconnect_with_code_ends_the_iteration(adapter: Facade, simulator: Simulator) -> None:
    sim = simulator()
    start(adapter, sim)
    adapter.events_until(is_event(Authenticated), SOON)
    began = time.monotonic()
    adapter.disconnect(4001, "bye")
    assert time.monotonic() - began < 1.0  # the server answered the close at once
    events = adapter.events_until_end(SOON)
    assert events[-1] == Disconnected(4001, "bye")
    assert [e for e in events if isinstance(e, Disconnected)] == [events[-1]]
    assert adapter.wait(0.5)
    assert adapter.state is SessionState.CLOSED and not adapter.is_open
    eventually(lambda: sim.connection_count == 0)


def test_reconnect_while_open_and_after_disconnect(adapter: Facade, simulator: Simulator) -> None:
    sim = simulator()
    start(adapter, sim)
    adapter.events_until(is_event(Authenticated), SOON)
    adapter.reconnect()
    events = adapter.events_until(is_event(Authenticated), SOON)
    in_order(
        events,
        is_event(Disconnected, code=1000, reason="reconnect() was called"),
        is_event(Connected),
        is_event(Authenticated),
    )
    assert not [e for e in events if isinstance(e, (ReconnectScheduled, ProtocolError))]
    adapter.disconnect()
    assert adapter.events_until_end(SOON)[-1] == Disconnected(1000, "")
    # Closed for good, the client may still dial again; the iteration starts anew.
    adapter.reconnect()
    assert not adapter.wait(0)
    events = adapter.events_until(is_message("current"), SOON)
    in_order(events, is_event(Connected), is_event(Authenticated), is_message("current"))
    eventually(lambda: server_sockets(sim) == [("sockjs", sim.username, 1)])


# --- leaving ----------------------------------------------------------------------------


class Boom(Exception):
    """An error raised inside the ``async with`` / ``with`` block."""


def leave(facade: Facade, sim: SimulatorHandle, how: str) -> None:
    """Leave the block (``how``: close, error or cancel) and check that nothing is left.

    The facade's own checks (loop over, no task) and no client socket to
    ``sim``; the fixture checks threads and descriptors after the test.
    """
    began = time.monotonic()
    if how == "close":
        assert facade.close() is None
    elif how == "error":
        assert facade.close(Boom("inside the block")) is not None
    else:
        facade.cancel()
    elapsed = time.monotonic() - began
    leaked = client_sockets(sim.port)
    if leaked:  # reported below; closed now, so that teardown checks the rest
        facade.forget_client()
        gc.collect()
    assert not leaked, leaked
    facade.assert_stopped()
    assert elapsed < 0.1, elapsed  # a close handshake on loopback, or nothing to close


#: A reconnect far in the future: "reconnecting" stays so while the test leaves.
_LEAVING = {"close_timeout": 0.1, "reconnect": ReconnectSchedule(delays=(30.0,), attempts=None)}


@pytest.mark.parametrize("phase", ["handshaking", "open", "reconnecting"])
@pytest.mark.parametrize("how", ["close", "error", "cancel"])
def test_leaving_leaves_nothing_running(
    adapter: Facade, simulator: Simulator, phase: str, how: str
) -> None:
    sim = simulator()
    if phase == "handshaking":
        sim.delay_responses(5.0)  # the 101 is held back
    start(adapter, sim, **_LEAVING)
    if phase == "handshaking":
        eventually(lambda: sim.connection_count == 1)
        time.sleep(0.05)  # the upgrade request is in
        assert adapter.state is SessionState.HANDSHAKING
    elif phase == "open":
        adapter.events_until(is_message("current"), SOON)
    else:
        adapter.events_until(is_event(Authenticated), SOON)
        sim.drop_connections()
        adapter.events_until(is_event(ReconnectScheduled), SOON)  # 30 s from now
    leave(adapter, sim, how)
    assert adapter.state is SessionState.CLOSED
    if phase != "handshaking":  # (a held response keeps the server's side open meanwhile)
        eventually(lambda: sim.connection_count == 0)


@pytest.mark.parametrize("how", ["close", "error", "cancel"])
def test_leaving_while_dialing_leaves_nothing_running(
    adapter: Facade, simulator: Simulator, request: pytest.FixtureRequest, how: str
) -> None:
    # Left at once after connecting, so the dial is under way; the moment
    # varies, so ten rounds, each with a fresh client of the same adapter.
    sim = simulator()
    for round_ in range(10):
        facade = adapter if round_ == 0 else make_facade(adapter.name)
        try:
            start(facade, sim, **_LEAVING)
            leave(facade, sim, how)
        finally:
            facade.close_after_failure()


def test_an_error_in_the_block_comes_out_as_it_is(
    adapter: Facade, simulator: Simulator, request: pytest.FixtureRequest
) -> None:
    sim = simulator()
    start(adapter, sim)
    adapter.events_until(is_event(Authenticated), SOON)
    error = Boom("inside the block")
    assert adapter.close(error) is error


def test_reconnect_repeatedly_while_the_server_writes(
    adapter: Facade, simulator: Simulator
) -> None:
    # Every reconnect() replaces the socket while the server keeps writing to
    # the old one (a heartbeat every 2 ms): nothing read from the old socket
    # may reach the core, whatever the timing.
    sim = simulator(heartbeat_interval=0.002)
    start(adapter, sim, api_key=None, close_timeout=0.2)
    adapter.events_until(is_event(Connected), SOON)
    try:
        for _ in range(100):
            adapter.reconnect()
            events = adapter.events_until(is_event(Connected), SOON)
            assert not [e for e in events if isinstance(e, ProtocolError)], describe(events)
    except AssertionError as failure:
        crash = adapter.close_after_failure()
        if client_sockets(sim.port):  # a crashed loop may leave its socket to the collector
            adapter.forget_client()
            gc.collect()
        raise AssertionError(f"{failure}\nthe adapter's loop ended with {crash!r}") from crash
    assert adapter.is_open
