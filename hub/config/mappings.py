"""Event source mappings: AWS's settings in snake_case, which of them apply to which family of source, and how
a mapping runs over several processes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Discriminator, Field, Tag, model_validator

from hub import registry
from hub.config.base import Model
from hub.source import ConnectorSpec, Family, MappingFacts, SettingError
from hub.types import Duration


class FileDestination(Model):
    """JSON lines, one AWS failure record per line, fsynced."""

    type: Literal["file"]
    path: str = Field(description="File to append the records to (created with its folder).")


class DestinationConfig(Model):
    """AWS's DestinationConfig of a mapping: where records go when it gives up on them."""

    model_config = ConfigDict(defer_build=True)  # built once: as the joined model (loading.config_model)

    on_failure: Any = Field(None, description="Where records go when the mapping gives up on them: `{type: ...}`.")


class FilterEntry(Model):
    """One entry of AWS's FilterCriteria: `{pattern: ...}`."""

    pattern: Any = Field(description="An EventBridge pattern, as an object or a JSON string.")


class FilterCriteria(Model):
    """AWS's FilterCriteria form of `filter_criteria`: `{filters: [{pattern: ...}]}`, at most 10."""

    filters: list[FilterEntry] = Field(default_factory=list, max_length=10)


# Which mapping settings apply to which source family (AWS allows exactly these per kind of source).
APPLIES: dict[str, frozenset[Family]] = {
    "batch_size": frozenset({"stream", "queue"}),
    "maximum_batching_window": frozenset({"stream", "queue"}),
    "maximum_retry_attempts": frozenset({"stream", "async"}),
    "maximum_event_age": frozenset({"async"}),
    "maximum_record_age": frozenset({"stream"}),
    "bisect_batch_on_function_error": frozenset({"stream"}),
    "function_response_types": frozenset({"stream", "queue"}),
    "parallelization_factor": frozenset({"stream"}),
    "tumbling_window": frozenset({"stream"}),
    "max_receive_count": frozenset({"queue"}),
}
FAMILY_DEFAULTS: dict[Family, dict[str, Any]] = {
    "stream": {"batch_size": 100, "maximum_batching_window": 0.0, "maximum_retry_attempts": -1},
    "queue": {"batch_size": 10, "maximum_batching_window": 0.0, "max_concurrency": 5},
    "async": {"batch_size": 1, "maximum_batching_window": 0.0, "maximum_retry_attempts": 2, "max_concurrency": 10},
    "sync": {"batch_size": 1, "maximum_batching_window": 0.0},
}
SYNC_REFUSES = ("max_concurrency", "retry_delay", "maximum_retry_delay", "filter_criteria", "destination_config")
"""Settings of a mapping that a synchronous source does not take: AWS invokes RequestResponse once per request."""


class ProvisionedPollerConfig(Model):
    """AWS's provisioned mode for a mapping: dedicated event pollers. A poller here is an OS process."""

    minimum_pollers: int = Field(
        None,  # type: ignore[assignment]  # None: the source's minimum (1; SQS: 2), see MappingConfig.pollers
        ge=1,
        le=200,
        description="Processes that poll this mapping; the hub's own process is the first (AWS: 1-200, default 1; "
        "SQS: 2-200, default 2).",
    )
    maximum_pollers: int = Field(
        200,
        ge=1,
        le=2000,
        description="At least minimum_pollers (AWS: 1-2000). Validated and accepted for AWS compatibility: the hub "
        "does not autoscale and runs minimum_pollers.",
    )

    @model_validator(mode="after")
    def _max_not_below_min(self) -> ProvisionedPollerConfig:
        if self.minimum_pollers is not None and self.maximum_pollers < self.minimum_pollers:
            raise SettingError(
                ("maximum_pollers",),
                f"{self.maximum_pollers} is less than minimum_pollers ({self.minimum_pollers})",
            )
        return self


