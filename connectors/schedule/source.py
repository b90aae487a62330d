"""`schedule`: EventBridge schedules: `rate(...)`, `cron(...)` and `at(...)`, in a time zone.

| settle   | meaning for schedules                                                                        |
| -------- | -------------------------------------------------------------------------------------------- |
| success  | the newest fire time before which every fire has settled is checkpointed                      |
| failure  | not checkpointed: after a restart the misfire policy decides whether it runs again            |
| ordering | fires start in time order; each is its own asynchronous invocation (retries do not block)     |

The function gets what the AWS service the schedule stands for (`service`) sends a Lambda function:

| service     | without `input`                                                 | with `input`                         |
| ----------- | --------------------------------------------------------------- | ------------------------------------ |
| `rule`      | EventBridge's "Scheduled Event": `aws.events`, `detail: {}`     | the input as it is                   |
| `scheduler` | Scheduler's "Scheduled Event": `aws.scheduler`, `detail: "{}"`  | the input, `<aws.scheduler.*>`       |
|             | (a string, not an object: that is what Scheduler sends)         | placeholders substituted per attempt |

`service` defaults to `scheduler` when `input` is set and to `rule` otherwise. A string `input` is JSON text, as
AWS's `Input` is for a Lambda target: the function receives the JSON value it holds.

After downtime the misfire policy decides what runs: `run_once` (the newest missed fire, the default),
`run_all` (every missed fire, oldest first) or `skip`.

`dead_letter_config` is EventBridge Scheduler's target DeadLetterConfig. The hub has one retry layer between a
schedule and its function, so the mapping's `maximum_retry_attempts` and `maximum_event_age` stand for the
schedule's RetryPolicy (MaximumRetryAttempts, MaximumEventAgeInSeconds): when the mapping gives up on a fire, the
queue gets Scheduler's dead-letter event: the request body (the input, or the Scheduled Event) with Scheduler's
attributes (`dead_letter`).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from connectors.aws_destinations import SqsDestinationConfig
from connectors.schedule.expressions import Schedule, ScheduleError, fires_between, parse_schedule
from hub.config import FileDestination
from hub.deadletter import number, string
from hub.records import ContiguousTracker, GiveUp, Outcome, Record
from hub.source import ConnectorSpec, Document, LaneEnded, SourceContext

MISFIRE_LIMIT = 10_000
PAYLOAD_LIMIT = 256 * 1024 - 4096
"""The most bytes of a dead letter's body: SQS takes 256 KiB for a message, its attributes included."""
EXHAUSTED = {"RetriesExhausted": "MaximumRetryAttempts", "EventAgeExceeded": "MaximumEventAgeInSeconds"}
"""Scheduler's EXHAUSTED_RETRY_CONDITION for a retryable failure (a throttled invoke is not retried)."""


