"""The dispatcher: turns a batch into invocations and an Outcome.

Processing retries (bounded, then the destination) live here, as explicit policy values; connection trouble is
the mapping's business and never counts as a function failure. One policy per source family, as AWS has:

- async (files, schedules): Lambda's asynchronous invocation. Up to `maximum_retry_attempts` retries with
  exponential backoff and jitter; an event older than `maximum_event_age` is not retried; then the
  asynchronous invocation record goes to the destination, and the event to every dead-letter queue: the
  function's (Lambda's DeadLetterConfig) and the source's own (a schedule's); with none of them the event is
  dropped, as AWS drops it.
- stream (Kafka, Kinesis, DynamoDB Streams): a failed batch blocks its lane and is retried until it succeeds,
  exceeds `maximum_retry_attempts` (-1: forever) or `maximum_record_age`; `bisect_batch_on_function_error`
  splits a failing batch in two without using up retries; with `ReportBatchItemFailures` the records before the
  lowest reported failure succeed and the rest is retried. Given-up records go to the destination with the
  source's batch info (KinesisBatchInfo, DDBStreamBatchInfo, KafkaBatchInfo) and the lane moves on.
- queue (SQS, Redis streams, RabbitMQ): one invocation; failed records are left to the broker's redelivery,
  except those delivered `max_receive_count` times, which go to the destination.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import random
from collections import deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from hub.config import MappingConfig
from hub.deadletter import dead_letter_queues
from hub.failures import FailureRecords
from hub.functions import Function
from hub.logs import fields
from hub.records import GiveUp, Outcome, Record
from hub.runtimes import Result, error_payload
from hub.source import Clock, Destination, Document, Source
from hub.windows import Window

log = logging.getLogger("hub.dispatch")
_attempt = operator.attrgetter("attempt")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter: attempt n waits a random time in [d/2, d], d = base * 2^(n-1) <= cap."""

    base: float
    cap: float

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap, self.base * (2 ** max(0, attempt - 1)))
        return random.uniform(ceiling / 2, ceiling)


async def sleep_unless(stopping: asyncio.Event, seconds: float) -> bool:
    """Sleep `seconds`; False (at once) when `stopping` is set first: a stop never waits for a backoff."""
    if stopping.is_set():
        return False
    try:
        await asyncio.wait_for(stopping.wait(), seconds)
    except TimeoutError:
        return True
    return False


@dataclass
class Counters:
    """Per-mapping counts, named as AWS's event source mapping metrics."""

    polled: int = 0
    filtered_out: int = 0
    invoked: int = 0
    failed_invoke: int = 0
    dropped: int = 0
    destination_delivered: int = 0
    destination_errors: int = 0


def item_key(identifier: Any) -> Hashable | None:
    """A record's `itemIdentifier` in comparable form: a string, or Kafka's (`topic-partition`, offset)."""
    if isinstance(identifier, dict):
        try:
            return (str(identifier["partition"]), int(identifier["offset"]))
        except (KeyError, TypeError, ValueError):
            return None
    if isinstance(identifier, tuple):
        return identifier
    if identifier is None or identifier == "":
        return None
    return str(identifier)


