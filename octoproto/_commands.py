"""Commands: what the core asks its transport (the adapter) to do.

The core never touches a socket. It asks for transports to be opened, bytes
to be written and transports to be closed, and the adapter reports back
through the core's input methods. A session may use two transports at once:
the push socket itself, and a short-lived HTTP connection for logins
(OctoPrint's ``POST /api/login``). Each command names its :class:`Channel`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Channel(enum.Enum):
    """Which of the session's transports a command or an input is about."""

    #: The push socket (the WebSocket connection).
    SOCKET = "socket"
    #: A short-lived HTTP/1.1 connection to the same server, for logins.
    HTTP = "http"


@dataclass(frozen=True, slots=True)
class OpenTransport:
    """Open a byte stream to ``host:port``, with TLS when ``tls`` is true.

    Report the outcome with ``transport_opened(now, channel=...)`` or
    ``transport_failed(reason, now, channel=...)``. ``server_hostname`` is
    the name to verify the server's certificate against (the URL's host).
    """

    channel: Channel
    host: str
    port: int
    tls: bool
    server_hostname: str | None


@dataclass(frozen=True, slots=True)
class SendData:
    """Write ``data`` to the transport, in order, all of it."""

    channel: Channel
    data: bytes


@dataclass(frozen=True, slots=True)
class CloseTransport:
    """Close the transport. No further input is expected from it."""

    channel: Channel


#: Everything :meth:`next_command` can return.
Command = OpenTransport | SendData | CloseTransport
