"""Record and replay (octoproto._replay): traces, redaction, bad traces, speed.

Sessions run against the pure simulated OctoPrint with a fake clock, driven
as an adapter drives a client (commands carried out, events taken, each push
message's handling time reported), with the client built by a
:class:`~octoproto.Recorder`. The trace is then replayed in-process.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from wsproto.frame_protocol import FrameProtocol, Opcode

import octoproto
from octoproto import (
    Channel,
    CloseTransport,
    Endpoint,
    InvalidTraceError,
    LocalProtocolError,
    OctoPrintClient,
    OctoPrintConfig,
    OpenTransport,
    PushMessage,
    ReconnectSchedule,
    Recorder,
    ReplayMismatch,
    SeededEntropy,
    SendData,
    SessionConfig,
    ThrottleSettings,
    WebSocketClient,
    assert_replays,
    check_replay,
    replay,
)
from octoproto import _replay as internals
from octoproto.testing import ServerConnection, SimulatedOctoPrint, SimulatorConfig

HOST = "127.0.0.1:5000"
API_KEY = "API-KEY-0123456789abcdef"
PASSWORD = "password-0123456789"


def make_server(**overrides: Any) -> SimulatedOctoPrint:
    options: dict[str, Any] = {
        "username": "octo",
        "password": PASSWORD,
        "api_key": API_KEY,
        "port": 5000,
        "entropy": SeededEntropy(7),
    }
    return SimulatedOctoPrint(SimulatorConfig(**(options | overrides)))


def make_config(**options: Any) -> OctoPrintConfig:
    return OctoPrintConfig(url=f"http://{HOST}/", entropy=SeededEntropy(1), **options)


class Driver:
    """Wire a recorded client to the simulator with a fake clock, as an adapter would."""

    def __init__(self, server: SimulatedOctoPrint, client: Any, handling: float = 0.01) -> None:
        self.server = server
        self.client = client
        self.handling = handling
        self.conns: dict[Channel, ServerConnection] = {}
        self.now = 0.0
        self.events: list[octoproto.Event] = []
        self.report_writes = True
        self.sent: list[int] = []

    def pump(self) -> None:
        busy = True
        while busy:
            busy = False
            while (command := self.client.next_command()) is not None:
                busy = True
                if isinstance(command, OpenTransport):
                    self.conns[command.channel] = self.server.accept(self.now)
                    self.client.transport_opened(self.now, channel=command.channel)
                elif isinstance(command, SendData):
                    self.conns[command.channel].receive_data(command.data, self.now)
                    if command.channel is Channel.SOCKET and self.report_writes:
                        self.sent.append(len(command.data))  # reported as the adapters do
                        self.client.io_completed("send", len(command.data), 0.0, self.now)
                else:
                    conn = self.conns.pop(command.channel, None)
                    if conn is not None:
                        conn.receive_eof(self.now)
            for channel, conn in list(self.conns.items()):
                if data := conn.data_to_send():
                    busy = True
                    self.deliver(data, channel)
                if conn.closed and self.conns.get(channel) is conn:
                    busy = True
                    del self.conns[channel]
                    self.client.receive_eof(self.now, channel=channel)
            while (event := self.client.next_event()) is not None:
                busy = True
                self.events.append(event)
                if isinstance(event, PushMessage):
                    self.client.message_processed(self.handling, self.now)

    def deliver(self, data: bytes, channel: Channel) -> None:
        self.client.receive_data(data, self.now, channel=channel)

    def run(self, until: float) -> None:
        self.client.connect(self.now)
        self.pump()
        while True:
            deadline = min(t for t in (self.client.get_timer(), self.server.get_timer()) if t)
            if deadline > until:
                break
            self.now = max(self.now, deadline)
            self.server.handle_timer(self.now)
            self.client.handle_timer(self.now)
            self.pump()
        self.now = until


def record(
    seconds: float = 3.0,
    *,
    server: SimulatedOctoPrint | None = None,
    during: Callable[[Driver], None] | None = None,
    redact: bool = True,
    secrets: tuple[str, ...] = (),
    client_class: type[OctoPrintClient] = OctoPrintClient,
    **options: Any,
) -> tuple[list[str], Driver, Recorder[OctoPrintClient]]:
    """Record a session of ``seconds`` (and ``during`` it, after the first second)."""
    recorder = Recorder(client_class, make_config(**options), redact=redact, secrets=secrets)
    driver = Driver(server or make_server(), recorder.client)
    driver.run(1.0)
    if during is not None:
        during(driver)
        driver.pump()
    driver.run(seconds)
    recorder.close()
    return recorder.take_lines(), driver, recorder


def records(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines]


def everything(lines: list[str]) -> str:
    """The trace's text and every byte string in it, decoded (to look for secrets)."""
    parts = list(lines)

    def walk(value: object) -> None:
        if isinstance(value, dict):
            if set(value) == {"$b"}:
                parts.append(base64.b64decode(value["$b"]).decode("latin-1"))
            for key, item in value.items():
                if key == "data" and isinstance(item, str):
                    parts.append(base64.b64decode(item).decode("latin-1"))
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for record_ in records(lines):
        walk(record_)
    return "\n".join(parts)


