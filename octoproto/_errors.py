"""Errors raised to the caller.

Remote faults never raise: they become events. Only misuse by the caller
(calling an input in a state where it makes no sense, passing a value the
server would choke on) raises, and always a subclass of
:class:`LocalProtocolError`, so ``except LocalProtocolError`` catches every
error the core can raise.
"""

from __future__ import annotations


class LocalProtocolError(Exception):
    """The caller asked the core to do something it cannot do.

    The core's state is unchanged when this is raised: the call had no effect.
    """


class InvalidMessageError(LocalProtocolError, ValueError):
    """An outgoing message failed validation before it was sent.

    OctoPrint drops the whole connection on a malformed ``auth``, ``throttle``
    or ``subscribe`` message, so the core validates every message first and
    refuses it here instead.
    """


class SendQueueFullError(LocalProtocolError):
    """A message could not be queued: the outbound queue is at its limit.

    The message was *not* accepted; nothing was dropped behind the caller's
    back.
    """


class NotConnectedError(LocalProtocolError):
    """A message was sent while the session is closed and will not reconnect."""


class CallError(Exception):
    """A call (an RPC request, a Socket.IO ack) did not get its result.

    Raised by the adapters' ``call`` methods and carried by
    :class:`~octoproto.CallFailed`. Unlike :class:`LocalProtocolError` it is
    not the caller's mistake: the server answered with an error, or did not
    answer. Two errors are equal when their type and arguments are, so
    events holding them compare (and replay) by value.
    """

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.args == self.args

    def __hash__(self) -> int:
        # Not hash(self.args): an RPC error's data may be a dict.
        return hash((type(self), str(self)))


class CallTimeoutError(CallError, TimeoutError):
    """No reply came within the call's timeout ("reply timeout").

    A reply that still comes later is dropped and counted
    (``late_replies``).
    """


class ConnectionLostError(CallError, ConnectionError):
    """The connection dropped while the call was in flight, or the session closed first."""
