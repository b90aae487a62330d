"""An execution environment of `runtime: python` (hub/runtimes/process.py): one worker process (hub/worker.py),
its pipes, its log stream, and the invocations sent to it.

It runs one invocation at a time, in the order sent. Requests go out as frames on one pipe, answers come back on
the other (hub/runtimes/frames.py), oldest first; the invocation running is the oldest one unanswered, and its
timeout counts from when it began. A timeout kills the process; one that dies (exit, signal, out of memory) fails
the invocation it was running with the reason, and those sent behind it never began: they raise NotStarted, and the
runtime runs them in another environment. The process's stdout and stderr reach the hub's log tagged with the
function and the request id of the invocation running.
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
from collections.abc import Callable
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


COALESCE = 0.0005
"""While invocations are pipelined, a frame for an environment that is not running one and was written to less than
this ago waits until this long after that write, and goes out with those that come meanwhile, in one write: each
write that wakes a sleeping process costs the hub about as much as a short invocation. An environment that is
running one is written to at once (the write does not wake it), and so is one not written to for this long, so a
function invoked less often than every half millisecond never waits for it."""


class NotStarted(Exception):
    """An invocation queued in an environment that ended before the invocation began: it runs in another one."""


class _Call:
    """One invocation sent (or about to be sent) to an environment, answered in the order sent."""

    __slots__ = ("answer", "began", "request_id", "sent", "timeout")

    def __init__(self, answer: asyncio.Future[bytes | None], timeout: float, request_id: str) -> None:
        self.answer = answer
        self.timeout = timeout
        self.request_id = request_id
        self.sent = False
        """Its frame is in the pipe (the environment may have begun it)."""
        self.began: float | None = None
        """When it began (the loop's clock): its frame was sent and every call before it was answered."""


class Worker:
    """One execution environment: a worker process, its pipes, its log stream and its calls (module docstring)."""

    def __init__(
        self,
        setup: FunctionSetup,
        init_timeout: float,
        ran: Callable[[float], None],
        running: Callable[[int], None] = lambda change: None,
    ) -> None:
        self.setup = setup
        self.init_timeout = init_timeout
        self._ran = ran
        """Told how long each invocation ran (the runtime's pipelining follows it)."""
        self._running = running
        """Told +1 as an invocation begins and -1 as it ends (ConcurrentExecutions: not those queued here)."""
        self.proc: asyncio.subprocess.Process | None = None
        self.responses = Responses(self._answered)
        self.writer: asyncio.WriteTransport | None = None
        self.request_id = "-"
        self.log_stream_name = log_stream_name()
        self.calls: deque[_Call] = deque()
        """Sent or about to be sent, not answered yet, oldest (the one running) first."""
        self._log_tasks: list[asyncio.Task[None]] = []
        self._deadline: float | None = None
        """When the invocation running now times out (the loop's clock); None while none runs."""
        self._timer: asyncio.TimerHandle | None = None
        self._unsent: list[bytes | bytearray] = []
        self._flush: asyncio.TimerHandle | None = None
        self._written_at = -1.0
        self._killing = False
        self.coalesce = False
        """Whether frames sent just after a write wait to go out together (the runtime pipelines)."""

    @property
    def alive(self) -> bool:
        """True while its process runs."""
        return self.proc is not None and self.proc.returncode is None and not self.responses.ended

    async def start(self) -> None:
        """Start the worker process and wait for it to load the handler; raises HandlerLoadError when it cannot (its
        init error), or when it takes longer than the init timeout."""
        setup = self.setup
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
        ready = _Call(loop.create_future(), self.init_timeout, "-")  # answered by READY (or the init error)
        ready.sent = True
        self.calls.append(ready)
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
            async with asyncio.timeout(self.init_timeout):
                answer = await ready.answer
        except TimeoutError:
            detail = {
                "errorType": "Runtime.InitTimeout",
                "errorMessage": f"the handler's module did not load within {self.init_timeout:.0f} s",
            }
        except NotStarted:
            detail = {}
        else:
            if answer is not None and answer[:1] == INIT_FAILED:
                detail = json.loads(answer[1:])
            elif answer != READY:
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
        name = self.setup.name
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip("\n")
            log.info(text, extra=fields(function=name, request_id=self.request_id))

    async def call(self, event: Any, context: LambdaContext) -> Result:
        """Run one invocation in this environment: the Result of the handler, or Lambda's error for a timeout (the
        process is killed), a crash or an out-of-memory kill. Raises NotStarted when the environment ended before
        the invocation began (it was queued behind one that crashed or timed out): it may run in another one."""
        started = time.perf_counter()
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
                    "timeout": context.timeout,  # counted from when it begins, as the hub counts it
                },
            },
            frame,
            _HEADER.size,
        )
        _HEADER.pack_into(frame, 0, len(frame) - _HEADER.size)
        if not self.alive or self.writer is None or self.writer.is_closing():
            raise NotStarted
        loop = asyncio.get_running_loop()
        call = _Call(loop.create_future(), context.timeout, context.aws_request_id)
        self.calls.append(call)
        self._send(frame, loop.time())
        try:
            response = await call.answer
        except TimeoutError:
            await self.kill()
            return self._failed(
                "Sandbox.Timedout",
                f"Task timed out after {context.timeout:.2f} seconds",
                started,
                context,
                "Timeout",
            )
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
        # Lambda's duration: from when it began in the environment, not from when it was queued there
        duration = time.perf_counter() - started if call.began is None else loop.time() - call.began
        if status == _STATUS_OK:
            return Result(True, payload, duration, context.aws_request_id)
        return Result(False, payload, duration, context.aws_request_id, "Unhandled")

    # ---- sending: frames go out at once, or coalesced while invocations are pipelined -------------------------

    def _send(self, frame: bytearray, now: float) -> None:
        """Send a call's frame: at once, or while invocations are pipelined, with those that follow (COALESCE)."""
        unsent = self._unsent
        unsent.append(frame)
        if (
            self.calls[0].sent  # it is running one: the write does not wake it
            or not self.coalesce
            or now - self._written_at >= COALESCE
        ):
            if self._flush is not None:
                self._flush.cancel()
                self._flush = None
            self._write(now)
        elif self._flush is None:
            self._flush = asyncio.get_running_loop().call_at(self._written_at + COALESCE, self._flush_now)

    def _flush_now(self) -> None:
        self._flush = None
        self._write(asyncio.get_running_loop().time())

    def _write(self, now: float) -> None:
        unsent = self._unsent
        if not unsent or self.writer is None or self.writer.is_closing():
            return
        self.writer.write(unsent[0] if len(unsent) == 1 else b"".join(unsent))
        unsent.clear()
        self._written_at = now
        for call in reversed(self.calls):
            if call.sent:
                break
            call.sent = True
        head = self.calls[0]
        if head.began is None:
            self._begin(head, now)

    # ---- answers ---------------------------------------------------------------------------------------------

    def _begin(self, call: _Call, now: float) -> None:
        """`call` is the one running now: its timeout counts from `now`."""
        call.began = now
        self._running(1)
        self.request_id = call.request_id
        self._time_out_at(now + call.timeout)

    def _answered(self, body: bytes | None) -> None:
        """A response (the oldest call's), or None: the pipe ended."""
        if body is None:
            self._end()
            return
        if self._killing:
            return  # the answer of a call that timed out, come too late: the process is being killed
        calls = self.calls
        if not calls:
            return  # nothing waits (a late answer of a call already timed out): the process is being killed
        call = calls.popleft()
        if not call.answer.done():
            call.answer.set_result(body)
        now = asyncio.get_running_loop().time()
        if call.began is not None:
            self._running(-1)
            self._ran(now - call.began)
        if body[0] == _STATUS_REPLACE:
            self._killing = True  # the worker begins nothing more: those behind it get NotStarted as it is killed
            self._deadline = None
        elif calls and calls[0].sent:
            self._begin(calls[0], now)
        else:
            self._deadline = None

    def _end(self) -> None:
        """The process is gone: the call running gets None (it crashed), those behind it NotStarted."""
        calls, self.calls = list(self.calls), deque()
        self._deadline = None
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        self._unsent.clear()
        for call in calls:
            if call.began is not None:
                self._running(-1)
            if not call.answer.done():
                if call.began is not None:
                    call.answer.set_result(None)
                else:
                    call.answer.set_exception(NotStarted())
                    call.answer.exception()  # retrieved: a call cancelled meanwhile does not log it

    def _time_out_at(self, deadline: float) -> None:
        """Time the running invocation out at `deadline`. One timer per environment, moved on only when it fires
        early (it was set for an invocation that has ended): not a timer made and cancelled per invocation."""
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
        self._deadline = None
        self._killing = True
        if self.calls:
            call = self.calls.popleft()  # those behind it never began: NotStarted once the process is killed
            self._running(-1)
            if not call.answer.done():
                call.answer.set_exception(TimeoutError())

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
        """Kill the process and collect the rest of its log lines; calls still queued in it get NotStarted."""
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
        self.responses.ended = True
        self._end()
