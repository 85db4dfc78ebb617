"""Calls waiting for their reply: RPC requests, Socket.IO acks.

A dialect's request/response layer is the same everywhere: each call gets an
id the user holds, may have a deadline, goes on the wire under a key of the
dialect's choosing (an RPC request id, a Socket.IO namespace and ack id),
and ends exactly once: with its reply, its timeout, or the loss of the
connection it was sent on. :class:`CallTable` keeps that bookkeeping;
:class:`~octoproto.SessionEngine` turns its outcomes into
:class:`~octoproto.CallSucceeded` / :class:`~octoproto.CallFailed` events and
runs the deadlines on one engine timer.
"""

from __future__ import annotations

import enum
import heapq
from collections import OrderedDict
from collections.abc import Hashable

#: How many keys of calls that ended without their reply are remembered, so
#: that a reply arriving after the timeout is told from one nobody asked for.
REMEMBERED_KEYS = 1024


class CallMatch(enum.Enum):
    """What a reply matched (:meth:`CallTable.settle`)."""

    #: The reply of a pending call: the call is over.
    SETTLED = "settled"
    #: The reply of a call that already timed out or failed: dropped, counted.
    LATE = "late"
    #: No call was ever sent under that key on this connection.
    UNKNOWN = "unknown"


class CallTable:
    """The pending calls of one session: ids, deadlines, wire keys.

    A call is *waiting* from :meth:`open` until :meth:`bind` puts it on the
    wire under a key, and *in flight* from then on. Ids count from 1 and
    never repeat. Deadlines live in a heap with lazy deletion: a call that
    ends early leaves its entry behind (each call has at most one), skipped
    when it comes up and swept when stale entries outnumber live ones.
    """

    def __init__(self) -> None:
        self._last_id = 0
        #: Every pending call (waiting or in flight) and its deadline.
        self._deadlines: dict[int, float | None] = {}
        #: In-flight calls by wire key, and the key of each.
        self._by_key: dict[Hashable, int] = {}
        self._key_of: dict[int, Hashable] = {}
        self._heap: list[tuple[float, int]] = []
        self._forgotten: OrderedDict[Hashable, None] = OrderedDict()
        #: Replies that came after their call had timed out or failed.
        self.late_replies = 0

    def __len__(self) -> int:
        return len(self._deadlines)

    def __contains__(self, call_id: object) -> bool:
        return call_id in self._deadlines

    def open(self, deadline: float | None) -> int:
        """Start a call that must end by ``deadline`` (``None``: no deadline); return its id."""
        self._last_id += 1
        call_id = self._last_id
        self._deadlines[call_id] = deadline
        if deadline is not None:
            heapq.heappush(self._heap, (deadline, call_id))
        return call_id

    def bind(self, call_id: int, key: Hashable) -> None:
        """The request of ``call_id`` went on the wire under ``key``."""
        self._by_key[key] = call_id
        self._key_of[call_id] = key
        self._forgotten.pop(key, None)

    def settle(self, key: Hashable) -> tuple[CallMatch, int]:
        """A reply under ``key`` arrived: which call it ends (``0`` unless settled)."""
        call_id = self._by_key.pop(key, None)
        if call_id is None:
            if key in self._forgotten:
                del self._forgotten[key]
                self.late_replies += 1
                return CallMatch.LATE, 0
            return CallMatch.UNKNOWN, 0
        del self._key_of[call_id]
        del self._deadlines[call_id]
        return CallMatch.SETTLED, call_id

    def end(self, call_id: int) -> bool:
        """End a call without its reply (a late reply is then counted); whether it was pending."""
        if self._deadlines.pop(call_id, _MISSING) is _MISSING:
            return False
        key = self._key_of.pop(call_id, _MISSING)
        if key is not _MISSING:
            del self._by_key[key]
            self._forgotten[key] = None
            if len(self._forgotten) > REMEMBERED_KEYS:
                self._forgotten.popitem(last=False)
        return True

    def expire(self, now: float) -> list[int]:
        """End and return every call whose deadline is at or before ``now``, earliest first."""
        expired = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            call_id = heapq.heappop(heap)[1]
            if self.end(call_id):
                expired.append(call_id)
        return expired

    def drop_in_flight(self) -> list[int]:
        """The connection is gone: end and return every call that was sent on it.

        Their keys are forgotten outright, not kept for late replies: the
        next connection may reuse them (Socket.IO ack ids start again).
        """
        dropped = sorted(self._key_of)
        for call_id in dropped:
            del self._deadlines[call_id]
        self._by_key.clear()
        self._key_of.clear()
        return dropped

    def drop_all(self) -> list[int]:
        """The session is over: end and return every pending call."""
        dropped = sorted(self._deadlines)
        self._deadlines.clear()
        self._by_key.clear()
        self._key_of.clear()
        self._heap.clear()
        return dropped

    def next_deadline(self) -> float | None:
        """The earliest deadline of a pending call, or ``None``."""
        heap = self._heap
        if len(heap) > 2 * len(self._deadlines) + 16:
            self._heap = heap = [entry for entry in heap if entry[1] in self._deadlines]
            heapq.heapify(heap)
        while heap and heap[0][1] not in self._deadlines:
            heapq.heappop(heap)
        return heap[0][0] if heap else None


_MISSING = object()
