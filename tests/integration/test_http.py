"""The `http` source with a real hub process and a real HTTP client: every API kind's event (validated against
the Powertools models handler authors parse them with), path and proxy parameters, binary bodies, cookies,
repeated headers and query keys, the response mapping, 502/404/413, HEAD, /status and /metrics. Functions run in
the default runtime (`python`). Webhooks, timeouts and stopping: tests/integration/test_http_lifecycle.py."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser import models

from tests.event_models import conforms
from tests.helpers import HubProcess
from tests.http_client import Reply, call, free_port, http_get, server_url


def route(name: str, handler: str, **source: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    return {"handler": f"functions.http_testing.{handler}", "timeout": "10s"}, {
        "name": name,
        "function": name,
        "source": {"type": "http", **source},
    }


ROUTES = [
    route("rest-order", "echo", method="GET", path="/shop/orders/{id}", api="rest", api_id="shop-api"),
    route("rest-proxy", "echo", method="ANY", path="/shop/{proxy+}", api="rest", stage="dev"),
    route("rest-shaped", "shaped", method="POST", path="/shop/shaped", api="rest"),
    route("rest-fails", "raises", method="GET", path="/shop/fails", api="rest"),
    route("v2-files", "echo", method="POST", path="/v2/files/{proxy+}", api="http"),
    route("v2-shaped", "shaped", method="POST", path="/v2/shaped", api="http"),
    route("v2-bare", "bare", method="GET", path="/v2/bare", api="http"),
    route("v2-png", "png", method="GET", path="/v2/logo.png", api="http"),
    route("v2-big", "noop", method="POST", path="/v2/big", api="http"),
    route("url-fn", "echo", path="/url/{proxy+}", api="url", api_id="abcdefghij1234567890"),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """One hub serving every route above: (its HTTP server's URL, its admin URL)."""
    workdir = tmp_path_factory.mktemp("http")
    admin = free_port()
    config = {
        "checkpoints": "memory://",
        "http_server": {"listen": "127.0.0.1:0"},
        "admin": {"listen": f"127.0.0.1:{admin}"},
        "functions": {m["function"]: f for f, m in ROUTES},
        "mappings": [m for _f, m in ROUTES],
    }
    config["functions"]["url-fn"]["timeout"] = "10s"
    with HubProcess(workdir, config) as hub:
        hub.start()
        yield server_url(hub), f"http://127.0.0.1:{admin}"
        assert hub.stop() == 0


def echoed(reply: Reply) -> Any:
    status, _headers, body = reply
    assert status == 200, body
    return json.loads(body)


def test_rest_api_event_with_path_parameters_and_repeated_headers_and_query(served: tuple[str, str]) -> None:
    url, _ = served
    reply = call(url, "GET", "/shop/orders/42?tag=a&tag=b&one=1", headers=[("X-Multi", "1"), ("X-Multi", "2")])
    event = echoed(reply)
    conforms(models.APIGatewayProxyEventModel, event)
    assert event["resource"] == "/shop/orders/{id}" and event["path"] == "/shop/orders/42"
    assert event["httpMethod"] == "GET" and event["pathParameters"] == {"id": "42"}
    assert event["queryStringParameters"] == {"tag": "b", "one": "1"}
    assert event["multiValueQueryStringParameters"] == {"tag": ["a", "b"], "one": ["1"]}
    assert event["headers"]["x-multi"] == "2" and event["multiValueHeaders"]["x-multi"] == ["1", "2"]
    assert event["headers"]["x-forwarded-for"] == "127.0.0.1" and event["headers"]["x-forwarded-proto"] == "http"
    assert event["headers"]["x-amzn-trace-id"].startswith("Root=1-")
    context = event["requestContext"]
    assert context["apiId"] == "shop-api" and context["stage"] == "Prod" and context["path"] == "/Prod/shop/orders/42"
    assert event["body"] is None and event["isBase64Encoded"] is False
    # the function's own Lambda request id (context.aws_request_id), as the handler put it in its response
    uuid4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}"
    assert re.fullmatch(uuid4, dict(reply[1])["x-request-id"])


