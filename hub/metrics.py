"""`/metrics`: the hub's state in Prometheus form, under AWS's metric names, written with prometheus-client.

A custom collector reads the hub at scrape time (the mappings' counters, the lag hub.history sampled, the
functions' counts in hub.invocations): nothing is counted twice. Each AWS metric becomes `aws_<namespace>_<its
name in snake_case>`, as CloudWatch exporters name them, in Prometheus's base units (seconds, not AWS's
milliseconds), counters ending in `_total`; its help text starts with AWS's own name, so that searching the page
for `PolledEventCount` finds it. Event source mapping metrics carry a `mapping` label (AWS's dimension is the
mapping's UUID; here it is its name), function metrics a `function` label. The table is in docs/metrics.md.

Counts are this process's: each poller process of a mapping counts its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry

from hub.config import HubConfig
from hub.functions import Function
from hub.history import Monitor
from hub.invocation import Counters
from hub.invocations import DURATION_BUCKETS, Activity
from hub.mapping import MappingRunner
from hub.sync import SyncRunner

MAPPING_COUNTERS = (
    # (counter in hub.dispatch.Counters, metric name, AWS's name, what it counts, families it applies to)
    ("polled", "aws_lambda_polled_event_count", "PolledEventCount", "records read from the source", None),
    (
        "filtered_out",
        "aws_lambda_filtered_out_event_count",
        "FilteredOutEventCount",
        "records no filter pattern matched",
        None,
    ),
    (
        "invoked",
        "aws_lambda_invoked_event_count",
        "InvokedEventCount",
        "records sent to the function, every attempt counted",
        None,
    ),
    (
        "failed_invoke",
        "aws_lambda_failed_invoke_event_count",
        "FailedInvokeEventCount",
        "records of invocations that failed (or that a partial batch response reported failed)",
        None,
    ),
    (
        "dropped",
        "aws_lambda_dropped_event_count",
        "DroppedEventCount",
        "records given up with no destination to take them",
        None,
    ),
    (
        "deleted",
        "aws_lambda_deleted_event_count",
        "DeletedEventCount",
        "records a queue deleted (acked) once settled",
        ("queue",),
    ),
    (
        "destination_delivered",
        "aws_lambda_on_failure_destination_delivered_event_count",
        "OnFailureDestinationDeliveredEventCount",
        "records handed to the on-failure destination",
        None,
    ),
)

LAG_GAUGES = (
    # (field of hub.source.Lag, metric name, AWS's name, help, scale to the metric's unit)
    (
        "iterator_age_ms",
        "aws_lambda_iterator_age_seconds",
        "IteratorAge (AWS/Lambda, in milliseconds there)",
        "streams: how old the newest record read is, the largest over the mapping's lanes",
        0.001,
    ),
    (
        "offset_lag",
        "aws_lambda_offset_lag",
        "OffsetLag (AWS/Lambda)",
        "Kafka: records written and not yet processed, the largest over the mapping's partitions",
        1.0,
    ),
    (
        "oldest_message_age_s",
        "aws_sqs_approximate_age_of_oldest_message_seconds",
        "ApproximateAgeOfOldestMessage (AWS/SQS)",
        "queues: the age of the oldest message waiting, as far as the queue tells it",
        1.0,
    ),
    (
        "backlog",
        "aws_sqs_approximate_number_of_messages_visible",
        "ApproximateNumberOfMessagesVisible (AWS/SQS)",
        "queues: messages waiting to be delivered (SQS; a Redis group's lag; RabbitMQ's ready messages)",
        1.0,
    ),
)


class Scraped(Protocol):
    """What the collector reads of a hub (hub.app.Hub) at each scrape."""

    @property
    def config(self) -> HubConfig:
        """Its configuration: which mappings exist, and their source's family."""
        ...

    @property
    def counters(self) -> Mapping[str, Counters]:
        """Every mapping's counters, by name."""
        ...

    @property
    def runners(self) -> Sequence[MappingRunner | SyncRunner]:
        """Its mappings running in this process."""
        ...

    @property
    def functions(self) -> Mapping[str, Function]:
        """Its functions, by name."""
        ...

    @property
    def monitor(self) -> Monitor | None:
        """The lag it sampled (hub.history), if the admin endpoint started it."""
        ...


