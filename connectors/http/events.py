"""The events an HTTP trigger sends, and how a function's result becomes the HTTP response, as AWS does it.

- `rest`: API Gateway REST API, Lambda proxy integration (payload format 1.0).
- `http`: API Gateway HTTP API, payload format 2.0.
- `url`:  a Lambda function URL (the 2.0 shape, routeKey `$default`, a lambda-url domain).

Pure functions of a `Request` (what the server read) and a `RouteMatch`, so that they are tested without a server.
"""

from __future__ import annotations

import base64
import json
import random
import string
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote

Api = Literal["rest", "http", "url"]

TEXT_TYPES = (
    "application/json",
    "application/javascript",
    "application/xml",
    "application/yaml",
    "application/x-www-form-urlencoded",
    "application/graphql",
)
"""Besides `text/*` and `+json`/`+xml` types, the content types whose bodies reach the function as text; any other
body (or one with no content type that is not UTF-8) is base64 with isBase64Encoded true, as HTTP APIs and function
URLs do. (A REST API base64-encodes only its `binaryMediaTypes`; the hub applies the same rule to it, so binary data
is never mangled.)"""


@dataclass(slots=True)
class Request:
    """An HTTP request as the server read it. `path` is percent-encoded, as the client sent it; `headers` keep their
    order and repeats; names are lower-case (as HTTP/2 and ASGI servers give them)."""

    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str = "127.0.0.1"
    protocol: str = "HTTP/1.1"
    host: str = "localhost"
    received: float = field(default_factory=time.time)

    def header(self, name: str) -> str | None:
        """The first value of a header (case-insensitive), or None."""
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """The route a request matched: `resource` as written (`/orders/{id}`, `$default`), its path parameters."""

    method: str
    resource: str
    params: dict[str, str]


@dataclass(frozen=True, slots=True)
class ApiInfo:
    """Who answers: the kind of API, its id, stage, account and region."""

    kind: Api
    api_id: str
    stage: str
    account_id: str
    region: str


def is_text(content_type: str | None, body: bytes) -> bool:
    """Whether a body goes to the function as text (see TEXT_TYPES)."""
    if not body:
        return True
    if content_type is None:
        try:
            body.decode()
        except UnicodeDecodeError:
            return False
        return True
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind.startswith("text/") or kind.endswith(("+json", "+xml")) or kind in TEXT_TYPES


def _body(request: Request) -> tuple[str | None, bool]:
    if not request.body:
        return None, False
    if is_text(request.header("content-type"), request.body):
        try:
            return request.body.decode(), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(request.body).decode(), True


def _query_pairs(query: str) -> list[tuple[str, str]]:
    return parse_qsl(query, keep_blank_values=True)


def _request_id() -> str:
    from hub.runtimes import request_id

    return request_id()


def _rest_time(epoch: float) -> str:
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(epoch))


def rest_event(request: Request, match: RouteMatch, api: ApiInfo) -> dict[str, Any]:
    """API Gateway REST API's proxy event (payload 1.0): repeated headers and query keys keep their last value in
    the single-value maps and all of them in the multi-value maps; maps with nothing in them are null."""
    headers: dict[str, str] = {}
    multi_headers: dict[str, list[str]] = {}
    for name, value in request.headers:
        headers[name] = value
        multi_headers.setdefault(name, []).append(value)
    pairs = _query_pairs(request.query)
    query = {k: v for k, v in pairs} or None
    multi_query: dict[str, list[str]] = {}
    for k, v in pairs:
        multi_query.setdefault(k, []).append(v)
    body, encoded = _body(request)
    epoch = request.received
    resource = "/" if match.resource == "$default" else match.resource
    return {
        "resource": resource,
        "path": unquote(request.path),
        "httpMethod": request.method,
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": match.params or None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "".join(random.choices(string.ascii_lowercase + string.digits, k=6)),
            "resourcePath": resource,
            "httpMethod": request.method,
            "extendedRequestId": _request_id()[:16],
            "requestTime": _rest_time(epoch),
            "path": f"/{api.stage}{unquote(request.path)}",
            "accountId": api.account_id,
            "protocol": request.protocol,
            "stage": api.stage,
            "domainPrefix": api.api_id,
            "requestTimeEpoch": int(epoch * 1000),
            "requestId": _request_id(),
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": None,
                "cognitoIdentityId": None,
                "caller": None,
                "sourceIp": request.source_ip,
                "principalOrgId": None,
                "accessKey": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": None,
                "userAgent": request.header("user-agent") or "",
                "user": None,
            },
            "domainName": f"{api.api_id}.execute-api.{api.region}.amazonaws.com",
            "apiId": api.api_id,
        },
        "body": body,
        "isBase64Encoded": encoded,
    }


