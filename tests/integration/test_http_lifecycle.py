"""The `http` source's signed webhooks, timeouts (504), graceful stop and start-up errors, with a real hub and a
real HTTP client."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import HubProcess, wait_for
from tests.http_client import Reply, call, free_port, http_get, server_url, sign


def slow_in_flight(admin: int) -> bool:
    """Whether the admin endpoint shows one request in flight for the mapping of function `slow`."""
    with http_get(f"http://127.0.0.1:{admin}/status") as text:
        slow = next(m for m in json.loads(text)["mappings"] if m["function"] == "slow")
        return bool(slow["in_flight_batches"] == 1)


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
        status, _h, reply = call(url, "POST", "/github", body, good)
        assert status == 200
        event = json.loads(reply)
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
        wait_for(lambda: slow_in_flight(admin), what="the slow request to be in flight")
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
            assert f"error: http: cannot listen on {config['http_server']['listen']}" in hub.log()
            assert "Traceback" not in hub.log()


def test_a_reload_changes_routes_on_the_running_server_and_requests_in_flight_finish(tmp_path: Path) -> None:
    admin = free_port()
    config: dict[str, Any] = {
        "checkpoints": "memory://",
        "http_server": {"listen": "127.0.0.1:0"},
        "admin": {"listen": f"127.0.0.1:{admin}"},
        "functions": {
            "who": {"handler": "functions.http_testing.who", "environment": {"WHO": "one"}},
            "slow": {"handler": "functions.http_testing.slow", "timeout": "20s", "environment": {"SLOW_SECONDS": "3"}},
        },
        "mappings": [
            {"name": "who", "function": "who", "source": {"type": "http", "method": "GET", "path": "/who"}},
            {"name": "slow", "function": "slow", "source": {"type": "http", "method": "GET", "path": "/slow"}},
            {"name": "gone", "function": "who", "source": {"type": "http", "method": "GET", "path": "/gone"}},
        ],
    }
    with HubProcess(tmp_path, config) as hub:
        hub.start(ready="admin endpoint")
        url = server_url(hub)
        assert call(url, "GET", "/who")[2] == b"one"
        replies: list[Reply] = []
        client = threading.Thread(target=lambda: replies.append(call(url, "GET", "/slow")))
        client.start()
        wait_for(lambda: slow_in_flight(admin), what="the slow request to be in flight")
        config["functions"]["who"]["environment"]["WHO"] = "two"  # the function replaced
        config["functions"]["slow"]["environment"]["SLOW_SECONDS"] = "0"  # with a request in flight
        config["mappings"][2] = {"name": "new", "function": "who", "source": {"type": "http", "path": "/new"}}
        hub.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        assert hub.proc is not None
        hub.proc.send_signal(signal.SIGHUP)
        hub.wait_log("configuration reloaded")
        assert call(url, "GET", "/who")[2] == b"two"
        assert call(url, "POST", "/new")[2] == b"two"
        assert call(url, "GET", "/gone")[0] == 404
        client.join(30)
        assert replies and replies[0][0] == 200 and replies[0][2] == b"late", "the request in flight was answered"
        assert call(url, "GET", "/slow")[0:3:2] == (200, b"late")
        with http_get(f"http://127.0.0.1:{admin}/status") as text:
            names = sorted(m["name"] for m in json.loads(text)["mappings"])
        assert names == ["new", "slow", "who"]
        log = hub.log()
        assert "applied at the next start" not in log
        assert re.search(r"configuration reloaded .*created=new .*updated=who,slow .*deleted=gone", log), log
        # a route on an address no server listens on takes a restart: the file is refused, and nothing changes
        config["mappings"][0]["source"]["listen"] = f"127.0.0.1:{free_port()}"
        config["functions"]["who"]["environment"]["WHO"] = "three"
        hub.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        hub.proc.send_signal(signal.SIGHUP)
        hub.wait_log("the configuration was not reloaded: its http routes need the HTTP server on another address")
        assert call(url, "GET", "/who")[2] == b"two"
        assert call(url, "POST", "/new")[2] == b"two"
        # no route left: the server keeps listening, with nothing to route to
        config["mappings"] = []
        hub.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        hub.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: hub.log().count("configuration reloaded") == 2, what="the second reload")
        assert call(url, "GET", "/who")[0] == 404
        assert hub.stop() == 0


def test_the_first_http_route_a_reload_adds_starts_the_server(tmp_path: Path) -> None:
    config: dict[str, Any] = {
        "checkpoints": "memory://",
        "http_server": {"listen": f"127.0.0.1:{free_port()}"},
        "functions": {"who": {"handler": "functions.http_testing.who", "environment": {"WHO": "one"}}},
        "mappings": [],
    }
    with HubProcess(tmp_path, config) as hub:
        hub.start()
        assert "http server" not in hub.log()
        config["mappings"] = [{"function": "who", "source": {"type": "http", "method": "GET", "path": "/who"}}]
        hub.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        assert hub.proc is not None
        hub.proc.send_signal(signal.SIGHUP)
        hub.wait_log("configuration reloaded")
        assert call(server_url(hub), "GET", "/who")[2] == b"one"
        assert hub.stop() == 0
    assert "created=who-http" in hub.log()


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
        served = hub.runners[0].sync  # type: ignore[union-attr]
        await until(lambda: served.in_flight == 0, "the detached invocation to finish")
        assert counters.invoked == 1 and counters.failed_invoke == 0
    finally:
        hub.stop()
        await asyncio.wait_for(running, 30)
