"""`runtime: python` (the default): a function's execution environments, each a warm worker process.

Each environment imports the handler once (the cold start is paid once, as on Lambda) and runs one invocation at a
time, so module-level state is never entered by two invocations at once. Environments are started when an
invocation finds none idle, up to the function's concurrency; the first is started with the hub, so a handler that
cannot be imported stops the hub at start. The timeout is enforced by killing the environment; `memory` is a hard
limit on its data segment; one that dies (exit, signal, segfault, out of memory) is replaced and the invocation
fails with the reason. An environment gets the function's own variables and Lambda's (`hub.runtimes.variables`),
nothing of the hub's environment beyond PATH, HOME and the locale; its stdout and stderr reach the hub's log tagged
with the function and the request id.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import struct
import sys
import time
from collections import deque
from typing import Any

import msgspec

from hub.logs import fields
from hub.runtimes import LambdaContext, Result, error_payload, log_stream_name
from hub.runtimes.frames import Responses, result_json
from hub.runtimes.python import HandlerLoadError
from hub.runtimes.variables import FunctionSetup
from hub.worker import INIT_FAILED, OK, READY, REPLACE

log = logging.getLogger("hub.function")
_HEADER = struct.Struct(">I")
_PIPE_BYTES = 1 << 20  # a batch of a thousand records is written in one go (Linux; 64 KiB where it cannot be set)
_encode_into = msgspec.json.Encoder().encode_into  # the event is the hub's own JSON values: encoded in C
_STATUS_OK, _STATUS_REPLACE = OK[0], REPLACE[0]


class Worker:
    """One execution environment: a worker process, its pipes and its log stream."""

    def __init__(self, runtime: ProcessRuntime) -> None:
        self.runtime = runtime
        self.proc: asyncio.subprocess.Process | None = None
        self.responses = Responses()
        self.writer: asyncio.WriteTransport | None = None
        self.request_id = "-"
        self.log_stream_name = log_stream_name()
        self._log_tasks: list[asyncio.Task[None]] = []
        self._deadline: float | None = None
        """When the invocation running now times out (the loop's clock); None while none runs."""
        self._timer: asyncio.TimerHandle | None = None

    @property
    def alive(self) -> bool:
        """True while its process runs."""
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        """Start the worker process and wait for it to load the handler; raises HandlerLoadError when it cannot (its
        init error), or when it takes longer than the init timeout."""
        setup = self.runtime.setup
        requests_r, requests_w = os.pipe()
        responses_r, responses_w = os.pipe()
        with contextlib.suppress(OSError, AttributeError):
            fcntl.fcntl(requests_w, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "hub.worker",
                setup.handler,
                str(requests_r),
                str(responses_w),
                str(setup.memory_mb),
                str(os.getpid()),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=setup.variables(self.log_stream_name),
                pass_fds=(requests_r, responses_w),
                cwd=setup.task_root,
            )
        except BaseException:
            for fd in (requests_w, responses_r):
                os.close(fd)
            raise
        finally:
            os.close(requests_r)
            os.close(responses_w)
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: self.responses, os.fdopen(responses_r, "rb", buffering=0))
        # writes go through the loop (no thread per call); a large event is buffered until the pipe takes it
        self.writer, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(requests_w, "wb", buffering=0))
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._log_tasks = [
            asyncio.ensure_future(self._forward(self.proc.stdout)),
            asyncio.ensure_future(self._forward(self.proc.stderr)),
        ]
        detail: dict[str, Any] | None = None
        try:
            async with asyncio.timeout(self.runtime.init_timeout):
                ready = await self.responses.expect()
        except TimeoutError:
            detail = {
                "errorType": "Runtime.InitTimeout",
                "errorMessage": f"the handler's module did not load within {self.runtime.init_timeout:.0f} s",
            }
        else:
            if ready is not None and ready[:1] == INIT_FAILED:
                detail = json.loads(ready[1:])
            elif ready != READY:
                detail = {}
        if detail is not None:
            await self.kill()
            detail = detail or {"errorMessage": await self._death()}
            raise HandlerLoadError(
                f"function {setup.name!r}: {detail.get('errorType', 'Error')}: {detail.get('errorMessage')} "
                f"(handler {setup.handler!r}, code in {setup.task_root})",
                detail.get("errorType", "Runtime.ImportModuleError"),
            )

    async def _forward(self, stream: asyncio.StreamReader) -> None:
        name = self.runtime.setup.name
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip("\n")
            log.info(text, extra=fields(function=name, request_id=self.request_id))

    async def call(self, event: Any, context: LambdaContext) -> Result:
        """Run one invocation in this environment: the Result of the handler, or Lambda's error for a timeout (the
        process is killed), a crash or an out-of-memory kill."""
        started = time.perf_counter()
        self.request_id = context.aws_request_id
        frame = bytearray(_HEADER.size)  # the frame's length goes in front of the body, written in one go
        _encode_into(
            {
                "event": event,
                "context": {
                    "aws_request_id": context.aws_request_id,
                    "function_name": context.function_name,
                    "invoked_function_arn": context.invoked_function_arn,
                    "memory_limit_in_mb": context.memory_limit_in_mb,
                    "log_group_name": context.log_group_name,
                    "log_stream_name": self.log_stream_name,
                    "deadline": time.time() + context.get_remaining_time_in_millis() / 1000,
                },
            },
            frame,
            _HEADER.size,
        )
        _HEADER.pack_into(frame, 0, len(frame) - _HEADER.size)
        assert self.writer is not None
        response: bytes | None = None
        if not self.writer.is_closing():
            answered = self.responses.expect()
            self.writer.write(frame)
            self._time_out_at(asyncio.get_running_loop().time() + context.timeout)
            try:
                response = await answered
            except TimeoutError:
                await self.kill()
                return self._failed(
                    "Sandbox.Timedout",
                    f"Task timed out after {context.timeout:.2f} seconds",
                    started,
                    context,
                    "Timeout",
                )
            finally:
                self._deadline = None
        if not response:
            reason = await self._death()
            return self._failed(
                "Runtime.ExitError",
                f"RequestId: {context.aws_request_id} Error: {reason}",
                started,
                context,
                "Unhandled",
            )
        status = response[0]
        if status == _STATUS_REPLACE:
            await self.kill()
        payload = result_json(response[1:])
        duration = time.perf_counter() - started
        if status == _STATUS_OK:
            return Result(True, payload, duration, context.aws_request_id)
        return Result(False, payload, duration, context.aws_request_id, "Unhandled")

    def _time_out_at(self, deadline: float) -> None:
        """Time the invocation out at `deadline`. One timer per environment, moved on only when it fires early (it
        was set for an invocation that has ended): not a timer made and cancelled per invocation."""
        self._deadline = deadline
        if self._timer is None or self._timer.when() > deadline:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = asyncio.get_running_loop().call_at(deadline, self._check_deadline)

    def _check_deadline(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None:
            return  # no invocation runs: the next one sets its own
        loop = asyncio.get_running_loop()
        if loop.time() < deadline:
            self._timer = loop.call_at(deadline, self._check_deadline)
            return
        waiter = self.responses.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(TimeoutError())

    def _failed(self, kind: str, message: str, started: float, context: LambdaContext, error: str) -> Result:
        return Result(False, error_payload(kind, message), time.perf_counter() - started, context.aws_request_id, error)

    async def _death(self) -> str:
        assert self.proc is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.proc.wait(), 5)
        await self._drain_logs()
        code = self.proc.returncode
        if code is None:
            await self.kill()
            return "Runtime stopped answering"
        if code < 0:
            name = signal.Signals(-code).name
            words = {"SIGSEGV": "segmentation fault", "SIGKILL": "killed", "SIGABRT": "aborted"}.get(name, name)
            return f"Runtime exited with error: signal: {words}"
        return f"Runtime exited with error: exit status {code}"

    async def _drain_logs(self) -> None:
        if self._log_tasks:
            await asyncio.wait(self._log_tasks, timeout=2)

    async def kill(self) -> None:
        """Kill the process and collect the rest of its log lines."""
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        await self._drain_logs()
        for task in self._log_tasks:
            task.cancel()
        if self.writer is not None:
            self.writer.close()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