def sent_messages(lines: list[str]) -> list[str]:
    """The text messages the client sent on the push socket (frames unmasked; no compression)."""
    protocol = FrameProtocol(client=False, extensions=[])
    messages: list[Any] = []
    upgraded = False
    for record_ in records(lines):
        for kind, value in record_.get("out", []):
            if kind != "command" or not value or "SendData" not in value:
                continue
            send = value["SendData"]
            data = base64.b64decode(send["data"]["$b"])
            if send["channel"] != "socket":
                continue
            if data.startswith(b"GET "):  # a new connection: its handshake
                protocol, upgraded = FrameProtocol(client=False, extensions=[]), True
                continue
            assert upgraded
            protocol.receive_bytes(data)
            messages.extend(
                frame.payload for frame in protocol.received_frames() if frame.opcode == Opcode.TEXT
            )
    return messages


# --- round trips ----------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", [Endpoint.SOCKJS, Endpoint.RAW])
@pytest.mark.parametrize(
    "credentials", [{"api_key": API_KEY}, {"username": "octo", "password": PASSWORD}]
)
def test_a_recorded_session_replays_identically(
    endpoint: Endpoint, credentials: dict[str, Any]
) -> None:
    def trouble(driver: Driver) -> None:
        driver.server.drop_connections(driver.now)  # a loss and a reconnect
        driver.client.send_message("gcode", {"command": "M105"})

    lines, driver, recorder = record(8.0, during=trouble, endpoint=endpoint, **credentials)
    header, *steps, end = records(lines)
    assert header["octoproto-trace"] == octoproto.TRACE_VERSION == 1
    assert header["dialect"] == "octoprint" and header["redacted"] is True
    assert header["config"]["endpoint"] == endpoint.value
    assert end == {"end": {"steps": len(steps)}}
    assert recorder.divergence is None
    # The trace holds the whole session: two connections, both authenticated.
    events = [value for step in steps for kind, value in step.get("out", []) if kind == "event"]
    assert sum("Authenticated" in (event or {}) for event in events) == 2
    # It shows what the real client did: its events are the recorded ones.
    assert [internals._out(event) for event in driver.events] == [e for e in events if e]
    result = assert_replays(lines)
    assert result.identical and result and result.steps == len(steps)
    assert result.report() == f"identical: {len(steps)} steps replayed"
    assert all(step.identical for step in replay(lines))


def test_every_form_of_a_trace_replays() -> None:
    lines, _, _ = record(2.0, api_key=API_KEY)
    text = "\n".join(lines) + "\n"
    assert check_replay(text)
    assert check_replay(text.encode())
    assert check_replay([line.encode() + b"\r\n" for line in lines])
    assert check_replay(io.StringIO(text))
    assert check_replay(io.BytesIO(text.encode()))
    assert check_replay("\n\n".join(lines))  # blank lines are skipped


def test_lines_go_to_write_as_soon_as_each_step_is_complete() -> None:
    written: list[str] = []
    recorder = Recorder(OctoPrintClient, make_config(api_key=API_KEY), write=written.append)
    assert len(written) == 1 and recorder.take_lines() == []  # the header at once
    client = recorder.client
    assert client.get_timer() is None  # an output before any input: a step of its own
    client.connect(0.0)
    assert len(written) == 2  # the get_timer() step is complete now
    client.next_command()
    client.transport_opened(0.5)
    assert json.loads(written[-1])["in"] == "connect"
    recorder.close()
    recorder.close()  # idempotent
    assert [json.loads(line).get("in") for line in written[1:]] == [
        None,
        "connect",
        "transport_opened",
        None,
    ]
    assert json.loads(written[-1]) == {"end": {"steps": 3}}
    assert check_replay(written)
    # After close() the client goes on, unrecorded.
    client.receive_eof(1.0)
    assert list(iter(client.next_command, None))[-1] == CloseTransport(Channel.SOCKET)
    client.handle_timer(2.0)
    client.transport_opened(2.0)  # a handshake: entropy drawn
    assert len(written) == 5


def test_a_trace_without_a_seed_replays_with_the_recorded_entropy() -> None:
    def pick_random(count: int) -> bytes:
        return bytes(range(count))  # not a SeededEntropy: replay cannot know it

    config = dataclasses.replace(make_config(api_key=API_KEY), entropy=pick_random)
    recorder = Recorder(OctoPrintClient, config)
    driver = Driver(make_server(), recorder.client)
    driver.run(2.0)
    recorder.close()
    lines = recorder.take_lines()
    assert any("rand" in step for step in records(lines))
    assert check_replay(lines)


def test_next_events_and_next_batch_are_outputs_too() -> None:
    recorder = Recorder(OctoPrintClient, make_config(api_key=API_KEY))
    client = recorder.client
    client.connect(0.0)
    assert client.next_events() == [] and client.next_batch() == []
    recorder.close()
    lines = recorder.take_lines()
    assert records(lines)[1]["out"] == [["events", []], ["batch", []]]
    assert check_replay(lines)


# --- the plain WebSocket dialect ----------------------------------------------------------


def test_a_plain_websocket_session_replays_with_its_authorization_header_redacted() -> None:
    server = make_server()
    config = SessionConfig(
        url=f"ws://{HOST}/sockjs/websocket",  # the simulator's raw endpoint: JSON text frames
        entropy=SeededEntropy(3),
        headers={"Authorization": "Bearer TOKEN-0123456789", "X-Other": "visible"},
        warning_ms=1,
        warning_arg=object(),  # cannot be written: stands in as {"$opaque": "object"}
    )
    recorder = Recorder(WebSocketClient, config)
    client = recorder.client
    driver = Driver(server, client)
    driver.run(1.0)
    client.send("hello")
    client.send(b"\x00binary")
    client.io_completed("send", 7, 0.002, driver.now)  # a slow send: a warning event
    client.clear_stats()
    driver.pump()
    client.disconnect(driver.now)
    driver.run(2.0)
    recorder.close()
    lines = recorder.take_lines()
    assert recorder.divergence is None
    header = records(lines)[0]
    assert header["dialect"] == "websocket"
    assert header["config"]["headers"] == [
        ["Authorization", "redacted-header-1xxxxxx"],  # as long as "Bearer TOKEN-0123456789"
        ["X-Other", "visible"],
    ]
    assert "TOKEN-0123456789" not in everything(lines)
    assert '{"$opaque":"object"}' in "\n".join(lines)
    assert check_replay(lines)