def test_rest_api_proxy_route_takes_any_method_and_the_rest_of_the_path(served: tuple[str, str]) -> None:
    url, _ = served
    event = echoed(call(url, "DELETE", "/shop/carts/7/items/9"))
    conforms(models.APIGatewayProxyEventModel, event)
    assert event["resource"] == "/shop/{proxy+}" and event["pathParameters"] == {"proxy": "carts/7/items/9"}
    assert event["httpMethod"] == "DELETE" and event["requestContext"]["stage"] == "dev"
    # the more specific route keeps its own requests
    assert echoed(call(url, "GET", "/shop/orders/1"))["resource"] == "/shop/orders/{id}"


def test_http_api_event_with_cookies_and_a_binary_body(served: tuple[str, str]) -> None:
    url, _ = served
    data = bytes(range(256)) * 4
    headers = [("Content-Type", "image/png"), ("Cookie", "session=abc; theme=dark"), ("X-Multi", "1"), ("X-Multi", "2")]
    event = echoed(call(url, "POST", "/v2/files/photos/cat.png?size=s&size=m", data, headers))
    conforms(models.APIGatewayProxyEventV2Model, event)
    assert event["version"] == "2.0" and event["routeKey"] == "POST /v2/files/{proxy+}"
    assert event["rawPath"] == "/v2/files/photos/cat.png" and event["rawQueryString"] == "size=s&size=m"
    assert event["queryStringParameters"] == {"size": "s,m"} and event["pathParameters"] == {"proxy": "photos/cat.png"}
    assert event["cookies"] == ["session=abc", "theme=dark"] and "cookie" not in event["headers"]
    assert event["headers"]["x-multi"] == "1,2"
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == data
    assert event["requestContext"]["http"]["method"] == "POST" and event["requestContext"]["stage"] == "$default"


def test_encoded_paths_are_routed_segment_by_segment(served: tuple[str, str]) -> None:
    url, _ = served
    event = echoed(call(url, "GET", "/shop/orders/a%2Fb%20c"))  # an encoded slash stays inside its segment
    assert event["resource"] == "/shop/orders/{id}" and event["pathParameters"] == {"id": "a/b c"}
    assert event["path"] == "/shop/orders/a/b c"
    event = echoed(call(url, "POST", "/v2/files/my%20photo.png"))
    assert event["rawPath"] == "/v2/files/my%20photo.png" and event["pathParameters"] == {"proxy": "my photo.png"}


def test_a_json_body_reaches_the_function_as_text(served: tuple[str, str]) -> None:
    url, _ = served
    event = echoed(call(url, "POST", "/v2/files/x", b'{"a": 1}', [("Content-Type", "application/json")]))
    assert event["body"] == '{"a": 1}' and event["isBase64Encoded"] is False


def test_function_url_event(served: tuple[str, str]) -> None:
    url, _ = served
    event = echoed(call(url, "PUT", "/url/anything/here?q=1", b"plain text", [("Content-Type", "text/plain")]))
    conforms(models.LambdaFunctionUrlModel, event)
    context = event["requestContext"]
    assert event["routeKey"] == "$default" and context["routeKey"] == "$default" and context["stage"] == "$default"
    assert context["domainName"] == "abcdefghij1234567890.lambda-url.us-east-1.on.aws"
    assert event["body"] == "plain text" and event["rawPath"] == "/url/anything/here"


