"""The hub's HTTP server (`http_server:`): uvicorn running a Starlette app that routes every `http` mapping.

One server for every `http` mapping, as one API Gateway host serves many routes. A request is matched to a route
(connectors.http.routes), checked (size, signature), rendered as the route's event, handed to the function as a
synchronous invocation, and the result is mapped back as API Gateway maps it (connectors.http.events).

Stop: the server stops accepting, requests in flight finish within the hub's grace period, then it closes.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response as StarletteResponse
from starlette.routing import Route as StarletteRoute

from connectors.http.config import HttpConfig
from connectors.http.events import ApiInfo, Request, Response, RouteMatch, error, render, response
from connectors.http.routes import Route, Router
from hub.logs import fields
from hub.sync import SyncContext, SyncMapping

log = logging.getLogger("hub.source.http")

REST_TIMEOUT = 29.0
"""API Gateway REST API's integration timeout: a longer invocation answers 504 (the function runs on)."""
MAX_BODY = {"rest": 10 * 1024 * 1024, "http": 10 * 1024 * 1024, "url": 6 * 1024 * 1024}
"""Request payload limits: API Gateway's 10 MB; a function URL's 6 MB (Lambda's synchronous payload)."""
_ADDED = frozenset({"x-forwarded-for", "x-forwarded-port", "x-forwarded-proto", "x-amzn-trace-id"})
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection"})
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


class Trigger:
    """One `http` mapping: its route, its API's identity and its signature check."""

    def __init__(self, config: HttpConfig, mapping: str, account_id: str, region: str) -> None:
        self.config = config
        self.lane = f"{config.method} {config.path}"
        self.api = ApiInfo(config.api, config.api_id or _api_id(mapping), config.stage_name, account_id, region)
        self.secret: bytes | None = None
        if config.signature is not None:
            value = os.environ.get(config.signature.secret_env)
            if not value:
                from hub.runtimes.python import HandlerLoadError  # what `hub run` reports as a one-line error

                raise HandlerLoadError(
                    f"mapping {mapping!r}: environment variable {config.signature.secret_env} "
                    "(signature.secret_env) is not set"
                )
            self.secret = value.encode()

    def signed(self, request: Request) -> bool:
        """Whether the request carries the HMAC of its raw body under the configured header (constant-time)."""
        signature = self.config.signature
        if signature is None or self.secret is None:
            return True
        given = request.header(signature.header)
        if given is None or not given.startswith(signature.prefix):
            return False
        digest = hmac.new(self.secret, request.body, signature.algorithm).hexdigest()
        return hmac.compare_digest(given[len(signature.prefix) :].strip().lower().encode(), digest.encode())


def _api_id(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c == "-" else "-" for c in name).strip("-")
    return cleaned[:63] or "api"


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling (the hub handles SIGTERM/SIGINT and stops the server itself)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: Any = None) -> None:
        try:
            await super().startup(sockets)
        except SystemExit:  # uvicorn's answer to a failed bind, after logging why: let serve() return instead
            self.should_exit = True
            return
        self.ready.set()


class HttpServers:
    """One HttpServer per address: `http_server.listen` for every route without a `listen` of its own, and one for
    each address routes name themselves (a function URL is a host of its own)."""

    def __init__(self, context: SyncContext) -> None:
        self.listen = context.config.http_server.listen
        groups = self._groups(context.mappings)
        self.servers = [HttpServer(SyncContext(context.config, group), listen) for listen, group in groups.items()]
        self.url = ""

    def _groups(self, mappings: list[SyncMapping]) -> dict[str, list[SyncMapping]]:
        groups: dict[str, list[SyncMapping]] = {}
        for mapping in mappings:
            groups.setdefault(mapping.source.config.listen or self.listen, []).append(mapping)
        return groups

    def fits(self, mappings: list[SyncMapping]) -> bool:
        """Whether these servers can serve `mappings` instead (a reload): they listen on every address those need."""
        return set(self._groups(mappings)) <= {server.listen for server in self.servers}

    def reroute(self, mappings: list[SyncMapping]) -> None:
        """Serve `mappings` from now on (they `fit`; a server none of them needs keeps listening, with no route): a
        request already routed finishes with its old route."""
        groups = self._groups(mappings)
        for server in self.servers:
            server.route(groups.get(server.listen, []))

    async def start(self) -> None:
        """Start every server; if one cannot listen, stop those already started and raise."""
        started: list[HttpServer] = []
        try:
            for server in self.servers:
                await server.start()
                started.append(server)
        except BaseException:
            for server in started:
                await server.stop(0)
            raise
        self.url = self.servers[0].url if self.servers else ""

    async def stop(self, grace: float) -> None:
        """Stop every server, letting requests in flight finish within `grace` seconds."""
        await asyncio.gather(*(server.stop(grace) for server in self.servers))


