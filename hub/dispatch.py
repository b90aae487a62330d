"""The dispatcher: turns a batch into invocations and an Outcome.

Processing retries (bounded, then the destination) live here, as explicit policy values; connection trouble is
the mapping's business and never counts as a function failure. One policy per source family, as AWS has:

- async (files, schedules, s3, mqtt): Lambda's asynchronous invocation. Up to `maximum_retry_attempts` retries with
  exponential backoff and jitter; an event older than `maximum_event_age` is not retried; then the
  asynchronous invocation record goes to the destination, and the event to every dead-letter queue: the
  function's (Lambda's DeadLetterConfig) and the source's own (a schedule's); with none of them the event is
  dropped, as AWS drops it.
- stream (Kafka, Kinesis, DynamoDB Streams): a failed batch blocks its lane and is retried until it succeeds,
  exceeds `maximum_retry_attempts` (-1: forever) or `maximum_record_age`; `bisect_batch_on_function_error`
  splits a failing batch in two without using up retries; with `ReportBatchItemFailures` the records before the
  lowest reported failure succeed and the rest is retried. Given-up records go to the destination with the
  source's batch info (KinesisBatchInfo, DDBStreamBatchInfo, KafkaBatchInfo) and the lane moves on. Its steps
  are in hub/streams.py.
- queue (SQS, Redis streams, RabbitMQ, NATS JetStream): one invocation; failed records are left to the broker's
  redelivery, except those delivered `max_receive_count` times, which go to the destination.

The pieces every policy shares (invoking, partial batch responses, hand-offs) are in hub/invocation.py. A lane
runner may wrap a batch's invocations in an `Envelope` (a tumbling window, hub/windows.py): the dispatcher hands
it to the invocations and knows nothing else of it.
"""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Sequence

from hub.backoff import Backoff, sleep_unless
from hub.clock import Clock
from hub.config import MappingConfig
from hub.deadletter import dead_letter_queues
from hub.functions import Function
from hub.invocation import Counters, Envelope, Invoker, item_key
from hub.records import GiveUp, Outcome, Record, plain
from hub.runtimes import Result
from hub.source import Destination, Source
from hub.streams import StreamRetries

__all__ = ["Backoff", "Counters", "Dispatcher", "Envelope", "item_key", "sleep_unless"]

_attempt = operator.attrgetter("attempt")


class Dispatcher(Invoker):
    """Turns a batch into invocations and an Outcome, with the policy of the source's family (see above)."""

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
        super().__init__(mapping, function, source, destination, clock, stopping, counters)
        self.family = mapping.spec.family
        self.retries = int(mapping.setting("maximum_retry_attempts") or 0)
        cap = mapping.spec.retries_with_destination
        if self.retries == -1 and destination is not None and cap is not None:
            self.retries = cap  # AWS: Kafka's infinite retries become 10 once there is a destination
        self.max_event_age = mapping.setting("maximum_event_age") or 21600.0
        self.max_receive_count = mapping.setting("max_receive_count")
        self.backoff = Backoff(mapping.retry_delay, mapping.maximum_retry_delay)
        record_age = mapping.setting("maximum_record_age")
        self.stream = StreamRetries(
            self,
            retries=self.retries,
            max_record_age=record_age if record_age is not None and record_age >= 0 else None,
            backoff=self.backoff,
        )
        self.dead_letters = (
            dead_letter_queues(function.config.dead_letter_config, source, function.region)
            if self.family == "async"
            else []
        )

    async def close(self) -> None:
        """Close the dead-letter queues' clients (the mapping's destination is the hub's to close)."""
        for queue in self.dead_letters:
            await queue.destination.close()

    async def dispatch(self, records: Sequence[Record], envelope: Envelope | None = None) -> Outcome:
        """Invoke the function for a batch until its outcome is final (or the hub stops: what is not final then
        comes back failed, unsettled). Never raises for a function fault.

        `envelope`: what the lane runner wraps around the batch's invocations (streams: a tumbling window).
        """
        if self.family == "stream":
            return await self.stream.resolve(records, envelope)
        if self.family == "queue":
            return await self._queue(records)
        return await self._asynchronous(records)

    # ---- asynchronous invocation -----------------------------------------------------------------------------

    async def _asynchronous(self, records: Sequence[Record]) -> Outcome:
        oldest = records[0].timestamp if len(records) == 1 else min(r.timestamp for r in records)
        attempt = 0
        result: Result | None = None
        condition = "RetriesExhausted"
        while True:
            if self.clock.time() - oldest > self.max_event_age:
                condition = "EventAgeExceeded"
                break
            attempt += 1
            result = await self.invoke(records, attempt)
            if result.ok:
                return Outcome(succeeded=tuple(records))
            if result.error == "Throttled":
                condition = "ZeroReservedConcurrency"
                break
            if attempt > self.retries:
                break
            if not await self.wait(self.backoff.delay(attempt)):
                return Outcome(failed=tuple(records))  # stopping: unsettled, handled again after a restart
        documents = self.failures.asynchronous(records, attempt, result, condition) if self.destination else []
        give_up = GiveUp(attempt, result, condition, self.function.arn)
        event = plain(self.source.render(records, 1)) if self.dead_letters else None  # the original event: attempt 1's
        dead_letters = [
            (queue.destination, [queue.document(records, event, give_up, self.name)]) for queue in self.dead_letters
        ]
        if await self.hand_off(records, documents, condition, dead_letters):
            return Outcome(given_up=tuple(records))
        return Outcome(failed=tuple(records))

    # ---- queues ----------------------------------------------------------------------------------------------

    async def _queue(self, records: Sequence[Record]) -> Outcome:
        """One invocation; the broker redelivers what failed, until `max_receive_count` sends it on."""
        result = await self.invoke(records, max(map(_attempt, records)))
        failed_at = self.failed_items(records, result) if result.ok else None
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
                if await self.hand_off([record], documents, condition):
                    given_up.append(record)
            handed = {id(r) for r in given_up}
            failed = [r for r in failed if id(r) not in handed]
        return Outcome(succeeded=tuple(succeeded), given_up=tuple(given_up), failed=tuple(failed))
