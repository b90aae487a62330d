"""The `http` source's pure logic: routing, events, the mapping of a function's result to a response, signatures
and its configuration. The server itself is tested with a real hub in tests/integration/test_http.py."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import pytest
from aws_lambda_powertools.utilities.parser import models

from connectors.http.config import HttpConfig
from connectors.http.events import ApiInfo, Request, RouteMatch, is_text, render, response
from connectors.http.routes import Route, Router
from connectors.http.server import Trigger
from hub.config import ConfigError, load_config
from tests.event_models import conforms


def router(*routes: tuple[str, str]) -> Router[str]:
    return Router([Route(method, path, f"{method} {path}") for method, path in routes])


def test_the_most_specific_route_wins_and_proxy_is_greedy() -> None:
    r = router(("ANY", "/{proxy+}"), ("GET", "/orders/{id}"), ("GET", "/orders/latest"), ("ANY", "/orders/{id}"))
    assert r.find("GET", "/orders/latest") == (r.routes[0], {})
    found = r.find("GET", "/orders/7")
    assert found is not None and found[0].target == "GET /orders/{id}" and found[1] == {"id": "7"}
    found = r.find("DELETE", "/orders/7")
    assert found is not None and found[0].target == "ANY /orders/{id}"
    found = r.find("POST", "/a/b/c%20d")
    assert found is not None and found[0].target == "ANY /{proxy+}" and found[1] == {"proxy": "a/b/c d"}


def test_a_method_without_a_route_is_no_match_and_default_catches_the_rest() -> None:
    r = router(("GET", "/orders"))
    assert r.find("POST", "/orders") is None
    assert r.find("GET", "/orders/1") is None
    found = r.find("HEAD", "/orders")
    assert found is not None and found[0].target == "GET /orders"  # HEAD answers as GET without the body
    with_default = router(("GET", "/orders"), ("ANY", "$default"))
    found = with_default.find("POST", "/anything/else")
    assert found is not None and found[0].target == "ANY $default" and found[1] == {}


def test_a_greedy_parameter_needs_at_least_one_segment() -> None:
    r = router(("GET", "/files/{proxy+}"))
    assert r.find("GET", "/files") is None
    assert r.find("GET", "/files/x") is not None


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("orders", "starts with '/'"),
        ("/{proxy+}/x", "must be the last segment"),
        ("/a{id}", "whole segment"),
        ("/{id}/{id}", "appears twice"),
    ],
)
def test_route_paths_api_gateway_refuses_are_config_errors(path: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HttpConfig(type="http", path=path)


def request(**overrides: object) -> Request:
    values: dict[str, object] = {
        "method": "POST",
        "path": "/orders/42",
        "query": "a=1&a=2&b=",
        "headers": [("user-agent", "t"), ("x-multi", "1"), ("x-multi", "2"), ("cookie", "s=1; t=2")],
        "body": b'{"q": 1}',
    }
    values.update(overrides)
    return Request(**values)  # type: ignore[arg-type]


API = {
    kind: ApiInfo(kind, "api1", "Prod" if kind == "rest" else "$default", "123456789012", "eu-west-1")
    for kind in ("rest", "http", "url")
}  # type: ignore[misc]
MATCH = RouteMatch("POST", "/orders/{id}", {"id": "42"})


def test_rest_event_keeps_every_value_of_repeated_headers_and_query_keys() -> None:
    event = render(request(), MATCH, API["rest"])
    conforms(models.APIGatewayProxyEventModel, event)
    assert event["headers"]["x-multi"] == "2" and event["multiValueHeaders"]["x-multi"] == ["1", "2"]
    assert event["queryStringParameters"] == {"a": "2", "b": ""}
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"], "b": [""]}
    assert event["pathParameters"] == {"id": "42"} and event["resource"] == "/orders/{id}"
    assert event["requestContext"]["path"] == "/Prod/orders/42" and event["body"] == '{"q": 1}'


def test_v2_events_join_repeats_with_commas_and_move_cookies() -> None:
    event = render(request(), MATCH, API["http"])
    conforms(models.APIGatewayProxyEventV2Model, event)
    assert event["headers"]["x-multi"] == "1,2" and "cookie" not in event["headers"]
    assert event["cookies"] == ["s=1", "t=2"] and event["queryStringParameters"] == {"a": "1,2", "b": ""}
    assert event["routeKey"] == "POST /orders/{id}" and event["rawQueryString"] == "a=1&a=2&b="
    url = render(request(), RouteMatch("ANY", "$default", {}), API["url"])
    conforms(models.LambdaFunctionUrlModel, url)
    assert url["routeKey"] == "$default" and url["requestContext"]["domainName"] == "api1.lambda-url.eu-west-1.on.aws"
    assert "pathParameters" not in url


def test_binary_bodies_are_base64_and_text_types_are_not() -> None:
    data = bytes(range(256))
    event = render(request(body=data, headers=[("content-type", "application/octet-stream")]), MATCH, API["http"])
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == data
    assert is_text("application/json; charset=utf-8", b"{}") and is_text("text/csv", b"a")
    assert is_text("application/vnd.api+json", b"{}") and not is_text("image/png", b"x")
    assert not is_text(None, b"\xff\xfe")


def test_responses_are_mapped_as_api_gateway_maps_them() -> None:
    one = response(
        "rest",
        {"statusCode": 201, "headers": {"X-A": "1"}, "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]}, "body": "hi"},
    )
    assert one.status == 201 and one.body == b"hi"
    assert ("set-cookie", "a=1") in one.headers and ("set-cookie", "b=2") in one.headers and ("x-a", "1") in one.headers
    two = response("http", {"statusCode": 200, "cookies": ["c=3"], "body": "x"})
    assert ("set-cookie", "c=3") in two.headers and ("content-type", "application/json") in two.headers
    binary = response(
        "url", {"statusCode": 200, "body": base64.b64encode(b"\x00\x01").decode(), "isBase64Encoded": True}
    )
    assert binary.body == b"\x00\x01"


def test_the_v2_shortcut_and_malformed_proxy_responses() -> None:
    shortcut = response("http", {"ok": True})
    assert shortcut.status == 200 and json.loads(shortcut.body) == {"ok": True}
    assert response("url", "plain").body == b"plain"
    assert response("rest", {"ok": True}).status == 502  # REST has no shortcut: a malformed Lambda proxy response
    assert response("http", {"statusCode": "teapot"}).status == 502
    assert response("rest", {"statusCode": 200, "body": "!!", "isBase64Encoded": True}).status == 502


def test_signature_is_the_hmac_of_the_raw_body(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SECRET_UNIT", "s3cr3t")
    config = HttpConfig.model_validate(
        {
            "type": "http",
            "path": "/hook",
            "signature": {"header": "X-Hub-Signature-256", "secret_env": "HOOK_SECRET_UNIT", "prefix": "sha256="},
        }
    )
    trigger = Trigger(config, "hook", "123456789012", "us-east-1")
    body = b'{"action": "opened"}'
    good = "sha256=" + hmac.new(b"s3cr3t", body, hashlib.sha256).hexdigest()
    assert trigger.signed(request(body=body, headers=[("x-hub-signature-256", good)]))
    assert not trigger.signed(request(body=body + b" ", headers=[("x-hub-signature-256", good)]))
    assert not trigger.signed(request(body=body, headers=[("x-hub-signature-256", good[7:])]))  # prefix missing
    assert not trigger.signed(request(body=body, headers=[]))


def config_text(source: str, extra: str = "") -> str:
    return (
        "functions:\n  f: {handler: functions.http_testing.echo}\n"
        f"mappings:\n  - function: f\n{extra}    source: {source}\n"
    )


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ("    batch_size: 10\n", "batch_size"),
        ("    maximum_retry_attempts: 1\n", "maximum_retry_attempts"),
        ("    destination_config: {on_failure: {type: file, path: x}}\n", "destination_config"),
        ("    filter_criteria: [{body: [1]}]\n", "filter_criteria"),
    ],
)
def test_settings_of_asynchronous_mappings_are_refused(tmp_path: Path, extra: str, field: str) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text(config_text("{type: http, path: /x}", extra))
    with pytest.raises(ConfigError, match=rf"hub.yaml:\d+:\d+: mappings\[0\]\.{field}: .*synchronous invocation"):
        load_config(path)


def test_a_rest_api_has_no_default_route(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text(config_text('{type: http, path: "$$default", api: rest}'))
    with pytest.raises(ConfigError, match=r"hub.yaml:\d+:\d+: mappings\[0\]\.source: .*no \$default route"):
        load_config(path)


def test_the_value_secret_env_names_is_a_secret(tmp_path: Path) -> None:
    from hub import redact

    path = tmp_path / "hub.yaml"
    signature = "{header: X-Sig, secret_env: HOOK_SECRET_REDACT}"
    path.write_text(config_text(f"{{type: http, path: /hook, signature: {signature}}}"))
    config = load_config(path)
    assert redact.secrets_of(config, {"HOOK_SECRET_REDACT": "hunter2-hook"}) == {"hunter2-hook"}


def test_without_uvicorn_and_starlette_the_configuration_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    find_spec = importlib.util.find_spec
    absent = {"uvicorn", "starlette"}
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *rest: None if name in absent else find_spec(name, *rest)
    )
    path = tmp_path / "hub.yaml"
    path.write_text(config_text("{type: http, path: /x}"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (error,) = caught.value.errors
    assert f"{path}:5:" in error
    assert "needs uvicorn, starlette, which is not installed: pip install 'eventhub[http]'" in error