class MappingConfig(Model):
    """One event source mapping. The settings are AWS's, in snake_case."""

    model_config = ConfigDict(defer_build=True)  # built once: as the joined model (loading.config_model)

    name: str | None = Field(None, description="Stable name (checkpoints are kept under it). Default: function-type.")
    function: str = Field(description="Name of a function under `functions:`.")
    enabled: bool = Field(True, description="false: the mapping does not run (its checkpoints are kept).")
    batch_size: int | None = Field(None, ge=1, le=10000, description="Most records per invocation.")
    maximum_batching_window: Duration | None = Field(
        None, le=300, description="Longest wait for a batch to fill, counted from its first record."
    )
    maximum_retry_attempts: int | None = Field(
        None, ge=-1, le=10000, description="Retries after function errors (-1: until the record expires)."
    )
    maximum_event_age: Duration | None = Field(
        None, gt=0, le=21600, description="Asynchronous sources: give up on events older than this (default 6h)."
    )
    maximum_record_age: Duration | None = Field(None, description="Streams: give up on records older than this.")
    bisect_batch_on_function_error: bool = Field(
        False, description="Streams: split a failing batch in two and retry each half (does not use up retries)."
    )
    function_response_types: list[Literal["ReportBatchItemFailures"]] = Field(
        default_factory=list, max_length=1, description="[ReportBatchItemFailures]: the function may name failed items."
    )
    parallelization_factor: int = Field(
        1, ge=1, le=10, description="Streams: batches of one lane in flight at once (order kept per partition key)."
    )
    tumbling_window: Duration | None = Field(
        None, ge=0, le=900, description="Streams: aggregate in windows of this length, with state between invocations."
    )
    max_concurrency: int | None = Field(
        None, ge=1, le=1000, description="Most invocations of this mapping in flight at once."
    )
    max_receive_count: int | None = Field(None, ge=1, description="Queues: deliveries before the destination.")
    retry_delay: Duration = Field(
        1.0,
        ge=0,
        description="First retry delay; doubles each attempt, with jitter (AWS async uses 60s). `nats`: how long a "
        "failed message is nak'd for before JetStream delivers it again.",
    )
    maximum_retry_delay: Duration = Field(300.0, ge=0, description="Cap on the retry delay.")
    filter_criteria: (
        Annotated[
            Annotated[FilterCriteria, Tag("FilterCriteria")] | Annotated[list[Any], Tag("list")],
            # a mapping is AWS's form, anything else the list: one branch, so errors speak of the form written
            Discriminator(lambda value: "FilterCriteria" if isinstance(value, dict | FilterCriteria) else "list"),
        ]
        | None
    ) = Field(None, description="EventBridge patterns, ORed: a list, or AWS's {filters: [{pattern: ...}]}.")
    destination_config: DestinationConfig = Field(
        default_factory=lambda: DestinationConfig(), description="`on_failure`: where given-up records go."
    )
    provisioned_poller_config: ProvisionedPollerConfig | None = Field(
        None,
        description="AWS's ProvisionedPollerConfig, `{minimum_pollers: 1-200 (default 1; sqs: 2-200, default 2), "
        "maximum_pollers: 1-2000, at least minimum_pollers (default 200)}`: run the mapping in minimum_pollers OS "
        "processes (the hub's and minimum_pollers - 1 children it restarts and stops) that share the work through "
        "the broker's own coordination (a consumer group, competing consumers) or through leases in a shared "
        'checkpoint store; a source that can do neither refuses it. Which source does which: "Scaling a mapping '
        'over processes" above. The hub does not autoscale: maximum_pollers is validated, for AWS compatibility, '
        "and not used.",
    )

    source: Any = Field(description="The event source: `type:` names the connector.")

    @property
    def patterns(self) -> list[Any]:
        """The filter patterns, whichever form `filter_criteria` was written in ([] without filters)."""
        criteria = self.filter_criteria
        if criteria is None:
            return []
        if isinstance(criteria, FilterCriteria):
            return [entry.pattern for entry in criteria.filters]
        return list(criteria)

    @property
    def spec(self) -> ConnectorSpec:
        """The connector of the mapping's `source.type`."""
        spec = registry.get(self.source.type)
        return spec if spec.resolve is None else spec.resolve(self.source)

    def setting(self, name: str) -> Any:
        """A batching or retry setting: the one written in YAML, else the connector's default, else AWS's."""
        value = getattr(self, name)
        if value is not None:
            return value
        spec = self.spec
        if name in spec.defaults:
            return spec.defaults[name]
        return FAMILY_DEFAULTS[spec.family].get(name)

    @model_validator(mode="after")
    def _check_family(self) -> MappingConfig:
        spec = self.spec
        for name, families in APPLIES.items():
            if name in self.model_fields_set and spec.family not in families:
                raise SettingError((name,), f"does not apply to {spec.type} sources ({_FAMILY_WORDS[spec.family]})")
        if spec.family == "sync":
            for name in SYNC_REFUSES:
                if name in self.model_fields_set:
                    raise SettingError((name,), f"does not apply to {spec.type} sources ({_FAMILY_WORDS['sync']})")
        if spec.check is not None:
            try:
                facts = MappingFacts(
                    pollers=self.pollers,
                    max_receive_count=self.max_receive_count,
                    has_destination=self.destination_config.on_failure is not None,
                )
                spec.check(self.source, facts)
            except SettingError as exc:
                raise SettingError(("source", *exc.at), str(exc)) from None
        if (provisioned := self.provisioned_poller_config) is not None:
            if not self.shares_work and self.leases is None:
                raise SettingError(("provisioned_poller_config",), self._not_shared())
            least = spec.minimum_pollers
            if provisioned.minimum_pollers is None and provisioned.maximum_pollers < least:
                raise SettingError(
                    ("provisioned_poller_config", "maximum_pollers"),
                    f"{provisioned.maximum_pollers} is less than minimum_pollers ({least}, the default)",
                )
            if provisioned.minimum_pollers is not None and provisioned.minimum_pollers < least:
                raise SettingError(
                    ("provisioned_poller_config", "minimum_pollers"),
                    f"{spec.type} sources take {least} to 200 (as on AWS), not {provisioned.minimum_pollers}",
                )
        if self.filter_criteria is not None:
            from hub.filtering import FilterSet, PatternError

            try:
                FilterSet.compile(self.patterns)
            except PatternError as exc:
                # point at the offending value itself: the filter, and the place inside its pattern
                at: tuple[Any, ...] = ("filter_criteria",)
                if exc.index is not None:
                    wrapped = isinstance(self.filter_criteria, FilterCriteria)
                    at = (*at, "filters", exc.index, "pattern") if wrapped else (*at, exc.index)
                inside = "" if exc.parts or exc.path in ("", "(root)") else f"{exc.path}: "
                raise SettingError((*at, *exc.parts), f"{inside}{exc.reason}") from None
        return self

    @property
    def display_name(self) -> str:
        """The mapping's name: `name`, else `function-type`. Checkpoints, logs and /status use it."""
        return self.name or f"{self.function}-{self.source.type}"

    @property
    def shares_work(self) -> bool:
        """True when the source's broker shares the work between several processes reading this mapping: the
        connector says so (ConnectorSpec.shares_work)."""
        shares = self.spec.shares_work
        return shares(self.source) if callable(shares) else shares

    @property
    def leases(self) -> Literal["source", "lanes"] | None:
        """How hubs sharing a store share this mapping's work through leases (ConnectorSpec.leases): `source`, one
        lease for the whole source; `lanes`, one per lane; None when the broker shares it, or nothing can."""
        if self.shares_work:
            return None
        leases = self.spec.leases
        return leases(self.source) if callable(leases) else leases

    @property
    def pollers(self) -> int:
        """How many processes run this mapping (provisioned_poller_config.minimum_pollers, else 1)."""
        config = self.provisioned_poller_config
        if config is None:
            return 1
        return self.spec.minimum_pollers if config.minimum_pollers is None else config.minimum_pollers

    def _not_shared(self) -> str:
        hint = self.spec.shares_work_when
        return (
            f"does not apply to {self.source.type} sources as configured: pollers share a mapping's work through the "
            "broker's own consumer coordination or through leases in a shared checkpoint store, and this source has "
            + (f"neither unless you {hint}" if hint else "neither")
            + ' (docs/configuration.md, "Scaling a mapping over processes", lists the sources that do)'
        )


_FAMILY_WORDS = {
    "async": "each event is its own asynchronous invocation, as S3, EventBridge and IoT rules invoke Lambda",
    "queue": "a queue source",
    "stream": "a stream source",
    "sync": "each request is one synchronous invocation: no batching, retries, filters or destinations",
}
