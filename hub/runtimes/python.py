"""`runtime: in-process`: the handler runs in the hub's own process, as one execution environment.

Faster than the default `python` runtime (no process boundary), and shared: the function's module lives in the
hub's process beside every other in-process function's, its environment variables are the process's, and a
handler that hangs keeps its thread (use `runtime: python` for code that must be killed at its timeout). As on
Lambda, one invocation runs at a time (`in_process_concurrency: 1`); more is an explicit opt-in that enters the
handler from several threads (sync) or tasks (`async def`) at once. Sync handlers run on worker threads
(`Workers`), async ones on the event loop. A timeout stops waiting and fails the invocation.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from hub.runtimes import LambdaContext, Result, check_serialisable, error_payload, output
from hub.worker import LoadFault, find_handler, handler_frames


class HandlerLoadError(Exception):
    """The handler could not be loaded; the message says what to check, `error_type` is Lambda's."""

    def __init__(self, message: str, error_type: str = "Runtime.ImportModuleError") -> None:
        super().__init__(message)
        self.error_type = error_type


def load_handler(path: str, task_root: str) -> Callable[..., Any]:
    """Import the handler from `task_root` as Lambda does. In one process a module name stands for one file, so a
    function whose module is already loaded from another folder (another function's `app.py`) is refused."""
    if task_root not in sys.path:
        sys.path.insert(0, task_root)
    module_name = path.rpartition(".")[0].replace("/", ".")
    loaded = sys.modules.get(module_name)
    where = getattr(loaded, "__file__", None)
    if where and not os.path.abspath(where).startswith(os.path.join(task_root, "")):
        raise HandlerLoadError(
            f"handler {path!r}: a module {module_name!r} is already loaded in the hub's process from {where}: "
            "in-process functions share one set of modules; use `runtime: python` (the default), where each "
            "function has its own"
        )
    try:
        return find_handler(path)
    except LoadFault as fault:
        raise HandlerLoadError(f"{fault} (handler {path!r}, code in {task_root})", fault.error_type) from fault


