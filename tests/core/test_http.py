"""Tests for octoproto._http: one request, one bounded response, faults never escape as h11's."""

from __future__ import annotations

import pytest

from octoproto import HandshakeResponse
from octoproto._http import HttpExchange, HttpFault, HttpResponse


def _exchange(max_response_size: int = 1000, body: bytes = b"") -> HttpExchange:
    headers = [("Host", "example.com"), ("Connection", "close")]
    return HttpExchange("POST", "/api/login", headers, body, max_response_size=max_response_size)


def test_request_bytes_without_body() -> None:
    exchange = HttpExchange("GET", "/x?y=1", [("Host", "h")], max_response_size=10)
    assert exchange.request_bytes == b"GET /x?y=1 HTTP/1.1\r\nHost: h\r\n\r\n"


def test_request_bytes_with_body_get_a_content_length() -> None:
    exchange = _exchange(body=b'{"passive":true}')
    assert exchange.request_bytes == (
        b"POST /api/login HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n"
        b'Content-Length: 16\r\n\r\n{"passive":true}'
    )


def test_response_with_content_length_in_pieces() -> None:
    exchange = _exchange()
    raw = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\n"
        b"Set-Cookie: b=2\r\nContent-Length: 5\r\n\r\nhello"
    )
    for byte in raw[:-1]:
        assert exchange.receive_data(bytes([byte])) is None
    response = exchange.receive_data(raw[-1:])
    assert response == HttpResponse(
        200,
        "OK",
        "1.1",
        (
            ("content-type", "text/plain"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
            ("content-length", "5"),
        ),
        b"hello",
    )
    assert response.header("set-cookie") == "a=1, b=2"
    assert response.header_values("set-cookie") == ["a=1", "b=2"]
    assert response.header("missing") is None
    assert response.header_values("missing") == []


def test_chunked_response() -> None:
    exchange = _exchange()
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    response = exchange.receive_data(raw)
    assert response is not None
    assert response.body == b"abcde"


def test_body_until_eof() -> None:
    exchange = _exchange()
    assert exchange.receive_data(b"HTTP/1.0 403 Forbidden\r\n\r\nno ") is None
    assert exchange.receive_data(b"way") is None
    response = exchange.receive_eof()
    assert (response.status_code, response.reason, response.http_version, response.body) == (
        403,
        "Forbidden",
        "1.0",
        b"no way",
    )


def test_informational_responses_are_skipped() -> None:
    exchange = _exchange()
    raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
    response = exchange.receive_data(raw)
    assert response is not None
    assert (response.status_code, response.body) == (204, b"")


def test_upgrade_response_hands_over_trailing_data() -> None:
    exchange = HttpExchange(
        "GET",
        "/",
        [("Host", "h"), ("Connection", "Upgrade"), ("Upgrade", "websocket")],
        max_response_size=1000,
    )
    response = exchange.receive_data(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02hi"
    )
    assert response == HttpResponse(
        101, "Switching Protocols", "1.1", (("upgrade", "websocket"),), b"", b"\x81\x02hi"
    )


def test_upgrade_response_without_trailing_data() -> None:
    exchange = HttpExchange(
        "GET",
        "/",
        [("Host", "h"), ("Connection", "Upgrade"), ("Upgrade", "x")],
        max_response_size=99,
    )
    response = exchange.receive_data(b"HTTP/1.1 101 OK\r\n\r\n")
    assert response is not None
    assert response.trailing_data == b""


def test_as_handshake() -> None:
    response = HttpResponse(101, "Switching", "1.1", (("a", "1"),), b"body", b"tail")
    assert response.as_handshake() == HandshakeResponse(
        101, "Switching", "1.1", (("a", "1"),), body=b"body"
    )
    assert response.as_handshake("chat", ("permessage-deflate",)) == HandshakeResponse(
        101, "Switching", "1.1", (("a", "1"),), "chat", ("permessage-deflate",), b"body"
    )
    # The trailing data are the WebSocket's, never the handshake's.
    assert HttpResponse(403, "No", "1.1", (), b"", b"tail").as_handshake().body == b""


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"garbage\r\n\r\n", "malformed HTTP response: "),
        (b"HTTP/1.1 abc OK\r\n\r\n", "malformed HTTP response: "),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", "malformed HTTP response: "),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
            "malformed HTTP response: Received server _SWITCH_UPGRADE event without a pending"
            " proposal",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "malformed HTTP response: "),
    ],
)
def test_malformed_responses(data: bytes, message: str) -> None:
    with pytest.raises(HttpFault) as info:
        _exchange().receive_data(data)
    assert str(info.value).startswith(message)


def test_oversized_head() -> None:
    exchange = _exchange(max_response_size=100)
    assert exchange.receive_data(b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 60 + b"\r\n") is None
    with pytest.raises(HttpFault) as info:
        exchange.receive_data(b"X-More: " + b"b" * 60 + b"\r\n")
    assert (str(info.value), info.value.size) == ("HTTP response head exceeds 100 bytes", 156)


@pytest.mark.parametrize("status", ["101 Switching Protocols", "200 OK"])
def test_oversized_head_in_one_piece(status: str) -> None:
    exchange = HttpExchange(
        "GET",
        "/",
        [("Host", "h"), ("Connection", "Upgrade"), ("Upgrade", "websocket")],
        max_response_size=100,
    )
    head = f"HTTP/1.1 {status}\r\nUpgrade: websocket\r\nX-Pad: {'a' * 60}\r\n\r\n".encode()
    with pytest.raises(HttpFault) as info:
        exchange.receive_data(head + b"\x81\x00" * 100)  # what follows the head does not count
    assert (str(info.value), info.value.size) == ("HTTP response head exceeds 100 bytes", len(head))


def test_head_of_exactly_the_limit() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"
    exchange = _exchange(max_response_size=len(head))
    response = exchange.receive_data(head + b"abc")
    assert response is not None
    assert response.body == b"abc"


def test_oversized_body_fails_as_soon_as_it_is_over() -> None:
    exchange = _exchange(max_response_size=100)
    assert exchange.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n") is None
    assert exchange.receive_data(b"a" * 100) is None
    with pytest.raises(HttpFault) as info:
        exchange.receive_data(b"a")
    assert (str(info.value), info.value.size) == ("HTTP response body exceeds 100 bytes", 101)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"HTTP/1.1 200 OK\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab",
    ],
)
def test_eof_before_the_response_is_complete(data: bytes) -> None:
    exchange = _exchange()
    if data:
        assert exchange.receive_data(data) is None
    with pytest.raises(HttpFault) as info:
        exchange.receive_eof()
    assert str(info.value).startswith("malformed HTTP response: ")


def test_empty_data_is_not_eof() -> None:
    exchange = _exchange()
    assert exchange.receive_data(b"HTTP/1.1 200 OK\r\n") is None
    assert exchange.receive_data(b"") is None
    response = exchange.receive_data(b"Content-Length: 0\r\n\r\n")
    assert response is not None
    assert response.status_code == 200


def test_eof_after_a_complete_response() -> None:
    # Not reachable through the session (a finished exchange is dropped at once),
    # but the exchange still answers with its own error rather than h11's.
    exchange = _exchange()
    assert exchange.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n") is not None
    with pytest.raises(HttpFault) as info:
        exchange.receive_eof()
    assert str(info.value) == "the server closed the connection before the response was complete"
