"""Tests for octoproto._url: what a user's URL turns into."""

from __future__ import annotations

import pytest

from octoproto import LocalProtocolError
from octoproto._url import ServerAddress, parse_server_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://example.com", ServerAddress(False, "example.com", 80, "/", "")),
        ("http://example.com/", ServerAddress(False, "example.com", 80, "/", "")),
        ("wss://example.com", ServerAddress(True, "example.com", 443, "/", "")),
        (
            "HTTPS://Example.COM:8443/octoprint",
            ServerAddress(True, "example.com", 8443, "/octoprint", ""),
        ),
        (
            "ws://10.0.0.2:5000/sockjs?token=a&b=c",
            ServerAddress(False, "10.0.0.2", 5000, "/sockjs", "token=a&b=c"),
        ),
        ("  ws://[::1]:8080/x  ", ServerAddress(False, "::1", 8080, "/x", "")),
        ("wss://[fe80::1]/", ServerAddress(True, "fe80::1", 443, "/", "")),
    ],
)
def test_parse(url: str, expected: ServerAddress) -> None:
    assert parse_server_url(url) == expected


@pytest.mark.parametrize(
    ("url", "host_header", "origin"),
    [
        ("ws://example.com", "example.com", "http://example.com"),
        ("ws://example.com:443", "example.com:443", "http://example.com:443"),
        ("wss://example.com:443", "example.com", "https://example.com"),
        ("wss://example.com:80", "example.com:80", "https://example.com:80"),
        ("ws://[::1]", "[::1]", "http://[::1]"),
        ("ws://[::1]:8080", "[::1]:8080", "http://[::1]:8080"),
    ],
)
def test_host_header_and_origin(url: str, host_header: str, origin: str) -> None:
    address = parse_server_url(url)
    assert address.host_header == host_header
    assert address.origin == origin


def test_target_keeps_the_query() -> None:
    assert parse_server_url("ws://h/p?q=1").target("/api/login") == "/api/login?q=1"
    assert parse_server_url("ws://h/p").target("/api/login") == "/api/login"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (b"ws://example.com", "URL must be a str, not bytes"),
        (None, "URL must be a str, not NoneType"),
        (
            "ws://example.com:99999",
            "invalid URL 'ws://example.com:99999': Port out of range 0-65535",
        ),
        ("ws://example.com:port", "invalid URL 'ws://example.com:port': Port could not be cast"),
        ("ws://[::1", "invalid URL 'ws://[::1': Invalid IPv6 URL"),
        (
            "ftp://example.com",
            "invalid URL 'ftp://example.com': the scheme must be ws, wss, http or https",
        ),
        ("example.com", "invalid URL 'example.com': the scheme must be ws, wss, http or https"),
        ("ws:///path", "invalid URL 'ws:///path': no host"),
        ("ws://user:pw@example.com", "credentials in the URL are not supported"),
        ("ws://user@example.com", "credentials in the URL are not supported"),
    ],
)
def test_bad_urls_raise(url: object, message: str) -> None:
    with pytest.raises(LocalProtocolError) as info:
        parse_server_url(url)  # type: ignore[arg-type]
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://user:s3cret@host/x",
        "ws://user:s3cret@host:notaport/",
        "http://user:s3cret@",
        "user:s3cret@host",
    ],
)
def test_errors_never_show_credentials(url: str) -> None:
    with pytest.raises(LocalProtocolError) as caught:
        parse_server_url(url)
    assert "s3cret" not in str(caught.value)
    assert "***@" in str(caught.value) or "@" not in str(caught.value)
