"""An HTTP client for the `http` source's tests: http.client, which sends repeated headers as given."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import re
import socket

from tests.helpers import HubProcess

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
