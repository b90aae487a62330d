"""`http`: HTTP triggers. A request to a route of the hub's HTTP server (`http_server:`) is a synchronous invocation
with the event API Gateway (REST API, payload 1.0; HTTP API, payload 2.0) or a Lambda function URL sends, and the
function's result is the HTTP response, mapped as API Gateway maps it.

| family   | sync: one RequestResponse invocation per request; no batching, retries or destinations          |
| -------- | ------------------------------------------------------------------------------------------------ |
| failures | a function error answers 502, a timeout 504 (REST: also past API Gateway's 29 s), as AWS answers |
| webhooks | `signature:` checks an HMAC of the raw body before invoking; 401 when it is missing or wrong      |
"""

from __future__ import annotations

from typing import Any

from connectors.http.config import HttpConfig, SignatureConfig
from connectors.http.events import ApiInfo, Request, RouteMatch, render
from hub.source import ConnectorSpec, SourceContext


def _build(config: HttpConfig, context: SourceContext) -> Any:
    from connectors.http.server import Trigger

    return Trigger(config, context.mapping, context.account_id, context.region)


def _serve(context: Any) -> Any:
    from connectors.http.server import HttpServers

    return HttpServers(context)


def _sample(kind: str) -> dict[str, Any]:
    request = Request(
        method="POST",
        path="/orders/42",
        query="expand=items&expand=customer",
        headers=[
            ("host", "127.0.0.1:3000"),
            ("user-agent", "curl/8.5.0"),
            ("content-type", "application/json"),
            ("cookie", "session=abc; theme=dark"),
        ],
        body=b'{"quantity": 2}',
        received=1700000000.0,
    )
    api = ApiInfo(kind, "orders-api", "Prod" if kind == "rest" else "$default", "000000000000", "us-east-1")  # type: ignore[arg-type]
    return render(request, RouteMatch("POST", "/orders/{id}", {"id": "42"}), api)


CONNECTOR = ConnectorSpec(
    type="http",
    config=HttpConfig,
    build=_build,
    family="sync",
    summary="HTTP triggers: API Gateway REST and HTTP APIs, function URLs and signed webhooks, invoked synchronously.",
    sample_event=lambda: _sample("rest"),
    sample_variants={"http": lambda: _sample("http"), "url": lambda: _sample("url")},
    requires=("uvicorn", "starlette"),
    extra="http",
    serve=_serve,
)

__all__ = ["CONNECTOR", "HttpConfig", "SignatureConfig"]
