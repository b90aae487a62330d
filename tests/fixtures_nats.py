"""A real `nats-server` with JetStream on a free loopback port, for the tests that need one.

tests/conftest.py loads it as a plugin: a test asks for `nats_url` (one server for
the whole session; tests keep apart by unique stream and consumer names) or `own_nats` (a server of the test's own,
which it may kill and start again on the same port and store directory).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.servers import ServerProcess, free_port

__all__ = ["NatsServer", "free_port"]

START_TIMEOUT = 15.0
BINARIES = ("nats-server", "/usr/sbin/nats-server", "/usr/bin/nats-server")


def _binary() -> str:
    for name in BINARIES:
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("nats-server is not installed (apt-get install nats-server)")


class NatsServer(ServerProcess):
    """`nats-server -js -a 127.0.0.1 -p <free> -sd <workdir>/store`, plus `args` (auth, TLS), in `workdir`.

    JetStream keeps streams and consumers in the store directory, so a server killed (`kill()`) and started again on
    its port (`start(same_port=True)`) still has them.
    """

    name = "nats"
    start_timeout = START_TIMEOUT
    stop_timeout = 10.0

    def __init__(self, workdir: Path, *args: str) -> None:
        super().__init__(workdir)
        self.binary = _binary()
        self.args = args
        self.store = workdir / "store"

    @property
    def url(self) -> str:
        scheme = "tls" if "--tls" in self.args else "nats"
        return f"{scheme}://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        return [self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store), *self.args]

    def ready(self, log: str) -> bool:
        return "Server is ready" in log


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
