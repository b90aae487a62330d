"""What every retry policy of the dispatcher shares: invoking the function for records, reading a partial batch
response, and handing what is given up to the destination and the dead-letter queues.

The policies themselves (hub/dispatch.py for queues and asynchronous invocation, hub/streams.py for streams)
decide when to invoke, retry, split or give up; an `Invoker` does each of those things once, and counts it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hub import tracing
from hub.backoff import Backoff, sleep_unless
from hub.clock import Clock
from hub.config import MappingConfig
from hub.failures import FailureRecords
from hub.functions import Function
from hub.logs import fields
from hub.records import Record
from hub.runtimes import Result
from hub.source import Destination, Document, Source

log = logging.getLogger("hub.dispatch")


@dataclass
class Counters:
    """Per-mapping counts, named as AWS's event source mapping metrics (hub.admin shows them)."""

    polled: int = 0
    filtered_out: int = 0
    invoked: int = 0
    failed_invoke: int = 0
    dropped: int = 0
    deleted: int = 0
    """Queue sources: records deleted or acked once settled (AWS: DeletedEventCount)."""
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


class Envelope(Protocol):
    """What a lane runner wraps around every invocation of one batch (a tumbling window: its bounds and state).
    The dispatcher knows nothing else of it."""

    may_bisect: bool
    """False: `bisect_batch_on_function_error` never splits the batch (a window's state runs through its records
    in order)."""

    def wrap(self, event: Any) -> Any:
        """The event the function receives instead of the source's `event`."""
        ...

    def answer(self, result: Result) -> Result:
        """Take what a successful invocation returned; a failed Result when it is not a valid answer."""
        ...


class Invoker:
    """One mapping's function, source and destination, and the steps every policy is made of."""

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
        self.report_failures = "ReportBatchItemFailures" in mapping.function_response_types
        self.failures = FailureRecords(function.arn, self.name, source, clock)

    async def wait(self, seconds: float) -> bool:
        """Sleep `seconds` between attempts; False at once when the hub stops first."""
        return await sleep_unless(self.stopping, seconds)

    async def invoke(self, records: Sequence[Record], attempt: int, envelope: Envelope | None = None) -> Result:
        """Invoke the function once with the event of `records` at `attempt` (1-based), counted; never raises for
        a function fault (the Result says it)."""
        event = self.source.render(records, attempt)
        if envelope is not None:
            event = envelope.wrap(event)
        self.counters.invoked += len(records)
        trace = tracing.carriers(self.source, records)  # [] unless tracing is on (the `otel` extra)
        result = await self.function.invoke(
            event, mapping=self.name, records=len(records), attempt=attempt, trace=trace
        )
        if result.ok and envelope is not None:
            result = envelope.answer(result)
        if not result.ok:
            self.counters.failed_invoke += len(records)
        return result

    def failed_items(self, records: Sequence[Record], result: Result) -> list[int] | None:
        """Indices of the records a partial batch response names, [] for none, None for an invalid response
        (which fails the whole batch, as AWS treats it). Without ReportBatchItemFailures: []."""
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

    def stream_documents(
        self, records: Sequence[Record], attempts: int, result: Result | None, condition: str
    ) -> list[Document]:
        """The stream on-failure records of given-up records for the destination ([] without one)."""
        if self.destination is None:
            return []
        return self.failures.stream(records, attempts, result, condition, self.destination)

    async def hand_off(
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
                if not await self.wait(Backoff(0.5, 30.0).delay(attempt)):
                    return False
                continue
            log.warning("gave up; sent to %s", destination.name, extra=fields_)
            return True
