"""A configured function: its runtime, its reserved concurrency and the invocation log line.

Every failed invocation is logged on its own line. Successful ones are too, up to LOG_EACH_PER_SECOND a second
per mapping; past that they are counted and summed up in one line a second, so that a busy stream shows what it
does without writing a line per batch (a thousand lines a second cost the hub a tenth of its time). Every
invocation is also recorded for /invocations and /metrics (hub/invocations.py) and, with the `otel` extra, is an
OpenTelemetry span (hub/tracing.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from hub import tracing
from hub.config import FunctionConfig, FunctionDefaults, HubConfig
from hub.invocations import ACTIVITY, Activity
from hub.records import plain
from hub.runtimes import LambdaContext, Result, Runtime, error_payload, log_stream_name
from hub.runtimes.python import PythonRuntime
from hub.runtimes.variables import FunctionSetup, merged_aws

log = logging.getLogger("hub.invoke")
_now = time.monotonic

LOG_EACH_PER_SECOND = 20
"""Successful invocations logged one by one, per mapping and second; the rest are summed up once a second."""


class _Summary:
    """Successful invocations of one mapping in the current second that were not logged one by one."""

    __slots__ = ("duration", "hidden", "records", "shown", "started")

    def __init__(self) -> None:
        self.started = _now()
        self.shown = self.hidden = self.records = 0
        self.duration = 0.0


DEFAULT_ENVIRONMENTS = 32
"""Execution environments of a `runtime: python` function without a `concurrency` (started only as needed)."""


def function_setup(
    name: str,
    config: FunctionConfig,
    region: str,
    defaults: FunctionDefaults | None = None,
    extra_environment: Mapping[str, str] | None = None,
) -> FunctionSetup:
    """What a runtime needs to give the function Lambda's environment: its variables are the hub's extras (such
    as the S3 endpoint over watched folders), then `function_defaults.environment`, then its own."""
    defaults = defaults or FunctionDefaults()
    return FunctionSetup(
        name=name,
        handler=config.handler or "",
        memory_mb=config.memory,
        region=region,
        task_root=os.path.abspath(config.code_uri or "."),
        environment={**(extra_environment or {}), **defaults.environment, **config.environment},
        aws=merged_aws(config.aws, defaults.aws),
    )


def build_runtime(
    setup: FunctionSetup, config: FunctionConfig, *, shared: bool = False, log_stream: str = ""
) -> Runtime:
    """The runtime of a function. `shared`: other in-process functions share this process's environment, so only
    the variables that are the same for all of them are set (each one's `environment` is refused at load if it
    differs from another's)."""
    if config.runtime == "python":
        from hub.runtimes.process import ProcessRuntime

        environments = config.concurrency or DEFAULT_ENVIRONMENTS
        return ProcessRuntime(setup, environments=environments, timeout=config.timeout)
    if config.runtime == "http":
        from hub.runtimes.http import HttpRuntime

        assert config.url is not None
        return HttpRuntime(
            config.url, headers=config.headers, authorization_env=config.authorization_env, function_name=setup.name
        )
    if config.runtime == "lambda":
        from hub.runtimes.aws_lambda import LambdaRuntime

        assert config.function_name is not None
        return LambdaRuntime(
            config.function_name, qualifier=config.qualifier, connection=config.aws, region=setup.region
        )
    return PythonRuntime(
        setup.handler,
        task_root=setup.task_root,
        concurrency=config.in_process_concurrency,
        variables=in_process_variables(setup, shared=shared, log_stream=log_stream or log_stream_name()),
    )


def in_process_variables(setup: FunctionSetup, *, shared: bool, log_stream: str) -> dict[str, str]:
    """What an in-process function adds to the hub's own environment (the only one it can see)."""
    variables = dict(setup.environment)
    reserved = setup.reserved(log_stream)
    if shared:  # several in-process functions: only what is the same for each of them
        reserved = {k: reserved[k] for k in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_EXECUTION_ENV") if k in reserved}
    variables.update(reserved)
    return variables


class Function:
    """A function of the configuration: its runtime, its reserved concurrency and its invocation log (one line per
    invocation, or a summary per mapping when the log level hides successes)."""

    def __init__(
        self,
        name: str,
        config: FunctionConfig,
        *,
        region: str,
        account_id: str,
        defaults: FunctionDefaults | None = None,
        extra_environment: Mapping[str, str] | None = None,
        shared: bool = False,
        activity: Activity | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.region = region
        self.account_id = account_id
        self.arn = f"arn:aws:lambda:{region}:{account_id}:function:{name}"
        self.setup = function_setup(name, config, region, defaults, extra_environment)
        self._log_stream = log_stream_name()  # in-process: its one environment's (`python`: each its own)
        self.runtime: Runtime = build_runtime(self.setup, config, shared=shared, log_stream=self._log_stream)
        self._slots = asyncio.Semaphore(config.concurrency) if config.concurrency else None
        self._summaries: dict[str, _Summary] = {}
        self.activity = activity or ACTIVITY
        """Where its invocations are recorded (/invocations, /metrics): the process's, unless given another."""
        self._stats = self.activity.stats(name)
        count_running = getattr(self.runtime, "count_running", None)
        self._counted_by_runtime = callable(count_running)
        """Whether the runtime counts ConcurrentExecutions itself (`python`: only invocations begun in an
        environment, not those waiting for one or queued in one)."""
        if count_running is not None:
            count_running(self._concurrent)
        self.started = False
        """True between start() and close(): the function's environments (or module) are loaded."""

    @classmethod
    def from_config(cls, name: str, hub: HubConfig, extra_environment: Mapping[str, str] | None = None) -> Function:
        """Function `name` of a hub configuration, as `hub run` and `hub invoke` both build it."""
        in_process = [n for n, f in hub.functions.items() if f.runtime == "in-process"]
        return cls(
            name,
            hub.functions[name],
            region=hub.region,
            account_id=hub.account_id,
            defaults=hub.function_defaults,
            extra_environment=extra_environment,
            shared=len(in_process) > 1,
        )

    async def start(self) -> None:
        """Load the function (its first execution environment, or its module in-process). Raises if it cannot."""
        await self.runtime.start()
        self.started = True

    def context(self) -> LambdaContext:
        """A new Lambda context for one invocation (its own request id, its deadline counted from now)."""
        return LambdaContext(
            function_name=self.name,
            memory_limit_in_mb=self.config.memory,
            timeout=self.config.timeout,
            region=self.region,
            account_id=self.account_id,
            log_stream_name=self._log_stream,
        )

    async def invoke(
        self,
        event: Any,
        *,
        mapping: str = "",
        records: int = 1,
        attempt: int = 1,
        trace: Sequence[Mapping[str, str]] = (),
    ) -> Result:
        """One invocation, logged with its request id, duration and outcome, and recorded in `activity` (hub/
        invocations.py). Never raises for function faults.

        `trace`: the trace contexts the records carry (hub.tracing.carriers), which the invocation's span continues
        when tracing is on (the `otel` extra)."""
        if tracing.enabled():
            with tracing.invocation(self.name, self.region, mapping, records, attempt, trace) as span:
                result = await self._run(event)
                tracing.outcome(span, result)
        else:
            result = await self._run(event)
        self.activity.record(self.name, mapping, time.time() - result.duration, result, records, attempt)
        if result.ok and not (log.isEnabledFor(logging.INFO) and self._show(mapping, records, result.duration)):
            return result
        details: dict[str, object] = {
            "function": self.name,
            "request_id": result.request_id,
            "duration_ms": round(result.duration * 1000, 3),
            "outcome": "success" if result.ok else (result.error or "error").lower(),
            "records": records,
            "attempt": attempt,
        }
        if mapping:
            details["mapping"] = mapping
        if not result.ok:
            log.warning("failed: %s", result.error_message, extra={"fields": details})
        else:
            log.info("invoked", extra={"fields": details})
        return result

    async def _run(self, event: Any) -> Result:
        if not getattr(self.runtime, "takes_encoded", False):
            event = plain(event)  # records a source gave as JSON already (see hub.records.plain), as objects
        context = self.context()
        if self.config.concurrency == 0:
            return Result(
                False,
                error_payload("TooManyRequestsException", "Rate Exceeded. (reserved concurrency is 0)"),
                0.0,
                context.aws_request_id,
                "Throttled",
            )
        if self._slots is None:
            return await self._running(event, context)
        async with self._slots:
            return await self._running(event, self.context())  # the timeout counts from when the function starts

    def _concurrent(self, change: int) -> None:
        self._stats.concurrent += change

    async def _running(self, event: Any, context: LambdaContext) -> Result:
        if self._counted_by_runtime:
            return await self.runtime.invoke(event, context)
        stats = self._stats
        stats.concurrent += 1  # ConcurrentExecutions
        try:
            return await self.runtime.invoke(event, context)
        finally:
            stats.concurrent -= 1

    def _show(self, mapping: str, records: int, duration: float) -> bool:
        """Whether to log this successful invocation on its own line; else count it into the second's summary."""
        summary = self._summaries.get(mapping)
        if summary is None:
            summary = self._summaries[mapping] = _Summary()
        elif _now() - summary.started >= 1.0:
            self._log_summary(mapping, summary)
            summary = self._summaries[mapping] = _Summary()
        if summary.shown < LOG_EACH_PER_SECOND:
            summary.shown += 1
            return True
        summary.hidden += 1
        summary.records += records
        summary.duration += duration
        return False

    def _log_summary(self, mapping: str, summary: _Summary) -> None:
        if not summary.hidden:
            return
        values: dict[str, object] = {
            "function": self.name,
            "invocations": summary.hidden,
            "records": summary.records,
            "mean_duration_ms": round(summary.duration / summary.hidden * 1000, 3),
            "seconds": round(_now() - summary.started, 1),
        }
        if mapping:
            values["mapping"] = mapping
        log.info("invoked %d more times, all succeeded", summary.hidden, extra={"fields": values})

    async def close(self) -> None:
        """Log the invocation summaries still due and close the runtime."""
        for mapping, summary in self._summaries.items():
            self._log_summary(mapping, summary)
        self._summaries.clear()
        self.started = False
        await self.runtime.close()
