"""The OctoPrint push socket dialect.

What the server expects and sends is in ``shared/protocols.md`` §1; what this
module decides on top of the session engine:

* **Endpoint.** The SockJS-framed websocket (``<base>/sockjs/<server>/
  <session>/websocket``, fresh random ids from the injected entropy for every
  connection) by default, or the raw ``<base>/sockjs/websocket``.
* **Ready.** The session is up at the server's ``connected`` message, not at
  the end of the WebSocket handshake: the connect timeout covers both.
* **Login and auth.** After every ``connected``: the subscription and the
  throttle factor are (re-)sent (OctoPrint's own client forgets the factor),
  then, with credentials, ``POST /api/login`` (passive with an API key, or
  active with user and password after fetching a CSRF cookie) and
  ``{"auth": "user:session"}``. The first ``history`` after ``auth`` means
  authenticated. User messages sent meanwhile wait in the bounded queue.
* **Re-auth.** ``reauthRequired`` with a reason in ``relogin_reasons`` logs
  in again; wrong credentials (403) stop automatic logins until
  :meth:`OctoPrintClient.login` is called, because OctoPrint rate-limits
  failed logins.
* **Throttle.** OctoPrint's client algorithm (see :mod:`._throttle`), fed by
  :meth:`OctoPrintClient.message_processed`.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie

from ._config import Secret, SessionConfig, as_secret
from ._errors import InvalidMessageError, LocalProtocolError
from ._events import (
    Authenticated,
    LoginFailed,
    LoginSucceeded,
    PushMessage,
    ReauthRequired,
    ThrottleChanged,
)
from ._frames import CLOSE_NORMAL, CLOSE_PROTOCOL_ERROR
from ._handlers import HandlerRegistry
from ._http import HttpResponse
from ._octoprint_wire import (
    OctoPrintWireError,
    encode_auth,
    encode_message,
    encode_subscribe,
    encode_throttle,
    parse_json_text,
    split_push_message,
)
from ._session import SessionEngine, SessionState
from ._sockjs import (
    SockJSClose,
    SockJSFramingError,
    SockJSMessages,
    SockJSOpen,
    encode_messages,
    parse_frame,
    random_session_ids,
    raw_path,
    session_path,
)
from ._throttle import RateTooHigh, ThrottleController, ThrottleSettings
from ._util import join_path

_LOGIN_RETRY_TIMER = "octoprint-login-retry"
_AUTH_GRACE_TIMER = "octoprint-auth-grace"
_HTTP_TOO_MANY_REQUESTS = 429


class Endpoint(enum.Enum):
    """Which of OctoPrint's websocket endpoints to use."""

    #: ``/sockjs/<server>/<session>/websocket``: SockJS framing, server heartbeats.
    SOCKJS = "sockjs"
    #: ``/sockjs/websocket``: one JSON object per text frame, no heartbeats.
    RAW = "raw"


class AuthState(enum.Enum):
    """Where the socket is with authentication."""

    ANONYMOUS = "anonymous"
    LOGGING_IN = "logging in"
    AUTHENTICATING = "authenticating"
    AUTHENTICATED = "authenticated"


