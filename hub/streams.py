"""The stream retry policy (Kafka, Kinesis, DynamoDB Streams), as a few named steps.

A failed batch blocks its lane: it is retried until it succeeds, exceeds `maximum_retry_attempts` (-1: for ever)
or `maximum_record_age`, and what precedes a failure is always done first. Each attempt of a piece of the batch
goes through these steps, in this order, each small enough to read at once:

1. record age        records older than `maximum_record_age` are given up before the attempt (RecordAgeExceeded)
2. invoke            one invocation of what is left
3. partial failure   with ReportBatchItemFailures, the records before the lowest reported failure succeeded; the
                     rest is retried
4. bisect            `bisect_batch_on_function_error` splits a batch that failed as a whole in two halves, each
                     retried on its own, without using up a retry
5. retry or give up  past `maximum_retry_attempts` the piece goes to the destination (RetryAttemptsExhausted) with
                     the source's batch info, and the lane moves on; else the lane waits a backoff and tries again

When the hub stops during a hand-off or a backoff, what is not resolved comes back as failed: the lane reads it
again after a restart.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from hub.backoff import Backoff
from hub.invocation import Envelope, Invoker
from hub.logs import fields
from hub.records import Outcome, Record
from hub.runtimes import Result

log = logging.getLogger("hub.dispatch")


@dataclass(frozen=True, slots=True)
class Piece:
    """Records of one batch still to resolve, in lane order: how many retries they used, and the last result."""

    records: list[Record]
    retries: int = 0
    last: Result | None = None


class Stopped(Exception):
    """The hub stopped during a hand-off or a backoff; `piece` (if any) is still unresolved."""

    def __init__(self, piece: Piece | None) -> None:
        super().__init__()
        self.piece = piece


class Resolution:
    """One batch being resolved: the pieces still pending (in lane order), and the records already resolved."""

    def __init__(self, records: Sequence[Record]) -> None:
        self.pending: deque[Piece] = deque([Piece(list(records))])
        self.succeeded: list[Record] = []
        self.given_up: list[Record] = []

    def outcome(self) -> Outcome:
        """The batch's outcome: what is still pending (after a stop) failed."""
        rest = tuple(r for piece in self.pending for r in piece.records)
        return Outcome(succeeded=tuple(self.succeeded), given_up=tuple(self.given_up), failed=rest)


class StreamRetries:
    """The stream policy of one mapping, over its Invoker."""

    def __init__(self, invoker: Invoker, *, retries: int, max_record_age: float | None, backoff: Backoff) -> None:
        self.invoker = invoker
        self.retries = retries
        """Retries before giving up; -1: until the records expire."""
        self.max_record_age = max_record_age
        self.bisect_on_error = invoker.mapping.bisect_batch_on_function_error
        self.backoff = backoff

    async def resolve(self, records: Sequence[Record], envelope: Envelope | None = None) -> Outcome:
        """Retry a batch until every record succeeded or was given up (or the hub stops)."""
        batch = Resolution(records)
        try:
            while batch.pending:
                piece = await self.record_age(batch, batch.pending.popleft())
                if piece is None:
                    continue
                result = await self.invoker.invoke(piece.records, piece.retries + 1, envelope)
                failed_at = self.invoker.failed_items(piece.records, result) if result.ok else None
                if failed_at == []:
                    batch.succeeded.extend(piece.records)
                    continue
                if failed_at:
                    piece = self.partial_failure(batch, piece, failed_at[0])
                elif self.bisect(batch, piece, result, envelope):
                    continue
                await self.retry_or_give_up(batch, piece, result)
        except Stopped as stop:
            if stop.piece is not None:
                batch.pending.appendleft(stop.piece)
        return batch.outcome()

    async def record_age(self, batch: Resolution, piece: Piece) -> Piece | None:
        """Give up the piece's records older than `maximum_record_age`; what is left to invoke (None: nothing).
        A piece without records (a window's final invocation) is invoked as it is."""
        if self.max_record_age is None or not piece.records:
            return piece
        now = self.invoker.clock.time()
        expired = [r for r in piece.records if now - r.timestamp > self.max_record_age]
        if not expired:
            return piece
        if not await self.give_up(batch, Piece(expired, piece.retries, piece.last), "RecordAgeExceeded"):
            raise Stopped(piece)
        gone = {id(r) for r in expired}
        rest = [r for r in piece.records if id(r) not in gone]
        return Piece(rest, piece.retries, piece.last) if rest else None

    def partial_failure(self, batch: Resolution, piece: Piece, first_failed: int) -> Piece:
        """A partial batch response: the records before the lowest reported failure succeeded; the rest is what
        is retried."""
        batch.succeeded.extend(piece.records[:first_failed])
        return Piece(piece.records[first_failed:], piece.retries, piece.last)

    def bisect(self, batch: Resolution, piece: Piece, result: Result, envelope: Envelope | None) -> bool:
        """Split a piece that failed as a whole into two halves, each retried in order without using up a retry;
        False when it is not split (bisect off, one record, or an envelope that forbids it)."""
        if not self.bisect_on_error or len(piece.records) < 2 or (envelope is not None and not envelope.may_bisect):
            return False
        middle = len(piece.records) // 2
        batch.pending.appendleft(Piece(piece.records[middle:], piece.retries, result))
        batch.pending.appendleft(Piece(piece.records[:middle], piece.retries, result))
        return True

    async def retry_or_give_up(self, batch: Resolution, piece: Piece, result: Result) -> None:
        """Count a retry: past the limit, give the piece up; else wait a backoff and put it first again."""
        counted = Piece(piece.records, piece.retries + 1, result)
        if self.retries != -1 and counted.retries > self.retries:
            if not await self.give_up(batch, counted, "RetryAttemptsExhausted"):
                raise Stopped(counted)
            return
        batch.pending.appendleft(counted)
        if not await self.invoker.wait(self.backoff.delay(counted.retries)):
            raise Stopped(None)

    async def give_up(self, batch: Resolution, piece: Piece, condition: str) -> bool:
        """Hand the piece's records to the destination with the source's batch info, and count them as given up;
        False when the hub stopped first."""
        if not piece.records:  # a window's final invocation: nothing to hand off
            log.warning(
                "an invocation without records failed for good; moving on", extra=fields(mapping=self.invoker.name)
            )
            return True
        documents = self.invoker.stream_documents(piece.records, piece.retries, piece.last, condition)
        if not await self.invoker.hand_off(piece.records, documents, condition):
            return False
        batch.given_up.extend(piece.records)
        return True
