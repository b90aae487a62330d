"""The admin endpoint's console and failure-destination API.

- `GET /` the console (hub/console: a static page, its script and its style, served from the package; nothing
  is fetched from elsewhere, and its Content-Security-Policy lets it talk to this endpoint only).
- `GET /mappings/{name}/failures?limit=N` what sits in the mapping's `destination_config.on_failure` destination
  (hub.readback): `{"mapping", "destination", "total", "failures": [{id, when, kind, condition, error, request_id,
  records, summary, replay, document}]}`. Reading does not consume anything.
- `POST /mappings/{name}/failures/replay {"ids": [...]}` starts a replay job (hub.replay): 202 with the job.
- `GET /replays/{id}` its progress, `{"total", "done", "failed", "state", "results", ...}`; `GET /replays` every
  job kept.

Replays change something: they need the admin token when one is set (`allowed`), and a JSON body (so that a
page of another site cannot send one as a plain form). What is shown passes through hub.redact; a destination is
shown by its type only, never its settings.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

from hub import redact
from hub.control import ControlError
from hub.readback import InboxError, describe, open_inbox
from hub.replay import Replaying, Replays

if TYPE_CHECKING:
    from aiohttp import web

DEFAULT_LIMIT = 50
MOST = 1000
PREVIEW = 4000
"""Characters of a document the listing shows."""

CONSOLE_FILES = {
    "index.html": "text/html",
    "console.js": "text/javascript",
    "console.css": "text/css",
}
CONSOLE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
REPLAY_NOTES = {
    "stream": "A failure record of a stream names its records by position: a replay reads them again from the "
    "stream (while it still holds them) and invokes the function with them; records sent to S3 or Kafka carry the "
    "event itself.",
    "queue": "A queue's failure record holds the event: a replay invokes the function with it.",
    "async": "An asynchronous invocation record holds the event: a replay invokes the function with it.",
}


def add_routes(app: web.Application, hub: Replaying, allowed: Callable[[web.Request], web.Response | None]) -> Replays:
    """Add the console and the failure routes to the admin app; the replays stop when the app is cleaned up."""
    from aiohttp import web

    replays = Replays(hub)

    async def stop_replays(_: web.Application) -> None:
        await replays.close()

    app.on_cleanup.append(stop_replays)

    def error(message: str, status: int) -> web.Response:
        return web.json_response({"error": redact.text(message)}, status=status)

    async def console_file(request: web.Request) -> web.Response:
        name = request.match_info.get("file", "index.html")
        if name not in CONSOLE_FILES:
            raise web.HTTPNotFound()
        body = resources.files("hub.console").joinpath(name).read_bytes()
        return web.Response(body=body, content_type=CONSOLE_FILES[name], charset="utf-8", headers=CONSOLE_HEADERS)

    async def failures_view(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            limit = min(MOST, max(1, int(request.query.get("limit", DEFAULT_LIMIT))))
        except ValueError:
            return error("limit must be a whole number", 400)
        try:
            slot = hub.mappings.get(name)
            config = slot.config
            inbox = open_inbox(config.destination_config.on_failure, hub.config.region, hub.store, name)
        except ControlError as exc:
            return error(str(exc), exc.status)
        except InboxError as exc:
            return error(str(exc), 404)
        try:
            letters, total = await inbox.list(limit)
        except Exception as exc:
            return error(f"the {inbox.kind} destination could not be read: {type(exc).__name__}: {exc}", 502)
        finally:
            await inbox.close()
        failures = []
        for letter in letters:
            entry = describe(letter, config.spec)
            shown: Any = letter.body if letter.attributes is None else {"Body": letter.body, **_attrs(letter)}
            entry["document"] = _preview(shown)
            failures.append(entry)
        answer = {
            "mapping": name,
            "destination": inbox.kind,
            "total": total,
            "failures": failures,
            "replay": REPLAY_NOTES.get(config.spec.family, ""),
        }
        return web.json_response(redact.data(answer))

    async def replay_view(request: web.Request) -> web.Response:
        refused = allowed(request)
        if refused is not None:
            return refused
        if request.content_type != "application/json":
            return error('send {"ids": [...]} as application/json', 415)
        try:
            body = await request.json()
        except ValueError:
            return error('the body must be {"ids": [...]}', 400)
        ids = body.get("ids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids) or len(ids) > MOST:
            return error(f'the body must be {{"ids": [...]}}: 1 to {MOST} ids of the failures listing', 400)
        name = request.match_info["name"]
        try:
            config = hub.mappings.get(name).config
        except ControlError as exc:
            return error(str(exc), exc.status)
        if config.destination_config.on_failure is None:
            return error("this mapping has no on-failure destination (destination_config.on_failure)", 404)
        job = replays.start(name, ids)
        return web.json_response(job.view(), status=202)

    async def job_view(request: web.Request) -> web.Response:
        job = replays.jobs.get(request.match_info["id"])
        if job is None:
            return error("no such replay (jobs are kept while the hub runs)", 404)
        return web.json_response(redact.data(job.view()))

    async def jobs_view(request: web.Request) -> web.Response:
        return web.json_response(redact.data([job.view() for job in replays.jobs.values()]))

    app.router.add_get("/", console_file)
    app.router.add_get("/console/{file}", console_file)
    app.router.add_get("/mappings/{name}/failures", failures_view)
    app.router.add_post("/mappings/{name}/failures/replay", replay_view)
    app.router.add_get("/replays", jobs_view)
    app.router.add_get("/replays/{id}", job_view)
    return replays


def _attrs(letter: Any) -> dict[str, Any]:
    return {"MessageAttributes": letter.attributes}


def _preview(document: Any) -> str:
    text = document if isinstance(document, str) else json.dumps(document, indent=1, default=str)
    return text if len(text) <= PREVIEW else text[:PREVIEW] + " ..."
