"""A toy dialect with calls, for testing the request/response machinery in the core and adapters.

``call(payload)`` sends ``"<id> <payload>"`` as text once the session is up
(queued until then); the server answers ``"ok <id> <result>"`` or ``"err
<id> <message>"``. Real dialects (RPC, Socket.IO) use the same engine
services; this one has nothing else, so a failure points at the machinery.
"""

from __future__ import annotations

from octoproto import CallError, SessionConfig, SessionEngine
from octoproto._calls import CallMatch


class Refused(CallError):
    """The toy server's error answer."""


class ToyCalls(SessionEngine):
    """A dialect with calls: each one a text message, queued until the socket is up."""

    def __init__(self, config: SessionConfig) -> None:
        super().__init__(config)
        self.waiting: list[tuple[int, str]] = []
        self.expired: list[int] = []
        self.matches: list[CallMatch] = []

    def call(self, payload: str, now: float, *, timeout: float | None = None) -> int:
        self._advance(now)
        call_id = self._open_call(timeout, now)
        if self.is_open:
            self._put_on_wire(call_id, payload)
        else:
            self.waiting.append((call_id, payload))
        return call_id

    def refuse(self, call_id: int, now: float) -> None:
        self._advance(now)
        self._fail_call(call_id, Refused("refused locally"))

    def _put_on_wire(self, call_id: int, payload: str) -> None:
        self._bind_call(call_id, str(call_id))
        self._write_message(f"{call_id} {payload}")

    def _on_websocket_open(self, now: float) -> None:
        super()._on_websocket_open(now)
        waiting, self.waiting = self.waiting, []
        for call_id, payload in waiting:
            if self._call_pending(call_id):
                self._put_on_wire(call_id, payload)

    def _on_call_expired(self, call_id: int, now: float) -> None:
        self.expired.append(call_id)

    def _on_websocket_message(self, data: str | bytes, now: float) -> None:
        assert isinstance(data, str)
        verdict, key, rest = data.split(" ", 2)
        if verdict == "ok":
            match = self._settle_call(key, result=rest)
        else:
            match = self._settle_call(key, error=Refused(rest))
        self.matches.append(match)
        if match is CallMatch.UNKNOWN:
            self._protocol_error("toy", f"reply to no call: {key}", now, None)