class HttpServer:
    """Serves `http` mappings on one address (`listen`)."""

    def __init__(self, context: SyncContext, listen: str) -> None:
        self.listen = listen
        self.route(context.mappings)
        host, _, port = listen.rpartition(":")
        self.host, self.port = host, int(port)
        app = Starlette(routes=[StarletteRoute("/{path:path}", self._endpoint, methods=ALL_METHODS)])
        self._server = _Server(
            uvicorn.Config(
                app,
                host=host,
                port=self.port,
                log_level="warning",
                access_log=False,
                lifespan="off",
                server_header=False,
            )
        )
        self._task: asyncio.Task[None] | None = None
        self._detached: set[asyncio.Future[Any]] = set()
        """REST invocations API Gateway stopped waiting for (29 s), running on to the function's own timeout."""
        self.url = ""

    def route(self, mappings: list[SyncMapping]) -> None:
        """Serve these mappings' routes (at the start, and at a reload)."""
        routes: list[Route[SyncMapping]] = []
        for mapping in mappings:
            trigger: Trigger = mapping.source
            routes.append(Route(trigger.config.method, trigger.config.path, mapping))
        self.mappings = mappings
        self.router = Router(routes)
        self.all_rest = bool(mappings) and all(m.source.config.api == "rest" for m in mappings)

    async def start(self) -> None:
        """Listen; raises HandlerLoadError (a one-line error of `hub run`) when the address is taken."""
        self._task = asyncio.create_task(self._server.serve())
        ready = asyncio.create_task(self._server.ready.wait())
        await asyncio.wait([self._task, ready], return_when=asyncio.FIRST_COMPLETED)
        if not self._server.ready.is_set():
            from hub.runtimes.python import HandlerLoadError  # what `hub run` reports as a one-line error

            ready.cancel()
            await self._task  # uvicorn has logged why (an address in use)
            self._task = None
            raise HandlerLoadError(f"http: cannot listen on {self.host}:{self.port} (see the error above)")
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://{self.host}:{port}"
        log.info("http server", extra=fields(url=self.url, routes=len(self.mappings)))

    async def stop(self, grace: float) -> None:
        """Stop accepting; requests in flight finish within `grace` seconds (at least one). Safe to call twice."""
        if self._task is None:
            return
        self._server.config.timeout_graceful_shutdown = int(grace) if grace >= 1 else 1
        self._server.should_exit = True
        task, self._task = self._task, None
        try:
            await task
        except (Exception, SystemExit) as exc:
            log.warning("the HTTP server stopped with %s", type(exc).__name__)

    async def _endpoint(self, incoming: StarletteRequest) -> StarletteResponse:
        started = time.monotonic()
        method = incoming.method
        path = _raw_path(incoming)
        found = self.router.find(method, path)
        if found is None:
            answer = error(403, "Missing Authentication Token") if self.all_rest else error(404, "Not Found")
            return _to_starlette(answer, method)
        route, params = found
        mapping = route.target
        answer = await self._answer(mapping, incoming, RouteMatch(route.method, route.path, params))
        mapping.answered(answer.status, started)
        return _to_starlette(answer, method)

    async def _answer(self, mapping: SyncMapping, incoming: StarletteRequest, match: RouteMatch) -> Response:
        trigger: Trigger = mapping.source
        limit = MAX_BODY[trigger.config.api]
        length = incoming.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return error(413, "Request Too Long")
        body = bytearray()
        try:
            async for chunk in incoming.stream():
                body += chunk
                if len(body) > limit:
                    return error(413, "Request Too Long")
        except ClientDisconnect:
            return error(400, "Bad Request")
        client = incoming.client
        source_ip = client.host if client is not None else "127.0.0.1"
        request = Request(
            method=incoming.method,
            path=_raw_path(incoming),
            query=incoming.url.query,
            headers=_forwarded(incoming, source_ip),
            body=bytes(body),
            source_ip=source_ip,
            protocol=f"HTTP/{incoming.scope.get('http_version', '1.1')}",
        )
        if not trigger.signed(request):
            log.warning("signature missing or wrong: refused", extra=fields(mapping=mapping.name))
            return error(401, "Unauthorized")
        event = render(request, match, trigger.api)
        kind = trigger.config.api
        if kind == "rest":
            # API Gateway stops waiting after 29 s; the function runs on to its own timeout, as on AWS
            invocation = asyncio.ensure_future(mapping.invoke(event))
            try:
                result = await asyncio.wait_for(asyncio.shield(invocation), REST_TIMEOUT)
            except TimeoutError:
                self._detached.add(invocation)
                invocation.add_done_callback(self._detached.discard)
                return error(504, "Endpoint request timed out")
        else:
            result = await mapping.invoke(event)
        if result.error == "Timeout":
            return error(504, "Endpoint request timed out" if kind == "rest" else "Gateway Timeout")
        if not result.ok:
            return error(502, "Internal server error" if kind == "rest" else "Internal Server Error")
        return response(kind, result.payload)


def _forwarded(incoming: StarletteRequest, source_ip: str) -> list[tuple[str, str]]:
    """The request's headers plus those API Gateway adds: X-Forwarded-For (the client appended), -Port, -Proto and
    an X-Amzn-Trace-Id, which handlers read as they do behind AWS."""
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in incoming.scope["headers"]]
    forwarded = [v for k, v in headers if k == "x-forwarded-for"]
    headers = [(k, v) for k, v in headers if k not in _ADDED]
    server = incoming.scope.get("server") or ("127.0.0.1", 0)
    headers += [
        ("x-forwarded-for", ", ".join([*forwarded, source_ip])),
        ("x-forwarded-port", str(server[1])),
        ("x-forwarded-proto", incoming.url.scheme),
        ("x-amzn-trace-id", f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)}"),
    ]
    return headers


def _raw_path(incoming: StarletteRequest) -> str:
    """The path as the client sent it (percent-encoded): routing decodes each segment once, so an encoded `/` stays
    inside its segment, and 2.0's `rawPath` is raw, as AWS's is."""
    raw = incoming.scope.get("raw_path")
    return raw.decode("latin-1").partition("?")[0] if raw else str(incoming.scope["path"])


def _to_starlette(answer: Response, method: str) -> StarletteResponse:
    out = StarletteResponse(content=b"" if method == "HEAD" else answer.body, status_code=answer.status)
    # the length is the server's to say (a HEAD answer tells the GET's); a function's own would be wrong or twice
    out.raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers if k not in _FRAMING]
    out.raw_headers.append((b"content-length", str(len(answer.body)).encode()))
    return out
