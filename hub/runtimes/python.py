"""The `python` runtime: the handler runs in the hub's process.

Async handlers run on the event loop, sync handlers in a thread pool sized by the function's concurrency.
A timeout stops waiting and fails the invocation; a sync handler that hangs keeps its thread until it returns
(use `runtime: process` for functions that must be killed at their timeout).
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import inspect
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from hub.runtimes import LambdaContext, Result, check_serialisable, error_payload


class HandlerLoadError(Exception):
    """The handler could not be imported; the message says what to check."""


def load_handler(path: str) -> Callable[..., Any]:
    module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise HandlerLoadError(
            f"cannot import {module_name!r} for handler {path!r}: {type(exc).__name__}: {exc} "
            f"(the hub imports functions from the directory it runs in: {sys.path[0] or '.'})"
        ) from exc
    handler = getattr(module, attr, None)
    if not callable(handler):
        raise HandlerLoadError(f"{module_name!r} has no function {attr!r} (handler {path!r})")
    return handler  # type: ignore[no-any-return]


class PythonRuntime:
    def __init__(self, handler: str, *, threads: int = 32) -> None:
        self.handler_path = handler
        self._handler: Callable[..., Any] | None = None
        self._is_async = False
        self._threads = threads
        self._pool: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        self._handler = load_handler(self.handler_path)
        self._is_async = inspect.iscoroutinefunction(self._handler)
        if not self._is_async:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix=f"fn-{self.handler_path}")

    async def invoke(self, event: Any, context: LambdaContext) -> Result:
        assert self._handler is not None, "start() first"
        started = time.perf_counter()
        try:
            if self._is_async:
                value = await asyncio.wait_for(self._handler(event, context), context.timeout)
            else:
                loop = asyncio.get_running_loop()
                call = contextvars.copy_context().run
                future = loop.run_in_executor(self._pool, call, self._handler, event, context)
                value = await asyncio.wait_for(future, context.timeout)
        except TimeoutError:
            return Result(
                False,
                error_payload("Sandbox.Timedout", f"Task timed out after {context.timeout:.2f} seconds"),
                time.perf_counter() - started,
                context.aws_request_id,
                "Timeout",
            )
        except Exception as exc:
            stack = traceback.format_list(traceback.extract_tb(exc.__traceback__)[1:])
            return Result(
                False,
                error_payload(type(exc).__name__, str(exc), [line.rstrip("\n") for line in stack]),
                time.perf_counter() - started,
                context.aws_request_id,
                "Unhandled",
            )
        duration = time.perf_counter() - started
        if (problem := check_serialisable(value)) is not None:
            return Result(
                False, error_payload("Runtime.MarshalError", problem), duration, context.aws_request_id, "Unhandled"
            )
        return Result(True, value, duration, context.aws_request_id)

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
