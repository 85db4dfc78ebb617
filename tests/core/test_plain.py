"""Tests for octoproto._plain: the plain WebSocket dialect (Qore WebSocketClient's surface)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from peer import Accept, Harness, accept_key
from wsproto.extensions import PerMessageDeflate

from octoproto import (
    BinaryMessage,
    Connected,
    Disconnected,
    HandshakeResponse,
    LocalProtocolError,
    SeededEntropy,
    SessionConfig,
    SessionState,
    TextMessage,
    WebSocketClient,
)


def client(**kwargs: Any) -> WebSocketClient:
    options: dict[str, Any] = {
        "url": "ws://example.com:8080/chat?room=1",
        "entropy": SeededEntropy(9),
    }
    return WebSocketClient(SessionConfig(**{**options, **kwargs}))


def test_the_upgrade_request_is_exact() -> None:
    h = Harness(
        client(headers={"Authorization": "Bearer t"}, subprotocols=["v1"], origin="http://o")
    )
    h.client.connect(0)
    h.pump()
    key = base64.b64encode(SeededEntropy(9)(16)).decode()
    assert (
        bytes(h.server.raw)
        == (
            "GET /chat?room=1 HTTP/1.1\r\n"
            "Host: example.com:8080\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "Origin: http://o\r\n"
            "Sec-WebSocket-Protocol: v1\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
            "Authorization: Bearer t\r\n"
            "\r\n"
        ).encode()
    )


def test_connected_carries_the_handshake_response() -> None:
    answer = Accept(subprotocol="v1", deflate=PerMessageDeflate, headers=[("X-Server", "Test")])
    h = Harness(client(subprotocols=["v0", "v1"]), answer=answer)
    (event,) = h.connect_and_open()
    assert h.server.request is not None
    assert event == Connected(
        HandshakeResponse(
            status_code=101,
            reason="Switching Protocols",
            http_version="1.1",
            headers=(
                ("upgrade", "websocket"),
                ("connection", "Upgrade"),
                ("sec-websocket-accept", accept_key(h.server.request)),
                ("sec-websocket-protocol", "v1"),
                ("sec-websocket-extensions", "permessage-deflate; client_max_window_bits=15"),
                ("x-server", "Test"),
            ),
            subprotocol="v1",
            extensions=("permessage-deflate",),
        )
    )
    handshake = event.handshake
    assert handshake.header("X-Server") == "Test"
    assert handshake.header("x-missing") is None
    assert HandshakeResponse(101, "", "1.1", (("a", "1"), ("a", "2"))).header("A") == "1, 2"


def test_messages_both_ways_with_compression() -> None:
    h = Harness(client(), answer=Accept(deflate=PerMessageDeflate))
    h.connect_and_open()
    h.client.send("text ✓")
    h.client.send(b"\x00\x01")
    h.client.send(bytearray(b"ba"))
    h.client.send(memoryview(b"mv"))
    h.server.send("from server")
    h.server.send(b"\xff")
    h.pump()
    assert h.server.received == [
        ("text", "text ✓"),
        ("binary", b"\x00\x01"),
        ("binary", b"ba"),
        ("binary", b"mv"),
    ]
    assert h.events() == [TextMessage("from server"), BinaryMessage(b"\xff")]


@pytest.mark.parametrize("message", [42, None, ["list"], {"a": 1}])
def test_send_refuses_what_is_not_a_message(message: object) -> None:
    c = client()
    with pytest.raises(LocalProtocolError, match="a message is str or bytes, not"):
        c.send(message)  # type: ignore[arg-type]


def test_send_refuses_what_exceeds_max_message_size() -> None:
    c = client(max_message_size=4)
    c.send(b"1234")
    with pytest.raises(LocalProtocolError, match="message of 5 bytes exceeds max_message_size"):
        c.send("12345")


def test_send_is_not_a_clock_input() -> None:
    # Like h11's send() and aioquic's send_stream_data(), sending takes no now:
    # it neither moves the clock nor fires a due timer.
    h = Harness(client())
    h.connect_and_open()
    assert h.client.get_timer() == 20.0  # the ping
    h.now = 25.0  # the ping is overdue, but only handle_timer() fires it
    h.client.send("x")
    h.pump()
    assert h.server.received == [("text", "x")]
    h.client.handle_timer(h.now)
    h.pump()
    assert h.server.received == [("text", "x"), ("ping", b"")]
    assert h.client.get_timer() == 45.0


def test_disconnect_defaults_to_going_away() -> None:
    assert WebSocketClient.default_close_code == 1001
    h = Harness(client())
    h.connect_and_open()
    h.client.disconnect(h.now)
    h.pump()
    assert h.server.received == [("close", 1001, "")]
    assert h.events() == [Disconnected(1001, "")]
    assert h.client.state is SessionState.CLOSED
    assert not h.client.is_open
