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