# --- redaction -----------------------------------------------------------------------------


def _login_again(driver: Driver) -> None:
    driver.server.close_sessions(driver.now, reason="stale")  # a second login and session


@pytest.mark.parametrize(
    "credentials", [{"api_key": API_KEY}, {"username": "octo", "password": PASSWORD}]
)
def test_no_secret_appears_anywhere_in_the_trace(credentials: dict[str, Any]) -> None:
    server = make_server()
    lines, _, recorder = record(
        4.0, server=server, during=_login_again, compression=False, **credentials
    )
    sessions = list(server._sessions)
    text = everything(lines)
    assert sessions and recorder.divergence is None
    for secret in (API_KEY, PASSWORD, *sessions):
        assert secret not in text
    assert "redacted-session-1" in text and "redacted-session-2" in text
    if "password" in credentials:
        assert "csrf_token_P5000=redacted-cookie-1" in text
        assert "X-CSRF-Token: redacted-cookie-1" in text
        assert '"pass": "redacted-password-1"' in text  # as long as the password
    else:
        assert "X-Api-Key: redacted-apikey-1xxxxxx" in text
    # The auth messages the client sent (inside masked frames) carry placeholders.
    auths = [message for message in sent_messages(lines) if "auth" in message]
    assert auths == [
        '["{\\"auth\\":\\"octo:redacted-session-1xxxxxxxxxxxxxx\\"}"]',
        '["{\\"auth\\":\\"octo:redacted-session-2xxxxxxxxxxxxxx\\"}"]',
    ]
    assert check_replay(lines)


def test_the_stand_in_counts_its_own_bytes_in_io_completed() -> None:
    # Compressed, the auth message with a placeholder has another size than the real one.
    lines, driver, recorder = record(3.0, during=_login_again, api_key=API_KEY)
    assert recorder.divergence is None
    sizes: list[int] = []
    reported: list[int] = []
    for step in records(lines)[1:-1]:
        if step.get("in") == "io_completed":
            reported.append(step["args"]["nbytes"])
        for kind, value in step.get("out", []):
            if kind == "command" and value and value.get("SendData", {}).get("channel") == "socket":
                sizes.append(len(base64.b64decode(value["SendData"]["data"]["$b"])))
    assert reported == sizes and sizes != driver.sent
    # Writes not reported are skipped; a report of a write never made is kept as it is.
    recorder = Recorder(OctoPrintClient, make_config(api_key=API_KEY))
    driver = Driver(make_server(), recorder.client)
    driver.report_writes = False
    driver.run(2.0)
    recorder.client.io_completed("send", 6, 0.0, driver.now)  # a pong: the last write
    recorder.client.io_completed("send", 123, 0.0, driver.now)
    recorder.close()
    assert [step["args"]["nbytes"] for step in records(recorder.take_lines())[-3:-1]] == [6, 123]


def test_without_redaction_the_secrets_are_kept() -> None:
    lines, _, _ = record(2.0, redact=False, api_key=API_KEY)
    assert records(lines)[0]["redacted"] is False
    assert f"X-Api-Key: {API_KEY}" in everything(lines)
    assert check_replay(lines)


def test_sessions_and_secrets_given_by_the_user_are_redacted_in_calls_too() -> None:
    session = "user-session-0123456789"

    def auth_by_hand(driver: Driver) -> None:
        driver.client.send_auth("octo", octoproto.Secret(session))
        driver.client.send_message("auth", f"octo:{session}")
        driver.client.send_message("plugin", {"note": f"key={session}", "list": [session, 1]})
        with pytest.raises(octoproto.InvalidMessageError):
            driver.client.send_message("auth", "no-colon")  # refused, and written as it is

    lines, _, _ = record(
        2.0,
        during=auth_by_hand,
        secrets=("TOKEN-42",),
        compression=False,
        headers={"X-Note": "TOKEN-42"},
    )
    text = everything(lines)
    assert session not in text and "TOKEN-42" not in text
    header = records(lines)[0]
    assert header["config"]["headers"] == [["X-Note", "redacted"]]
    assert [m for m in sent_messages(lines) if "redacted-session-1" in m] == [
        '["{\\"auth\\":\\"octo:redacted-session-1xxxxx\\"}"]',
        '["{\\"auth\\":\\"octo:redacted-session-1xxxxx\\"}"]',
        '["{\\"plugin\\":{\\"note\\":\\"key=redacted-session-1xxxxx\\",'
        '\\"list\\":[\\"redacted-session-1xxxxx\\",1]}}"]',
    ]
    assert check_replay(lines)


