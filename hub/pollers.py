"""Pollers: one mapping run by several OS processes, as AWS runs a mapping's provisioned event pollers.

One Python process is CPU-bound at a few hundred thousand records/s; a mapping that needs more sets
`provisioned_poller_config: {minimum_pollers: N}`. The hub's own process is poller 1; `Pollers` starts pollers
2..N as child processes (`python -m hub run CONFIG --poller NAME`), each running only that mapping, with its
function and destination and no admin endpoint. The processes share nothing with each other: the broker shares
the work (a Kafka consumer group rebalances the partitions among them, SQS and RabbitMQ consumers compete for
messages, a Redis stream consumer group hands each entry to one consumer, a JetStream durable pull consumer each
message to one pull request).

What the parent promises:

- A child that exits while the hub is not stopping is restarted, after a backoff with jitter that grows with
  each quick failure in a row (a child that ran `healthy_after` seconds counts as healthy again).
- `stop(grace)` sends SIGTERM to every child, waits up to grace + 10 s, SIGKILLs what is left and returns only
  once every child has been reaped: no child outlives the hub's stop.
- Children run in their own process group, so a Ctrl-C in a terminal reaches only the hub, which stops them.
  A child whose hub dies without stopping it (SIGKILL, OOM killer) notices (`watch_parent`) and stops gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hub.config import HubConfig
from hub.dispatch import Backoff, sleep_unless
from hub.logs import fields

log = logging.getLogger("hub.pollers")

KILL_AFTER = 10.0
"""Seconds past the shutdown grace that a child gets to exit after SIGTERM before it is killed."""
RESTART_BACKOFF = Backoff(base=0.5, cap=30.0)
HEALTHY_AFTER = 60.0
PARENT_CHECK_INTERVAL = 0.5

Command = Callable[[str, int], Sequence[str]]
"""The command line of poller `index` (2..N) of the mapping named `mapping`."""


def child_command(config_path: str, log_level: str, log_format: str) -> Command:
    """`hub run` of one mapping, as poller `index`, watching this process as its parent."""
    parent = os.getpid()
    config_path = os.path.abspath(config_path)

    def command(mapping: str, index: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "hub",
            "--log-level",
            log_level,
            "--log-format",
            log_format,
            "run",
            config_path,
            "--poller",
            mapping,
            "--poller-index",
            str(index),
            "--parent-pid",
            str(parent),
        ]

    return command


@dataclass
class Child:
    """Poller `index` of `mapping`: its current process, and how many times it was restarted."""

    mapping: str
    index: int
    proc: asyncio.subprocess.Process | None = None
    started: float = 0.0
    restarts: int = 0
    recycling: bool = False
    """Stopped on purpose to start again with the configuration file as it is now (a reload)."""

    @property
    def running(self) -> bool:
        """True while its process runs."""
        return self.proc is not None and self.proc.returncode is None

    @property
    def pid(self) -> int | None:
        """Its current process's pid, None before it started."""
        return self.proc.pid if self.proc is not None else None


def exit_status(code: int) -> str:
    """`exit 1`, or `killed by SIGKILL` (asyncio reports death by signal N as -N)."""
    if code >= 0:
        return f"exit {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


