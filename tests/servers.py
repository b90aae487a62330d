"""`ServerProcess`: a broker binary the tests run themselves, on a free loopback port, killed and started again on
the same port when a test needs a broker that dies and comes back. redis-server, mosquitto and nats-server are
three of them (tests/fixtures_redis.py, fixtures_mqtt.py, fixtures_nats.py)."""

from __future__ import annotations

import socket
import subprocess
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Self


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def accepts(port: int) -> bool:
    """True when something accepts a TCP connection on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class ServerProcess(ABC):
    """One server process in `workdir`; a subclass says how to run it (`argv`) and when it is ready (`ready`).

    `start()` takes a free port (three tries: another process may take the port before the server binds it), or
    the port it had (`same_port`, after `kill()`), and returns once `ready`; else it stops the process and raises
    with the end of its log. `kill()` is a crash (SIGKILL); `stop()` a clean stop (SIGTERM, then SIGKILL).
    """

    name = "server"
    start_timeout = 10.0
    stop_timeout = 5.0

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}-{self.port}.log"

    @abstractmethod
    def argv(self) -> list[str]:
        """The command line, for `self.port` (it may write a configuration file first)."""

    def ready(self, log: str) -> bool:
        """Whether the server serves, given what it logged since this start."""
        return accepts(self.port)

    def start(self, same_port: bool = False) -> Self:
        last = ""
        for _ in range(1 if same_port else 3):
            self.port = self.port if same_port else free_port()
            log = self.log_path
            offset = log.stat().st_size if log.exists() else 0
            argv = self.argv()
            with log.open("ab") as out:
                self.proc = subprocess.Popen(argv, cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + self.start_timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                last = log.read_bytes()[offset:].decode(errors="replace")
                if self.ready(last):
                    return self
                time.sleep(0.02)
            last = log.read_bytes()[offset:].decode(errors="replace")
            self.stop()
        raise RuntimeError(f"{self.name} did not start within {self.start_timeout}s:\n{last}")

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
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
