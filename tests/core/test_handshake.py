"""Tests for octoproto._handshake: the upgrade request and every way its answer can be wrong."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request
from wsproto.extensions import PerMessageDeflate

from octoproto import HandshakeResponse, LocalProtocolError, SeededEntropy
from octoproto._handshake import ClientHandshake, HandshakeRejected, check_user_headers
from octoproto._http import HttpFault

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _handshake(**kwargs: Any) -> ClientHandshake:
    arguments: dict[str, Any] = {
        "host_header": "example.com:8080",
        "target": "/chat?x=1",
        "headers": (),
        "subprotocols": (),
        "origin": None,
        "compression": False,
        "max_message_size": 1000,
        "max_response_size": 4096,
        "entropy": SeededEntropy(b"hs"),
        **kwargs,
    }
    return ClientHandshake(**arguments)


def _key() -> bytes:
    return base64.b64encode(SeededEntropy(b"hs")(16))


def _accept_value() -> str:
    return base64.b64encode(hashlib.sha1(_key() + GUID).digest()).decode()


def _response(*headers: str, status: str = "101 Switching Protocols") -> bytes:
    lines = [f"HTTP/1.1 {status}", *headers, "", ""]
    return "\r\n".join(lines).encode()


def _ok(*extra: str) -> bytes:
    return _response(
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {_accept_value()}",
        *extra,
    )


def test_request_bytes_exact() -> None:
    handshake = _handshake()
    assert handshake.request_bytes == (
        b"GET /chat?x=1 HTTP/1.1\r\n"
        b"Host: example.com:8080\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + _key() + b"\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )


def test_request_with_everything_in_order() -> None:
    handshake = _handshake(
        origin="http://example.com",
        subprotocols=("v2.chat", "chat"),
        compression=True,
        headers=(("Authorization", "Bearer x"), ("X-Trace", "1")),
    )
    assert handshake.request_bytes == (
        b"GET /chat?x=1 HTTP/1.1\r\n"
        b"Host: example.com:8080\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + _key() + b"\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"Origin: http://example.com\r\n"
        b"Sec-WebSocket-Protocol: v2.chat, chat\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        b"Authorization: Bearer x\r\n"
        b"X-Trace: 1\r\n\r\n"
    )


def test_wsproto_server_accepts_our_request() -> None:
    handshake = _handshake(subprotocols=("chat",), compression=True, origin="http://o")
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(handshake.request_bytes)
    (request,) = server.events()
    assert isinstance(request, Request)
    assert (request.host, request.target, request.subprotocols) == (
        "example.com:8080",
        "/chat?x=1",
        ["chat"],
    )
    assert request.extensions == ["permessage-deflate; client_max_window_bits"]
    answer = server.send(AcceptConnection(subprotocol="chat", extensions=[PerMessageDeflate()]))
    result = handshake.receive_data(answer + b"\x81\x02hi")
    assert result is not None
    assert (result.subprotocol, result.extensions) == ("chat", ("permessage-deflate",))
    assert result.response.status_code == 101
    assert result.response.trailing_data == b"\x81\x02hi"


def test_accepted_in_pieces() -> None:
    handshake = _handshake()
    raw = _ok("Server: test")
    for i in range(len(raw) - 1):
        assert handshake.receive_data(raw[i : i + 1]) is None
    result = handshake.receive_data(raw[-1:])
    assert result is not None
    assert (result.subprotocol, result.extensions) == (None, ())
    assert result.response.header("server") == "test"


def test_header_values_are_case_insensitive_and_connection_is_a_token_list() -> None:
    handshake = _handshake()
    raw = _response(
        "upgrade: WebSocket",
        "connection: keep-alive, UPGRADE",
        f"sec-websocket-accept: {_accept_value()}",
    )
    assert handshake.receive_data(raw) is not None


def test_permessage_deflate_codec_compresses() -> None:
    handshake = _handshake(compression=True)
    result = handshake.receive_data(_ok("Sec-WebSocket-Extensions: permessage-deflate"))
    assert result is not None
    assert result.extensions == ("permessage-deflate",)
    assert result.codec.message("aaaa")[0] == 0xC1  # FIN + RSV1 + text


def test_compression_offered_but_declined() -> None:
    handshake = _handshake(compression=True)
    result = handshake.receive_data(_ok())
    assert result is not None
    assert result.extensions == ()
    assert result.codec.message("aaaa")[0] == 0x81


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (
            _response("Content-Length: 6", status="403 Forbidden") + b"go away",
            "the server answered the upgrade with 403 Forbidden",
        ),
        (
            _response("Content-Length: 0", status="200 "),
            "the server answered the upgrade with 200",
        ),
        (
            _response("Connection: Upgrade", f"Sec-WebSocket-Accept: {_accept_value()}"),
            "101 response without 'Upgrade: websocket'",
        ),
        (
            _response(
                "Upgrade: h2c", "Connection: Upgrade", f"Sec-WebSocket-Accept: {_accept_value()}"
            ),
            "101 response without 'Upgrade: websocket'",
        ),
        (
            _response("Upgrade: websocket", f"Sec-WebSocket-Accept: {_accept_value()}"),
            "101 response without 'Connection: Upgrade'",
        ),
        (
            _response("Upgrade: websocket", "Connection: Upgrade"),
            "wrong Sec-WebSocket-Accept in the 101 response",
        ),
        (
            _response(
                "Upgrade: websocket",
                "Connection: Upgrade",
                "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
            ),
            "wrong Sec-WebSocket-Accept in the 101 response",
        ),
        (
            _ok("Sec-WebSocket-Protocol: chat"),
            "the server chose a subprotocol we did not offer: 'chat'",
        ),
        (
            _ok("Sec-WebSocket-Extensions: permessage-deflate"),
            "the server accepted extensions we did not offer: ['permessage-deflate']",
        ),
    ],
)
def test_rejections_without_compression(raw: bytes, detail: str) -> None:
    handshake = _handshake()
    with pytest.raises(HandshakeRejected) as info:
        handshake.receive_data(raw)
    assert info.value.detail == str(info.value) == detail


def test_rejection_carries_the_response() -> None:
    handshake = _handshake()
    raw = _response("Content-Length: 7", "X-Why: auth", status="401 Unauthorized") + b"sign in"
    with pytest.raises(HandshakeRejected) as info:
        handshake.receive_data(raw)
    response = info.value.response
    assert (response.status_code, response.reason, response.body) == (
        401,
        "Unauthorized",
        b"sign in",
    )
    assert response.headers == (("content-length", "7"), ("x-why", "auth"))


@pytest.mark.parametrize(
    ("extension", "detail"),
    [
        (
            "permessage-deflate, permessage-deflate",
            "the server accepted extensions we did not offer:"
            " ['permessage-deflate', 'permessage-deflate']",
        ),
        (
            "x-webkit-deflate-frame",
            "the server accepted an extension we did not offer: 'x-webkit-deflate-frame'",
        ),
        (
            "permessage-deflate; server_max_window_bits=7",
            "unusable permessage-deflate parameters: server_max_window_bits=7 is out of range",
        ),
        (
            "permessage-deflate; client_max_window_bits=16",
            "unusable permessage-deflate parameters: client_max_window_bits=16 is out of range",
        ),
        (
            "permessage-deflate; server_max_window_bits=x",
            "unusable permessage-deflate parameters: invalid literal for int() with base 10: 'x'",
        ),
        (
            "permessage-deflate; mystery",
            "unusable permessage-deflate parameters:"
            " unknown permessage-deflate parameter 'mystery'",
        ),
    ],
)
def test_extension_rejections(extension: str, detail: str) -> None:
    handshake = _handshake(compression=True)
    with pytest.raises(HandshakeRejected) as info:
        handshake.receive_data(_ok(f"Sec-WebSocket-Extensions: {extension}"))
    assert info.value.detail == detail


def test_empty_extension_header_means_none() -> None:
    handshake = _handshake(compression=True)
    result = handshake.receive_data(_ok("Sec-WebSocket-Extensions: ,"))
    assert result is not None
    assert result.extensions == ()


def test_subprotocol_chosen_from_the_offer() -> None:
    handshake = _handshake(subprotocols=("a", "b"))
    result = handshake.receive_data(_ok("Sec-WebSocket-Protocol: b"))
    assert result is not None
    assert result.subprotocol == "b"


def test_malformed_response_is_an_http_fault() -> None:
    with pytest.raises(HttpFault, match="malformed HTTP response"):
        _handshake().receive_data(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")


def test_oversized_response_is_an_http_fault() -> None:
    handshake = _handshake(max_response_size=64)
    with pytest.raises(HttpFault) as info:
        handshake.receive_data(b"HTTP/1.1 101 Switching Protocols\r\nX: " + b"a" * 100)
    assert (str(info.value), info.value.size) == ("HTTP response head exceeds 64 bytes", 137)


def test_eof_during_the_handshake() -> None:
    handshake = _handshake()
    assert handshake.receive_data(b"HTTP/1.1 101 Switching") is None
    with pytest.raises(HttpFault, match="malformed HTTP response"):
        handshake.receive_eof()


def test_eof_completing_a_refusal() -> None:
    handshake = _handshake()
    assert handshake.receive_data(b"HTTP/1.0 503 Busy\r\n\r\ntry later") is None
    with pytest.raises(HandshakeRejected) as info:
        handshake.receive_eof()
    assert info.value.detail == "the server answered the upgrade with 503 Busy"
    assert info.value.response.body == b"try later"
    assert info.value.response.as_handshake() == HandshakeResponse(
        503, "Busy", "1.0", (), body=b"try later"
    )


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ([("Host", "x")], "header 'Host' is set by the handshake itself"),
        ([("sec-websocket-key", "x")], "header 'sec-websocket-key' is set by the handshake itself"),
        ([("ORIGIN", "x")], "header 'ORIGIN' is set by the handshake itself"),
        ([("Content-Length", "1")], "header 'Content-Length' is set by the handshake itself"),
        ([("X-Ok", "1"), ("Bad Name", "x")], "invalid header 'Bad Name': "),
        ([("X-Split", "a\r\nInjected: 1")], "invalid header 'X-Split': "),
        ([("", "x")], "invalid header '': "),
    ],
)
def test_user_header_checks(headers: list[tuple[str, str]], message: str) -> None:
    with pytest.raises(LocalProtocolError) as info:
        check_user_headers(headers)
    assert str(info.value).startswith(message)


def test_user_headers_that_are_fine() -> None:
    check_user_headers([("Authorization", "Bearer abc"), ("Cookie", "a=1; b=2"), ("X-Empty", "")])
