"""Test helpers: waiting on conditions (never bare sleeps), running the hub as a real process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float = 20.0, what: str = "condition", every: float = 0.02) -> T:
    """Poll `condition` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


class MovableClock:
    """The hub's Clock (hub.source) for unit tests: time stands still until a sleep moves it to the wake-up time."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def time(self) -> float:
        return self.now

    async def sleep_until(self, when: float) -> None:
        import asyncio

        self.now = max(self.now, when)
        await asyncio.sleep(0)


def read_jsonl(path: Path) -> list[Any]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written right now
            continue
    return out


def shape(value: Any) -> Any:
    """The structure of a JSON value: keys at every level and JSON types, without the values."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if value is None:
        return "null"
    return "string"


FUNCTION_VARIABLES = ("RECORDER_OUT", "SLOW_SECONDS")
"""Variables of `env` that the test functions read: they are handed to every function through the configuration
(`function_defaults.environment`), since a function sees only its own environment, as on Lambda."""


class HubProcess:
    """`hub run CONFIG` as a subprocess in `workdir`, with its log in workdir/hub.log. `env` is added to the hub's
    environment; of it, FUNCTION_VARIABLES also reach the functions of a `config` given as a dict."""

    def __init__(self, workdir: Path, config: dict[str, Any] | Path, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        if isinstance(config, dict):
            handed = {k: v for k, v in (env or {}).items() if k in FUNCTION_VARIABLES}
            if handed:
                defaults = config.setdefault("function_defaults", {})
                defaults["environment"] = {**handed, **defaults.get("environment", {})}
            self.config_path = workdir / "hub.yaml"
            self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        else:
            self.config_path = config
        self.log_path = workdir / "hub.log"
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def start(self, *args: str, ready: str | None = "hub running") -> HubProcess:
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hub", *args, "run", str(self.config_path)],
            cwd=self.workdir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        if ready:
            self.wait_log(ready)
        return self

    def log(self) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_bytes()[self._log_offset :].decode(errors="replace")

    def wait_log(self, text: str, timeout: float = 20.0) -> None:
        def seen() -> bool:
            if self.proc is not None and self.proc.poll() is not None and text not in self.log():
                raise AssertionError(f"hub exited ({self.proc.returncode}) before logging {text!r}:\n{self.log()}")
            return text in self.log()

        wait_for(seen, timeout, f"{text!r} in the hub's log")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"hub did not stop within {timeout}s:\n{self.log()}") from None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def __enter__(self) -> HubProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def run_cli(*args: str, cwd: Path | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "hub", *args],
        cwd=cwd or ROOT,
        env=env,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
    )


class TcpProxy:
    """A loopback TCP proxy to a broker that a test can cut and restore, to play "the broker went away".

    `cut()` closes every open connection and refuses new ones (the port stays reserved); `restore()` accepts
    again. Runs its own event loop in a thread, so it works for subprocess hubs and in-process code alike.
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        import asyncio
        import socket
        import threading

        self.target = (target_host, target_port)
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url_host = f"127.0.0.1:{self.port}"
        self._open = True
        self._writers: set[Any] = set()
        self._loop = asyncio.new_event_loop()
        self._server: Any = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._call(self._listen())

    def _call(self, coro: Any) -> Any:
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _listen(self) -> None:
        import asyncio

        self._server = await asyncio.start_server(self._handle, sock=self._sock)

    async def _handle(self, reader: Any, writer: Any) -> None:
        import asyncio

        if not self._open:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        if not self._open:  # cut while this one was connecting: it must not outlive the cut
            up_writer.transport.abort()
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: Any, dst: Any) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    def cut(self, refuse: bool = False) -> None:
        """Close every connection; with `refuse`, stop listening too, so that connecting is refused at once, as by a
        host whose broker is down (else connections are accepted and closed)."""

        async def close_all() -> None:
            self._open = False
            for writer in list(self._writers):
                writer.transport.abort()
            self._writers.clear()
            if refuse and self._server is not None:
                self._server.close()
                self._server = None

        self._call(close_all())

    def restore(self) -> None:
        async def reopen() -> None:
            import asyncio
            import socket

            self._open = True
            if self._server is None:  # refused: listen again on the same port
                self._sock = socket.socket()
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                self._sock.bind(("127.0.0.1", self.port))
                self._server = await asyncio.start_server(self._handle, sock=self._sock)

        self._call(reopen())

    def close(self) -> None:
        async def shutdown() -> None:
            self._open = False
            for writer in list(self._writers):
                writer.transport.abort()
            if self._server is not None:
                self._server.close()

        self._call(shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


async def read_n(lane: Any, n: int, timeout: float = 10.0, poll: float = 0.2) -> list[Any]:
    """Read exactly `n` records from a lane (in-process connector tests), failing after `timeout` seconds."""
    import time as _time

    got: list[Any] = []
    deadline = _time.monotonic() + timeout
    while len(got) < n:
        remaining = deadline - _time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"read {len(got)} of {n} records from {lane.key}")
        got.extend(await lane.read(n - len(got), min(poll, remaining)))
    return got


class RunningSource:
    """An open source whose lanes are collected, in the order it yields them, as it yields them."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.lanes: dict[str, Any] = {}
        self.order: list[str] = []

    async def collect(self) -> None:
        async for lane in self.source.lanes():
            self.lanes[lane.key] = lane
            self.order.append(lane.key)

    async def lane(self, key: str | None = None, timeout: float = 5.0) -> Any:
        """The lane `key` (or the first lane) once the source has yielded it."""
        import asyncio

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if key is None and self.lanes:
                return next(iter(self.lanes.values()))
            if key in self.lanes:
                return self.lanes[key]
            await asyncio.sleep(0.01)
        raise AssertionError(f"no lane {key} after {timeout}s (have {sorted(self.lanes)})")


@contextlib.asynccontextmanager
async def running(source: Any) -> AsyncIterator[RunningSource]:
    """Open `source`, collect its lanes in the background, and close it (twice: that must be fine) at the end."""
    import asyncio

    await source.open()
    run = RunningSource(source)
    task = asyncio.create_task(run.collect())
    try:
        yield run
    finally:
        await source.close()
        await source.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
