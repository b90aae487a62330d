"""The dispatcher: turns a batch into invocations and an Outcome.

Processing retries (bounded: `maximum_retry_attempts`, `maximum_event_age`, then the destination) live here,
as explicit policy values. Connection trouble is the mapping's business and never counts as a function
failure.

Policies by source family:
- async (files, schedules): as Lambda's asynchronous invocation. Up to `maximum_retry_attempts` retries with
  exponential backoff and jitter; an event older than `maximum_event_age` is not retried; then the
  asynchronous invocation record goes to the destination (or the event is dropped, as AWS drops it).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hub.config import MappingConfig
from hub.functions import Function
from hub.logs import fields
from hub.records import Outcome, Record
from hub.runtimes import Result
from hub.source import Clock, Destination, Document, Source

log = logging.getLogger("hub.dispatch")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter: attempt n waits a random time in [base*2^(n-1)/2, base*2^(n-1)]."""

    base: float
    cap: float

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap, self.base * (2 ** max(0, attempt - 1)))
        return random.uniform(ceiling / 2, ceiling)


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
    by_outcome: dict[str, int] = field(default_factory=dict)


def iso_now(clock: Clock) -> str:
    return datetime.fromtimestamp(clock.time(), UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
        self.max_event_age = mapping.setting("maximum_event_age") or 21600.0
        self.backoff = Backoff(mapping.retry_delay, mapping.maximum_retry_delay)

    async def dispatch(self, records: Sequence[Record]) -> Outcome:
        if self.family == "async":
            return await self._asynchronous(records)
        raise NotImplementedError(f"{self.family} sources are dispatched by a later version")

    async def _wait(self, seconds: float) -> bool:
        """Sleep, or return False at once when the hub is stopping."""
        if self.stopping.is_set():
            return False
        try:
            await asyncio.wait_for(self.stopping.wait(), seconds)
        except TimeoutError:
            return True
        return False

    async def _invoke(self, records: Sequence[Record], attempt: int) -> Result:
        event = self.source.render(records, attempt)
        self.counters.invoked += len(records)
        result = await self.function.invoke(event, mapping=self.name, records=len(records), attempt=attempt)
        if not result.ok:
            self.counters.failed_invoke += len(records)
        return result

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
        return await self._give_up(records, self._async_record(records, attempt, result, condition))

    def _async_record(self, records: Sequence[Record], attempts: int, result: Result | None, condition: str) -> Any:
        """AWS's asynchronous invocation record (what Lambda sends an on-failure destination)."""
        return {
            "version": "1.0",
            "timestamp": iso_now(self.clock),
            "requestContext": {
                "requestId": result.request_id if result else None,
                "functionArn": f"{self.function.arn}:$LATEST",
                "condition": condition,
                "approximateInvokeCount": attempts,
            },
            "requestPayload": self.source.render(records, max(1, attempts)),
            "responseContext": {
                "statusCode": 200 if result else 429,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled",
            },
            "responsePayload": result.payload if result else None,
        }

    async def _give_up(self, records: Sequence[Record], failure: Any) -> Outcome:
        """Hand the records to the destination (retrying until it takes them), or drop them if there is none."""
        fields_ = fields(mapping=self.name, records=len(records), condition=failure["requestContext"]["condition"])
        if self.destination is None:
            self.counters.dropped += len(records)
            log.warning("gave up; no destination configured, dropped", extra=fields_)
            return Outcome(given_up=tuple(records))
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.destination.send([Document(failure)])
            except Exception as exc:
                self.counters.destination_errors += 1
                log.warning("destination %s refused a record: %s", self.destination.name, exc, extra=fields_)
                if not await self._wait(Backoff(0.5, 30.0).delay(attempt)):
                    return Outcome(failed=tuple(records))
                continue
            self.counters.destination_delivered += len(records)
            log.warning("gave up; sent to %s", self.destination.name, extra=fields_)
            return Outcome(given_up=tuple(records))


def monotonic() -> float:
    return time.monotonic()
