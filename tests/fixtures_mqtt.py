"""A real `mosquitto` on a free loopback port, for the tests that need one.

tests/conftest.py loads it as a plugin: a test asks for `mosquitto` (one broker for
the whole session; tests keep apart by using topics and client ids of their own, see `unique`) or
`own_mosquitto` (a broker for one test, which it may `kill()` and `start(same_port=True)` again).

Sessions survive a restart: persistence is on, in the broker's own folder, and saved after every change
(`autosave_on_changes`), so even a broker killed with SIGKILL comes back with its sessions and queued messages.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

START_TIMEOUT = 10.0
BINARY_PLACES = ("/usr/sbin/mosquitto",)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unique(prefix: str) -> str:
    """A name no other test uses (topics, client ids)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def mosquitto_binary() -> str:
    binary = shutil.which("mosquitto") or next((p for p in BINARY_PLACES if Path(p).is_file()), None)
    if binary is None:
        raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
    return binary


class MosquittoServer:
    """`mosquitto -c <workdir>/mosquitto-<port>.conf`: a listener on 127.0.0.1, anonymous clients allowed,
    persistence in `workdir`. `options` are more configuration lines (`max_inflight_messages 5`)."""

    def __init__(self, workdir: Path, *options: str) -> None:
        self.binary = mosquitto_binary()
        self.workdir = workdir
        self.options = options
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, same_port: bool = False) -> MosquittoServer:
        """Start on a free port, or on the port it had (`same_port`: after `kill()` or `stop()`)."""
        last = ""
        for _ in range(1 if same_port else 3):  # another process may take the free port before mosquitto binds it
            self.port = self.port if same_port else free_port()
            config = self.workdir / f"mosquitto-{self.port}.conf"
            data = self.workdir / f"data-{self.port}"
            data.mkdir(exist_ok=True)
            log = self.workdir / f"mosquitto-{self.port}.log"
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
                        f"log_dest file {log}",
                        "log_type error",
                        "log_type warning",
                        "log_type notice",
                        *self.options,
                        "",
                    ]
                )
            )
            self.proc = subprocess.Popen(
                [self.binary, "-c", str(config)], cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline and self.proc.poll() is None:
                if self._accepts():
                    return self
                time.sleep(0.02)
            last = log.read_text(errors="replace") if log.exists() else ""
            if self.proc.poll() is not None and self.proc.stderr is not None:
                last += self.proc.stderr.read().decode(errors="replace")
            self.stop()
        raise RuntimeError(f"mosquitto did not accept connections within {START_TIMEOUT}s:\n{last}")

    def _accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL, as a crash: what was saved (every change, see the module docstring) is what comes back."""
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
