"""Every adapter against a real OctoPrint 1.11.8 (the session's ``octoprint_server``).

The same facade as the adapter suite (:mod:`harness.facade`): each test runs
once per adapter (``adapter``), or, where the time goes on waiting for the
server (a throttled stream, a restart), with all three adapters connected at
once (``all_adapters``), each checked on its own. Every test logs in afresh.

Budget: the server's login rate limit counts failed logins (3 a minute) and
``test_octoprint_server_fixture.py`` already makes one, so nothing here logs
in with wrong credentials; a bad *session* (``send_auth``) is not a login.
Measured numbers (intervals, reconnect timings) are printed; see them with
``pytest -s``.
"""

from __future__ import annotations

import http.client
import itertools
import json
import statistics
import time
from collections.abc import Callable

import pytest
from harness.facade import Facade, describe, in_order, is_event, is_message
from servers.octoprint_server import OctoPrintServer, restart

from octoproto import (
    OCTOPRINT_RECONNECT_DELAYS,
    Authenticated,
    AuthState,
    Connected,
    ConnectFailed,
    Disconnected,
    Endpoint,
    Event,
    LoginSucceeded,
    PushMessage,
    ReauthRequired,
    ReconnectScheduled,
    SessionState,
    ThrottleChanged,
)

#: What ends a reconnect attempt.
Dialed = (ConnectFailed, Connected)
#: Seconds for login and auth (a few round trips) and the first messages.
SOON = 10.0
#: OctoPrint sends `current` at most every 0.5 s × the throttle factor.
BASE_INTERVAL = 0.5


def median_interval(times: list[float]) -> float:
    return statistics.median(b - a for a, b in itertools.pairwise(times))


def recorder(times: list[float]) -> Callable[[PushMessage], None]:
    """A handler that notes when each message arrived (on the adapter's loop thread)."""
    return lambda message: times.append(time.monotonic())


