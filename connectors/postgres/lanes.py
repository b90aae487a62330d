"""The lanes of the `postgres` source and the slot's confirmed position.

A `TableLane` is one table (or one key hash of it): records are pushed into it as the stream decodes them, read
in order, and settled; its highest contiguous settled sequence number is checkpointed in the hub's store. A lane
puts a failed batch back in front of what it has not handed on yet, so it is read again first.

`Transactions` keeps the slot's side: the transactions read, in commit order, each with the number of its changes
not settled yet; the slot may be confirmed up to the end of the newest transaction before which every change of
every lane has settled.
"""

from __future__ import annotations

import asyncio
import operator
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from hub.records import ContiguousTracker, Outcome, Record
from hub.source import LaneEnded

SEQUENCE_SHIFT = 32
"""A record's sequence number is (the commit LSN of its transaction << SEQUENCE_SHIFT) + its place in it."""
_position = operator.attrgetter("position")


@dataclass(slots=True)
class Transaction:
    """A transaction read from the slot: its commit LSN, its end (once committed), and its changes not settled yet."""

    final_lsn: int
    end_lsn: int = 0
    open: int = 0
    """Changes read and not settled yet."""
    committed: bool = False


class Transactions:
    """The transactions of one replication connection, oldest first, for the confirmed LSN."""

    def __init__(self, confirm: Callable[[int], None]) -> None:
        self.confirm = confirm
        self._order: deque[Transaction] = deque()
        self._by_lsn: dict[int, Transaction] = {}

    def begin(self, final_lsn: int) -> Transaction:
        """A transaction begins, at the commit LSN it will have."""
        txn = Transaction(final_lsn)
        self._order.append(txn)
        self._by_lsn[final_lsn] = txn
        return txn

    def commit(self, txn: Transaction, end_lsn: int) -> None:
        """A transaction's commit was read: it ends at `end_lsn`."""
        txn.end_lsn = end_lsn
        txn.committed = True
        self._advance()

    def settled(self, records: Iterable[Record]) -> None:
        """Count these records of their transactions as settled, and move the confirmable position."""
        by_lsn = self._by_lsn
        positions = sorted(map(_position, records))
        # a transaction's changes are a run of the sorted positions: counted per run (bisected), not per record
        at = 0
        while at < len(positions):
            lsn = positions[at] >> SEQUENCE_SHIFT
            after = bisect_left(positions, (lsn + 1) << SEQUENCE_SHIFT, at)
            txn = by_lsn.get(lsn)
            if txn is not None:
                txn.open -= after - at
            at = after
        self._advance()

    def _advance(self) -> None:
        order = self._order
        end = 0
        while order and order[0].committed and order[0].open <= 0:
            txn = order.popleft()
            del self._by_lsn[txn.final_lsn]
            end = txn.end_lsn
        if end:
            self.confirm(end)

    def __len__(self) -> int:
        return len(self._order)


class TableLane:
    """One ordered lane: a table, or one key hash of it (`schema.table#i`)."""

    ordered = True

    def __init__(self, owner: Any, key: str, checkpoint: int | None, session: int) -> None:
        self.key = key
        self.owner = owner
        """The source: its store, scope, lease, closing event, and the accounting of settles (`settled`)."""
        self.checkpoint = checkpoint or 0
        """Changes at or below this sequence number were settled before: skipped when the slot sends them again."""
        self.session = session
        self._waiting: deque[Record] = deque()
        self._arrived = asyncio.Event()
        self._tracker = ContiguousTracker()
        self._written = self.checkpoint
        self._write_lock = asyncio.Lock()
        self.ended = False

    def push(self, record: Record) -> None:
        """Add a decoded change, in commit order."""
        waiting = self._waiting
        if not waiting:  # a reader waits only on an empty lane: the first record wakes it, the others need not
            self._arrived.set()
        waiting.append(record)

    def end(self) -> int:
        """No more records for this lane (the connection closed or the lease ended): reads raise LaneEnded, and
        what was not handed on is dropped (the slot sends it again). Returns how many records that was."""
        self.ended = True
        self._arrived.set()
        dropped = len(self._waiting)
        self._waiting.clear()
        return dropped

    async def read(self, limit: int, timeout: float | None) -> list[Record]:
        """Up to `limit` changes, in order; [] when `timeout` passed; LaneEnded once the lane ended."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._waiting:
            if self.ended:
                raise LaneEnded(self.key)
            self._arrived.clear()
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return []
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                return []
        if self.ended:
            raise LaneEnded(self.key)
        waiting = self._waiting
        if len(waiting) <= limit:
            out = list(waiting)
            waiting.clear()
        else:
            popleft = waiting.popleft
            out = [popleft() for _ in range(limit)]
        self._tracker.track(list(map(_position, out)))
        return out

    async def settle(self, outcome: Outcome) -> None:
        """Checkpoint the highest contiguous settled sequence number; put failed records back in front, to be read
        again first."""
        settled = outcome.settled
        if settled:
            self._tracker.done(list(map(_position, settled)))
        dropped = 0
        if outcome.failed and not self.ended:
            # read again first: a stream lane never moves past what has not settled
            self._waiting.extendleft(reversed(outcome.failed))
            self._arrived.set()
        elif outcome.failed:
            dropped = len(outcome.failed)  # the lane ended: the slot sends them again on the next connection
        if settled or dropped:
            self.owner.settled(self, settled, dropped)
        newest = self._tracker.advance()
        if newest is not None:
            await self._checkpoint(int(newest))  # type: ignore[call-overload]

    async def _checkpoint(self, position: int) -> None:
        async with self._write_lock:
            if position <= self._written:
                return
            await self.owner.store.put(self.owner.scope, self.key, str(position), self.owner.fence)
            self._written = position

    @property
    def waiting(self) -> int:
        """Changes pushed and not read yet."""
        return len(self._waiting)
