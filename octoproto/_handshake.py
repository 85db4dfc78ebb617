"""The WebSocket opening handshake (RFC 6455 §4), driven with h11.

wsproto has a handshake class of its own, but it draws the
``Sec-WebSocket-Key`` nonce from ``os.urandom``; the core must take it from
the injected entropy so that a recorded session replays byte for byte. So
the upgrade request is built here with h11 (through :class:`HttpExchange`),
the response is checked here, and the accepted connection gets a frame codec:
:class:`~octoproto._fastframes.FastFrameCodec`, held to wsproto's parser by a
differential test.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import h11

from ._deflate import BoundedPerMessageDeflate
from ._errors import LocalProtocolError
from ._fastframes import FastFrameCodec
from ._frames import FrameCodec, WsprotoFrameCodec
from ._http import HttpExchange, HttpResponse

_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# Headers the handshake sets itself; the user may not override them.
_RESERVED_HEADERS = frozenset(
    {
        "host",
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
        "origin",
        "content-length",
        "transfer-encoding",
    }
)


class HandshakeRejected(Exception):
    """The server did not accept the upgrade; ``response`` is what it said instead."""

    def __init__(self, detail: str, response: HttpResponse) -> None:
        super().__init__(detail)
        self.detail = detail
        self.response = response


@dataclass(frozen=True, slots=True)
class HandshakeResult:
    """An accepted upgrade: the response, the negotiated terms and a frame codec."""

    response: HttpResponse
    subprotocol: str | None
    extensions: tuple[str, ...]
    codec: FrameCodec


def check_user_headers(headers: Sequence[tuple[str, str]]) -> None:
    """Refuse extra headers that h11 cannot send or that the handshake owns."""
    for name, value in headers:
        if name.lower() in _RESERVED_HEADERS:
            raise LocalProtocolError(f"header {name!r} is set by the handshake itself")
        try:
            h11.Request(method="GET", target="/", headers=[("Host", "x"), (name, value)])
        except h11.LocalProtocolError as exc:
            raise LocalProtocolError(f"invalid header {name!r}: {exc}") from None


class ClientHandshake:
    """One upgrade request and the validation of its response."""

    #: The frame codec an accepted upgrade gets. Deliberately not a setting
    #: (users get one decoder); tests put the reference here to run a session on it.
    _codec_class: ClassVar[type[FastFrameCodec | WsprotoFrameCodec]] = FastFrameCodec

    def __init__(
        self,
        *,
        host_header: str,
        target: str,
        headers: Sequence[tuple[str, str]],
        subprotocols: Sequence[str],
        origin: str | None,
        compression: bool,
        max_message_size: int,
        max_response_size: int,
        entropy: Callable[[int], bytes],
    ) -> None:
        self._entropy = entropy
        self._max_message_size = max_message_size
        self._subprotocols = tuple(subprotocols)
        self._deflate = BoundedPerMessageDeflate(max_message_size) if compression else None
        self._key = base64.b64encode(entropy(16))
        request_headers = [
            ("Host", host_header),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", self._key.decode("ascii")),
            ("Sec-WebSocket-Version", "13"),
        ]
        if origin is not None:
            request_headers.append(("Origin", origin))
        if self._subprotocols:
            request_headers.append(("Sec-WebSocket-Protocol", ", ".join(self._subprotocols)))
        if self._deflate is not None:
            offer = f"{self._deflate.name}; {self._deflate.offer()}"
            request_headers.append(("Sec-WebSocket-Extensions", offer))
        request_headers.extend(headers)
        self._exchange = HttpExchange(
            "GET", target, request_headers, max_response_size=max_response_size
        )
        self.request_bytes = self._exchange.request_bytes

    def receive_data(self, data: bytes) -> HandshakeResult | None:
        """Feed response bytes; the result once the response head is complete.

        Raises :class:`~octoproto._http.HttpFault` for a malformed response
        and :class:`HandshakeRejected` for a well-formed refusal.
        """
        response = self._exchange.receive_data(data)
        return None if response is None else self._accept(response)

    def receive_eof(self) -> HandshakeResult:
        """The server closed during the handshake."""
        return self._accept(self._exchange.receive_eof())

    def _accept(self, response: HttpResponse) -> HandshakeResult:
        if response.status_code != 101:
            raise HandshakeRejected(
                f"the server answered the upgrade with {response.status_code}"
                f" {response.reason}".rstrip(),
                response,
            )
        if (response.header("upgrade") or "").lower() != "websocket":
            raise HandshakeRejected("101 response without 'Upgrade: websocket'", response)
        connection = {
            token.strip().lower() for token in (response.header("connection") or "").split(",")
        }
        if "upgrade" not in connection:
            raise HandshakeRejected("101 response without 'Connection: Upgrade'", response)
        expected = base64.b64encode(hashlib.sha1(self._key + _ACCEPT_GUID).digest()).decode()
        if response.header("sec-websocket-accept") != expected:
            raise HandshakeRejected("wrong Sec-WebSocket-Accept in the 101 response", response)
        subprotocol = response.header("sec-websocket-protocol")
        if subprotocol is not None and subprotocol not in self._subprotocols:
            raise HandshakeRejected(
                f"the server chose a subprotocol we did not offer: {subprotocol!r}", response
            )
        extensions = self._negotiate_extensions(response)
        codec = self._codec_class(
            self._entropy,
            self._max_message_size,
            self._deflate if extensions else None,
        )
        return HandshakeResult(response, subprotocol, extensions, codec)

    def _negotiate_extensions(self, response: HttpResponse) -> tuple[str, ...]:
        accepted = [
            item.strip()
            for item in (response.header("sec-websocket-extensions") or "").split(",")
            if item.strip()
        ]
        if not accepted:
            return ()
        if len(accepted) > 1 or self._deflate is None:
            raise HandshakeRejected(
                f"the server accepted extensions we did not offer: {accepted}", response
            )
        name = accepted[0].split(";", 1)[0].strip()
        if name != self._deflate.name:
            raise HandshakeRejected(
                f"the server accepted an extension we did not offer: {name!r}", response
            )
        try:
            self._deflate.finalize(accepted[0])
        except ValueError as exc:
            raise HandshakeRejected(
                f"unusable permessage-deflate parameters: {exc}", response
            ) from None
        return (name,)