class Dispatcher:
    def __init__(
        self,
        mapping: MappingConfig,
        function: Function,
        source: Source,
        destination: Destination | None,
        clock: Clock,
        stopping: asyncio.Event,
        counters: Counters,
    ) -> None:
        self.mapping = mapping
        self.name = mapping.display_name
        self.function = function
        self.source = source
        self.destination = destination
        self.clock = clock
        self.stopping = stopping
        self.counters = counters
        self.family = mapping.spec.family
        self.retries = int(mapping.setting("maximum_retry_attempts") or 0)
        cap = mapping.spec.retries_with_destination
        if self.retries == -1 and destination is not None and cap is not None:
            self.retries = int(cap)  # AWS: Kafka's infinite retries become 10 once there is a destination
        self.max_event_age = mapping.setting("maximum_event_age") or 21600.0
        record_age = mapping.setting("maximum_record_age")
        self.max_record_age = record_age if record_age is not None and record_age >= 0 else None
        self.bisect = mapping.bisect_batch_on_function_error
        self.report_failures = "ReportBatchItemFailures" in mapping.function_response_types
        self.max_receive_count = mapping.setting("max_receive_count")
        self.backoff = Backoff(mapping.retry_delay, mapping.maximum_retry_delay)
        self.failures = FailureRecords(function.arn, self.name, source, clock)
        self.dead_letters = (
            dead_letter_queues(function.config.dead_letter_config, source, function.region)
            if self.family == "async"
            else []
        )

    async def close(self) -> None:
        """Close the dead-letter queues' clients (the mapping's destination is the hub's to close)."""
        for queue in self.dead_letters:
            await queue.destination.close()

    async def dispatch(self, records: Sequence[Record], window: Window | None = None) -> Outcome:
        """Invoke the function for a batch until its outcome is final (or the hub stops).

        `window`: the tumbling window the batch belongs to (streams with `tumbling_window`); its state is
        passed to the function and replaced by the state the function returns.
        """
        if self.family == "stream":
            return await self._stream(records, window)
        if self.family == "queue":
            return await self._queue(records)
        return await self._asynchronous(records)

    # ---- shared pieces ---------------------------------------------------------------------------------------

    async def _wait(self, seconds: float) -> bool:
        return await sleep_unless(self.stopping, seconds)

    async def _invoke(self, records: Sequence[Record], attempt: int, window: Window | None = None) -> Result:
        event = self.source.render(records, attempt)
        if window is not None:
            event = window.event(event)
        self.counters.invoked += len(records)
        result = await self.function.invoke(event, mapping=self.name, records=len(records), attempt=attempt)
        if result.ok and window is not None:
            if isinstance(result.payload, dict) and "state" in result.payload:
                window.state = result.payload["state"]
            else:
                result = Result(
                    False,
                    error_payload("InvalidWindowResponse", 'a tumbling-window function must return {"state": ...}'),
                    result.duration,
                    result.request_id,
                    "Unhandled",
                )
        if not result.ok:
            self.counters.failed_invoke += len(records)
        return result

    def _failed_items(self, records: Sequence[Record], result: Result) -> list[int] | None:
        """Indices of the records a partial batch response names, [] for none, None for an invalid response
        (which fails the whole batch, as AWS treats it)."""
        if not self.report_failures or not isinstance(result.payload, dict):
            return []
        failures = result.payload.get("batchItemFailures")
        if not failures:
            return []
        if not isinstance(failures, list):
            return None
        index = {item_key(r.identifier): i for i, r in enumerate(records)}
        found = set()
        for failure in failures:
            key = item_key(failure.get("itemIdentifier")) if isinstance(failure, dict) else None
            if key is None or key not in index:
                log.warning(
                    "invalid batchItemFailures entry %r: the whole batch failed",
                    failure,
                    extra=fields(mapping=self.name, request_id=result.request_id),
                )
                return None
            found.add(index[key])
        self.counters.failed_invoke += len(found)
        return sorted(found)

    async def _hand_off(
        self,
        records: Sequence[Record],
        documents: list[Document],
        condition: str,
        dead_letters: Sequence[tuple[Destination, list[Document]]] = (),
    ) -> bool:
        """Give records to the destination and their dead letters to the dead-letter queues, retrying each until it
        takes them (or drop them if there is none of them).

        False when the hub stopped first: the records are then not settled (and are given up again, to every
        target, after a restart: at least once).
        """
        fields_ = fields(mapping=self.name, records=len(records), condition=condition)
        targets = [(self.destination, documents)] if self.destination is not None else []
        targets.extend(dead_letters)
        if not targets:
            self.counters.dropped += len(records)
            log.warning("gave up; no destination configured, dropped", extra=fields_)
            return True
        for destination, sent in targets:
            if not await self._send(destination, sent, fields_):
                return False
        self.counters.destination_delivered += len(records)
        return True

    async def _send(self, destination: Destination, documents: list[Document], fields_: dict[str, Any]) -> bool:
        attempt = 0
        while True:
            attempt += 1
            try:
                await destination.send(documents)
            except Exception as exc:
                self.counters.destination_errors += 1
                log.warning("destination %s refused a record: %s", destination.name, exc, extra=fields_)
                if not await self._wait(Backoff(0.5, 30.0).delay(attempt)):
                    return False
                continue
            log.warning("gave up; sent to %s", destination.name, extra=fields_)
            return True

    # ---- asynchronous invocation -----------------------------------------------------------------------------

    async def _asynchronous(self, records: Sequence[Record]) -> Outcome:
        oldest = min(r.timestamp for r in records)
        attempt = 0
        result: Result | None = None
        condition = "RetriesExhausted"
        while True:
            if self.clock.time() - oldest > self.max_event_age:
                condition = "EventAgeExceeded"
                break
            attempt += 1
            result = await self._invoke(records, attempt)
            if result.ok:
                return Outcome(succeeded=tuple(records))
            if result.error == "Throttled":
                condition = "ZeroReservedConcurrency"
                break
            if attempt > self.retries:
                break
            if not await self._wait(self.backoff.delay(attempt)):
                return Outcome(failed=tuple(records))  # stopping: unsettled, handled again after a restart
        documents = self.failures.asynchronous(records, attempt, result, condition) if self.destination else []
        give_up = GiveUp(attempt, result, condition, self.function.arn)
        event = self.source.render(records, 1) if self.dead_letters else None  # the original event: attempt 1's
        dead_letters = [
            (queue.destination, [queue.document(records, event, give_up, self.name)]) for queue in self.dead_letters
        ]
        if await self._hand_off(records, documents, condition, dead_letters):
            return Outcome(given_up=tuple(records))
        return Outcome(failed=tuple(records))

    # ---- streams ---------------------------------------------------------------------------------------------

    async def _stream(self, records: Sequence[Record], window: Window | None = None) -> Outcome:
        """Retry a batch until it is resolved, keeping lane order: what precedes a failure is done first."""
        work: deque[tuple[list[Record], int, Result | None]] = deque([(list(records), 0, None)])
        succeeded: list[Record] = []
        given_up: list[Record] = []

        def stopped() -> Outcome:
            rest = [r for batch, _, _ in work for r in batch]
            return Outcome(succeeded=tuple(succeeded), given_up=tuple(given_up), failed=tuple(rest))

        while work:
            batch, retries, last = work[0]
            if self.max_record_age is not None:
                now = self.clock.time()
                expired = [r for r in batch if now - r.timestamp > self.max_record_age]
                if expired:
                    documents = self._documents(expired, retries, last, "RecordAgeExceeded")
                    if not await self._hand_off(expired, documents, "RecordAgeExceeded"):
                        return stopped()
                    given_up.extend(expired)
                    gone = {id(r) for r in expired}
                    batch = [r for r in batch if id(r) not in gone]
                    work[0] = (batch, retries, last)
                    if not batch:
                        work.popleft()
                        continue
            result = await self._invoke(batch, retries + 1, window)
            work.popleft()
            failed_at = self._failed_items(batch, result) if result.ok else None
            if result.ok and failed_at == []:
                succeeded.extend(batch)
                continue
            if result.ok and failed_at:
                # checkpoint up to the lowest reported failure; retry from there on
                succeeded.extend(batch[: failed_at[0]])
                batch = batch[failed_at[0] :]
            elif self.bisect and len(batch) > 1 and window is None:
                middle = len(batch) // 2
                work.appendleft((batch[middle:], retries, result))
                work.appendleft((batch[:middle], retries, result))
                continue
            retries += 1
            if self.retries != -1 and retries > self.retries:
                condition = "RetryAttemptsExhausted"
                if not batch:  # a final window invoke has no records to hand off
                    log.warning("the final invoke of a window failed; moving on", extra=fields(mapping=self.name))
                    continue
                if not await self._hand_off(batch, self._documents(batch, retries, result, condition), condition):
                    work.appendleft((batch, retries, result))
                    return stopped()
                given_up.extend(batch)
                continue
            work.appendleft((batch, retries, result))
            if not await self._wait(self.backoff.delay(retries)):
                return stopped()
        return Outcome(succeeded=tuple(succeeded), given_up=tuple(given_up))

    def _documents(
        self, records: Sequence[Record], attempts: int, result: Result | None, condition: str
    ) -> list[Document]:
        if self.destination is None:
            return []
        return self.failures.stream(records, attempts, result, condition, self.destination)

    # ---- queues ----------------------------------------------------------------------------------------------

    async def _queue(self, records: Sequence[Record]) -> Outcome:
        """One invocation; the broker redelivers what failed, until `max_receive_count` sends it on."""
        result = await self._invoke(records, max(map(_attempt, records)))
        failed_at = self._failed_items(records, result) if result.ok else None
        if failed_at == []:
            return Outcome(succeeded=tuple(records))
        chosen = set(range(len(records)) if failed_at is None else failed_at)
        failed = [r for i, r in enumerate(records) if i in chosen]
        succeeded = [r for i, r in enumerate(records) if i not in chosen]
        given_up: list[Record] = []
        limit = self.max_receive_count
        if limit and self.destination is not None:
            exhausted = [r for r in failed if r.attempt >= limit]
            for record in exhausted:
                condition = "MaxReceiveCountExceeded"
                documents = self.failures.asynchronous([record], record.attempt, result, condition)
                if await self._hand_off([record], documents, condition):
                    given_up.append(record)
            handed = {id(r) for r in given_up}
            failed = [r for r in failed if id(r) not in handed]
        return Outcome(succeeded=tuple(succeeded), given_up=tuple(given_up), failed=tuple(failed))