class ScheduleConfig(BaseModel):
    """Invoke a function on a schedule, as EventBridge rules and EventBridge Scheduler do."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["schedule"]
    expression: str = Field(
        description="`rate(5 minutes)`, `cron(0 12 * * ? *)`, `at(2026-01-01T00:00:00)`; `rate(10 seconds)` too."
    )
    timezone: str = Field("UTC", description="IANA time zone for cron and at expressions (DST-aware).")
    start_date: datetime | None = Field(None, description="No fire before this (local time in `timezone`).")
    end_date: datetime | None = Field(None, description="No fire after this (local time in `timezone`).")
    service: Literal["rule", "scheduler"] | None = Field(
        None,
        description="The AWS service this schedule stands for, which decides the event: `rule` (an EventBridge "
        'rule) sends the "Scheduled Event" (`source: aws.events`), or `input` as it is; `scheduler` (EventBridge '
        "Scheduler) sends `input` with the `<aws.scheduler.*>` placeholders substituted, or without `input` its own "
        '"Scheduled Event" (`source: aws.scheduler`, the schedule\'s ARN, `detail` the string `"{}"`). Default: '
        "`scheduler` if `input` is set, else `rule`.",
    )
    input: Any = Field(
        None,
        description="What the function receives instead of the service's own event: a YAML value, or a string of "
        "JSON text (AWS's `Input`). With `service: scheduler`, <aws.scheduler.scheduled-time>, "
        "<aws.scheduler.attempt-number>, <aws.scheduler.execution-id> and <aws.scheduler.schedule-arn> are "
        "substituted.",
    )
    misfire: Literal["run_once", "run_all", "skip"] = Field(
        "run_once", description="After downtime: run the newest missed fire, all of them, or none."
    )
    rule_name: str | None = Field(
        None,
        description="The rule's or schedule's name in the event's ARNs (`rule/<name>`, "
        "`schedule/default/<name>`). Default: the mapping's name.",
    )
    dead_letter_config: Annotated[FileDestination | SqsDestinationConfig, Field(discriminator="type")] | None = Field(
        None,
        description="EventBridge Scheduler's target DeadLetterConfig: where a fire goes when the mapping gives up on "
        "it (its maximum_retry_attempts and maximum_event_age are the schedule's RetryPolicy): the request body with "
        "Scheduler's attributes ERROR_CODE, ERROR_MESSAGE, EXECUTION_ID, EXHAUSTED_RETRY_CONDITION, "
        "IS_PAYLOAD_TRUNCATED, RETRY_ATTEMPTS, SCHEDULED_TIME, SCHEDULE_ARN, TARGET_ARN. `{type: sqs, queue_url: "
        '...}`, or `{type: file, path: ...}` for JSON lines `{"Body": ..., "MessageAttributes": {...}}`.',
    )

    @field_validator("dead_letter_config")
    @classmethod
    def _dead_letter_client(cls, value: Any) -> Any:
        if isinstance(value, SqsDestinationConfig) and importlib.util.find_spec("aioboto3") is None:
            raise ValueError("an sqs dead-letter queue needs aioboto3: pip install 'eventhub[aws]'")
        return value

    @field_validator("expression")
    @classmethod
    def _expression(cls, value: str) -> str:
        try:
            parse_schedule(value)
        except ScheduleError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. UTC, Europe/Paris)") from None
        return value

    @field_validator("input")
    @classmethod
    def _input(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:  # an attempt number may stand unquoted, as a JSON number, once substituted
                json.loads(value.replace("<aws.scheduler.attempt-number>", "1"))
            except ValueError:
                raise ValueError(
                    "a string input is JSON text, as AWS's Input for a Lambda function is: write a YAML value "
                    "(input: {job: nightly}) or a string holding JSON (input: '\"text\"')"
                ) from None
        return value

    @model_validator(mode="after")
    def _bounds(self) -> ScheduleConfig:
        tz = ZoneInfo(self.timezone)
        start, end = (
            None if d is None else (d if d.tzinfo else d.replace(tzinfo=tz)) for d in (self.start_date, self.end_date)
        )
        if start and end and end < start:
            raise ValueError("end_date is before start_date")
        object.__setattr__(self, "start_date", start)
        object.__setattr__(self, "end_date", end)
        if self.service is None:
            object.__setattr__(self, "service", "rule" if self.input is None else "scheduler")
        return self


def iso_seconds(when: datetime) -> str:
    """A fire time as Scheduler writes it: `2024-01-01T00:00:00Z`."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ScheduleSource:
    """One lane: the schedule. Fires are read when due; settling checkpoints the newest contiguous fire."""

    ordered = False

    def __init__(self, config: ScheduleConfig, context: SourceContext) -> None:
        self.config = config
        self.context = context
        self.key = "schedule"
        self.schedule: Schedule = parse_schedule(config.expression)
        self.tz = ZoneInfo(config.timezone)
        self.name = config.rule_name or context.mapping
        self.scope = context.scope("schedule")
        self.rule_arn = f"arn:aws:events:{context.region}:{context.account_id}:rule/{self.name}"
        self.schedule_arn = f"arn:aws:scheduler:{context.region}:{context.account_id}:schedule/default/{self.name}"
        self._tracker = ContiguousTracker()
        self._due: list[datetime] = []
        self._cursor = datetime.now(UTC)
        self._anchor = self._cursor
        self._closed = asyncio.Event()
        self._salt = secrets.token_hex(8)  # execution ids differ from one run of the hub to the next

    @property
    def dead_letter_config(self) -> Any:
        """The schedule's dead-letter queue (its `dead_letter_config`), or None."""
        return self.config.dead_letter_config

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.context.clock.time(), UTC)

    async def open(self) -> None:
        """Load the last settled fire and work out the fires missed since, as `misfire` says (a new expression starts
        afresh)."""
        self._closed.clear()
        store, scope = self.context.store, self.scope
        state = await store.get_all(scope)
        now = self._now().replace(microsecond=0)  # rate() fires on whole seconds, as `time` shows them
        if "expression" in state and state["expression"] != self.config.expression:
            state = {}  # a new expression starts afresh, as a newly created schedule does
        if "anchor" not in state:
            state = {"expression": self.config.expression, "anchor": now.isoformat(), "last": now.isoformat()}
            await store.put_many(scope, state)
        self._anchor = datetime.fromisoformat(state["anchor"])
        last = datetime.fromisoformat(state["last"])
        missed = fires_between(self.schedule, last, now, limit=MISFIRE_LIMIT, **self._bounds())
        policy = self.config.misfire
        if policy == "run_once":
            newest = missed[-1:]
            while len(missed) == MISFIRE_LIMIT:  # a long outage: find the newest missed fire chunk by chunk
                missed = fires_between(self.schedule, missed[-1], now, limit=MISFIRE_LIMIT, **self._bounds())
                newest = missed[-1:] or newest
            self._due = newest
        elif policy == "run_all":
            if len(missed) == MISFIRE_LIMIT:
                self.context.log.warning(
                    "more than %d fires were missed; run_all runs the oldest %d",
                    MISFIRE_LIMIT,
                    MISFIRE_LIMIT,
                    extra={"fields": {"mapping": self.context.mapping}},
                )
            self._due = missed
        else:
            self._due = []
        self._cursor = now
        if missed:
            self.context.log.info(
                "%d fires were missed while the hub was down; %s runs %d",
                len(missed),
                policy,
                len(self._due),
                extra={"fields": {"mapping": self.context.mapping}},
            )
        upcoming = self.schedule.next_fire(now, **self._bounds())
        self.context.log.info(
            "schedule %s: next fire %s",
            self.config.expression,
            iso_seconds(upcoming) if upcoming else "never (the schedule has ended)",
            extra={"fields": {"mapping": self.context.mapping, "timezone": self.config.timezone}},
        )

    def _bounds(self) -> dict[str, Any]:
        return {"tz": self.tz, "anchor": self._anchor, "start": self.config.start_date, "end": self.config.end_date}

    async def lanes(self) -> AsyncIterator[ScheduleSource]:
        """Its one unordered lane (itself), until it closes."""
        yield self
        await self._closed.wait()

    async def read(self, limit: int, timeout: float | None) -> list[Record]:
        """The next due fires (missed ones first), sleeping until the next one comes; [] when `timeout` passed first;
        LaneEnded once closed or once the schedule has no fire left."""
        if self._closed.is_set():
            raise LaneEnded(self.key)
        if not self._due:
            fire = self.schedule.next_fire(self._cursor, **self._bounds())
            if fire is None:  # the schedule has ended (an at() that ran, or past end_date)
                raise LaneEnded(self.key)
            try:
                await asyncio.wait_for(self.context.clock.sleep_until(fire.timestamp()), timeout)
            except TimeoutError:
                return []
            self._cursor = fire
            self._due.append(fire)
        fires, self._due = self._due[:limit], self._due[limit:]
        self._tracker.track(fires)
        return [self._record(fire) for fire in fires]

    def _record(self, fire: datetime) -> Record:
        """The fire as a record: its payload is the service's own event (what filters see, and what the function
        receives without `input`)."""
        scheduler = self.config.service == "scheduler"
        arn = self.schedule_arn if scheduler else self.rule_arn
        event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{arn}#{fire.isoformat()}"))
        payload = scheduled_event(
            event_id, fire, self.context.account_id, self.context.region, arn, scheduler=scheduler
        )
        return Record(self.key, fire, payload, timestamp=fire.timestamp(), size=512, item_id=event_id)

    def render(self, records: Sequence[Record], attempt: int) -> Any:
        """The event of one fire: the service's Scheduled Event, or `input` (with Scheduler's placeholders for this
        attempt)."""
        (record,) = records
        value = self.config.input
        if value is None:
            return record.payload
        if self.config.service == "scheduler":
            value = self._substitute(value, record.position, attempt)  # type: ignore[arg-type]
        return json.loads(value) if isinstance(value, str) else value

    def execution_id(self, fire: datetime, attempt: int) -> str:
        """Scheduler's execution id: unique per attempted invocation (the same in its dead letter)."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.schedule_arn}#{fire.isoformat()}#{attempt}#{self._salt}"))

    def dead_letter(self, records: Sequence[Record], give_up: GiveUp) -> Document:
        """EventBridge Scheduler's dead-letter event for a fire the mapping gave up on: the last attempt's request
        body (cut to fit SQS, marked by IS_PAYLOAD_TRUNCATED) and Scheduler's message attributes."""
        (record,) = records
        fire: datetime = record.position  # type: ignore[assignment]
        attempt = max(1, give_up.attempts)
        body = self.render(records, attempt)
        text = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))
        truncated = len(text.encode()) > PAYLOAD_LIMIT
        if truncated:
            body = text.encode()[:PAYLOAD_LIMIT].decode(errors="ignore")
        attributes = {
            "ERROR_CODE": string(give_up.error_type),
            "ERROR_MESSAGE": string(give_up.error_message),
            "EXECUTION_ID": string(self.execution_id(fire, attempt)),
            "IS_PAYLOAD_TRUNCATED": string("true" if truncated else "false"),
            "RETRY_ATTEMPTS": number(max(0, give_up.attempts - 1)),
            "SCHEDULED_TIME": string(iso_seconds(fire)),
            "SCHEDULE_ARN": string(self.schedule_arn),
            "TARGET_ARN": string(give_up.function_arn),
        }
        if give_up.condition in EXHAUSTED:
            attributes["EXHAUSTED_RETRY_CONDITION"] = string(EXHAUSTED[give_up.condition])
        return Document(body, mapping=self.context.mapping, lane=self.key, attributes=dict(sorted(attributes.items())))

    def _substitute(self, value: Any, fire: datetime, attempt: int) -> Any:
        values = {
            "<aws.scheduler.schedule-arn>": self.schedule_arn,
            "<aws.scheduler.scheduled-time>": iso_seconds(fire),
            "<aws.scheduler.execution-id>": self.execution_id(fire, attempt),
            "<aws.scheduler.attempt-number>": str(attempt),
        }
        text = value if isinstance(value, str) else json.dumps(value)
        for placeholder, replacement in values.items():
            text = text.replace(placeholder, replacement)
        return text if isinstance(value, str) else json.loads(text)

    async def settle(self, outcome: Outcome) -> None:
        """Checkpoint the newest fire before which every fire has settled."""
        self._tracker.done(r.position for r in outcome.settled)
        newest = self._tracker.advance()
        if isinstance(newest, datetime):
            await self.context.store.put(self.scope, "last", newest.isoformat())

    async def close(self) -> None:
        """Stop firing; a pending read ends."""
        self._closed.set()


