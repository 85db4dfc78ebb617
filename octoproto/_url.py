"""Parsing the user's URL into what the transport and the handshake need."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from ._errors import LocalProtocolError

# ws/wss are the WebSocket schemes; http/https are accepted too because users
# copy their OctoPrint address from the browser's address bar.
_SCHEMES = {"ws": False, "http": False, "wss": True, "https": True}


@dataclass(frozen=True, slots=True)
class ServerAddress:
    """Where the server is, as parsed from a ``ws://``/``wss://``/``http(s)://`` URL."""

    tls: bool
    host: str
    port: int
    #: The URL's path (e.g. ``/octoprint`` behind a reverse proxy), ``/`` at least.
    path: str
    #: The URL's query string without the ``?``, or ``""``.
    query: str

    @property
    def host_header(self) -> str:
        """The ``Host`` header: IPv6 literals bracketed, default ports left out."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default_port = 443 if self.tls else 80
        return host if self.port == default_port else f"{host}:{self.port}"

    @property
    def origin(self) -> str:
        """The origin a browser on this server would send (``http(s)://host[:port]``)."""
        return f"{'https' if self.tls else 'http'}://{self.host_header}"

    def target(self, path: str) -> str:
        """A request target for ``path``, with the URL's query string kept."""
        return f"{path}?{self.query}" if self.query else path


def parse_server_url(url: str) -> ServerAddress:
    """Parse ``url``; raise :class:`LocalProtocolError` if it cannot be dialled."""
    if not isinstance(url, str):
        raise LocalProtocolError(f"URL must be a str, not {type(url).__name__}")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise LocalProtocolError(f"invalid URL {_redacted(url)!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise LocalProtocolError(
            f"invalid URL {_redacted(url)!r}: the scheme must be ws, wss, http or https"
        )
    if not parts.hostname:
        raise LocalProtocolError(f"invalid URL {_redacted(url)!r}: no host")
    if parts.username is not None or parts.password is not None:
        # Credentials in a URL end up in logs and shell history: refuse them
        # and point at the config fields meant for them.
        raise LocalProtocolError(
            "credentials in the URL are not supported: use the api_key or"
            " username/password settings"
        )
    tls = _SCHEMES[scheme]
    return ServerAddress(
        tls=tls,
        host=parts.hostname,
        port=port if port is not None else (443 if tls else 80),
        path=parts.path or "/",
        query=parts.query,
    )


def _redacted(url: str) -> str:
    """``url`` fit for an error message: any ``user:password@`` part hidden."""
    scheme, separator, rest = url.strip().partition("://")
    if not separator:
        scheme, rest = "", scheme
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return f"{scheme}{separator}{authority}{slash}{path}"