def wait_for_count(times: list[float], count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(times) < count:
        assert time.monotonic() < deadline, f"{len(times)} of {count} within {timeout} s"
        time.sleep(0.02)


def api(server: OctoPrintServer, method: str, path: str, body: object = None) -> int:
    """One REST call with the API key; the status."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        headers = {"X-Api-Key": server.api_key, "Content-Type": "application/json"}
        conn.request(method, path, json.dumps(body) if body is not None else None, headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@pytest.mark.parametrize("endpoint", list(Endpoint))
def test_passive_login_history_then_current(
    adapter: Facade, octoprint_server: OctoPrintServer, endpoint: Endpoint
) -> None:
    server = octoprint_server
    arrivals: list[float] = []
    adapter.start(
        server.base_url,
        api_key=server.api_key,
        endpoint=endpoint,
        handlers=[("current", recorder(arrivals))],
    )
    events = adapter.events_until(is_message("current"), SOON)
    connected, hello, *_ = in_order(
        events,
        is_event(Connected),
        is_message("connected"),
        is_event(LoginSucceeded, user=server.username, mechanism="apikey"),
        is_event(Authenticated, user=server.username),
        is_message("history"),
        is_message("current"),
    )
    assert events[0] is connected
    assert isinstance(hello, PushMessage) and isinstance(hello.data, dict)
    assert hello.data["version"] == "1.11.8"
    current = events[-1]
    assert isinstance(current, PushMessage) and isinstance(current.data, dict)
    assert current.data["state"]["text"] == "Operational"  # the fixture's virtual printer
    # Sent when the printer's state changes (often), at most every 0.5 s; the
    # throttle test measures the interval closely (medians). One interval as
    # seen here can shrink when the first arrival was held up by a loaded
    # machine, so the bounds are loose.
    wait_for_count(arrivals, 2, SOON)
    assert 0.25 < arrivals[1] - arrivals[0] < 1.5, arrivals
    assert adapter.state is SessionState.OPEN


def test_active_login_with_username_and_password(
    adapter: Facade, octoprint_server: OctoPrintServer
) -> None:
    server = octoprint_server
    adapter.start(server.base_url, username=server.username, password=server.password)
    events = adapter.events_until(is_message("current"), SOON)
    in_order(
        events,
        is_event(Connected),
        is_event(LoginSucceeded, user=server.username, mechanism="password"),
        is_event(Authenticated, user=server.username),
        is_message("history"),
    )


def test_throttle_changes_the_interval(
    all_adapters: dict[str, Facade], octoprint_server: OctoPrintServer
) -> None:
    server = octoprint_server
    arrivals: dict[str, list[float]] = {name: [] for name in all_adapters}
    for name, facade in all_adapters.items():
        # auto_throttle off: else fast handlers make the core lower the factor again.
        facade.start(
            server.base_url,
            api_key=server.api_key,
            auto_throttle=False,
            handlers=[("current", recorder(arrivals[name]))],
        )
    for facade in all_adapters.values():
        facade.events_until(is_message("current"), SOON)
    measured: dict[str, dict[int, float]] = {name: {} for name in all_adapters}
    # (factor, intervals measured): about 11 s in all, the adapters side by side.
    for factor, intervals in ((1, 3), (2, 2), (4, 2)):
        marks = {}
        for name, facade in all_adapters.items():
            if factor != 1:
                facade.set_throttle(factor)
                facade.events_until(is_event(ThrottleChanged, factor=factor), SOON)
            # The first `current` after the change may still be due at the old rate.
            marks[name] = len(arrivals[name]) + 1
        for name in all_adapters:
            wanted = marks[name] + intervals + 1
            wait_for_count(arrivals[name], wanted, (intervals + 2) * factor * BASE_INTERVAL + 2)
            window = arrivals[name][marks[name] : wanted]
            measured[name][factor] = median_interval(window)
    for name, by_factor in measured.items():
        shown = ", ".join(f"throttle {f}: {s:.3f} s" for f, s in by_factor.items())
        print(f"\n[{name}] current every {shown}")
    for name, by_factor in measured.items():
        assert 1.5 < by_factor[2] / by_factor[1] < 3.0, (name, by_factor)
        assert 2.5 < by_factor[4] / by_factor[1] < 6.0, (name, by_factor)
        assert all_adapters[name].core.throttle_factor == 4


def test_subscribing_to_events_only_stops_current(
    all_adapters: dict[str, Facade], octoprint_server: OctoPrintServer
) -> None:
    server = octoprint_server
    for facade in all_adapters.values():
        facade.start(server.base_url, api_key=server.api_key)
    for facade in all_adapters.values():
        facade.events_until(is_message("current"), SOON)
        facade.subscribe({"events": True})
    time.sleep(0.6)  # a `current` may be on its way
    for facade in all_adapters.values():
        facade.drain()
    time.sleep(1.2)  # more than two update intervals
    # The sockets are alive and events still come: a settings change fires one.
    assert api(server, "POST", "/api/settings", {"appearance": {"name": "octoproto"}}) == 200
    for name, facade in all_adapters.items():
        events = facade.events_until(
            lambda e: is_message("event")(e) and e.data["type"] == "SettingsUpdated",  # type: ignore[attr-defined]
            SOON,
        )
        assert not [e for e in events if is_message("current")(e)], (name, describe(events))
        assert facade.is_open


def test_bad_session_by_hand_is_stale(adapter: Facade, octoprint_server: OctoPrintServer) -> None:
    # No credentials: the core cannot log in again; the socket stays open, anonymous.
    server = octoprint_server
    adapter.start(server.base_url)
    adapter.events_until(is_message("connected"), SOON)
    adapter.send_auth(server.username, "bogus")
    events = adapter.events_until(is_message("reauthRequired"), SOON)
    assert events[-2:] == [
        ReauthRequired("stale", relogin=False),
        PushMessage("reauthRequired", {"reason": "stale"}),
    ]
    events = adapter.events_for(0.6)
    assert not events, describe(events)  # anonymous: nothing more
    assert adapter.is_open and adapter.core.auth_state is AuthState.ANONYMOUS


def test_bad_session_with_credentials_logs_in_again(
    adapter: Facade, octoprint_server: OctoPrintServer
) -> None:
    server = octoprint_server
    adapter.start(server.base_url, api_key=server.api_key)
    adapter.events_until(is_message("current"), SOON)
    adapter.send_auth(server.username, "bogus")
    events = adapter.events_until(is_event(LoginSucceeded), SOON)
    in_order(
        events,
        is_event(ReauthRequired, reason="stale", relogin=True),
        is_message("reauthRequired"),
        is_event(LoginSucceeded, user=server.username),
    )
    # The new session authenticates the socket: the stream goes on.
    adapter.events_until(is_message("current"), SOON)
    assert not [e for e in events if isinstance(e, Disconnected)]


def test_relogin_after_a_stale_session_is_confirmed(
    adapter: Facade, octoprint_server: OctoPrintServer
) -> None:
    # OctoPrint sends history once per socket: the core confirms this re-auth
    # by its grace period (no reauthRequired within 1 s).
    server = octoprint_server
    adapter.start(server.base_url, api_key=server.api_key)
    adapter.events_until(is_event(Authenticated), SOON)
    adapter.send_auth(server.username, "bogus")
    adapter.events_until(is_event(LoginSucceeded), SOON)
    events = adapter.events_until(is_message("current"), SOON)
    events += adapter.events_for(1.2)  # more than the core's grace period (1 s)
    assert [e for e in events if isinstance(e, Authenticated)], describe(events)
    assert adapter.core.auth_state is AuthState.AUTHENTICATED


def _stamped(facade: Facade, events: list[Event]) -> list[tuple[float, Event]]:
    """``events`` (the last ones read) with their arrival times from the facade's log."""
    return facade.log[-len(events) :]


def test_server_restart_reconnects_on_schedule(
    all_adapters: dict[str, Facade], octoprint_server: OctoPrintServer
) -> None:
    server = octoprint_server
    for facade in all_adapters.values():
        # The default schedule: OctoPrint's 1, 1, 2, 3, 5 ... s.
        facade.start(server.base_url, api_key=server.api_key)
    for facade in all_adapters.values():
        facade.events_until(is_message("current"), SOON)
    began = time.monotonic()
    restart(server)  # stop (SIGTERM) and start again; sessions are gone
    restarted = time.monotonic() - began
    print(f"\nrestart took {restarted:.2f} s")
    for name, facade in all_adapters.items():
        events = facade.events_until(is_message("current"), 30.0)
        stamped = _stamped(facade, events)
        lost, connected, current = (
            next(t for t, e in stamped if is_event(Disconnected)(e)),
            next(t for t, e in stamped if is_event(Connected)(e)),
            stamped[-1][0],
        )
        in_order(
            events,
            is_event(Disconnected, code=1006),
            is_event(ReconnectScheduled, attempt=1),
            is_event(Connected),
            is_event(LoginSucceeded, user=server.username),
            is_event(Authenticated, user=server.username),
            is_message("history"),
            is_message("current"),
        )
        # Each attempt waited its delay of the schedule, then dialed.
        scheduled = [(t, e) for t, e in stamped if isinstance(e, ReconnectScheduled)]
        assert [(e.attempt, e.delay) for _, e in scheduled] == [
            (n, OCTOPRINT_RECONNECT_DELAYS[n - 1]) for n in range(1, len(scheduled) + 1)
        ]
        for t, event in scheduled:
            outcome = next(u for u, e in stamped if u >= t and isinstance(e, Dialed))
            assert event.delay - 0.05 < outcome - t < event.delay + 1.0, (outcome - t, event)
        print(
            f"[{name}] lost {lost - began:.2f} s after the restart began; attempts "
            f"{[(e.attempt, e.delay) for _, e in scheduled]}; connected {connected - lost:.2f} s "
            f"after the loss, `current` again after {current - lost:.2f} s"
        )
