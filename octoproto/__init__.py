"""octoproto: a sans-I/O client core for real-time push sockets.

One pure state machine per connection takes bytes and clock ticks and gives
back events, bytes to send, transport commands and its next deadline. Thin
adapters (``octoproto.adapters.trio``, ``.asyncio``, ``.blocking``) bind it
to real I/O. Everything public is re-exported here; the underscore modules
are private.
"""

from __future__ import annotations

from ._commands import Channel, CloseTransport, Command, OpenTransport, SendData
from ._config import (
    OCTOPRINT_RECONNECT_DELAYS,
    ReconnectSchedule,
    Secret,
    SessionConfig,
)
from ._entropy import Entropy, SeededEntropy
from ._errors import (
    CallError,
    CallTimeoutError,
    ConnectionLostError,
    InvalidMessageError,
    LocalProtocolError,
    NotConnectedError,
    SendQueueFullError,
)
from ._events import (
    Authenticated,
    BatchItem,
    BinaryMessage,
    CallFailed,
    CallSucceeded,
    Connected,
    ConnectFailed,
    Disconnected,
    Event,
    HandshakeResponse,
    LimitExceeded,
    LoginFailed,
    LoginSucceeded,
    OperationWarning,
    ProtocolError,
    PushMessage,
    ReauthRequired,
    ReconnectFailed,
    ReconnectScheduled,
    SendFailed,
    TextMessage,
    ThrottleChanged,
    ThroughputWarning,
    as_event,
)
from ._handlers import HandlerFailure, HandlerRegistry
from ._octoprint import AuthState, Endpoint, OctoPrintClient, OctoPrintConfig
from ._plain import WebSocketClient
from ._replay import (
    TRACE_VERSION,
    InvalidTraceError,
    Recorder,
    ReplayMismatch,
    ReplayResult,
    ReplayStep,
    assert_replays,
    check_replay,
    replay,
)
from ._rpc import (
    RpcAuthenticationError,
    RpcClient,
    RpcConfig,
    RpcNotification,
    RpcRestoreFailed,
    RpcSubscriptionError,
    rpc_reconnect_schedule,
)
from ._rpc_wire import MsgpackMissingError, RpcError, RpcValueError
from ._session import TRANSITIONS, SessionEngine, SessionState, Trigger, Usage
from ._socketio import (
    SocketIOClient,
    SocketIOConfig,
    SocketIOConnected,
    SocketIOConnectError,
    SocketIODisconnected,
    SocketIOEvent,
    socketio_reconnect_schedule,
)
from ._throttle import ThrottleSettings

__version__ = "0.1.0.dev0"

__all__ = [
    "OCTOPRINT_RECONNECT_DELAYS",
    "TRACE_VERSION",
    "TRANSITIONS",
    "AuthState",
    "Authenticated",
    "BatchItem",
    "BinaryMessage",
    "CallError",
    "CallFailed",
    "CallSucceeded",
    "CallTimeoutError",
    "Channel",
    "CloseTransport",
    "Command",
    "ConnectFailed",
    "Connected",
    "ConnectionLostError",
    "Disconnected",
    "Endpoint",
    "Entropy",
    "Event",
    "HandlerFailure",
    "HandlerRegistry",
    "HandshakeResponse",
    "InvalidMessageError",
    "InvalidTraceError",
    "LimitExceeded",
    "LocalProtocolError",
    "LoginFailed",
    "LoginSucceeded",
    "MsgpackMissingError",
    "NotConnectedError",
    "OctoPrintClient",
    "OctoPrintConfig",
    "OpenTransport",
    "OperationWarning",
    "ProtocolError",
    "PushMessage",
    "ReauthRequired",
    "ReconnectFailed",
    "ReconnectSchedule",
    "ReconnectScheduled",
    "Recorder",
    "ReplayMismatch",
    "ReplayResult",
    "ReplayStep",
    "RpcAuthenticationError",
    "RpcClient",
    "RpcConfig",
    "RpcError",
    "RpcNotification",
    "RpcRestoreFailed",
    "RpcSubscriptionError",
    "RpcValueError",
    "Secret",
    "SeededEntropy",
    "SendData",
    "SendFailed",
    "SendQueueFullError",
    "SessionConfig",
    "SessionEngine",
    "SessionState",
    "SocketIOClient",
    "SocketIOConfig",
    "SocketIOConnectError",
    "SocketIOConnected",
    "SocketIODisconnected",
    "SocketIOEvent",
    "TextMessage",
    "ThrottleChanged",
    "ThrottleSettings",
    "ThroughputWarning",
    "Trigger",
    "Usage",
    "WebSocketClient",
    "as_event",
    "assert_replays",
    "check_replay",
    "replay",
    "rpc_reconnect_schedule",
    "socketio_reconnect_schedule",
]
