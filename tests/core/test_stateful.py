"""The session engine under arbitrary interleavings of inputs (hypothesis state machines).

A ``RuleBasedStateMachine`` plays every input the core has — user calls
(connect, reconnect, disconnect, send, OctoPrint's auth/subscribe/throttle/
login/message_processed, and documented misuse), transport reports on both
channels (opened, failed, data, EOF, stale reports about closed transports),
server bytes (random bytes, correct 101 answers, valid and invalid frames,
SockJS frames, OctoPrint messages, login answers) and the clock (timers on
time, late wake-ups) — in any order, with ``now`` never decreasing, against a
``WebSocketClient`` and an ``OctoPrintClient`` with seeded entropy and short
timers.

After every step, ``fuzz.harness.Driver`` checks the promises of the design
(see its docstring): no exception but ``LocalProtocolError`` for documented
misuse, and then nothing changed; ``get_timer()`` is None or not before the
last ``now``; each state change is a hop in ``octoproto.TRANSITIONS``
(observed through ``client.state`` before and after, and hop by hop); the
outbound queue stays within ``max_queued_messages``; ``SendData`` only on an
open transport, never after our close frame, and only valid frames; every
accepted user message sent, queued or handed back exactly once.

Bounded for CI: ``max_examples`` 150 (``OCTOPROTO_STATEFUL_EXAMPLES``
overrides it), ``stateful_step_count`` 50.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # fuzz/ lives beside tests/, not inside a package path
    sys.path.insert(0, str(ROOT))

from fuzz.harness import (  # noqa: E402
    DTS,
    ByteReader,
    Driver,
    login_response,
    octoprint_json,
    octoprint_variant,
    plain_config,
    sockjs_text,
)
from octoproto import (  # noqa: E402
    TRANSITIONS,
    Channel,
    Endpoint,
    OctoPrintClient,
    OctoPrintConfig,
    ReconnectSchedule,
    SessionState,
    WebSocketClient,
)

# Bounded for CI; OCTOPROTO_STATEFUL_EXAMPLES=5000 for a long local hunt.
SETTINGS = settings(
    max_examples=int(os.environ.get("OCTOPROTO_STATEFUL_EXAMPLES", "150")),
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# Half the inputs come at the same instant: with short timers, time passing
# mostly means timeouts, and the deep states need quick answers.
dts = st.one_of(st.just(0.0), st.sampled_from(DTS), st.floats(min_value=0.0, max_value=5.0))
dts = st.one_of(st.just(0.0), dts)
blobs = st.binary(max_size=24)
channels = st.sampled_from([Channel.SOCKET, Channel.HTTP])


class SessionMachine(RuleBasedStateMachine):
    """Rules shared by both dialects; the subclasses choose the client."""

    driver: Driver

    def __init__(self) -> None:
        super().__init__()
        self.last_now = 0.0

    # --- the user ---------------------------------------------------------

    @rule(dt=dts, again=st.booleans())
    def connect_or_reconnect(self, dt: float, again: bool) -> None:
        if again:
            self.driver.reconnect(dt)
        else:
            self.driver.connect(dt)

    @rule(
        dt=dts,
        code=st.sampled_from([None, 1000, 1001, 1008, 3000, 4999, 1005, 1006, 999, 5000]),
        reason=st.text(max_size=130),
    )
    def disconnect(self, dt: float, code: int | None, reason: str) -> None:
        self.driver.disconnect(dt, code, reason)

    @rule(dt=dts, message=st.text(max_size=40) | st.binary(max_size=40))
    def send(self, dt: float, message: str | bytes) -> None:
        self.driver.send(message, dt)

    @rule(
        dt=dts,
        kind=st.integers(0, 50),
        nbytes=st.integers(0, 100_000),
        seconds=st.floats(0.0, 3.0),
    )
    def misuse_or_io_report(self, dt: float, kind: int, nbytes: int, seconds: float) -> None:
        """Documented misuse (refused, nothing changes), or a send's I/O report."""
        if kind % 2:
            self.driver.misuse(kind // 2, dt)
        else:
            self.driver.io_completed(nbytes, seconds, dt)

    # --- the transport ----------------------------------------------------

    @precondition(lambda self: self.driver.socket.state == "pending")
    @rule(dt=dts)
    def socket_opened(self, dt: float) -> None:
        self.driver.transport_opened(Channel.SOCKET, dt)

    @precondition(lambda self: self.driver.http.state == "pending")
    @rule(dt=dts)
    def http_opened(self, dt: float) -> None:
        self.driver.transport_opened(Channel.HTTP, dt)

    @precondition(
        lambda self: (
            "open" in (self.driver.socket.state, self.driver.http.state)
            or "pending" in (self.driver.socket.state, self.driver.http.state)
        )
    )
    @rule(dt=dts, channel=channels, eof=st.booleans())
    def transport_trouble(self, dt: float, channel: Channel, eof: bool) -> None:
        """The peer closes (EOF), or the transport breaks (reset, TLS failure)."""
        if eof:
            self.driver.receive_eof(channel, dt)
        else:
            self.driver.transport_failed(channel, "connection reset", dt)

    @rule(dt=dts, channel=channels, kind=st.integers(0, 3), data=st.binary(min_size=1, max_size=8))
    def stale_report(self, dt: float, channel: Channel, kind: int, data: bytes) -> None:
        """A report about a transport the core closed: it must change nothing."""
        self.driver.stale(channel, kind, data, dt)

    # --- the server's bytes -----------------------------------------------

    @precondition(lambda self: self.driver.socket.state == "open")
    @rule(dt=dts, data=st.binary(min_size=1, max_size=200))
    def random_bytes(self, dt: float, data: bytes) -> None:
        self.driver.receive(Channel.SOCKET, data, dt)

    @precondition(lambda self: self.driver.client.state is SessionState.HANDSHAKING)
    @rule(dt=dts, choices=blobs, cut=st.integers(0, 300))
    def upgrade(self, dt: float, choices: bytes, cut: int) -> None:
        response = self.driver.upgrade(ByteReader(choices))
        if response is not None:
            self.driver.receive(Channel.SOCKET, response[:cut] or response, dt)
            if response[cut:] and cut:
                self.driver.receive(Channel.SOCKET, response[cut:])

    @precondition(
        lambda self: (
            self.driver.client.state
            in (SessionState.OPENING, SessionState.OPEN, SessionState.CLOSING)
        )
    )
    @rule(dt=dts, choices=st.binary(max_size=64), cut=st.integers(0, 40))
    def frames(self, dt: float, choices: bytes, cut: int) -> None:
        data = self.driver.frames(ByteReader(choices))
        self.driver.receive(Channel.SOCKET, data[:cut] or data, dt)
        if data[cut:] and cut:
            self.driver.receive(Channel.SOCKET, data[cut:])

    @precondition(lambda self: self.driver.socket.decoder is not None)
    @rule(dt=dts, choices=st.binary(max_size=32))
    def server_message(self, dt: float, choices: bytes) -> None:
        """A text message of the dialect: SockJS, raw OctoPrint JSON, or any text."""
        r = ByteReader(choices)
        config = self.driver.config
        if isinstance(config, OctoPrintConfig):
            text = sockjs_text(r) if config.endpoint is Endpoint.SOCKJS else octoprint_json(r)
        else:
            text = r.text(60)
        self.driver.receive(Channel.SOCKET, self.driver.message_frames(text, r), dt)

    @precondition(lambda self: self.driver.http.state == "open")
    @rule(dt=dts, choices=blobs, cut=st.integers(0, 100))
    def login_answer(self, dt: float, choices: bytes, cut: int) -> None:
        data = login_response(ByteReader(choices))
        self.driver.receive(Channel.HTTP, data[:cut] or data, dt)
        if data[cut:] and cut:
            self.driver.receive(Channel.HTTP, data[cut:])

    @rule(dt=dts, choice=st.integers(0, 255))
    def healthy_step(self, dt: float, choice: int) -> None:
        """What a healthy server would do next (reaches the deep states more often)."""
        self.driver.progress(ByteReader(bytes([choice]) * 8), dt)

    # Hypothesis picks among the rules evenly; the same rule under more names
    # weighs it more, so more runs reach (and leave) the open session.
    @rule(dt=dts, choice=st.integers(0, 255))
    def healthy_step_2(self, dt: float, choice: int) -> None:
        self.driver.progress(ByteReader(bytes([choice]) * 8), dt)

    @rule(dt=dts, choice=st.integers(0, 255))
    def healthy_step_3(self, dt: float, choice: int) -> None:
        self.driver.progress(ByteReader(bytes([choice]) * 8), dt)

    # --- the clock --------------------------------------------------------

    @precondition(lambda self: self.driver.client.get_timer() is not None)
    @rule(late=st.sampled_from([None, None, 0.5, 3.0]))
    def next_timer(self, late: float | None) -> None:
        """The next deadline, on time (each one due on the way, in order) or woken up late."""
        deadline = self.driver.client.get_timer()
        assert deadline is not None
        if late is None:
            self.driver.advance(deadline - self.driver.now)
        else:
            self.driver.wake_late(deadline - self.driver.now + late)

    # --- invariants (the driver checks them all after every input; these
    # --- restate the ones the issue names, so a reader finds them here) ----

    @invariant()
    def time_moves_forward(self) -> None:
        assert self.driver.now >= self.last_now
        self.last_now = self.driver.now
        deadline = self.driver.client.get_timer()
        assert deadline is None or deadline >= self.driver.now

    @invariant()
    def queue_is_bounded(self) -> None:
        client = self.driver.client
        assert len(client._queue) <= client.config.max_queued_messages

    @invariant()
    def state_changes_follow_the_table(self) -> None:
        for source, trigger, target in self.driver.hops:
            assert TRANSITIONS[source, trigger] is target


class WebSocketMachine(SessionMachine):
    """A plain ``WebSocketClient``, with or without permessage-deflate."""

    @initialize(
        seed=st.integers(0, 7),
        compression=st.booleans(),
        queue=st.booleans(),
        schedule=st.sampled_from([None, ReconnectSchedule.never(), ReconnectSchedule.fixed(0, 1)]),
    )
    def make(
        self, seed: int, compression: bool, queue: bool, schedule: ReconnectSchedule | None
    ) -> None:
        options: dict[str, object] = {"compression": compression, "queue_while_disconnected": queue}
        if schedule is not None:
            options["reconnect"] = schedule
        self.driver = Driver(WebSocketClient(plain_config(seed, **options)))


class OctoPrintMachine(SessionMachine):
    """An ``OctoPrintClient``: SockJS or raw, anonymous, API key or password."""

    @initialize(
        seed=st.integers(0, 7),
        variant=st.integers(0, 5),
        compression=st.booleans(),
        never_reconnect=st.booleans(),
    )
    def make(self, seed: int, variant: int, compression: bool, never_reconnect: bool) -> None:
        overrides = {"reconnect": ReconnectSchedule.never()} if never_reconnect else {}
        config = octoprint_variant(seed, variant, compression=compression, overrides=overrides)
        self.driver = Driver(OctoPrintClient(config))

    @rule(dt=dts, kind=st.integers(0, 14), value=st.integers(0, 255))
    def octoprint_call(self, dt: float, kind: int, value: int) -> None:
        self.driver.octoprint_call(kind, value, dt)

    @rule(dt=dts, seconds=st.floats(0.0, 3.0))
    def message_processed(self, dt: float, seconds: float) -> None:
        client = self.driver.client
        assert isinstance(client, OctoPrintClient)
        self.driver.advance(dt)
        self.driver.call(lambda: client.message_processed(seconds, self.driver.now))


TestWebSocketMachine = SETTINGS(WebSocketMachine).TestCase
TestOctoPrintMachine = SETTINGS(OctoPrintMachine).TestCase
