"""Regression tests for what the fuzz targets and the state machine found.

Each test names the finding: the fuzz target (``fuzz/run.py``) or the
hypothesis state machine (``tests/core/test_stateful.py``) that produced it,
and what broke. ``docs/fuzzing.md`` lists them all.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

from octoproto import (
    Channel,
    CloseTransport,
    LocalProtocolError,
    OctoPrintClient,
    OctoPrintConfig,
    OpenTransport,
    ReconnectSchedule,
    SeededEntropy,
    SessionConfig,
    WebSocketClient,
)
from octoproto._frames import WsMessage
from octoproto._handshake import ClientHandshake

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # fuzz/ lives beside tests/
    sys.path.insert(0, str(ROOT))

from fuzz.harness import ByteReader, Driver, octoprint_variant  # noqa: E402

ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def session_config(**overrides: Any) -> SessionConfig:
    return SessionConfig(url="ws://fuzz.test/", entropy=SeededEntropy(1), **overrides)


def octoprint_config(**overrides: Any) -> OctoPrintConfig:
    return OctoPrintConfig(
        url="http://octo.test/", entropy=SeededEntropy(1), api_key="KEY", **overrides
    )


# --- fuzz target "config": OctoPrint's login timers at zero hung handle_timer()


@pytest.mark.parametrize("name", ["login_timeout", "login_retry_delay"])
@pytest.mark.parametrize("value", [0, 0.0, -1.0, math.nan, math.inf])
def test_octoprint_login_timers_must_be_positive(name: str, value: float) -> None:
    # With both at 0 the login request timed out at once, was retried at
    # once, timed out at once ... inside one handle_timer() call, for ever.
    with pytest.raises(LocalProtocolError) as caught:
        octoprint_config(**{name: value})
    assert str(caught.value) == f"{name} must be a positive number, not {value!r}"


def test_octoprint_login_timers_accept_positive_values() -> None:
    config = octoprint_config(login_timeout=0.25, login_retry_delay=3)
    assert (config.login_timeout, config.login_retry_delay) == (0.25, 3)


# --- fuzz target "config": NaN and fractional limits were accepted


@pytest.mark.parametrize(
    "name", ["max_message_size", "max_http_response_size", "max_queued_messages"]
)
@pytest.mark.parametrize("value", [math.nan, math.inf, 1.5, True])
def test_limits_must_be_ints(name: str, value: object) -> None:
    # Every comparison with NaN is false, so a NaN limit bounded nothing; a
    # queue bound of 1.5 let two messages wait.
    with pytest.raises(LocalProtocolError) as caught:
        session_config(**{name: value})
    assert str(caught.value) == f"{name} must be an int, not {value!r}"


@pytest.mark.parametrize("name", ["warning_ms", "warning_bs", "min_ms"])
def test_warning_settings_refuse_nan(name: str) -> None:
    # min() of (nan, 0, 1000) is nan, and nan < 0 is false: it slipped through.
    with pytest.raises(LocalProtocolError, match="must be >= 0"):
        session_config(**{name: math.nan})


# --- fuzz target "config" (10-minute run): receiving a compressed message raised OverflowError


@pytest.mark.parametrize(
    "name", ["max_message_size", "max_http_response_size", "max_queued_messages"]
)
def test_limits_must_fit_a_c_ssize_t(name: str) -> None:
    # max_message_size=10**30 was accepted; the first compressed message then
    # asked zlib for up to 10**30 + 1 bytes and OverflowError escaped
    # receive_data(): a remote input raising.
    with pytest.raises(LocalProtocolError) as caught:
        session_config(**{name: sys.maxsize + 1})
    assert str(caught.value) == f"{name} must be at most {sys.maxsize}"
    assert getattr(session_config(**{name: sys.maxsize}), name) == sys.maxsize


# --- fuzz target "config": close_timeout=None was accepted, then disconnect() raised TypeError


def test_close_timeout_may_not_be_none() -> None:
    with pytest.raises(LocalProtocolError) as caught:
        session_config(close_timeout=None)
    assert str(caught.value) == "close_timeout must be a positive number, not None"


# --- fuzz target "config": handle_timer() never returned


def test_handle_timer_fires_each_timer_at_most_once_per_call() -> None:
    # At now = 1e9, now + 1e-9 == now in floating point: the connect timer
    # was due again as soon as it was armed, and with a zero reconnect delay
    # and no attempt limit handle_timer() timed out, redialled and timed out
    # again without end.
    config = session_config(
        connect_timeout=1e-9, reconnect=ReconnectSchedule(delays=(0.0,), attempts=None)
    )
    client = WebSocketClient(config)
    now = 1e9
    client.connect(now)
    assert client.next_command() == OpenTransport(Channel.SOCKET, "fuzz.test", 80, False, None)
    client.handle_timer(now)  # returns
    commands = []
    while (command := client.next_command()) is not None:
        commands.append(command)
    # timed out, redialled; the new connect timer waits for the next call
    assert commands == [
        CloseTransport(Channel.SOCKET),
        OpenTransport(Channel.SOCKET, "fuzz.test", 80, False, None),
    ]
    assert client.get_timer() == now
    client.handle_timer(now)  # the adapter calls again at once; it returns again
    assert client.get_timer() == now


# --- fuzz target "frames": what a compressed message inflated to depended on the cut


def test_inflation_does_not_depend_on_how_the_bytes_were_cut() -> None:
    # The server agreed to server_max_window_bits=9 (512 bytes) but its
    # stream refers 1000 bytes back. Inflating with the negotiated window,
    # zlib let that through within one decompress() call and refused it
    # across two: whole, the message arrived; cut, the connection failed
    # (1007). The found case was a real OctoPrint stream (15-bit window)
    # under a fuzzed answer; fuzz/regressions/frames holds it.
    block = random.Random(1).randbytes(1000)  # incompressible: one back-reference, 1000 back
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    payload = (compressor.compress(block * 2) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
    frame = bytes([0xC2, 126]) + struct.pack("!H", len(payload)) + payload  # FIN+RSV1, binary

    def received(chunks: list[bytes]) -> list[object]:
        handshake = ClientHandshake(
            host_header="fuzz.test",
            target="/",
            headers=[],
            subprotocols=(),
            origin=None,
            compression=True,
            max_message_size=1 << 16,
            max_response_size=1 << 16,
            entropy=SeededEntropy(1),
        )
        key = handshake.request_bytes.split(b"Sec-WebSocket-Key: ")[1].split(b"\r\n")[0]
        accept = base64.b64encode(hashlib.sha1(key + ACCEPT_GUID).digest())
        result = handshake.receive_data(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n"
            b"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=9\r\n\r\n"
        )
        assert result is not None
        events: list[object] = []
        for chunk in chunks:
            events += result.codec.receive(chunk)
        return events

    whole = received([frame])
    assert whole == [WsMessage(block * 2)]
    assert received([frame[i : i + 1] for i in range(len(frame))]) == whole


# --- fuzz target "config" (second 10-minute run): the auth grace period was over before it began


def test_send_auth_grace_period_starts_at_the_given_now() -> None:
    # send_auth() took no now, so the 1 s grace period (armed when no history
    # will confirm the auth) started at the last input's now. With no link
    # timers (or a quiet link) that was long past: get_timer() went behind
    # the clock and the auth counted as confirmed at once. Adapters now pass
    # now (send_auth and send_message take it).
    overrides = {"ping_interval": None, "dead_link_timeout": None, "subscription": {"events": True}}
    config = octoprint_variant(1, 0, compression=False, overrides=overrides)
    driver = Driver(OctoPrintClient(config))
    driver.connect()
    driver.transport_opened(Channel.SOCKET)
    driver.progress(ByteReader(b""))  # the 101
    driver.progress(ByteReader(b""))  # o, connected
    client = driver.client
    assert isinstance(client, OctoPrintClient) and client.get_timer() is None
    client.send_auth("octo", "S1", now=10.0)
    assert client.get_timer() == 11.0
    client.send_message("auth", "octo:S2", now=20.0)
    assert client.get_timer() == 21.0
    client.send_auth("octo", "S3")  # without now: the last one given
    assert client.get_timer() == 21.0
