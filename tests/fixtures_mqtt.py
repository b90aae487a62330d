"""A real `mosquitto` on a free loopback port, for the tests that need one.

tests/conftest.py loads it as a plugin: a test asks for `mosquitto` (one broker for
the whole session; tests keep apart by using topics and client ids of their own, see `unique`) or
`own_mosquitto` (a broker for one test, which it may `kill()` and `start(same_port=True)` again).

Sessions survive a restart: persistence is on, in the broker's own folder, and saved after every change
(`autosave_on_changes`), so even a broker killed with SIGKILL comes back with its sessions and queued messages.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import ServerProcess, free_port

__all__ = ["MosquittoServer", "free_port", "unique"]

START_TIMEOUT = 10.0
BINARY_PLACES = ("/usr/sbin/mosquitto",)


def unique(prefix: str) -> str:
    """A name no other test uses (topics, client ids)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def mosquitto_binary() -> str:
    binary = shutil.which("mosquitto") or next((p for p in BINARY_PLACES if Path(p).is_file()), None)
    if binary is None:
        raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
    return binary


class MosquittoServer(ServerProcess):
    """`mosquitto -c <workdir>/mosquitto-<port>.conf`: a listener on 127.0.0.1, anonymous clients allowed,
    persistence in `workdir`. `options` are more configuration lines (`max_inflight_messages 5`)."""

    name = "mosquitto"

    def __init__(self, workdir: Path, *options: str) -> None:
        super().__init__(workdir)
        self.binary = mosquitto_binary()
        self.options = options

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        config = self.workdir / f"mosquitto-{self.port}.conf"
        data = self.workdir / f"data-{self.port}"
        data.mkdir(exist_ok=True)
        config.write_text(
            "\n".join(
                [
                    f"listener {self.port} 127.0.0.1",
                    "allow_anonymous true",
                    "user root",  # started as root, mosquitto would switch to its own user, who cannot write here
                    "persistence true",
                    f"persistence_location {data}/",
                    "autosave_on_changes true",
                    "autosave_interval 1",  # with autosave_on_changes: save after every change
                    "max_queued_messages 100000",
                    "log_dest stdout",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    *self.options,
                    "",
                ]
            )
        )
        return [self.binary, "-c", str(config)]


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoServer]:
    server = MosquittoServer(tmp_path_factory.mktemp("mosquitto")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoServer]:
    """A broker of this test's own, which it may kill and start again on the same port."""
    server = MosquittoServer(tmp_path_factory.mktemp("own-mosquitto")).start()
    try:
        yield server
    finally:
        server.stop()
