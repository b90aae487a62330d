"""Replaying failure records: the function invoked again with each chosen record's event, and the record removed
from its destination once that invocation succeeded.

For each chosen letter (hub.readback) the event the function got is rebuilt:

- from the document, where it holds the event: an asynchronous invocation record's `requestPayload` (files,
  schedules, s3, mqtt; and queue sources, SQS, Redis, RabbitMQ, whose failure records have the same form), a dead
  letter's body, a stream record's `payload` (stream records sent to S3 or Kafka);
- else from the stream, at the positions the document names (`KinesisBatchInfo`, `DDBStreamBatchInfo`,
  `KafkaBatchInfo`: what AWS sends to SQS and SNS, and the hub to a file or SQS): the connector reads those records
  again, as long as the stream still retains them (the connector's `ConnectorSpec.reread`);
- a document that holds neither cannot be replayed, and says so.

The function is invoked once (`attempt` 1), through the hub's Function as the dispatcher invokes it: its
concurrency and timeout apply, and the invocation is logged. An invocation succeeds when the function returned
without error and, with `ReportBatchItemFailures`, named no failed item; then the letter is removed (a file
rewritten without it, an SQS message deleted, a Kafka record's id hidden). A failed one stays where it was.

A job replays its letters one after another and reports its progress (`Job.view`); jobs are kept for the life of
the admin endpoint, the last `KEPT_JOBS` of them.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from hub import redact
from hub.config import HubConfig
from hub.control import Mappings
from hub.functions import Function
from hub.logs import fields
from hub.readback import Gone, Inbox, InboxError, Letter, batch_info, event_of, open_inbox
from hub.source import SourceContext
from hub.store import CheckpointStore

log = logging.getLogger("hub.replay")

KEPT_JOBS = 50
TAKE_CHUNK = 10
"""Letters taken from the destination at once (SQS holds them invisible while they are replayed)."""


@dataclass
class Job:
    """One replay: its letters' ids, its progress and each letter's result."""

    id: str
    mapping: str
    ids: list[str]
    state: str = "running"
    """`running`, then `finished` (every letter tried: see `failed`), or `error` (the job could not go on)."""
    done: int = 0
    failed: int = 0
    error: str | None = None
    started: float = field(default_factory=time.time)
    results: list[dict[str, Any]] = field(default_factory=list)
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def view(self) -> dict[str, Any]:
        """The job as the admin API shows it."""
        return {
            "id": self.id,
            "mapping": self.mapping,
            "total": len(self.ids),
            "done": self.done,
            "failed": self.failed,
            "state": self.state,
            "error": self.error,
            "started": self.started,
            "results": list(self.results),
        }


class Replaying(Protocol):
    """What a replay needs of a hub (hub.app.Hub): its mappings, functions, configuration and store."""

    @property
    def config(self) -> HubConfig:
        """Its configuration (the region, the account)."""
        ...

    @property
    def store(self) -> CheckpointStore:
        """Its checkpoint store (a Kafka destination's replayed ids are kept there)."""
        ...

    @property
    def functions(self) -> Mapping[str, Function]:
        """Its functions, by name."""
        ...

    @property
    def mappings(self) -> Mappings:
        """Its mappings, with their current configuration."""
        ...


class Replays:
    """The replay jobs of a hub: started by the admin API, kept for it to report on."""

    def __init__(self, hub: Replaying) -> None:
        self.hub = hub
        self.jobs: dict[str, Job] = {}

    def start(self, mapping: str, ids: Sequence[str]) -> Job:
        """Start replaying the letters `ids` of `mapping`'s destination; the job reports its progress."""
        job = Job(str(uuid.uuid4()), mapping, list(dict.fromkeys(ids)))
        self.jobs[job.id] = job
        for old in list(self.jobs)[:-KEPT_JOBS]:
            if self.jobs[old].state != "running":
                del self.jobs[old]
        job.task = asyncio.create_task(self._run(job), name=f"replay-{job.id}")
        return job

    async def close(self) -> None:
        """Stop the jobs still running (the endpoint closes): a letter whose replay was cut stays in place."""
        tasks = [job.task for job in self.jobs.values() if job.task is not None and not job.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, job: Job) -> None:
        slot = self.hub.mappings.get(job.mapping)
        config = slot.config
        try:
            inbox = open_inbox(
                config.destination_config.on_failure, self.hub.config.region, self.hub.store, job.mapping
            )
        except InboxError as exc:
            job.state, job.error = "error", str(exc)
            return
        function = self.hub.functions[config.function]
        hold = (function.config.timeout + 10.0) * TAKE_CHUNK
        log.info("replay started", extra=fields(mapping=job.mapping, job=job.id, records=len(job.ids)))
        try:
            if not function.started:
                await function.start()
            for start in range(0, len(job.ids), TAKE_CHUNK):
                chunk = job.ids[start : start + TAKE_CHUNK]
                taken = await inbox.take(chunk, hold)
                for id_ in chunk:
                    letter = taken.get(id_)
                    if letter is None:
                        self._result(job, id_, False, error="not in the destination any more")
                        continue
                    await self._replay(job, inbox, letter)
            job.state = "finished"
        except asyncio.CancelledError:
            job.state, job.error = "error", "the admin endpoint stopped"
            raise
        except Exception as exc:
            job.state, job.error = "error", redact.text(f"{type(exc).__name__}: {exc}")
            log.warning("replay stopped: %s", job.error, extra=fields(mapping=job.mapping, job=job.id))
        finally:
            await inbox.close()
        log.info(
            "replay finished",
            extra=fields(mapping=job.mapping, job=job.id, done=job.done, failed=job.failed, state=job.state),
        )

    async def _replay(self, job: Job, inbox: Inbox, letter: Letter) -> None:
        slot = self.hub.mappings.get(job.mapping)
        config = slot.config
        try:
            event = await self._event(letter, job.mapping)
        except (Gone, InboxError) as exc:
            await inbox.release(letter)
            self._result(job, letter.id, False, error=str(exc))
            return
        function = self.hub.functions[config.function]
        result = await function.invoke(event, mapping=job.mapping, records=_records(event), attempt=1)
        error = result.error_message if not result.ok else _reported_failures(result.payload, config)
        if error is None:
            await inbox.remove(letter)
        else:
            await inbox.release(letter)
        self._result(job, letter.id, error is None, request_id=result.request_id, error=error)

    async def _event(self, letter: Letter, mapping: str) -> Any:
        event = event_of(letter)
        if event is not None:
            return event
        config = self.hub.mappings.get(mapping).config
        spec = config.spec
        info = batch_info(letter.body, spec)
        if info is None:
            raise InboxError("the document holds neither the event nor the positions of its records")
        if spec.reread is None:
            raise InboxError(f"records of a {spec.type} source cannot be read again")
        context = SourceContext(
            mapping=mapping,
            store=self.hub.store,
            region=self.hub.config.region,
            account_id=self.hub.config.account_id,
            log=logging.getLogger(f"hub.source.{spec.type}"),
        )
        return await spec.reread(config.source, context, info)

    @staticmethod
    def _result(job: Job, id_: str, ok: bool, *, request_id: str | None = None, error: str | None = None) -> None:
        if ok:
            job.done += 1
        else:
            job.failed += 1
        job.results.append(
            {"id": id_, "outcome": "success" if ok else "failed", "request_id": request_id, "error": error}
        )


def _records(event: Any) -> int:
    if isinstance(event, dict) and isinstance(event.get("Records"), list):
        return len(event["Records"])
    return 1


def _reported_failures(payload: Any, config: Any) -> str | None:
    """An error when the function (with ReportBatchItemFailures) named failed items: the replay did not succeed."""
    if "ReportBatchItemFailures" not in config.function_response_types or not isinstance(payload, dict):
        return None
    failures = payload.get("batchItemFailures")
    if failures:
        return f"the function reported {len(failures)} failed item(s)"
    return None