SCALE_UP_AFTER = 0.01
"""How long an invocation that finds every environment busy waits for one to finish before it starts another: a
cold start costs tens of milliseconds of CPU (the interpreter and the handler's imports), far more than waiting for
a short invocation to end, so a burst of short invocations does not start an environment per invocation in
flight; work that keeps environments busy longer than this still gets a new one, as on Lambda."""


def _stop_waiting(handed: asyncio.Future[Worker]) -> None:
    if not handed.done():
        handed.set_exception(TimeoutError())


class ProcessRuntime:
    """A function's execution environments: up to `environments` worker processes, one invocation each at a time.

    An invocation takes an idle environment; when there is none, it waits up to SCALE_UP_AFTER for one to be
    handed back, then starts a new one (a cold start) if the function has fewer than `environments`.
    """

    def __init__(self, setup: FunctionSetup, *, environments: int, timeout: float) -> None:
        self.setup = setup
        self.init_timeout = max(10.0, timeout)
        self._idle: list[Worker] = []
        self._waiting: deque[asyncio.Future[Worker]] = deque()
        self._slots = asyncio.Semaphore(environments)
        self._all: set[Worker] = set()

    async def start(self) -> None:
        """Start the first environment; raises HandlerLoadError if the handler cannot be loaded."""
        self._idle.append(await self._spawn())

    async def _spawn(self) -> Worker:
        worker = Worker(self)
        self._all.add(worker)
        try:
            await worker.start()
        except BaseException:
            self._all.discard(worker)
            raise
        return worker

    def _take_idle(self) -> Worker | None:
        while self._idle:
            candidate = self._idle.pop()
            if candidate.alive:
                return candidate
            self._all.discard(candidate)
        return None

    async def _acquire(self) -> Worker:
        """An environment for one invocation (the caller holds a slot, so there is room for one more)."""
        worker = self._take_idle()
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
        """Hand a finished environment to the invocation waiting longest, else keep it idle."""
        if not worker.alive:
            self._all.discard(worker)
            return
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(worker)
                return
        self._idle.append(worker)

    async def invoke(self, event: Any, context: LambdaContext) -> Result:
        """Run one invocation in an idle environment (started if the function has fewer than `environments`); a
        handler that cannot load is an Unhandled error."""
        async with self._slots:
            try:
                worker = await self._acquire()
            except HandlerLoadError as exc:
                return Result(False, error_payload(exc.error_type, str(exc)), 0.0, context.aws_request_id, "Unhandled")
            try:
                result = await worker.call(event, context)
            except asyncio.CancelledError:
                await worker.kill()
                self._all.discard(worker)
                raise
            self._release(worker)
            return result

    async def close(self) -> None:
        """Kill every environment, and cancel invocations waiting for one."""
        workers, self._all, self._idle = list(self._all), set(), []
        for waiter in self._waiting:
            waiter.cancel()
        self._waiting.clear()
        await asyncio.gather(*(w.kill() for w in workers), return_exceptions=True)
