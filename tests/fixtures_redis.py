"""A real `redis-server` on a free loopback port, for the tests that need one.

Loaded for every test by tests/conftest.py: ask for `redis_url` (or `redis_server`). One server serves the whole
session (persistence off); tests keep apart by using unique stream names.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import ServerProcess, free_port

__all__ = ["RedisServer", "answers_ping", "free_port"]


def answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer(ServerProcess):
    """`redis-server --port <free> --save '' --appendonly no` on 127.0.0.1, in `workdir`.

    With `persist`, every write is in an append-only file first (`--appendonly yes --appendfsync always`), so that a
    server killed and started again (`kill()`, `start(same_port=True)`) still has its streams and groups.
    """

    name = "redis"

    def __init__(self, workdir: Path, *, persist: bool = False) -> None:
        super().__init__(workdir)
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.persist = persist

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def argv(self) -> list[str]:
        durable = ["--appendonly", "yes", "--appendfsync", "always"] if self.persist else ["--appendonly", "no"]
        return [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *durable]

    def ready(self, log: str) -> bool:
        return answers_ping(self.port)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    """`redis://127.0.0.1:<port>/0` of a running redis-server."""
    return redis_server.url