def test_a_response_cut_into_pieces_is_redacted_as_a_whole() -> None:
    written: list[str] = []

    class Splitting(Driver):
        """Hands each login response to the client in two reads, cut inside the session."""

        def deliver(self, data: bytes, channel: Channel) -> None:
            cut = data.find(b'"session": "') + 20
            if channel is Channel.SOCKET or cut < 20:
                super().deliver(data, channel)
                return
            super().deliver(data[:cut], channel)
            before = len(written)
            super().deliver(data[cut:], channel)
            assert len(written) == before  # the first piece is held back

    server = make_server()
    recorder = Recorder(OctoPrintClient, make_config(api_key=API_KEY), write=written.append)
    Splitting(server, recorder.client).run(2.0)
    recorder.close()
    http = [
        step
        for step in records(written)
        if step.get("in") == "receive_data" and step["args"]["channel"] == "http"
    ]
    assert len(http) == 2
    response = b"".join(base64.b64decode(step["args"]["data"]) for step in http)
    assert next(iter(server._sessions)).encode() not in response
    assert b'"session": "redacted-session-1xxxxxxxxxxxxxx"' in response
    assert check_replay(written)


def test_cookies_and_json_secrets_of_http_responses_are_found() -> None:
    redactor = internals._Redactor(True, ())
    body = b'{"name": "octo", "session": "S-0123456789", "apikey": "K\\u0045Y-ABC"}'
    response = (
        b'HTTP/1.1 200 OK\r\nSet-Cookie: remember_token="REMEMBER-ME"; Path=/\r\n'
        b"set-cookie: empty=; Path=/\r\n\r\n" + body
    )
    rewritten = redactor.http_response(response)
    assert len(rewritten) == len(response)
    assert rewritten == (
        b'HTTP/1.1 200 OK\r\nSet-Cookie: remember_token="redacted-co"; Path=/\r\n'
        b'set-cookie: empty=; Path=/\r\n\r\n{"name": "octo", "session": "redacted-ses",'
        b' "apikey": "redacted-api"}'
    )
    # What was learned is a secret in the user's calls too (unescaped).
    assert redactor.secret("KEY-ABC", "apikey") == "redacted"[:7]


def test_held_steps_are_released_when_too_many_pile_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Recorder, "hold_limit", 3)
    recorder = Recorder(OctoPrintClient, make_config(api_key=API_KEY))
    client = recorder.client
    client.connect(0.0)
    client.receive_data(b"HTTP/1.1 200 OK\r\n", 0.0, channel=Channel.HTTP)  # stale: ignored
    client.receive_data(bytearray(b"more"), 0.0, channel=Channel.HTTP)  # type: ignore[arg-type]
    client.handle_timer(0.1)
    assert len(recorder.take_lines()) == 2  # the header and connect(); then all is held
    client.handle_timer(0.2)  # the third held step: let them go
    assert len(recorder.take_lines()) == 3


def test_placeholders_are_stable_and_never_the_secret_itself() -> None:
    redactor = internals._Redactor(True, ())
    assert redactor.secret("abc", "k") == redactor.secret("abc", "k") == "red"
    assert redactor.secret("", "k") == ""
    redactor.learn("redacted-k-2", "k")  # it would be its own placeholder
    assert redactor.placeholder("redacted-k-2", 12) == "0" * 12
    redactor.learn("0000000", "k")
    redactor._tags["0000000"] = "0000000"  # the same, starting with a zero
    assert redactor.placeholder("0000000", 7) == "1" * 7
    # Long secrets are replaced in any text; short ones only where they are known to be.
    assert redactor.scrub(("abc", "x redacted-k-2 y", {"k": [5]})) == (
        "abc",
        "x 000000000000 y",
        {"k": [5]},
    )
    inactive = internals._Redactor(False, ())
    assert inactive.secret("abc", "k") == "abc" and inactive.scrub("abc") == "abc"
    with pytest.raises(LocalProtocolError, match="non-empty str"):
        internals._Redactor(True, [""])
    assert internals._json_string(b"bad\\escape") == "bad\\escape"


# --- the throttle hooks ----------------------------------------------------------------------


def test_calls_from_the_users_throttle_hooks_are_replayed() -> None:
    recorder = Recorder(OctoPrintClient, make_config(api_key=API_KEY))
    client = recorder.client

    def too_high(measured: float, maximum: float) -> None:
        client.set_throttle(5)  # the user's own decision, not the default's
        client.increase_rate()
        with pytest.raises(LocalProtocolError):
            client.set_throttle(object())  # type: ignore[arg-type]  # refused: "unrecorded"

    client.on_rate_too_high = too_high  # type: ignore[method-assign]
    # Handlers slower than the 0.5 s interval: the hook fires at once.
    Driver(make_server(), client, handling=1.0).run(3.0)
    recorder.close()
    lines = recorder.take_lines()
    assert recorder.divergence is None
    steps = records(lines)
    index = next(i for i, step in enumerate(steps) if "calls" in step)
    assert steps[index]["in"] == "message_processed"
    assert steps[index]["calls"] == [
        {"in": "set_throttle", "args": {"factor": 5}},
        {"in": "increase_rate"},
        {"in": "set_throttle", "unrecorded": "factor"},
    ]
    assert check_replay(lines)
    # The hooks of a replayed client make the recorded calls, and only those.
    del steps[index]["calls"]
    result = check_replay([json.dumps(step) for step in steps])
    assert result.first_difference is not None and result.first_difference.line == index + 1


def test_hook_calls_that_are_not_made_are_a_difference() -> None:
    lines, _, _ = record(2.0, api_key=API_KEY)
    steps = records(lines)
    index = next(i for i, step in enumerate(steps) if step.get("in") == "handle_timer")
    steps[index]["calls"] = [{"in": "increase_rate"}]
    result = check_replay([json.dumps(step) for step in steps])
    assert result.first_difference is not None
    assert result.first_difference.line == index + 1
    assert "throttle hooks did not make the recorded calls" in result.report()


