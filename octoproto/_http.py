"""One HTTP/1.1 request and its response, driven with h11.

Two things in the core speak HTTP: the WebSocket upgrade (answered by ``101
Switching Protocols``, after which the same bytes carry frames) and dialect
requests such as OctoPrint's ``POST /api/login``. Both go through
:class:`HttpExchange`, which bounds the response size and turns everything
the server can get wrong into :class:`HttpFault` (a remote fault, which the
session reports as an event) rather than letting h11's exceptions escape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import h11

from ._events import HandshakeResponse


class HttpFault(Exception):
    """The server's HTTP response was malformed, too large or cut short.

    ``size`` is set when it was too large: the bytes it had reached, past the limit.
    """

    def __init__(self, detail: str, size: int | None = None) -> None:
        super().__init__(detail)
        self.size = size


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A complete response: status line, lower-cased headers, body.

    For a ``101`` upgrade, ``body`` is empty and ``trailing_data`` holds the
    bytes that followed the response head (the first WebSocket frames).
    """

    status_code: int
    reason: str
    http_version: str
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""
    trailing_data: bytes = b""

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (lower-case); repeated fields are joined."""
        values = [value for key, value in self.headers if key == name]
        return ", ".join(values) if values else None

    def header_values(self, name: str) -> list[str]:
        """Every value of header ``name`` (lower-case), e.g. each ``set-cookie``."""
        return [value for key, value in self.headers if key == name]

    def as_handshake(
        self, subprotocol: str | None = None, extensions: tuple[str, ...] = ()
    ) -> HandshakeResponse:
        """The public view of this response, as carried by events."""
        return HandshakeResponse(
            status_code=self.status_code,
            reason=self.reason,
            http_version=self.http_version,
            headers=self.headers,
            subprotocol=subprotocol,
            extensions=extensions,
            body=self.body,
        )


class HttpExchange:
    """Send one request, parse one response.

    A ``101`` (the WebSocket handshake's answer) ends the exchange at once,
    handing over the bytes that followed it.
    """

    def __init__(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]],
        body: bytes = b"",
        *,
        max_response_size: int,
    ) -> None:
        self._max_response_size = max_response_size
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_response_size)
        all_headers = list(headers)
        if body:
            all_headers.append(("Content-Length", str(len(body))))
        request = h11.Request(method=method, target=target, headers=all_headers)
        self.request_bytes = (
            self._h11.send(request)
            + (self._h11.send(h11.Data(data=body)) if body else b"")
            + self._h11.send(h11.EndOfMessage())
        )
        self._head: h11.Response | None = None
        self._body = bytearray()
        self._received = 0  # response bytes fed so far

    def receive_data(self, data: bytes) -> HttpResponse | None:
        """Feed response bytes; return the response once complete."""
        if data:  # h11 takes b"" for EOF; here that is receive_eof()'s job
            self._received += len(data)
            self._h11.receive_data(data)
        return self._drain()

    def receive_eof(self) -> HttpResponse:
        """The server closed: return the response if it is complete, else fail."""
        self._h11.receive_data(b"")
        response = self._drain()
        # After EOF h11 never asks for more data: _drain returned or raised.
        assert response is not None
        return response

    def _drain(self) -> HttpResponse | None:
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                if exc.error_status_hint == 431:  # h11's bound on a head still incomplete
                    raise self._too_large("head", self._received) from None
                raise HttpFault(f"malformed HTTP response: {exc}") from None
            if isinstance(event, h11.InformationalResponse | h11.Response):
                # h11 bounds only a head still incomplete; one that came whole
                # in a single chunk is measured here.
                head_size = self._received - len(self._h11.trailing_data[0])
                if head_size > self._max_response_size:
                    raise self._too_large("head", head_size)
            if event is h11.NEED_DATA:
                return None
            if event is h11.PAUSED:
                # Only a 101 pauses a client connection: the protocol switched.
                assert self._head is not None
                trailing, _closed = self._h11.trailing_data
                return self._response(trailing_data=bytes(trailing))
            if isinstance(event, h11.InformationalResponse):
                if event.status_code == 101:
                    self._head = event  # type: ignore[assignment]
                continue  # 100 Continue and friends carry nothing for us
            if isinstance(event, h11.Response):
                self._head = event
            elif isinstance(event, h11.Data):
                self._body += event.data
                if len(self._body) > self._max_response_size:
                    raise self._too_large("body", len(self._body))
            elif isinstance(event, h11.EndOfMessage):
                return self._response()
            else:  # ConnectionClosed before the end of the message
                raise HttpFault("the server closed the connection before the response was complete")

    def _too_large(self, part: str, size: int) -> HttpFault:
        return HttpFault(f"HTTP response {part} exceeds {self._max_response_size} bytes", size)

    def _response(self, trailing_data: bytes = b"") -> HttpResponse:
        head = self._head
        assert head is not None
        return HttpResponse(
            status_code=head.status_code,
            reason=head.reason.decode("latin-1"),
            http_version=head.http_version.decode("ascii"),
            headers=tuple(
                (name.decode("latin-1"), value.decode("latin-1")) for name, value in head.headers
            ),
            body=bytes(self._body),
            trailing_data=trailing_data,
        )
