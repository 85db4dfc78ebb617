"""The plain WebSocket dialect, with Qore WebSocketClient's surface."""

from __future__ import annotations

from ._config import SessionConfig
from ._errors import LocalProtocolError
from ._frames import CLOSE_GOING_AWAY
from ._session import SessionEngine


class WebSocketClient(SessionEngine):
    """A plain WebSocket client: text and binary messages, nothing on top.

    Everything about the connection (reconnect schedule, timers, limits,
    usage statistics and warnings) is the shared session engine's. Like
    Qore's ``disconnect()``, the default close code is 1001 (going away).
    """

    default_close_code = CLOSE_GOING_AWAY

    def __init__(self, config: SessionConfig) -> None:
        super().__init__(config)

    def send(self, message: str | bytes | bytearray | memoryview) -> None:
        """Send a text (``str``) or binary (``bytes``) message.

        While the link is down the message is queued (bounded) and sent after
        the next successful open; when it cannot be, the call raises
        (:class:`~octoproto.SendQueueFullError`,
        :class:`~octoproto.NotConnectedError`) or, if the session gives up
        later, a :class:`~octoproto.SendFailed` event hands it back.
        """
        if not isinstance(message, (str, bytes, bytearray, memoryview)):
            raise LocalProtocolError(f"a message is str or bytes, not {type(message).__name__}")
        payload = message if isinstance(message, str) else bytes(message)
        if len(payload) > self._config.max_message_size:
            raise LocalProtocolError(f"message of {len(payload)} bytes exceeds max_message_size")
        self._send_user_message(payload)

    def _on_websocket_messages(self, messages: list[str | bytes], now: float) -> None:
        # Kept as the bare payloads: next_event() makes the TextMessage or
        # BinaryMessage, next_batch() hands them over as they are.
        self._events.extend(messages)