# --- divergence between the real client and the stand-in ------------------------------------


class Picky(OctoPrintClient):
    """Behaves differently with the real API key than with its placeholder."""

    def _real(self) -> bool:
        key = self.config.api_key  # type: ignore[attr-defined]
        return key is not None and key.reveal() == API_KEY

    def set_throttle(self, factor: int) -> None:
        if not self._real():
            raise LocalProtocolError("only the real key may")
        super().set_throttle(factor)

    def increase_rate(self) -> None:
        if self._real():  # the stand-in draws no entropy here
            self._config.entropy(4)

    def message_processed(self, seconds: float, now: float) -> None:
        if self._real():  # the stand-in's hooks are never called
            super().message_processed(seconds, now)


def test_where_redaction_changed_the_course_of_the_session_is_reported() -> None:
    def steer(driver: Driver) -> None:
        driver.client.set_throttle(2)

    lines, _, recorder = record(2.0, during=steer, client_class=Picky, api_key=API_KEY)
    assert recorder.divergence is not None
    assert "an exception was raised by one client only" in recorder.divergence
    assert json.loads(lines[-1])["end"]["diverged"] == recorder.divergence
    # The trace is the stand-in's session: it replays, with the same class.
    assert check_replay(lines, client_class=Picky)

    recorder = Recorder(Picky, make_config(api_key=API_KEY))
    recorder.client.increase_rate()
    recorder.close()
    assert recorder.divergence == "step 1: it drew other entropy"

    recorder = Recorder(Picky, make_config(api_key=API_KEY))
    recorder.client.message_processed(1.0, 0.0)
    recorder.close()
    assert recorder.divergence == "step 1: the throttle hooks were not called the same way"


def test_an_output_of_another_kind_is_a_divergence() -> None:
    # secrets= rewrites received bytes too: this one breaks every HTTP response.
    lines, _, recorder = record(2.0, secrets=("HTTP/1.1 200",), api_key=API_KEY)
    assert recorder.divergence is not None  # the stand-in's logins fail
    assert check_replay(lines)

    class Timid(Picky):
        def get_timer(self) -> float | None:
            return super().get_timer() if self._real() else None

    recorder = Recorder(Timid, make_config(api_key=API_KEY))
    recorder.client.connect(0.0)
    recorder.client.get_timer()
    recorder.close()
    assert recorder.divergence == "step 1: get_timer() gave None, not 5.0"


# --- calls that cannot be written --------------------------------------------------------------


def test_misused_inputs_that_raised_are_written_without_their_arguments() -> None:
    recorder = Recorder(OctoPrintClient, make_config(api_key=API_KEY))
    client = recorder.client
    misuse: list[Callable[[], object]] = [
        lambda: client.connect("soon"),  # type: ignore[arg-type]
        lambda: client.send_auth("octo", 42),  # type: ignore[arg-type]
        lambda: client.send_message("plugin", {"set": {1, 2}}),
        lambda: client.connect(0.0, 1.0),  # type: ignore[call-arg]  # too many arguments
        lambda: client.connect(now=0.0, later=1.0),  # type: ignore[call-arg]  # an unknown one
        lambda: client.connect(0.0, now=1.0),  # type: ignore[misc]  # one twice
    ]
    for call in misuse:
        with pytest.raises((LocalProtocolError, TypeError)):
            call()
    client.connect(0.0)
    recorder.close()
    lines = recorder.take_lines()
    unrecorded = [step["unrecorded"] for step in records(lines)[1:-2]]
    assert unrecorded == ["now", "session", "payload", "arguments", "arguments", "arguments"]
    assert recorder.divergence is None
    assert check_replay(lines)


@pytest.mark.parametrize(
    "misuse",
    [
        lambda client: client.transport_opened(0.0, channel="socket"),
        lambda client: client.receive_data("text", 0.0),
    ],
)
def test_misuse_that_did_not_raise_is_a_divergence(misuse: Callable[[Any], None]) -> None:
    recorder = Recorder(OctoPrintClient, make_config())
    misuse(recorder.client)  # the core ignores it (no transport): nothing to raise about
    recorder.close()
    assert recorder.divergence is not None and "could not be written" in recorder.divergence


def test_an_input_whose_arguments_could_not_be_written_cannot_be_replayed() -> None:
    recorder = Recorder(OctoPrintClient, make_config())
    recorder.client.send_message("plugin", {1: "an int key: JSON takes it, the trace not"})
    recorder.close()
    lines = recorder.take_lines()
    assert recorder.divergence == "step 1: an argument of send_message() could not be written"
    result = check_replay(lines)
    assert result.first_difference is not None
    assert "cannot be replayed" in result.report()


# --- finding the first differing step ------------------------------------------------------------


def _tamper(lines: list[str], index: int, change: Callable[[dict[str, Any]], None]) -> list[str]:
    steps = records(lines)
    change(steps[index])
    return [json.dumps(step) for step in steps]