class Workers:
    """Threads that run sync handlers for the event loop: up to `size`, started as calls need them.

    What `loop.run_in_executor` does, for a third of its cost per call: a call is a (future, function, arguments)
    on a queue; a thread runs it and puts the outcome on a deque, and only the first outcome of a burst wakes the
    loop (`call_soon_threadsafe`, a write to its self-pipe), which then resolves every outcome waiting. No
    concurrent.futures.Future with its lock and condition, no chain of callbacks between two futures. The threads
    are daemons: a handler that never returns does not keep the hub from exiting.
    """

    def __init__(self, size: int, name: str) -> None:
        self.size = size
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._calls: queue.SimpleQueue[tuple[asyncio.Future[Any], Callable[..., Any], tuple[Any, ...]] | None]
        self._calls = queue.SimpleQueue()
        self._outcomes: deque[tuple[asyncio.Future[Any], bool, Any]] = deque()
        self._lock = threading.Lock()
        self._waking = False
        self._threads: list[threading.Thread] = []
        self._busy = 0
        self._closed = False

    def submit(self, function: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run function(*args) on a worker thread; the future resolves on the calling loop."""
        if self._closed:
            raise RuntimeError(f"the workers of {self.name} are closed")
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        future = self._loop.create_future()
        self._busy += 1
        if self._busy > len(self._threads) and len(self._threads) < self.size:
            thread = threading.Thread(target=self._work, name=f"{self.name}-{len(self._threads)}", daemon=True)
            self._threads.append(thread)
            thread.start()
        self._calls.put((future, function, args))
        return future

    def _work(self) -> None:
        calls, outcomes, lock = self._calls, self._outcomes, self._lock
        while (call := calls.get()) is not None:
            future, function, args = call
            try:
                outcome = (future, True, function(*args))
            except BaseException as exc:  # SystemExit from a handler is its failure, not the hub's end
                outcome = (future, False, exc)
            del call, function, args
            outcomes.append(outcome)
            del outcome
            with lock:
                if self._waking:
                    continue
                self._waking = True
            loop = self._loop
            assert loop is not None
            try:
                loop.call_soon_threadsafe(self._resolve)
            except RuntimeError:  # the loop is closed: nobody waits any more
                return

    def _resolve(self) -> None:
        with self._lock:
            self._waking = False
        outcomes = self._outcomes
        while outcomes:
            future, ok, value = outcomes.popleft()
            self._busy -= 1
            if future.done():  # timed out or cancelled while the handler ran
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def close(self) -> None:
        """Let every thread end once its current call returns; calls not started are dropped."""
        self._closed = True
        with contextlib.suppress(queue.Empty):
            while True:
                call = self._calls.get_nowait()
                if call is not None:
                    call[0].cancel()
        for _ in self._threads:
            self._calls.put(None)


def _time_out(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class PythonRuntime:
    """A function's one execution environment inside the hub's process."""

    def __init__(
        self,
        handler: str,
        *,
        task_root: str | None = None,
        concurrency: int = 1,
        variables: dict[str, str] | None = None,
    ) -> None:
        self.handler_path = handler
        self.variables = variables or {}
        self.task_root = os.path.abspath(task_root or ".")
        self._handler: Callable[..., Any] | None = None
        self._is_async = False
        self._concurrency = concurrency
        self._turns: asyncio.Semaphore | None = None
        self._workers: Workers | None = None

    async def start(self) -> None:
        """Set the function's environment and import the handler in this process (the cold start); raises
        HandlerLoadError."""
        os.environ.update(self.variables)  # before the import: module-level clients read the environment
        output.install()  # what handlers print goes to the hub's log (hub/runtimes/output.py)
        self._handler = load_handler(self.handler_path, self.task_root)
        self._is_async = inspect.iscoroutinefunction(self._handler)
        if self._is_async:
            self._turns = asyncio.Semaphore(self._concurrency)
        else:
            self._workers = Workers(self._concurrency, f"fn-{self.handler_path}")

    async def invoke(self, event: Any, context: LambdaContext) -> Result:
        """Run the handler once in this process (a thread for a sync handler, a task for an async one), at most
        `in_process_concurrency` at a time; a timeout or an exception is a failed Result."""
        assert self._handler is not None, "start() first"
        started = time.perf_counter()
        try:
            with output.Printed(context.function_name, context.aws_request_id):
                if self._is_async:
                    assert self._turns is not None
                    async with self._turns, asyncio.timeout(context.timeout):
                        value = await self._handler(event, context)
                else:
                    assert self._workers is not None
                    running = self._workers.submit(contextvars.copy_context().run, self._handler, event, context)
                    timer = asyncio.get_running_loop().call_later(context.timeout, _time_out, running)
                    try:  # a timer on the future itself: asyncio.wait_for would add a future and callbacks per call
                        value = await running
                    finally:
                        timer.cancel()
        except TimeoutError:
            return Result(
                False,
                error_payload("Sandbox.Timedout", f"Task timed out after {context.timeout:.2f} seconds"),
                time.perf_counter() - started,
                context.aws_request_id,
                "Timeout",
            )
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # SystemExit or KeyboardInterrupt raised by a handler fail the invocation only
            payload = error_payload(type(exc).__name__, str(exc), handler_frames(exc))
            payload["requestId"] = context.aws_request_id
            return Result(False, payload, time.perf_counter() - started, context.aws_request_id, "Unhandled")
        duration = time.perf_counter() - started
        if (problem := check_serialisable(value)) is not None:
            return Result(
                False, error_payload("Runtime.MarshalError", problem), duration, context.aws_request_id, "Unhandled"
            )
        return Result(True, value, duration, context.aws_request_id)

    async def close(self) -> None:
        """Shut down its threads."""
        if self._workers is not None:
            self._workers.close()
            self._workers = None
