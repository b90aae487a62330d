"""A real `redis-server` on a free loopback port, for the tests that need one.

Loaded for every test by tests/conftest.py: ask for `redis_url` (or `redis_server`). One server serves the whole
session (persistence off); tests keep apart by using unique stream names.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

START_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """`redis-server --port <free> --save '' --appendonly no` on 127.0.0.1, in `workdir`.

    With `persist`, every write is in an append-only file first (`--appendonly yes --appendfsync always`), so that a
    server killed and started again (`kill()`, `start(same_port=True)`) still has its streams and groups.
    """

    def __init__(self, workdir: Path, *, persist: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.workdir = workdir
        self.persist = persist
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, same_port: bool = False) -> RedisServer:
        """Start on a free port, or on the port it had (`same_port`: after `kill()`)."""
        last = ""
        durable = ["--appendonly", "yes", "--appendfsync", "always"] if self.persist else ["--appendonly", "no"]
        for _ in range(1 if same_port else 3):  # another process may take the free port before redis binds it
            self.port = self.port if same_port else free_port()
            log = self.workdir / f"redis-{self.port}.log"
            with log.open("ab") as out:
                self.proc = subprocess.Popen(
                    [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *durable],
                    cwd=self.workdir,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline and self.proc.poll() is None:
                if answers_ping(self.port):
                    return self
                time.sleep(0.02)
            last = log.read_text(errors="replace")
            self.stop()
        raise RuntimeError(f"redis-server did not answer PING within {START_TIMEOUT}s:\n{last}")

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing is flushed that was not already."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


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