def test_a_corrupted_trace_is_reported_at_the_step_that_differs() -> None:
    lines, _, _ = record(3.0, api_key=API_KEY)
    steps = records(lines)
    # An event: the step whose output was changed is the one reported.
    index = max(
        i
        for i, step in enumerate(steps)
        if any(
            kind == "event" and value and "PushMessage" in value
            for kind, value in step.get("out", [])
        )
    )

    def other_event(step: dict[str, Any]) -> None:
        for output in step["out"]:
            if output[0] == "event" and output[1]:
                output[1]["PushMessage"]["type"] = "tampered"
                return

    result = check_replay(_tamper(lines, index, other_event))
    assert result.first_difference is not None
    assert result.first_difference.line == index + 1
    assert result.first_difference.number == index
    assert result.steps == index
    report = result.report()
    assert f"step {index} (line {index + 1}) differs: {steps[index]['in']} at now=" in report
    assert "next_event() (output 1 of" in report and '"type":"tampered"' in report
    assert "^ first difference" in report
    with pytest.raises(ReplayMismatch, match=f"step {index} ") as raised:
        assert_replays(_tamper(lines, index, other_event))
    assert raised.value.result == result
    assert isinstance(raised.value, AssertionError)

    # Bytes the client sent: shown as bytes, from where they differ.
    index = next(
        i
        for i, step in enumerate(steps)
        if any(
            kind == "command" and value and "SendData" in value
            for kind, value in step.get("out", [])
        )
    )

    def other_bytes(step: dict[str, Any]) -> None:
        for kind, value in step["out"]:
            if kind == "command" and value and "SendData" in value:
                data = bytearray(base64.b64decode(value["SendData"]["data"]["$b"]))
                data[30] ^= 1
                value["SendData"]["data"]["$b"] = base64.b64encode(bytes(data)).decode()
                return

    report = check_replay(_tamper(lines, index, other_bytes)).report()
    assert report.startswith(f"step {index} (line {index + 1}) differs: transport_opened")
    assert "bytes differ from offset 30" in report

    # A timer: plain JSON, shown around the difference.
    index, timer = next(
        (i, output)
        for i, step in enumerate(steps)
        for output in step.get("out", [])
        if output[0] == "timer" and output[1]
    )

    def other_timer(step: dict[str, Any]) -> None:
        step["out"][step["out"].index(timer)] = ["timer", timer[1] + 0.5]

    report = check_replay(_tamper(lines, index, other_timer)).report()
    assert f"expected: {timer[1] + 0.5}\n    actual:   {timer[1]}\n" in report

    # Different input bytes: the step that takes them is the first to differ.
    index = next(
        i
        for i, step in enumerate(steps)
        if step.get("in") == "receive_data" and step["args"]["channel"] == "socket" and i > 5
    )

    def other_input(step: dict[str, Any]) -> None:
        step["args"]["data"] = base64.b64encode(b"\x88\x02\x03\xe8").decode()  # a close frame

    result = check_replay(_tamper(lines, index, other_input))
    assert result.first_difference is not None and result.first_difference.line == index + 1

    # An exception the trace does not mention, and entropy drawn differently.
    index = next(i for i, step in enumerate(steps) if step.get("in") == "message_processed")
    result = check_replay(_tamper(lines, index, lambda step: step["args"].update(seconds=-1)))
    assert result.first_difference is not None and result.first_difference.number == index
    assert "it raised LocalProtocolError; the trace says nothing" in result.report()
    opened = next(i for i, step in enumerate(steps) if "rand" in step)
    result = check_replay(_tamper(lines, opened, lambda step: step.update(rand="AAAA")))
    assert "the input drew 40 bytes of entropy, the trace holds 3" in result.report()


def test_replay_goes_on_after_a_difference() -> None:
    lines, _, _ = record(2.0, api_key=API_KEY)
    tampered = _tamper(lines, 1, lambda step: step["out"].__setitem__(0, ["command", None]))
    steps = list(replay(tampered))
    assert not steps[0].identical and len(steps) == len(lines) - 2


def test_the_diff_shows_a_window_around_the_first_difference() -> None:
    old = {"PushMessage": {"type": "x" * 100 + "a" + "y" * 100}}
    new = {"PushMessage": {"type": "x" * 100 + "b" + "y" * 100}}
    text = internals._diff(old, new)
    assert text.count("...") == 4 and text.endswith("^ first difference")
    assert internals._diff(b"", {"SendData": {"data": {"$b": "AA=="}}}).count("\n") == 2
    assert internals._sent_bytes({"SendData": {"data": "AA=="}}) is None
    assert internals._sent_bytes({"SendData": 1}) is None
    assert internals._same(float("nan"), float("nan"))
    assert internals._same({"$b": "AA=="}, b"\x00")


# --- traces that cannot be replayed ---------------------------------------------------------------


@pytest.fixture(scope="module")
def good() -> list[str]:
    return record(2.0, api_key=API_KEY)[0]


def _error(lines: Any) -> str:
    with pytest.raises(InvalidTraceError) as raised:
        list(replay(lines))
    assert isinstance(raised.value, LocalProtocolError)
    return str(raised.value)


def _with(good: list[str], index: int, step: object) -> list[str]:
    lines = list(good)
    lines[index] = step if isinstance(step, str) else json.dumps(step)
    return lines


def test_a_damaged_or_truncated_trace_is_a_clear_error(good: list[str]) -> None:
    assert _error([]) == "the trace is empty"
    assert _error(good[:5]) == (
        "the trace ends after step 4 without its end line: it was cut short"
    )
    assert _error([*good[:5], good[5][:40]]).startswith(
        "line 6: not JSON, a damaged or truncated line (invalid JSON: Unterminated string"
    )
    assert _error([*good, good[3]]) == f"line {len(good) + 1}: a line after the end line"
    assert _error(_with(good, len(good) - 1, {"end": {"steps": 2}})).endswith(
        f"does not match the {len(good) - 2} steps before it"
    )
    assert (
        _error([*good[:3], good[-1]]) == "line 4: the end line does not match the 2 steps before it"
    )
    assert _error(_with(good, 2, "[1, 2]")) == "line 3: expected a JSON object"
    assert _error([good[0], b"\xff\xfe"]) == "line 2: not UTF-8 text"
    assert _error([good[0], 42]) == "line 2: not text but int"
    assert _error("[" * 100000) == (
        "line 1: not JSON, a damaged or truncated line (invalid JSON: nested too deeply)"
    )