def v2_event(request: Request, match: RouteMatch, api: ApiInfo) -> dict[str, Any]:
    """HTTP API's payload 2.0 event, or a function URL's (`api.kind == "url"`): repeated headers are joined with
    commas, repeated query keys too; `cookie` headers become `cookies` and leave `headers`."""
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers:
        if name == "cookie":
            cookies += [c.strip() for c in value.split(";") if c.strip()]
            continue
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    query: dict[str, str] = {}
    for k, v in _query_pairs(request.query):
        query[k] = f"{query[k]},{v}" if k in query else v
    body, encoded = _body(request)
    epoch = request.received
    if api.kind == "url":
        route_key, stage = "$default", "$default"
        domain = f"{api.api_id}.lambda-url.{api.region}.on.aws"
    else:
        route_key = "$default" if match.resource == "$default" else f"{match.method} {match.resource}"
        stage = api.stage
        domain = f"{api.api_id}.execute-api.{api.region}.amazonaws.com"
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": request.path,
        "rawQueryString": request.query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if query:
        event["queryStringParameters"] = query
    event["requestContext"] = {
        "accountId": "anonymous" if api.kind == "url" else api.account_id,
        "apiId": api.api_id,
        "domainName": domain,
        "domainPrefix": api.api_id,
        "http": {
            "method": request.method,
            "path": request.path,
            "protocol": request.protocol,
            "sourceIp": request.source_ip,
            "userAgent": request.header("user-agent") or "",
        },
        "requestId": _request_id(),
        "routeKey": route_key,
        "stage": stage,
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(epoch)),
        "timeEpoch": int(epoch * 1000),
    }
    if match.params and api.kind != "url":
        event["pathParameters"] = match.params
    if body is not None:
        event["body"] = body
    event["isBase64Encoded"] = encoded
    return event


def render(request: Request, match: RouteMatch, api: ApiInfo) -> dict[str, Any]:
    """The event API Gateway (REST: payload 1.0; HTTP API and function URLs: payload 2.0) sends for this request."""
    return rest_event(request, match, api) if api.kind == "rest" else v2_event(request, match, api)


@dataclass(slots=True)
class Response:
    """The HTTP response made of a function's result, as API Gateway maps it."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


def error(status: int, message: str) -> Response:
    """API Gateway's own answers: `{"message": ...}` as JSON."""
    return Response(status, [("content-type", "application/json")], json.dumps({"message": message}).encode())


INTERNAL = 502, "Internal server error"


def response(kind: Api, payload: Any) -> Response:
    """The HTTP response for a function's return value, as API Gateway (or a function URL) maps it.

    1.0: the result must be `{statusCode, headers?, multiValueHeaders?, body?, isBase64Encoded?}`; anything else
    is a malformed proxy response (502). 2.0: a dict with `statusCode` is read the same way (plus `cookies`);
    any other value is the body of a 200 JSON answer (a string as it is).
    """
    if not (isinstance(payload, Mapping) and "statusCode" in payload):
        if kind == "rest":
            return error(*INTERNAL)
        text = payload if isinstance(payload, str) else json.dumps(payload)
        return Response(200, [("content-type", "application/json")], text.encode())
    try:
        status = int(payload["statusCode"])
    except (TypeError, ValueError):
        return error(*INTERNAL)
    if not 100 <= status <= 599:
        return error(*INTERNAL)
    headers: list[tuple[str, str]] = []
    single = payload.get("headers") or {}
    multi = payload.get("multiValueHeaders") or {}
    cookies = payload.get("cookies") or []
    if not isinstance(single, Mapping) or not isinstance(multi, Mapping) or not isinstance(cookies, list):
        return error(*INTERNAL)
    # API Gateway merges both maps; a name in both keeps the multi-value list and the single value
    for name, values in multi.items():
        for value in values if isinstance(values, list) else [values]:
            headers.append((str(name).lower(), _text(value)))
    for name, value in single.items():
        pair = (str(name).lower(), _text(value))
        if pair not in headers:
            headers.append(pair)
    if kind != "rest":
        headers += [("set-cookie", _text(cookie)) for cookie in cookies]
    body = payload.get("body")
    if body is None:
        data = b""
    elif payload.get("isBase64Encoded"):
        try:
            data = base64.b64decode(str(body), validate=True)
        except ValueError:
            return error(*INTERNAL)
    else:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    if kind != "rest" and not any(name == "content-type" for name, _ in headers):
        headers.append(("content-type", "application/json"))  # HTTP APIs' default; REST APIs send none
    return Response(status, headers, data)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