class Pollers:
    """The extra poller processes of every enabled mapping whose `minimum_pollers` is above 1."""

    def __init__(
        self,
        config: HubConfig,
        command: Command,
        *,
        backoff: Backoff = RESTART_BACKOFF,
        healthy_after: float = HEALTHY_AFTER,
    ) -> None:
        self.command = command
        self.backoff = backoff
        self.healthy_after = healthy_after
        self.counts = {m.display_name: m.pollers for m in config.mappings if m.enabled and m.pollers > 1}
        self.children = [Child(name, i) for name, count in self.counts.items() for i in range(2, count + 1)]
        self._stopping = asyncio.Event()
        self._spawning = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start every child, log each mapping's pids, then supervise them. If a child cannot be started (the
        system refuses a process), stops those already started and raises."""
        try:
            for child in self.children:
                await self._spawn(child)
        except BaseException:
            await self.stop(0)
            raise
        for name, count in self.counts.items():
            pids = [os.getpid(), *(c.pid for c in self.children if c.mapping == name)]
            log.info(
                "mapping %s: %d pollers (pids %s)",
                name,
                count,
                ", ".join(map(str, pids)),
                extra=fields(mapping=name, pollers=count),
            )
        self._tasks = [
            asyncio.create_task(self._supervise(c), name=f"poller {c.index} of {c.mapping}") for c in self.children
        ]

    async def stop(self, grace: float) -> None:
        """SIGTERM every child, wait up to `grace` + 10 s, then SIGKILL the rest; returns once all are reaped.
        No child is started or restarted after this is called. Safe to call twice."""
        self._stopping.set()
        async with self._spawning:  # a start under way finishes first, and is then stopped with the others
            running = [c for c in self.children if c.running]
        for child in running:
            assert child.proc is not None
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(signal.SIGTERM)
        if running:
            log.info("stopping %d poller processes", len(running), extra=fields(pids=[c.pid for c in running]))
            waits = {asyncio.ensure_future(c.proc.wait()): c for c in running if c.proc is not None}
            _, late = await asyncio.wait(waits, timeout=grace + KILL_AFTER)
            for future in late:
                child = waits[future]
                log.error(
                    "mapping %s: poller %d (pid %s) did not stop within %.0fs of SIGTERM: killing it",
                    child.mapping,
                    child.index,
                    child.pid,
                    grace + KILL_AFTER,
                    extra=fields(mapping=child.mapping, pid=child.pid),
                )
                with contextlib.suppress(ProcessLookupError):
                    assert child.proc is not None
                    child.proc.kill()
            await asyncio.gather(*waits)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def recycle(self, mapping: str) -> int:
        """Stop the children of `mapping` (SIGTERM: they finish in-flight work) so that each starts again at once
        and reads the configuration file anew (a reload changed the mapping). Returns how many were asked."""
        asked = 0
        for child in self.children:
            if child.mapping == mapping and child.running and child.proc is not None:
                child.recycling = True
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(signal.SIGTERM)
                asked += 1
        return asked

    def status(self) -> dict[str, list[dict[str, Any]]]:
        """Per mapping with several pollers: each poller's index, pid, restarts and whether it runs (this process
        is poller 1). Never a setting of the mapping or its source."""
        out: dict[str, list[dict[str, Any]]] = {}
        for name in self.counts:
            out[name] = [{"poller": 1, "pid": os.getpid(), "restarts": 0, "running": True}] + [
                {"poller": c.index, "pid": c.pid, "restarts": c.restarts, "running": c.running}
                for c in self.children
                if c.mapping == name
            ]
        return out

    def down(self) -> list[str]:
        """The children that should run and do not (exited and waiting for their restart, or never started): what
        /healthz names, as `<mapping> (poller <i>)`. One stopped on purpose for a reload is not down; nor is any
        once the hub is stopping."""
        if self._stopping.is_set():
            return []
        return [f"{c.mapping} (poller {c.index})" for c in self.children if not c.running and not c.recycling]

    async def _spawn(self, child: Child) -> bool:
        """Start the child's process; False (and nothing started) once the hub is stopping. Raises OSError."""
        async with self._spawning:
            if self._stopping.is_set():
                return False
            child.proc = await asyncio.create_subprocess_exec(
                *self.command(child.mapping, child.index),
                stdin=asyncio.subprocess.DEVNULL,  # stdout and stderr are the hub's
                process_group=0,
            )
            child.started = time.monotonic()
            return True

    async def _supervise(self, child: Child) -> None:
        """Wait for the child to exit; unless the hub is stopping, restart it after a backoff. Runs until cancelled."""
        failures = 0
        while True:
            assert child.proc is not None
            code = await child.proc.wait()
            if self._stopping.is_set():
                return
            if child.recycling:
                child.recycling = False
                log.info(
                    "mapping %s: poller %d stopped for the new configuration: starting it again",
                    child.mapping,
                    child.index,
                    extra=fields(mapping=child.mapping),
                )
                if not await self._spawn(child):
                    return
                continue
            failures = 1 if time.monotonic() - child.started >= self.healthy_after else failures + 1
            delay = self.backoff.delay(failures)
            log.error(
                "mapping %s: poller %d (pid %s) exited unexpectedly (%s): restarting it in %.1fs",
                child.mapping,
                child.index,
                child.pid,
                exit_status(code),
                delay,
                extra=fields(mapping=child.mapping, pid=child.pid, status=code),
            )
            while True:
                if not await sleep_unless(self._stopping, delay):
                    return
                try:
                    if not await self._spawn(child):
                        return
                    break
                except OSError as exc:
                    failures += 1
                    delay = self.backoff.delay(failures)
                    log.error(
                        "mapping %s: poller %d could not be started (%s): retrying in %.1fs",
                        child.mapping,
                        child.index,
                        exc,
                        delay,
                        extra=fields(mapping=child.mapping),
                    )
            child.restarts += 1
            log.info(
                "mapping %s: poller %d restarted (pid %s)",
                child.mapping,
                child.index,
                child.pid,
                extra=fields(mapping=child.mapping, restarts=child.restarts),
            )


async def watch_parent(parent_pid: int, on_gone: Callable[[], None], every: float = PARENT_CHECK_INTERVAL) -> None:
    """Call `on_gone` once `parent_pid` is no longer this process's parent, then return.

    A poller's hub that dies without stopping it (SIGKILL, the OOM killer) leaves it re-parented: it must not go
    on polling on its own, so it stops gracefully. Checking the parent pid (rather than, say, EOF on a pipe)
    still works when something the hub forked holds the hub's file descriptors open.
    """
    while os.getppid() == parent_pid:
        await asyncio.sleep(every)
    log.error("the hub process (pid %d) is gone: stopping this poller", parent_pid)
    on_gone()


class Runnable(Protocol):
    """What a poller process runs: a hub restricted to one mapping (hub.app.Hub)."""

    async def run(self) -> None:
        """Run until stop() (or a signal), then stop gracefully."""
        ...

    def stop(self) -> None:
        """Ask run() to stop gracefully."""
        ...


async def run_poller(hub: Runnable, parent_pid: int | None) -> None:
    """Run `hub` (restricted to one mapping) as a poller process: as `Hub.run`, and stop if the parent dies."""
    watch = asyncio.create_task(watch_parent(parent_pid, hub.stop)) if parent_pid is not None else None
    try:
        await hub.run()
    finally:
        if watch is not None:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