def test_a_trace_of_another_kind_or_version_is_a_clear_error(good: list[str]) -> None:
    header = json.loads(good[0])
    assert _error(['{"hello": 1}']) == "line 1: not an octoproto trace (no header)"
    assert _error(_with(good, 0, header | {"octoproto-trace": 2})) == (
        "line 1: trace format version 2; this octoproto reads 1"
    )
    assert _error(_with(good, 0, header | {"dialect": "irc"})) == "line 1: unknown dialect 'irc'"
    assert _error(_with(good, 0, header | {"config": []})) == "line 1: 'config' must be an object"
    bad_field = header | {"config": header["config"] | {"colour": "red"}}
    assert _error(_with(good, 0, bad_field)) == "line 1: octoprint has no config field 'colour'"
    bad_value = header | {"config": header["config"] | {"connect_timeout": -1}}
    assert _error(_with(good, 0, bad_value)).startswith("line 1: the config is not valid:")
    bad_nested = header | {"config": header["config"] | {"reconnect": {"delay": 1}}}
    assert _error(_with(good, 0, bad_nested)).startswith("line 1: the config is not valid:")
    bad_tag = header | {"config": header["config"] | {"warning_arg": {"$nope": 1}}}
    assert _error(_with(good, 0, bad_tag)) == (
        "line 1: config warning_arg: unknown or malformed '$nope' value"
    )


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({"in": "connect", "now": 0, "extra": 1}, "line 2: unknown key 'extra'"),
        ({"in": "jump", "now": 0}, "line 2: 'jump' is not an input of this dialect"),
        (
            {"in": "send", "args": {"message": "x"}},
            "line 2: 'send' is not an input of this dialect",
        ),
        ({"in": "connect"}, "line 2: 'now' must be a number"),
        ({"in": "connect", "now": True}, "line 2: 'now' must be a number"),
        ({"in": "clear_stats", "now": 0}, "line 2: clear_stats() takes no 'now'"),
        ({"in": "connect", "now": 0, "args": []}, "line 2: 'args' must be an object"),
        (
            {"in": "connect", "now": 0, "args": {"now": 1}},
            "line 2: connect() has no argument 'now' in 'args'",
        ),
        (
            {"in": "connect", "now": 0, "args": {"later": 1}},
            "line 2: connect() has no argument 'later' in 'args'",
        ),
        (
            {"in": "receive_eof", "now": 0, "args": {"channel": "pigeon"}},
            "line 2: channel: not a channel: 'pigeon'",
        ),
        (
            {"in": "receive_data", "now": 0, "args": {"data": "***"}},
            "line 2: data: not valid base64",
        ),
        (
            {"in": "receive_data", "now": 0, "args": {"data": 7}},
            "line 2: data: expected base64 text, got int",
        ),
        ({"in": "connect", "now": 0, "rand": "A"}, "line 2: rand: not valid base64"),
        ({"in": "connect", "now": 0, "raises": 1}, "line 2: 'raises' must be a string"),
        ({"in": "connect", "now": 0, "calls": {}}, "line 2: 'calls' must be a list"),
        (
            {"in": "connect", "now": 0, "calls": ["x"]},
            "line 2: calls[0]: a step must be a JSON object",
        ),
        (
            {"in": "connect", "now": 0, "calls": [{"in": "connect", "now": 0, "out": []}]},
            "line 2: calls[0]: unknown key 'out'",
        ),
        (
            {"in": "connect", "now": 0, "out": {}},
            "line 2: 'out' must be a list of [kind, value] pairs",
        ),
        (
            {"in": "connect", "now": 0, "out": [["smoke", None]]},
            "line 2: 'out' must be a list of [kind, value] pairs",
        ),
        ({"now": 0, "out": []}, "line 2: a step without 'in' holds only 'out'"),
        (
            {"in": "send_message", "args": {"message_type": "x", "payload": {"$t": 1}}},
            "line 2: payload: unknown or malformed '$t' value",
        ),
    ],
)
def test_a_step_with_wrong_keys_or_types_is_a_clear_error(
    good: list[str], step: dict[str, Any], message: str
) -> None:
    assert _error(_with(good, 1, step)) == message


def test_an_output_the_client_does_not_have_is_a_difference(good: list[str]) -> None:
    class Old(OctoPrintClient):
        next_batch = None  # type: ignore[assignment]

    lines = _with(good, 1, {"in": "connect", "now": 0, "out": [["batch", []]]})
    result = check_replay(lines, client_class=Old)
    assert "the client has no next_batch()" in result.report()


# --- values ---------------------------------------------------------------------------------


def test_argument_values_round_trip_exactly() -> None:
    value = {
        "text": "é",
        "int": 1,
        "float": 0.5,
        "none": None,
        "bools": [True, False],
        "bytes": b"\x00\xff",
        "tuple": (1, (2, b"3")),
        "$looks_tagged": {"$b": "not bytes"},
        "nested": {"list": [bytearray(b"x"), memoryview(b"y")]},
    }
    encoded = internals._to_json(value)
    assert json.loads(json.dumps(encoded)) == encoded
    decoded = internals._from_json(json.loads(json.dumps(encoded)), "here")
    assert decoded == value | {"nested": {"list": [b"x", b"y"]}}
    assert internals._from_json({"$opaque": "Thing"}, "here").name == "Thing"  # type: ignore[attr-defined]
    for bad in ({1: 2}, {"a": object()}, {1, 2}):
        with pytest.raises(internals._Unencodable):
            internals._to_json(bad)


