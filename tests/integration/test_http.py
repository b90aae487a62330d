"""The `http` source with a real hub process and a real HTTP client: every API kind's event (validated against
the Powertools models handler authors parse them with), path and proxy parameters, binary bodies, cookies,
repeated headers and query keys, the response mapping, 502/504/413/404, signed webhooks and a graceful stop.
Functions run in the default runtime (`python`)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import http.client
import json
import re
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser import models

from tests.event_models import conforms
from tests.helpers import HubProcess, wait_for

Reply = tuple[int, list[tuple[str, str]], bytes]


def call(url: str, method: str, path: str, body: bytes = b"", headers: list[tuple[str, str]] | None = None) -> Reply:
    """One request with http.client (which sends repeated headers as given); returns status, headers, body."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest(method, path)
        for name, value in headers or []:
            conn.putheader(name, value)
        if body or method in ("POST", "PUT", "PATCH"):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        conn.close()


def server_url(hub: HubProcess) -> str:
    hub.wait_log("http server")
    found = re.search(r"http server\s+url=(http://[\d.]+:\d+)", hub.log())
    assert found, hub.log()
    return found.group(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
        assert re.search(r'hub_http_requests_total\{mapping="rest-fails",code="502"\} [1-9]', text)
        assert 'hub_http_request_duration_seconds_count{mapping="rest-fails"}' in text


class http_get:
    def __init__(self, url: str) -> None:
        host, _, rest = url.removeprefix("http://").partition("/")
        self.reply = call(f"http://{host}", "GET", "/" + rest)

    def __enter__(self) -> str:
        assert self.reply[0] == 200
        return self.reply[2].decode()

    def __exit__(self, *exc: object) -> None:
        return None


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def test_signed_webhooks(tmp_path: Path) -> None:
    secret = "whsec-unique-7f3a"
    config = {
        "checkpoints": "memory://",
        "http_server": {"listen": "127.0.0.1:0"},
        "functions": {"hook": {"handler": "functions.http_testing.echo"}},
        "mappings": [
            {
                "function": "hook",
                "source": {
                    "type": "http",
                    "method": "POST",
                    "path": "/github",
                    "signature": {
                        "header": "X-Hub-Signature-256",
                        "secret_env": "WEBHOOK_SECRET_TEST",
                        "algorithm": "sha256",
                        "prefix": "sha256=",
                    },
                },
            }
        ],
    }
    with HubProcess(tmp_path, config, {"WEBHOOK_SECRET_TEST": secret}) as hub:
        hub.start()
        url = server_url(hub)
        body = b'{"action": "opened"}'
        good = [("X-Hub-Signature-256", sign(secret.encode(), body)), ("Content-Type", "application/json")]
        event = echoed(call(url, "POST", "/github", body, good))
        assert event["body"] == body.decode()
        status, _h, reply = call(url, "POST", "/github", body + b" ", good)
        assert status == 401 and json.loads(reply) == {"message": "Unauthorized"}
        status, _h, _b = call(url, "POST", "/github", body, [("Content-Type", "application/json")])
        assert status == 401
        status, _h, _b = call(url, "POST", "/github", body, [("X-Hub-Signature-256", sign(b"wrong", body))])
        assert status == 401
        hub.wait_log("signature missing or wrong")
        assert hub.stop() == 0
        log = hub.log()
        assert secret not in log
        invoked = re.search(r"mapping totals\s+mapping=hook-http\s+polled=(\d+)\s+filtered_out=0\s+invoked=(\d+)", log)
        assert invoked and invoked.groups() == ("1", "1"), log  # the refused requests never reached the function


def test_timeouts_answer_504_and_a_stop_lets_requests_in_flight_finish(tmp_path: Path) -> None:
    admin = free_port()
    config = {
        "checkpoints": "memory://",
        "http_server": {"listen": "127.0.0.1:0"},
        "admin": {"listen": f"127.0.0.1:{admin}"},
        "shutdown_grace": "20s",
        "functions": {
            "quick-timeout": {"handler": "functions.http_testing.slow", "timeout": "1s"},
            "slow": {"handler": "functions.http_testing.slow", "timeout": "10s"},
        },
        "mappings": [
            {"function": "quick-timeout", "source": {"type": "http", "path": "/timeout", "api": "rest"}},
            {"function": "slow", "source": {"type": "http", "path": "/slow", "api": "http"}},
        ],
    }
    with HubProcess(tmp_path, config, {"SLOW_SECONDS": "3"}) as hub:
        hub.start()
        url = server_url(hub)
        status, _h, body = call(url, "GET", "/timeout")
        assert status == 504 and json.loads(body) == {"message": "Endpoint request timed out"}
        replies: list[Reply] = []
        client = threading.Thread(target=lambda: replies.append(call(url, "GET", "/slow")))
        client.start()

        def in_flight() -> bool:
            with http_get(f"http://127.0.0.1:{admin}/status") as text:
                slow = next(m for m in json.loads(text)["mappings"] if m["function"] == "slow")
                return bool(slow["in_flight_batches"] == 1)

        wait_for(in_flight, what="the slow request to be in flight")
        assert hub.proc is not None
        hub.proc.send_signal(signal.SIGTERM)
        client.join(30)
        assert hub.proc.wait(30) == 0
        assert replies and replies[0][0] == 200 and replies[0][2] == b"late"


def test_an_unset_secret_variable_or_a_busy_port_stops_the_hub_with_one_line(tmp_path: Path) -> None:
    source = {"type": "http", "path": "/hook", "signature": {"header": "X-Sig", "secret_env": "UNSET_SECRET_9f2"}}
    config: dict[str, Any] = {
        "checkpoints": "memory://",
        "http_server": {"listen": "127.0.0.1:0"},
        "functions": {"hook": {"handler": "functions.http_testing.echo"}},
        "mappings": [{"function": "hook", "source": source}],
    }
    with HubProcess(tmp_path, config) as hub:
        hub.start(ready=None)
        assert hub.proc is not None and hub.proc.wait(30) == 2
        assert "error: mapping 'hook-http': environment variable UNSET_SECRET_9f2" in hub.log()
        assert "Traceback" not in hub.log()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        config["http_server"]["listen"] = f"127.0.0.1:{busy.getsockname()[1]}"
        source.pop("signature")
        with HubProcess(tmp_path, config) as hub:
            hub.start(ready=None)
            assert hub.proc is not None and hub.proc.wait(30) == 2
            assert f"error: http_server: cannot listen on {config['http_server']['listen']}" in hub.log()
            assert "Traceback" not in hub.log()


async def until(condition: Any, what: str, timeout: float = 20.0) -> None:
    """tests.helpers.wait_for for a test on the event loop: poll without blocking the loop the hub runs on."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


async def test_a_rest_route_stops_waiting_at_its_integration_timeout_and_the_function_runs_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """API Gateway's 29 s cap, shortened for the test (a hub in this process, a real server and client)."""
    import aiohttp
    import yaml

    from connectors.http import server
    from hub.app import Hub
    from hub.config import load_config

    monkeypatch.setattr(server, "REST_TIMEOUT", 0.5)
    path = tmp_path / "hub.yaml"
    config = {
        "checkpoints": "memory://",
        "http_server": {"listen": "127.0.0.1:0"},
        "functions": {"slow": {"handler": "functions.http_testing.slow", "timeout": "10s", "runtime": "in-process"}},
        "mappings": [{"function": "slow", "source": {"type": "http", "path": "/slow", "api": "rest"}}],
    }
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("SLOW_SECONDS", "2")
    hub = Hub(load_config(path))
    running = asyncio.ensure_future(hub.run(install_signals=False))
    try:
        await until(lambda: hub.runners, "the server to listen")  # start() adds the runners once it does
        url = hub.runners[0].server.url  # type: ignore[union-attr]
        async with aiohttp.ClientSession() as session, session.get(f"{url}/slow") as response:
            assert response.status == 504 and await response.json() == {"message": "Endpoint request timed out"}
        counters = hub.counters["slow-http"]
        # the invocation API Gateway stopped waiting for runs to its end, as on AWS
        await until(lambda: counters.by_outcome.get("success"), "the detached invocation to finish")
        assert counters.invoked == 1 and counters.failed_invoke == 0
    finally:
        hub.stop()
        await asyncio.wait_for(running, 30)
