"""A real `nats-server` with JetStream on a free loopback port, for the tests that need one.

tests/conftest.py loads it as a plugin: a test asks for `nats_url` (one server for
the whole session; tests keep apart by unique stream and consumer names) or `own_nats` (a server of the test's own,
which it may kill and start again on the same port and store directory).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

START_TIMEOUT = 15.0
BINARIES = ("nats-server", "/usr/sbin/nats-server", "/usr/bin/nats-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _binary() -> str:
    for name in BINARIES:
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("nats-server is not installed (apt-get install nats-server)")


class NatsServer:
    """`nats-server -js -a 127.0.0.1 -p <free> -sd <workdir>/store`, plus `args` (auth, TLS), in `workdir`.

    JetStream keeps streams and consumers in the store directory, so a server killed (`kill()`) and started again on
    its port (`start(same_port=True)`) still has them.
    """

    def __init__(self, workdir: Path, *args: str) -> None:
        self.binary = _binary()
        self.workdir = workdir
        self.args = args
        self.store = workdir / "store"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        scheme = "tls" if "--tls" in self.args else "nats"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self, same_port: bool = False) -> NatsServer:
        """Start on a free port, or on the port it had (`same_port`: after `kill()`); return once it is ready."""
        last = ""
        for _ in range(1 if same_port else 3):  # another process may take the free port before the server binds it
            self.port = self.port if same_port else free_port()
            log = self.workdir / f"nats-{self.port}.log"
            offset = log.stat().st_size if log.exists() else 0
            argv = [self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store), *self.args]
            with log.open("ab") as out:
                self.proc = subprocess.Popen(argv, cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline and self.proc.poll() is None:
                last = log.read_bytes()[offset:].decode(errors="replace")
                if "Server is ready" in last:
                    return self
                time.sleep(0.02)
            self.stop()
        raise RuntimeError(f"nats-server was not ready within {START_TIMEOUT}s:\n{last}")

    def kill(self) -> None:
        """SIGKILL, as a crash."""
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
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path_factory.mktemp("nats")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def nats_url(nats_server: NatsServer) -> str:
    """`nats://127.0.0.1:<port>` of a running nats-server with JetStream."""
    return nats_server.url


@pytest.fixture
def make_nats(tmp_path: Path) -> Iterator[Callable[..., NatsServer]]:
    """Starts nats-servers of this test's own, `make_nats(*args)` (extra arguments: auth, TLS), each in a folder of
    its own; the test may kill and restart them. All are stopped at the end of the test."""
    servers: list[NatsServer] = []

    def make(*args: str) -> NatsServer:
        workdir = tmp_path / f"nats-{len(servers)}"
        workdir.mkdir()
        servers.append(NatsServer(workdir, *args).start())
        return servers[-1]

    try:
        yield make
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def own_nats(make_nats: Callable[..., NatsServer]) -> NatsServer:
    """A nats-server of this test's own (it may kill and restart it)."""
    return make_nats()