def test_outputs_are_written_by_kind_and_field() -> None:
    out = internals._out
    assert out(None) is None and out(1.5) == 1.5
    assert out(SendData(Channel.HTTP, b"\x01")) == {
        "SendData": {"channel": "http", "data": {"$b": "AQ=="}}
    }
    assert out(("a", b"b")) == ["a", {"$b": "Yg=="}]
    assert out(object()) == {"$opaque": "object"}
    assert out(internals._Opaque("Mine")) == {"$opaque": "Mine"}
    assert repr(internals._Opaque("Mine")) == "<unrecorded Mine>"
    assert internals._dump({"data": [b"\x00", object()]}) == (
        '{"data":[{"$b":"AA=="},{"$opaque":"object"}]}'
    )


def test_config_fields_are_written_so_that_they_read_back_the_same() -> None:
    config = make_config(
        username="octo",
        password=octoproto.Secret("pw-0123456789"),
        headers=[("Cookie", "c=1"), ("X-CSRF-Token", "t")],
        subprotocols=["one"],
        reconnect=ReconnectSchedule.exponential(jitter=0.25),
        throttle=ThrottleSettings(window=5, max_factor=9),
        relogin_reasons={"stale", "modified", "removed"},
        subscription={"state": True, "events": ("PrintDone",)},
        warning_arg=("tag", {1, 2}),
    )
    recorder = Recorder(OctoPrintClient, config)
    header = json.loads(recorder.take_lines()[0])["config"]
    assert header["password"] == "redacted-pass"
    assert header["relogin_reasons"] == ["modified", "removed", "stale"]
    assert header["reconnect"]["jitter"] == 0.25
    assert header["warning_arg"] == ["tag", [1, 2]]
    stand_in: Any = recorder._stand_in.config
    assert stand_in.throttle == config.throttle and stand_in.reconnect == config.reconnect
    assert stand_in.subscription == {"state": True, "events": ["PrintDone"]}
    with pytest.raises(LocalProtocolError, match="not a client of a known dialect"):
        Recorder(octoproto.SessionEngine, make_config())


# --- speed ------------------------------------------------------------------------------------


def ten_minutes() -> Iterator[str]:
    """A 10-minute session: ``current`` every 0.2 s, events, a reconnect, a re-login."""
    server = make_server(update_interval=0.2, tick_interval=0.2, heartbeat_interval=5.0)
    recorder = Recorder(OctoPrintClient, make_config(api_key=API_KEY))
    driver = Driver(server, recorder.client)
    for minute in range(10):
        server.fire_event("PrintStarted", {"name": f"part-{minute}.gcode"}, driver.now)
        if minute == 4:
            server.drop_connections(driver.now)
        if minute == 7:
            server.close_sessions(driver.now, reason="stale")
        driver.pump()
        driver.run(60.0 * (minute + 1))
    recorder.close()
    return iter(recorder.take_lines())


def test_replaying_a_ten_minute_session_takes_well_under_a_second(
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines = list(ten_minutes())
    messages = sum(
        1
        for step in records(lines)
        for kind, value in step.get("out", [])
        if kind == "event" and value and "PushMessage" in value
    )
    assert messages > 2500
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        result = check_replay(lines)
        timings.append(time.perf_counter() - started)
        assert result.identical
    size = sum(len(line) + 1 for line in lines)
    with capsys.disabled():
        print(
            f"\nreplay of a 10-minute session: {messages} messages, {result.steps} steps,"
            f" {size / 2**20:.1f} MiB: best {min(timings):.3f} s of {len(timings)}"
        )


# --- damage of any kind --------------------------------------------------------------------

ODD_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    1e308,
    float("nan"),
    "",
    "socket",
    "AAAA",
    [],
    [1, 2],
    ["event", None],
    {},
    {"$b": 1},
    {"$t": "x"},
    {"SendData": {"data": {"$b": "AA=="}}},
]


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*path, index))


def test_any_damage_is_an_invalid_trace_or_a_difference_never_a_crash(good: list[str]) -> None:
    rng = random.Random(4)
    outcomes = {"invalid": 0, "differs": 0, "identical": 0}

    def judge(trace: Any) -> None:
        try:
            result = check_replay(trace)
        except InvalidTraceError:
            outcomes["invalid"] += 1
        else:
            outcomes["identical" if result.identical else "differs"] += 1
            result.report()

    text = "\n".join(good).encode()
    for _ in range(150):  # bytes: flipped, cut out, or JSON-ish ones put in
        data = bytearray(text)
        for _ in range(rng.randint(1, 4)):
            where, choice = rng.randrange(len(data)), rng.random()
            if choice < 0.4:
                data[where] = rng.randrange(256)
            elif choice < 0.7:
                del data[where : where + rng.randint(1, 40)]
            else:
                data[where:where] = bytes(rng.choices(b'{}[]",:-.0123456789eE$b\\n', k=3))
        judge(bytes(data))
    for _ in range(300):  # values: any field of any line given a value of another type
        steps = records(good)
        index = rng.randrange(len(steps))
        path = rng.choice(list(_paths(steps[index]))[1:] or [()])
        if not path:
            continue
        target = steps[index]
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = rng.choice(ODD_VALUES)
        judge([json.dumps(step) for step in steps])
    assert all(outcomes.values()), outcomes