@dataclass(frozen=True, kw_only=True)
class OctoPrintConfig(SessionConfig):
    """Settings for an OctoPrint push socket; see :class:`SessionConfig` for the rest.

    Give ``api_key`` for a passive login, or ``username`` and ``password``
    for an active one, or neither to stay anonymous (then only ``connected``
    arrives) or to call :meth:`OctoPrintClient.send_auth` yourself.
    """

    #: Which websocket endpoint to use: SockJS-framed (default) or raw.
    endpoint: Endpoint = Endpoint.SOCKJS
    #: An API key (or application key) for a passive login; never shown or logged.
    api_key: Secret | str | None = field(default=None, repr=False)
    #: The user for an active login (with ``password``).
    username: str | None = None
    #: The password for an active login; never shown or logged.
    password: Secret | str | None = field(default=None, repr=False)
    #: Ask OctoPrint for a long-lived login (active login only).
    remember: bool = False
    #: ``reauthRequired`` reasons after which the core logs in again by itself.
    relogin_reasons: Collection[str] = frozenset({"stale", "modified"})
    #: Seconds allowed for each login request.
    login_timeout: float = 10.0
    #: Seconds before retrying a login that failed for a reason other than credentials.
    login_retry_delay: float = 10.0
    #: The throttle controller's settings.
    throttle: ThrottleSettings = field(default_factory=ThrottleSettings)
    #: Let the core change the throttle factor from measured handler times.
    auto_throttle: bool = True
    #: The subscription to send after every ``connected`` (``None``: none).
    subscription: Mapping[str, object] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("login_timeout", "login_retry_delay"):
            # Zero or less would arm the HTTP and retry timers at ``now`` and
            # spin handle_timer() for ever (request, time out, retry, ...).
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise LocalProtocolError(f"{name} must be a positive number, not {value!r}")
        object.__setattr__(self, "endpoint", Endpoint(self.endpoint))
        object.__setattr__(self, "api_key", as_secret(self.api_key))
        object.__setattr__(self, "password", as_secret(self.password))
        object.__setattr__(self, "relogin_reasons", frozenset(self.relogin_reasons))
        if self.api_key is not None and (self.username or self.password):
            raise LocalProtocolError("give either api_key or username/password, not both")
        if (self.username is None) != (self.password is None):
            raise LocalProtocolError("username and password go together")
        if self.username is not None and (not self.username or ":" in self.username):
            raise LocalProtocolError("an OctoPrint username is non-empty and has no ':'")
        if self.subscription is not None:
            encode_subscribe(self.subscription)  # refuse a bad one here, not at connect

    @property
    def has_credentials(self) -> bool:
        """Whether the core can log in by itself."""
        return self.api_key is not None or self.username is not None


