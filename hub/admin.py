"""The admin HTTP endpoint: `/status` (JSON), `/metrics` (Prometheus text format), `/healthz`, the console at `/`
and the failure destinations' API (hub/failures_api.py).

It shows names, states, lanes and counts; never a source's settings. A mapping's last error is a broker's or
client's message, which may quote a URL or a setting: both pages are masked as log lines are (hub/redact.py). Counts
are this process's: a mapping with several pollers lists their pids under `pollers`, each counting its own.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from hub import failures_api, redact
from hub.config import HubConfig
from hub.control import ControlError, Mappings, Slot
from hub.functions import Function
from hub.health import Health
from hub.leases import Leases
from hub.mapping import MappingRunner
from hub.pollers import Pollers
from hub.store import CheckpointStore
from hub.sync import SyncRunner

if TYPE_CHECKING:
    from aiohttp import web

# counter name in Counters -> (metric name, help)
METRICS = {
    "polled": ("hub_records_polled_total", "Records read from the source (AWS: PolledEventCount)."),
    "filtered_out": ("hub_records_filtered_out_total", "Records no filter pattern matched (FilteredOutEventCount)."),
    "invoked": ("hub_records_invoked_total", "Records sent to the function, retries included (InvokedEventCount)."),
    "failed_invoke": ("hub_records_failed_invoke_total", "Records of failed invocations (FailedInvokeEventCount)."),
    "dropped": ("hub_records_dropped_total", "Records given up with no destination (DroppedEventCount)."),
    "destination_delivered": (
        "hub_records_destination_delivered_total",
        "Records handed to the on-failure destination (OnFailureDestinationDeliveredEventCount).",
    ),
    "destination_errors": ("hub_destination_errors_total", "Failed attempts to hand records to the destination."),
}


def slot_view(slot: Slot) -> dict[str, Any]:
    """A mapping as AWS's GetEventSourceMapping would describe its state (never a source setting)."""
    return {
        "name": slot.name,
        "function": slot.config.function,
        "source": slot.config.source.type,
        "State": slot.state,
        "StateTransitionReason": slot.reason,
    }


class Observed(Protocol):
    """What the admin endpoint sees of a hub (hub.app.Hub): what it reads, and the live-control operations through
    which its authenticated writes go (hub.control)."""

    @property
    def started(self) -> float:
        """When the hub started (monotonic)."""
        ...

    @property
    def config(self) -> HubConfig:
        """Its configuration (only the store's kind is shown)."""
        ...

    @property
    def runners(self) -> Sequence[MappingRunner | SyncRunner]:
        """Its mappings in this process."""
        ...

    @property
    def pollers(self) -> Pollers | None:
        """The poller processes it started, if any."""
        ...

    @property
    def leases(self) -> Leases:
        """Its leases (a cluster member's, or the local ones)."""
        ...

    @property
    def cluster_health(self) -> Health:
        """Whether the shared store answers."""
        ...

    @property
    def functions(self) -> Mapping[str, Function]:
        """Its functions, by name."""
        ...

    @property
    def mappings(self) -> Mappings:
        """Its mappings' states, and the operations that change them (the API's writes)."""
        ...

    @property
    def store(self) -> CheckpointStore:
        """Its checkpoint store (replays keep what they removed from a Kafka destination there)."""
        ...

    async def update_mapping(self, name: str, changes: dict[str, Any]) -> Slot:
        """Change a mapping's settings (ControlError if refused)."""
        ...

    async def reload(self) -> Any:
        """Read the configuration file again and apply the difference (ControlError if refused)."""
        ...


def status(hub: Observed) -> dict[str, Any]:
    """The JSON of /status: uptime, the store's kind, each mapping's state, lanes, counts and pollers, the
    cluster and the functions' limits; never a setting of a source."""
    pollers = hub.pollers.status() if hub.pollers is not None else {}
    states = {slot.name: slot for slot in hub.mappings.slots.values()}
    return {
        "uptime_s": round(time.monotonic() - hub.started, 3),
        "checkpoints": hub.config.checkpoints.split(":", 1)[0],
        "mappings": [
            {
                "name": runner.name,
                "function": runner.mapping.function,
                "source": runner.mapping.source.type,
                "state": runner.state,
                "State": states[runner.name].state if runner.name in states else "Enabled",
                "running_since": states[runner.name].since if runner.name in states else None,
                "last_error": runner.last_error or None,
                "lanes": sorted(runner.lanes),
                "in_flight_batches": runner.in_flight_batches,  # sync sources: requests being answered
                "counters": {k: v for k, v in vars(runner.counters).items() if isinstance(v, int)},
                **(
                    {"responses": {str(k): v for k, v in sorted(runner.sync.stats.by_status.items())}}
                    if isinstance(runner, SyncRunner)
                    else {}
                ),
                "pollers": pollers.get(
                    runner.name, [{"poller": 1, "pid": os.getpid(), "restarts": 0, "running": True}]
                ),
                **({"leases": sorted(held)} if (held := hub.leases.held(runner.name)) else {}),
            }
            for runner in hub.runners
        ],
        "stopped_mappings": [slot_view(slot) for slot in hub.mappings.slots.values() if slot.runner is None],
        "cluster": {
            **hub.leases.status(),
            "state": "degraded" if hub.cluster_health.degraded else "running",
            "last_error": hub.cluster_health.last_error or None,
        },
        "functions": [
            {
                "name": name,
                "runtime": fn.config.runtime,
                "timeout_s": fn.config.timeout,
                "memory_mb": fn.config.memory,
                "concurrency": fn.config.concurrency,
            }
            for name, fn in hub.functions.items()
        ],
    }


