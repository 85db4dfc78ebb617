"""A recorded session replays to identical bytes and events, handshake included.

The client core is wired to the simulated OctoPrint (both pure, fake clock);
every call into the client and every output it gives is written to a trace.
A fresh client made with the same seed, fed the trace's inputs, must give the
same outputs at the same points: that is what design must 2 promises, and
what record/replay will stand on.
"""

from __future__ import annotations

from typing import Any

from test_testing import Link, make

import octoproto
from octoproto import Endpoint, OctoPrintClient, OctoPrintConfig, SeededEntropy

INPUTS = frozenset(
    {
        "connect",
        "reconnect",
        "disconnect",
        "transport_opened",
        "transport_failed",
        "receive_data",
        "receive_eof",
        "handle_timer",
        "message_processed",
        "send_message",
    }
)
OUTPUTS = frozenset({"next_command", "next_event", "get_timer"})

Trace = list[tuple[str, Any]]


class Recording:
    """Stands in for the client and writes every input and output to ``trace``."""

    def __init__(self, client: OctoPrintClient, trace: Trace) -> None:
        self._client = client
        self._trace = trace

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name in INPUTS:

            def record_input(*args: Any, **kwargs: Any) -> Any:
                self._trace.append(("in", (name, args, kwargs)))
                return attribute(*args, **kwargs)

            return record_input
        if name in OUTPUTS:

            def record_output() -> Any:
                result = attribute()
                self._trace.append((name, result))
                return result

            return record_output
        return attribute


def record_session(endpoint: Endpoint) -> Trace:
    trace: Trace = []
    link = Link(make(), api_key="KEY", endpoint=endpoint)
    link.client = Recording(link.client, trace)  # type: ignore[assignment]
    link.run(3.0)
    link.server.drop_connections(link.now)  # a loss and a reconnect, on schedule
    link.pump()
    link.run(8.0)
    link.client.send_message("gcode", {"command": "M105"})
    link.client.message_processed(2.0, link.now)  # slow handlers: throttle goes up
    link.pump()
    link.run(12.0)
    return trace


def replay(trace: Trace, endpoint: Endpoint) -> None:
    client = OctoPrintClient(
        OctoPrintConfig(
            url="http://127.0.0.1:5000/",
            entropy=SeededEntropy(1),
            api_key="KEY",
            endpoint=endpoint,
        )
    )
    for step, (kind, value) in enumerate(trace):
        if kind == "in":
            name, args, kwargs = value
            getattr(client, name)(*args, **kwargs)
        else:
            assert getattr(client, kind)() == value, f"step {step}: {kind} differs"


def test_a_recorded_session_replays_identically_on_both_endpoints() -> None:
    for endpoint in (Endpoint.SOCKJS, Endpoint.RAW):
        trace = record_session(endpoint)
        kinds = [kind for kind, _ in trace]
        commands = [value for kind, value in trace if kind == "next_command" and value]
        events = [value for kind, value in trace if kind == "next_event" and value]
        # The trace really holds a whole session: a handshake with the nonce
        # drawn from the seed, two connections, logins, messages, a throttle.
        assert kinds.count("in") > 50
        assert sum(isinstance(c, octoproto.OpenTransport) for c in commands) >= 4
        assert [type(e).__name__ for e in events].count("Authenticated") == 2
        assert any(isinstance(e, octoproto.ThrottleChanged) for e in events)
        assert b"Sec-WebSocket-Key" in commands[1].data
        replay(trace, endpoint)


def test_replay_notices_a_different_seed() -> None:
    trace = record_session(Endpoint.SOCKJS)
    client = OctoPrintClient(
        OctoPrintConfig(
            url="http://127.0.0.1:5000/",
            entropy=SeededEntropy(2),
            api_key="KEY",
        )
    )
    mismatches = 0
    for kind, value in trace:
        if kind == "in":
            name, args, kwargs = value
            try:
                getattr(client, name)(*args, **kwargs)
            except octoproto.LocalProtocolError:
                break  # the sessions have diverged past repair: fine
        elif getattr(client, kind)() != value:
            mismatches += 1
    assert mismatches > 0
