"""The admin HTTP endpoint: `/status` (JSON), `/metrics` (Prometheus, hub/metrics.py), `/healthz`, `/history`
and `/invocations` (JSON, hub/history.py and hub/invocations.py), the console at `/`, the failure destinations' API
(hub/failures_api.py) and the API that changes mappings.

It shows names, states, lanes, lag and counts; never a source's settings, an event or a result. A mapping's last
error is a broker's or client's message, which may quote a URL or a setting: every page is masked as log lines are
(hub/redact.py). Counts are this process's: a mapping with several pollers lists their pids under `pollers`, each
counting its own.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from hub import failures_api, metrics, redact
from hub.config import HubConfig
from hub.control import ControlError, Mappings, Slot
from hub.functions import Function
from hub.health import Health
from hub.history import INTERVAL, Monitor
from hub.invocation import Counters
from hub.invocations import ACTIVITY, RECENT, Activity
from hub.leases import Leases
from hub.mapping import MappingRunner
from hub.pollers import Pollers
from hub.store import CheckpointStore
from hub.sync import SyncRunner

if TYPE_CHECKING:
    from aiohttp import web


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
    def counters(self) -> Mapping[str, Counters]:
        """Every mapping's counters, by name (kept while a mapping is disabled)."""
        ...

    @property
    def monitor(self) -> Monitor | None:
        """The mappings' lag, last minute and history (hub.history); None until the endpoint starts it."""
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


def _activity(monitor: Monitor | None, name: str, counters: Counters) -> dict[str, Any]:
    """A mapping's lag (the largest over its lanes), each lane's, and its last minute (hub.history)."""
    if monitor is None:
        return {"lag": {}, "lanes_detail": {}, "last_minute": {}}
    return {
        "lag": monitor.lag(name),
        "lanes_detail": monitor.lanes(name),
        "last_minute": monitor.last_minute(name, counters),
    }


def invocations(activity: Activity, query: Mapping[str, str]) -> list[dict[str, Any]]:
    """GET /invocations?mapping=NAME&function=NAME&limit=N: the most recent invocations, newest first (at most
    RECENT per mapping are kept)."""
    try:
        limit = int(query.get("limit", RECENT))
    except ValueError:
        raise ControlError("limit must be a whole number") from None
    found = activity.latest(query.get("mapping"), query.get("function"), max(0, min(limit, RECENT * 10)))
    return [entry.as_dict() for entry in found]


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
                **_activity(hub.monitor, runner.name, runner.counters),
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


async def _slot(operation: Awaitable[Slot]) -> dict[str, Any]:
    return slot_view(await operation)


async def serve(hub: Observed, host: str, port: int) -> web.AppRunner:
    """Start the endpoint; returns the runner to clean up at stop."""
    from aiohttp import web

    async def status_view(request: web.Request) -> web.Response:
        return web.json_response(redact.data(status(hub)))

    collected = metrics.registry(hub, ACTIVITY)

    async def metrics_view(request: web.Request) -> web.Response:
        page, content_type = metrics.exposition(collected, request.headers.get("Accept"))
        body = redact.text(page.decode()).encode()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def history_view(request: web.Request) -> web.Response:
        answer = hub.monitor.history() if hub.monitor is not None else {"interval_s": INTERVAL, "mappings": {}}
        return web.json_response(redact.data(answer))

    async def invocations_view(request: web.Request) -> web.Response:
        try:
            answer = invocations(ACTIVITY, request.query)
        except ControlError as exc:
            return web.json_response({"error": str(exc)}, status=exc.status)
        return web.json_response(redact.data(answer))

    async def health_view(request: web.Request) -> web.Response:
        down = [r.name for r in hub.runners if r.state != "running"]
        if hub.pollers is not None:
            down += hub.pollers.down()  # a poller process that died and waits for its restart
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
    app.router.add_get("/history", history_view)
    app.router.add_get("/invocations", invocations_view)
    app.router.add_get("/healthz", health_view)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