def test_rest_responses_carry_status_headers_and_multi_value_headers(served: tuple[str, str]) -> None:
    url, _ = served
    wanted = {
        "statusCode": 201,
        "headers": {"Content-Type": "text/plain", "X-One": "1"},
        "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"], "X-Many": ["x", "y"]},
        "body": "created",
    }
    status, headers, body = call(url, "POST", "/shop/shaped", json.dumps(wanted).encode())
    assert status == 201 and body == b"created"
    assert [v for k, v in headers if k.lower() == "set-cookie"] == ["a=1", "b=2"]
    assert [v for k, v in headers if k.lower() == "x-many"] == ["x", "y"]
    assert ("x-one", "1") in headers and ("content-type", "text/plain") in headers


def test_http_api_responses_carry_cookies_and_default_to_json(served: tuple[str, str]) -> None:
    url, _ = served
    wanted = {"statusCode": 202, "cookies": ["c=3; Path=/", "d=4"], "body": '{"queued": true}'}
    status, headers, body = call(url, "POST", "/v2/shaped", json.dumps(wanted).encode())
    assert status == 202 and json.loads(body) == {"queued": True}
    assert [v for k, v in headers if k.lower() == "set-cookie"] == ["c=3; Path=/", "d=4"]
    assert ("content-type", "application/json") in headers


def test_the_payload_2_shortcut_and_a_binary_response(served: tuple[str, str]) -> None:
    url, _ = served
    status, headers, body = call(url, "GET", "/v2/bare")
    assert status == 200 and json.loads(body) == {"path": "/v2/bare", "ok": True}
    assert ("content-type", "application/json") in headers
    status, headers, body = call(url, "GET", "/v2/logo.png")
    assert status == 200 and body == bytes(range(256)) and ("content-type", "image/png") in headers


def test_a_failed_invocation_answers_502_and_a_missing_route_404(served: tuple[str, str]) -> None:
    url, _ = served
    status, _h, body = call(url, "GET", "/shop/fails")
    assert status == 502 and json.loads(body) == {"message": "Internal server error"}
    status, _h, body = call(url, "GET", "/nowhere")
    assert status == 404 and json.loads(body) == {"message": "Not Found"}
    status, _h, body = call(url, "POST", "/v2/bare")  # the path is a route, not for this method
    assert status == 404


def test_head_answers_as_get_without_a_body(served: tuple[str, str]) -> None:
    url, _ = served
    status, headers, body = call(url, "HEAD", "/v2/logo.png")
    assert status == 200 and body == b"" and ("content-length", "256") in headers


def test_request_size_limits(served: tuple[str, str]) -> None:
    url, _ = served
    six_mb = 6 * 1024 * 1024
    status, _h, body = call(url, "POST", "/url/upload", b"x" * (six_mb + 1), [("Content-Type", "text/plain")])
    assert status == 413 and json.loads(body) == {"message": "Request Too Long"}
    status, _h, _b = call(url, "POST", "/v2/big", b"x" * (six_mb + 1), [("Content-Type", "text/plain")])
    assert status == 200  # API Gateway takes up to 10 MB
    status, _h, _b = call(url, "POST", "/v2/big", b"x" * (10 * 1024 * 1024 + 1), [("Content-Type", "text/plain")])
    assert status == 413


def test_status_and_metrics_count_requests(served: tuple[str, str]) -> None:
    url, admin = served
    call(url, "GET", "/shop/fails")
    with http_get(admin + "/status") as text:
        status = json.loads(text)
    fails = next(m for m in status["mappings"] if m["name"] == "rest-fails")
    assert fails["source"] == "http" and fails["state"] == "running"
    assert fails["counters"]["invoked"] >= 1 and fails["counters"]["failed_invoke"] == fails["counters"]["invoked"]
    assert fails["responses"]["502"] == fails["counters"]["invoked"]
    assert all(f["runtime"] == "python" for f in status["functions"])
    with http_get(admin + "/metrics") as text:
        assert re.search(r'hub_http_requests_total\{code="502",mapping="rest-fails"\} [1-9]', text)
        assert 'hub_http_request_duration_seconds_count{mapping="rest-fails"}' in text