def scheduled_event(
    event_id: str, fire: datetime, account: str, region: str, arn: str, *, scheduler: bool
) -> dict[str, Any]:
    """The "Scheduled Event" a schedule sends without an input: an EventBridge rule's (`source: aws.events`, the
    rule's ARN, `detail` an empty object), or EventBridge Scheduler's (`source: aws.scheduler`, the schedule's ARN,
    and `detail` the string "{}", not an object: that is what Scheduler sends)."""
    return {
        "version": "0",
        "id": event_id,
        "detail-type": "Scheduled Event",
        "source": "aws.scheduler" if scheduler else "aws.events",
        "account": account,
        "time": iso_seconds(fire),
        "region": region,
        "resources": [arn],
        "detail": "{}" if scheduler else {},
    }


def sample_event() -> dict[str, Any]:
    """An EventBridge rule's "Scheduled Event" (`hub events schedule`)."""
    arn = "arn:aws:events:us-east-1:123456789012:rule/example-schedule"
    return scheduled_event(str(uuid.uuid4()), datetime.now(UTC), "123456789012", "us-east-1", arn, scheduler=False)


def scheduler_sample_event() -> dict[str, Any]:
    """What EventBridge Scheduler sends a function when the schedule has no input (`hub events schedule
    scheduler`)."""
    arn = "arn:aws:scheduler:us-east-1:123456789012:schedule/default/example-schedule"
    return scheduled_event(str(uuid.uuid4()), datetime.now(UTC), "123456789012", "us-east-1", arn, scheduler=True)


CONNECTOR = ConnectorSpec(
    type="schedule",
    config=ScheduleConfig,
    build=ScheduleSource,
    family="async",
    summary="EventBridge rules' and EventBridge Scheduler's schedules: rate(), cron(), at(), DST-aware, checkpointed.",
    sample_event=sample_event,
    sample_variants={"scheduler": scheduler_sample_event},
    leases="source",  # several hubs: the one holding the schedule's lease fires it
)
