"""`runtime: python` (the default): a function's execution environments, each a warm worker process.

Each environment imports the handler once (the cold start is paid once, as on Lambda) and runs one invocation at a
time, so module-level state is never entered by two invocations at once. Environments are started when an
invocation finds none idle, up to the function's concurrency; the first is started with the hub, so a handler that
cannot be imported stops the hub at start. The timeout is enforced by killing the environment; `memory` is a hard
limit on its data segment; one that dies (exit, signal, segfault, out of memory) is replaced and the invocation
fails with the reason. An environment gets the function's own variables and Lambda's (`hub.runtimes.variables`),
nothing of the hub's environment beyond PATH, HOME and the locale; its stdout and stderr reach the hub's log tagged
with the function and the request id (hub/runtimes/environment.py).

Short invocations are pipelined (PIPELINE_WITHIN): the environment running one is sent the next before it answers,
so that it finds it waiting instead of being woken for it (on a machine with few CPUs, waking a process costs the
hub about as much as a short invocation). The environment still runs them one at a time, each with its own timeout
from when it begins and its own duration; an invocation never begun when its environment died runs in another one.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from hub.runtimes import LambdaContext, Result, error_payload
from hub.runtimes.environment import NotStarted, Worker
from hub.runtimes.python import HandlerLoadError
from hub.runtimes.variables import FunctionSetup

SCALE_UP_AFTER = 0.01
"""How long an invocation that finds every environment busy waits for one to finish before it starts another: a
cold start costs tens of milliseconds of CPU (the interpreter and the handler's imports), far more than waiting for
a short invocation to end, so a burst of short invocations does not start an environment per invocation in
flight; work that keeps environments busy longer than this still gets a new one, as on Lambda."""

PIPELINE_WITHIN = 0.001
"""Short invocations are pipelined: while a function's invocations take less than this (their recent mean), an
environment already running one is sent more, up to what it runs in about this time, instead of waking another
environment or starting one. Each is still run alone, in the order sent, its timeout counted from when it begins;
what waits behind one waits about this long, unless that one hangs: then they begin in another environment once it
times out. A function whose invocations take longer is never pipelined."""
MAX_PIPELINE = 16
"""The most invocations sent to one environment at once."""
_SMOOTHING = 0.1
"""Weight of the latest duration in the running mean that decides pipelining."""


def _stop_waiting(handed: asyncio.Future[Worker]) -> None:
    if not handed.done():
        handed.set_exception(TimeoutError())


class ProcessRuntime:
    """A function's execution environments: up to `environments` worker processes, one invocation each at a time.

    An invocation takes the environment that ran the last one if it still has room (pipelining, see
    PIPELINE_WITHIN), else an idle one; when there is none, it waits up to SCALE_UP_AFTER for one to be handed
    back, then starts a new one (a cold start) if the function has fewer than `environments`. At most
    `environments` invocations are in the environments at once, pipelined or not.
    """

    takes_encoded = True
    """Events go to the environments as JSON, with records a source gave as JSON already copied in as they are
    (hub.records.plain)."""

    def __init__(self, setup: FunctionSetup, *, environments: int, timeout: float) -> None:
        self.setup = setup
        self.init_timeout = max(10.0, timeout)
        self._idle: list[Worker] = []
        self._waiting: deque[asyncio.Future[Worker]] = deque()
        self._slots = asyncio.Semaphore(environments)
        self._all: set[Worker] = set()
        self._hot: Worker | None = None
        """The environment the last invocation went to."""
        self._mean = PIPELINE_WITHIN
        """Running mean of how long an invocation runs (seconds): pipelining starts once it is short."""
        self.depth = 1
        """Invocations one environment may be sent at once (1: no pipelining)."""
        self._closed = False
        self._count: Callable[[int], None] = lambda change: None

    def count_running(self, count: Callable[[int], None]) -> None:
        """Have `count` told +1 as an invocation begins in an environment and -1 as it ends (not while it waits for
        one, or waits in one behind another: ConcurrentExecutions counts functions running)."""
        self._count = count

    def ran(self, seconds: float) -> None:
        """An invocation ran for `seconds` (from when it began to its answer): the pipelining depth follows."""
        mean = self._mean = self._mean + _SMOOTHING * (seconds - self._mean)
        self.depth = 1 if mean >= PIPELINE_WITHIN else min(MAX_PIPELINE, max(1, int(PIPELINE_WITHIN / mean)))

    async def start(self) -> None:
        """Start the first environment; raises HandlerLoadError if the handler cannot be loaded."""
        self._idle.append(await self._spawn())

    async def _spawn(self) -> Worker:
        worker = Worker(self.setup, self.init_timeout, self.ran, self._count)
        self._all.add(worker)
        try:
            await worker.start()
        except BaseException:
            self._all.discard(worker)
            raise
        return worker

    def _take(self) -> Worker | None:
        """The environment that ran the last invocation while it has room for one more, else an idle one."""
        hot = self._hot
        if hot is not None and 0 < len(hot.calls) < self.depth and hot.alive:
            return hot
        while self._idle:
            candidate = self._idle.pop()
            if candidate.alive and not candidate.calls:
                return candidate
            if not candidate.alive:
                self._all.discard(candidate)
        return None

    async def _acquire(self) -> Worker:
        """An environment for one invocation (the caller holds a slot, so there is room for one more)."""
        worker = self._take()
        if worker is not None:
            return worker
        if self._all:  # busy ones may be handed back before a new one could start
            loop = asyncio.get_running_loop()
            handed: asyncio.Future[Worker] = loop.create_future()
            self._waiting.append(handed)
            timer = loop.call_later(SCALE_UP_AFTER, _stop_waiting, handed)  # cheaper than asyncio.wait_for
            try:
                return await handed
            except TimeoutError:
                pass
            except asyncio.CancelledError:  # handed an environment just as this invocation was cancelled
                if handed.done() and not handed.cancelled():
                    self._release(handed.result())
                raise
            finally:
                timer.cancel()
        return await self._spawn()

    def _release(self, worker: Worker) -> None:
        """An invocation in `worker` ended: hand it to the invocation waiting longest if it has room, else keep it
        idle once it runs nothing."""
        if not worker.alive:
            self._all.discard(worker)
            if self._hot is worker:
                self._hot = None
            return
        if len(worker.calls) < self.depth:
            while self._waiting:
                waiter = self._waiting.popleft()
                if not waiter.done():
                    waiter.set_result(worker)
                    return
        if not worker.calls:
            self._idle.append(worker)

    async def invoke(self, event: Any, context: LambdaContext) -> Result:
        """Run one invocation in an environment (started if the function has fewer than `environments`); a handler
        that cannot load is an Unhandled error. One queued behind an invocation that crashed or timed out runs in
        another environment."""
        async with self._slots:
            while True:
                try:
                    worker = await self._acquire()
                except HandlerLoadError as exc:
                    return Result(
                        False, error_payload(exc.error_type, str(exc)), 0.0, context.aws_request_id, "Unhandled"
                    )
                self._hot = worker
                worker.coalesce = self.depth > 1
                try:
                    result = await worker.call(event, context)
                except NotStarted:
                    self._release(worker)
                    if self._closed:  # the hub is stopping: unsettled, delivered again after a restart
                        return Result(
                            False,
                            error_payload("Runtime.Stopped", "the function's environments were closed"),
                            0.0,
                            context.aws_request_id,
                            "Unhandled",
                        )
                    continue
                except asyncio.CancelledError:
                    await worker.kill()
                    self._all.discard(worker)
                    raise
                self._release(worker)
                return result

    async def close(self) -> None:
        """Kill every environment, and cancel invocations waiting for one."""
        workers, self._all, self._idle = list(self._all), set(), []
        self._hot = None
        self._closed = True
        for waiter in self._waiting:
            waiter.cancel()
        self._waiting.clear()
        await asyncio.gather(*(w.kill() for w in workers), return_exceptions=True)