class OctoPrintClient(SessionEngine):
    """A client of OctoPrint's push socket (OctoPrint's ``OctoPrintSocketClient``).

    Messages arrive as :class:`~octoproto.PushMessage` events. To run
    handlers (per type and ``"*"``, the JS client's ``onMessage``), use
    :attr:`handlers` and report how long they took with
    :meth:`message_processed`, which drives the throttle; the adapters do
    both for you.
    """

    def __init__(self, config: OctoPrintConfig) -> None:
        super().__init__(config)
        self._octo = config
        #: Handlers by message type; ``"*"`` runs for every message, first.
        self.handlers: HandlerRegistry[PushMessage] = HandlerRegistry()
        self._throttle = ThrottleController(config.throttle)
        self._subscription: str | None = None
        self._state_subscribed = True
        if config.subscription is not None:
            self._remember_subscription(config.subscription)
        self._auth_state = AuthState.ANONYMOUS
        self._user: str | None = None
        self._session: Secret | None = None
        self._login_blocked = False
        self._csrf_cookies: list[tuple[str, str]] | None = None
        # Whether this socket got its history: OctoPrint sends one per socket
        # (seen on 1.11.8), so a later auth is confirmed by the grace period.
        self._history_seen = False

    # ------------------------------------------------------------------
    # Public surface

    @property
    def auth_state(self) -> AuthState:
        """Where the socket is with authentication."""
        return self._auth_state

    @property
    def user(self) -> str | None:
        """The user the socket is (being) authenticated as."""
        return self._user

    @property
    def throttle_factor(self) -> int:
        """The current throttle factor (``current`` at most every factor × 0.5 s)."""
        return self._throttle.factor

    def send_message(self, message_type: str, payload: object, *, now: float | None = None) -> None:
        """Send ``{message_type: payload}`` (the JS client's ``sendMessage``).

        Validated first, so the server is never made to drop the connection.
        ``auth``, ``throttle`` and ``subscribe`` are routed to
        :meth:`send_auth`, :meth:`set_throttle` and :meth:`subscribe`, which
        also remember them for the next connection. ``now``: as for
        :meth:`send_auth`.
        """
        if now is not None:
            self._advance(now)
        if message_type == "auth":
            if not isinstance(payload, str):
                raise InvalidMessageError("an auth payload is a 'user:session' string")
            user, _, session = payload.partition(":")
            self.send_auth(user, session)
        elif message_type == "throttle":
            self.set_throttle(payload)  # type: ignore[arg-type]
        elif message_type == "subscribe":
            self.subscribe(payload)  # type: ignore[arg-type]
        else:
            self._send_user_message(encode_message(message_type, payload))

    def send_auth(self, user: str, session: str | Secret, *, now: float | None = None) -> None:
        """Authenticate the socket with a session from ``POST /api/login`` (``sendAuth``).

        The session is kept (as a :class:`~octoproto.Secret`) and sent again
        after every reconnect. Pass ``now`` (adapters do): the auth's grace
        period starts then; without it, it starts at the last input's ``now``,
        which may be long past, and the grace is over at once.
        """
        if now is not None:
            self._advance(now)
        secret = as_secret(session)
        if secret is None:
            raise InvalidMessageError("auth: the session must be a non-empty str, got NoneType")
        encode_auth(user, secret.reveal())  # validate before keeping anything
        self._user, self._session = user, secret
        if self._socket_ready():
            self._send_auth()

    def subscribe(self, subscription: Mapping[str, object]) -> None:
        """Replace the subscription (OctoPrint ≥ 1.8); re-sent after every reconnect."""
        text = self._remember_subscription(subscription)
        if self._socket_ready():
            self._write_message(text)

    def set_throttle(self, factor: int) -> None:
        """Set the throttle factor outright (``current`` at most every factor × base)."""
        self._change_rate(lambda: self._throttle.set_factor(factor))

    def increase_rate(self) -> None:
        """Ask for updates more often: factor − 1 (nothing at the minimum)."""
        self._change_rate(self._throttle.increase_rate)

    def decrease_rate(self) -> None:
        """Ask for updates less often: factor + 1 (nothing at the maximum)."""
        self._change_rate(self._throttle.decrease_rate)

    def on_rate_too_high(self, measured: float, maximum: float) -> None:
        """Handlers took longer than the update interval; by default :meth:`decrease_rate`.

        Replace it (subclass, or assign a callable to the instance) to decide
        yourself, as with the JS client's ``onRateTooHigh``.
        """
        self.decrease_rate()

    def on_rate_too_low(self, measured: float, minimum: float) -> None:
        """Handlers are fast enough for a higher rate; by default :meth:`increase_rate`."""
        self.increase_rate()

    def message_processed(self, seconds: float, now: float) -> None:
        """Report how long the handlers of one message took (the throttle's input)."""
        self._advance(now)
        decision = self._throttle.record(seconds)
        if decision is None or not self._octo.auto_throttle:
            return
        if isinstance(decision, RateTooHigh):
            self.on_rate_too_high(decision.measured, decision.maximum)
        else:
            self.on_rate_too_low(decision.measured, decision.minimum)

    def login(self, now: float) -> None:
        """Log in (again) with the configured credentials, e.g. after a 403."""
        self._advance(now)
        if not self._octo.has_credentials:
            raise LocalProtocolError("no credentials configured: set api_key or username/password")
        self._login_blocked = False
        if self._socket_ready() and self._auth_state is not AuthState.LOGGING_IN:
            self._start_login(now)

    # ------------------------------------------------------------------
    # Engine hooks

    def _handshake_target(self) -> str:
        base = self._address_info.path
        if self._octo.endpoint is Endpoint.RAW:
            return raw_path(base)
        server_id, session_id = random_session_ids(self._config.entropy)
        return session_path(base, server_id, session_id)

    def _on_websocket_open(self, now: float) -> None:
        pass  # the session is up at the ``connected`` message, not before

    def _wrap_outgoing(self, message: str | bytes) -> str | bytes:
        if self._octo.endpoint is Endpoint.SOCKJS:
            return encode_messages([message])  # type: ignore[list-item]
        return message

    def _on_websocket_message(self, data: str | bytes, now: float) -> None:
        if isinstance(data, bytes):
            self._protocol_error("octoprint", "unexpected binary message", now, None)
            return
        if self._octo.endpoint is Endpoint.RAW:
            try:
                value = parse_json_text(data)
            except OctoPrintWireError as exc:
                self._protocol_error("json", str(exc), now, None)
                return
            self._receive_value(value, now)
            return
        try:
            frame = parse_frame(data)
        except SockJSFramingError as exc:
            # Not SockJS at all: we are out of step with the server.
            self._protocol_error("sockjs", str(exc), now, CLOSE_PROTOCOL_ERROR)
            return
        if isinstance(frame, SockJSMessages):
            # Nothing a message does ends the connection, so the whole batch
            # is delivered.
            for value in frame.messages:
                self._receive_value(value, now)
        elif isinstance(frame, SockJSClose):
            self._close_socket(CLOSE_NORMAL, "")
            self._lose(frame.code, frame.reason, now)
        elif isinstance(frame, SockJSOpen) and self.state is SessionState.OPEN:
            self._protocol_error("sockjs", "a second open frame", now, None)
        # A heartbeat needs nothing: receiving it re-armed the dead-link timer.

    def _on_connection_lost(self, now: float) -> None:
        self._auth_state = AuthState.ANONYMOUS
        self._history_seen = False
        self._csrf_cookies = None

    def _on_timer(self, name: str, now: float) -> None:
        if name == _LOGIN_RETRY_TIMER:
            self._start_login(now)
        else:  # _AUTH_GRACE_TIMER: no reauthRequired came back, so the auth held
            self._authenticated()

    def _on_http_response(self, response: HttpResponse, now: float) -> None:
        if self._csrf_cookies is None and self._octo.username is not None:
            if response.status_code != 200:
                reason = f"GET /login answered {response.status_code}"
                self._login_failed(response.status_code, reason, now, retry=True)
                return
            self._csrf_cookies = _cookies(response)
            self._post_login(now)
            return
        status = response.status_code
        if status == 200:
            self._login_succeeded(response.body, now)
        elif status == _HTTP_TOO_MANY_REQUESTS:
            self._login_failed(status, "rate limited by the server", now, retry=True)
        elif 400 <= status < 500:
            self._login_blocked = True
            # OctoPrint (1.11.8) takes an API key it does not know for no key
            # at all, and refuses the request for want of a CSRF token (400).
            wrong_key = status == 400 and b"CSRF" in response.body and self._octo.api_key
            if status == 403 or wrong_key:
                reason = "wrong credentials"
            else:
                reason = f"refused: {response.reason}"
            self._login_failed(status, reason, now, retry=False)
        else:
            self._login_failed(status, f"server error: {status} {response.reason}", now, retry=True)

    def _on_http_failed(self, reason: str, now: float) -> None:
        self._login_failed(0, reason, now, retry=True)

    # ------------------------------------------------------------------
    # Internals

    def _socket_ready(self) -> bool:
        return self.state is SessionState.OPEN

    def _receive_value(self, value: object, now: float) -> None:
        try:
            pairs = split_push_message(value)
        except OctoPrintWireError as exc:
            self._protocol_error("octoprint", str(exc), now, None)
            return
        for message_type, payload in pairs:
            if message_type == "connected" and self.state is SessionState.OPENING:
                self._on_connected(now)
            elif message_type == "reauthRequired":
                self._on_reauth_required(payload, now)
            elif message_type == "history":
                self._history_seen = True
                if self._auth_state is AuthState.AUTHENTICATING:
                    self._authenticated()
            self._emit(PushMessage(message_type, payload))

    def _on_connected(self, now: float) -> None:
        self._session_ready(now)
        # What the server forgot with the old connection, in the order it
        # wants it: subscription before auth, then the throttle factor.
        if self._subscription is not None:
            self._write_message(self._subscription)
        if self._throttle.factor != 1:
            self._write_message(encode_throttle(self._throttle.factor))
        if self._octo.has_credentials and not self._login_blocked:
            self._start_login(now)
        elif self._session is not None:
            self._send_auth()
        else:
            self._accept_user_messages()

    def _on_reauth_required(self, payload: object, now: float) -> None:
        reason = payload.get("reason") if isinstance(payload, dict) else None
        reason = reason if isinstance(reason, str) else "unknown"
        relogin = (
            reason in self._octo.relogin_reasons
            and self._octo.has_credentials
            and not self._login_blocked
            and self._auth_state is not AuthState.LOGGING_IN
        )
        self._emit(ReauthRequired(reason, relogin))
        if reason == "modified":
            # OctoPrint keeps a modified user's socket authenticated: this
            # refutes no auth, so a grace period under way runs on (clearing
            # it would leave the auth unconfirmed for good).
            if relogin:
                self._clear_timer(_AUTH_GRACE_TIMER)
                self._start_login(now)
            return
        self._clear_timer(_AUTH_GRACE_TIMER)
        # Any other reason leaves the socket anonymous and the session dead:
        # never send it again.
        self._user = self._session = None
        self._auth_state = AuthState.ANONYMOUS
        if relogin:
            self._start_login(now)
        else:
            # No login is coming: what the user queued goes out anonymously.
            self._accept_user_messages()

    def _start_login(self, now: float) -> None:
        # This login replaces a pending retry, and the auth it ends in is
        # confirmed afresh (no grace period may fire in the middle of it).
        self._clear_timer(_LOGIN_RETRY_TIMER)
        self._clear_timer(_AUTH_GRACE_TIMER)
        self._auth_state = AuthState.LOGGING_IN
        self._cancel_http()
        if self._octo.username is not None:
            # Active logins need OctoPrint's CSRF cookie first (GET /login).
            self._csrf_cookies = None
            self._start_http(
                "GET",
                join_path(self._address_info.path, "login"),
                [],
                b"",
                now=now,
                timeout=self._octo.login_timeout,
            )
            return
        api_key = as_secret(self._octo.api_key)
        assert api_key is not None
        self._start_http(
            "POST",
            join_path(self._address_info.path, "api", "login"),
            [("Content-Type", "application/json"), ("X-Api-Key", api_key.reveal())],
            b'{"passive":true}',
            now=now,
            timeout=self._octo.login_timeout,
        )

    def _post_login(self, now: float) -> None:
        password = as_secret(self._octo.password)
        assert password is not None and self._csrf_cookies is not None
        body = json.dumps(
            {
                "user": self._octo.username,
                "pass": password.reveal(),
                "remember": self._octo.remember,
            }
        ).encode()
        headers = [("Content-Type", "application/json")]
        if self._csrf_cookies:
            headers.append(("Cookie", "; ".join(f"{k}={v}" for k, v in self._csrf_cookies)))
            for name, value in self._csrf_cookies:
                if name.startswith("csrf_token"):
                    headers.append(("X-CSRF-Token", value))
        self._start_http(
            "POST",
            join_path(self._address_info.path, "api", "login"),
            headers,
            body,
            now=now,
            timeout=self._octo.login_timeout,
        )

    def _login_succeeded(self, body: bytes, now: float) -> None:
        try:
            record = json.loads(body)
        except (ValueError, RecursionError):
            record = None
        name = record.get("name") if isinstance(record, dict) else None
        session = record.get("session") if isinstance(record, dict) else None
        if not isinstance(name, str) or not isinstance(session, str) or not session:
            self._login_failed(200, "the login response carries no session", now, retry=True)
            return
        mechanism = record.get("_login_mechanism") if isinstance(record, dict) else None
        self._emit(LoginSucceeded(name, mechanism if isinstance(mechanism, str) else "unknown"))
        try:
            encode_auth(name, session)
        except LocalProtocolError:
            self._login_blocked = True  # the same account would fail the same way again
            self._login_failed(
                200, "the server's user name cannot authenticate a socket", now, retry=False
            )
            return
        self._user, self._session = name, Secret(session)
        self._send_auth()

    def _login_failed(self, status: int, reason: str, now: float, *, retry: bool) -> None:
        retry_in = self._octo.login_retry_delay if retry else None
        self._auth_state = AuthState.ANONYMOUS
        self._emit(LoginFailed(status, reason, retry_in))
        if retry_in is not None:
            self._set_timer(_LOGIN_RETRY_TIMER, now + retry_in)
        # Whatever the user queued goes out anonymously rather than waiting
        # for a login that may never come.
        self._accept_user_messages()

    def _send_auth(self) -> None:
        assert self._user is not None and self._session is not None
        self._write_message(encode_auth(self._user, self._session.reveal()))
        self._auth_state = AuthState.AUTHENTICATING
        if self._history_seen or not self._state_subscribed:
            # No history will confirm it; a reauthRequired within the grace
            # period would refute it.
            self._set_timer(_AUTH_GRACE_TIMER, self._now + 1.0)

    def _remember_subscription(self, subscription: Mapping[str, object]) -> str:
        self._subscription = encode_subscribe(subscription)
        # In subscription mode a missing key means "nothing": without state
        # no history comes to confirm an auth.
        self._state_subscribed = subscription.get("state", False) is not False
        return self._subscription

    def _authenticated(self) -> None:
        self._auth_state = AuthState.AUTHENTICATED
        self._clear_timer(_AUTH_GRACE_TIMER)
        assert self._user is not None
        self._emit(Authenticated(self._user))
        self._accept_user_messages()

    def _change_rate(self, change: Callable[[], bool]) -> None:
        previous = self._throttle.factor
        if change():
            self._emit(ThrottleChanged(self._throttle.factor, previous))
            if self._socket_ready():
                self._write_message(encode_throttle(self._throttle.factor))


def _cookies(response: HttpResponse) -> list[tuple[str, str]]:
    """The name=value pairs of every ``Set-Cookie`` in the response."""
    pairs: list[tuple[str, str]] = []
    for header in response.header_values("set-cookie"):
        cookie: SimpleCookie = SimpleCookie()
        try:
            cookie.load(header)
        except CookieError:
            continue
        pairs.extend((name, morsel.value) for name, morsel in cookie.items())
    return pairs