def metrics(hub: Observed) -> str:
    """The text of /metrics, in Prometheus's text format: the counters of every mapping, its lanes, whether it is
    up, and the sync sources' responses."""
    lines: list[str] = []
    for field, (name, help_text) in METRICS.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
        for runner in hub.runners:
            lines.append(f'{name}{{mapping="{_label(runner.name)}"}} {getattr(runner.counters, field)}')
    lines += ["# HELP hub_lanes Lanes this process reads.", "# TYPE hub_lanes gauge"]
    lines += [f'hub_lanes{{mapping="{_label(r.name)}"}} {len(r.lanes)}' for r in hub.runners]
    lines += ["# HELP hub_mapping_up 1 while the mapping's source is connected.", "# TYPE hub_mapping_up gauge"]
    lines += [f'hub_mapping_up{{mapping="{_label(r.name)}"}} {int(r.state == "running")}' for r in hub.runners]
    lines += _request_metrics(hub)
    return "\n".join(lines) + "\n"


def _request_metrics(hub: Observed) -> list[str]:
    """Sync sources (`http`): responses by status code and their latency, from request received to answer sent."""
    served = [(r.name, r.sync.stats) for r in hub.runners if isinstance(r, SyncRunner)]
    if not served:
        return []
    lines = [
        "# HELP hub_http_requests_total Requests answered, by status code.",
        "# TYPE hub_http_requests_total counter",
    ]
    for name, stats in served:
        for code, count in sorted(stats.by_status.items()):
            lines.append(f'hub_http_requests_total{{mapping="{_label(name)}",code="{code}"}} {count}')
    lines += [
        "# HELP hub_http_request_duration_seconds Time from a request's arrival to its answer.",
        "# TYPE hub_http_request_duration_seconds summary",
    ]
    for name, stats in served:
        lines.append(f'hub_http_request_duration_seconds_sum{{mapping="{_label(name)}"}} {stats.seconds_sum:.6f}')
        lines.append(f'hub_http_request_duration_seconds_count{{mapping="{_label(name)}"}} {stats.count}')
    return lines


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


async def _slot(operation: Awaitable[Slot]) -> dict[str, Any]:
    return slot_view(await operation)


async def serve(hub: Observed, host: str, port: int) -> web.AppRunner:
    """Start the endpoint; returns the runner to clean up at stop."""
    from aiohttp import web

    async def status_view(request: web.Request) -> web.Response:
        return web.json_response(redact.data(status(hub)))

    async def metrics_view(request: web.Request) -> web.Response:
        return web.Response(text=redact.text(metrics(hub)), content_type="text/plain", charset="utf-8")

    async def health_view(request: web.Request) -> web.Response:
        down = [r.name for r in hub.runners if r.state != "running"]
        if hub.cluster_health.degraded:
            down.append("cluster")  # the lease store does not answer: leases may be lost
        return web.json_response({"ok": not down, "not_running": down}, status=200 if not down else 503)

    def allowed(request: web.Request) -> web.Response | None:
        """None if the request may change something; else the answer that refuses it. A browser's request from a
        page of another origin is refused whatever it carries (a page elsewhere must not drive this endpoint)."""
        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != request.host:
            return web.json_response({"error": "changes are accepted from this endpoint's own pages only"}, status=403)
        token = hub.config.admin.token if hub.config.admin is not None else None
        if token is None:
            return None
        given = request.headers.get("Authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {token.get_secret_value()}".encode()):
            return None
        return web.json_response({"error": "this needs the admin token: Authorization: Bearer <token>"}, status=401)

    async def control(request: web.Request, action: Callable[[], Awaitable[Any]]) -> web.Response:
        refused = allowed(request)
        if refused is not None:
            return refused
        try:
            answer = await action()
        except ControlError as exc:
            return web.json_response({"error": redact.text(str(exc))}, status=exc.status)
        return web.json_response(redact.data(answer))

    async def disable_view(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return await control(request, lambda: _slot(hub.mappings.disable(name)))

    async def enable_view(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return await control(request, lambda: _slot(hub.mappings.enable(name)))

    async def update_view(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            changes = await request.json()
        except ValueError:
            return web.json_response({"error": "the body must be a JSON object of settings"}, status=400)
        if not isinstance(changes, dict):
            return web.json_response({"error": "the body must be a JSON object of settings"}, status=400)
        return await control(request, lambda: _slot(hub.update_mapping(name, changes)))

    async def reload_view(request: web.Request) -> web.Response:
        async def run() -> Any:
            return (await hub.reload()).as_dict()

        return await control(request, run)

    app = web.Application()
    failures_api.add_routes(app, hub, allowed)
    app.router.add_post("/mappings/{name}/disable", disable_view)
    app.router.add_post("/mappings/{name}/enable", enable_view)
    app.router.add_patch("/mappings/{name}", update_view)
    app.router.add_post("/reload", reload_view)
    app.router.add_get("/status", status_view)
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/healthz", health_view)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