class HubCollector(Collector):
    """The hub's metrics, read from `hub` at each scrape."""

    def __init__(self, hub: Scraped, activity: Activity) -> None:
        self.hub = hub
        self.activity = activity

    def collect(self) -> Iterator[Metric]:
        """Every metric family, with the values the hub holds now."""
        yield from self._mappings()
        yield from self._functions()
        yield from self._hub()

    def _mappings(self) -> Iterator[Metric]:
        hub = self.hub
        families = {m.display_name: m.spec.family for m in hub.config.mappings}
        counted = [(name, counters) for name, counters in hub.counters.items() if name in families]
        for field, name, aws, what, applies in MAPPING_COUNTERS:
            metric = CounterMetricFamily(name, f"{aws} (AWS/Lambda): {what}.", labels=["mapping"])
            for mapping, counters in counted:
                if applies is None or families[mapping] in applies:
                    metric.add_metric([mapping], getattr(counters, field))
            yield metric
        monitor = hub.monitor
        lags = {name: monitor.lag(name) for name, _ in counted} if monitor is not None else {}
        for field, name, aws, what, scale in LAG_GAUGES:
            gauge = GaugeMetricFamily(name, f"{aws}: {what}.", labels=["mapping"])
            for mapping, lag in lags.items():
                if field in lag:
                    gauge.add_metric([mapping], lag[field] * scale)
            yield gauge

    def _functions(self) -> Iterator[Metric]:
        names = sorted(set(self.hub.functions) & set(self.activity.functions))
        stats = {name: self.activity.functions[name] for name in names}
        invocations = CounterMetricFamily(
            "aws_lambda_invocations",
            "Invocations (AWS/Lambda): invocations that ran, failed ones included (not throttled ones).",
            labels=["function"],
        )
        errors = CounterMetricFamily(
            "aws_lambda_errors",
            "Errors (AWS/Lambda): invocations that failed in the function (timeouts included).",
            labels=["function"],
        )
        throttles = CounterMetricFamily(
            "aws_lambda_throttles",
            "Throttles (AWS/Lambda): invocations refused for want of concurrency.",
            labels=["function"],
        )
        concurrent = GaugeMetricFamily(
            "aws_lambda_concurrent_executions",
            "ConcurrentExecutions (AWS/Lambda): invocations running now.",
            labels=["function"],
        )
        duration = HistogramMetricFamily(
            "aws_lambda_duration_seconds",
            "Duration (AWS/Lambda, in milliseconds there): how long invocations ran, in seconds.",
            labels=["function"],
        )
        for name, stat in stats.items():
            invocations.add_metric([name], stat.invocations)
            errors.add_metric([name], stat.errors)
            throttles.add_metric([name], stat.throttles)
            concurrent.add_metric([name], stat.concurrent)
            duration.add_metric([name], _cumulative(stat.buckets), stat.duration_sum)
        yield from (invocations, errors, throttles, concurrent, duration)

    def _hub(self) -> Iterator[Metric]:
        """What has no AWS name: lanes, health, destination errors, the `http` source's answers."""
        runners = self.hub.runners
        errors = CounterMetricFamily(
            "hub_destination_errors",
            "Failed attempts to hand records to the on-failure destination.",
            labels=["mapping"],
        )
        lanes = GaugeMetricFamily("hub_lanes", "Lanes this process reads.", labels=["mapping"])
        up = GaugeMetricFamily("hub_mapping_up", "1 while the mapping's source is connected.", labels=["mapping"])
        for runner in runners:
            errors.add_metric([runner.name], runner.counters.destination_errors)
            lanes.add_metric([runner.name], len(runner.lanes))
            up.add_metric([runner.name], int(runner.state == "running"))
        yield from (errors, lanes, up)
        served = [(r.name, r.sync.stats) for r in runners if isinstance(r, SyncRunner)]
        if not served:
            return
        requests = CounterMetricFamily(
            "hub_http_requests", "Requests answered, by status code.", labels=["mapping", "code"]
        )
        seconds = SummaryMetricFamily(
            "hub_http_request_duration_seconds", "Time from a request's arrival to its answer.", labels=["mapping"]
        )
        for name, stats in served:
            for code, count in sorted(stats.by_status.items()):
                requests.add_metric([name, str(code)], count)
            seconds.add_metric([name], count_value=stats.count, sum_value=stats.seconds_sum)
        yield from (requests, seconds)


def _cumulative(buckets: list[int]) -> list[tuple[str, float]]:
    """Prometheus's cumulative buckets from per-bucket counts (the last one above every bound: +Inf)."""
    out: list[tuple[str, float]] = []
    total = 0
    for bound, count in zip((*map(str, DURATION_BUCKETS), "+Inf"), buckets, strict=True):
        total += count
        out.append((bound, float(total)))
    return out


def registry(hub: Scraped, activity: Activity) -> CollectorRegistry:
    """A registry of the hub's collector alone (not the library's default one, which holds process metrics of its
    own and would be shared by every hub of the process)."""
    found = CollectorRegistry(auto_describe=False)
    found.register(HubCollector(hub, activity))
    return found


def exposition(hub_registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """The page and its content type, in the format the scraper asks for (Prometheus text, or OpenMetrics)."""
    from prometheus_client.exposition import choose_encoder

    encoder, content_type = choose_encoder(accept or "")
    return encoder(hub_registry), content_type
