"""`runtime: process`: a pool of warm worker processes per function.

Each worker imports the handler once (the cold start is paid once, as on Lambda) and runs one invocation at a
time. The timeout is enforced by killing the worker; `memory` is a hard limit on the worker's data segment; a
worker that dies (exit, signal, segfault, out of memory) is replaced and the invocation fails with the reason.
A worker gets the function's `environment` and Lambda's own variables, nothing of the hub's environment (so
none of its secrets); its stdout and stderr reach the hub's log tagged with the function and the request id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import struct
import sys
import time
from typing import Any

import msgspec

from hub import affinity
from hub.logs import fields
from hub.runtimes import LambdaContext, Result, error_payload
from hub.runtimes.python import HandlerLoadError

log = logging.getLogger("hub.function")
_HEADER = struct.Struct(">I")
# what a worker inherits from the hub's environment: enough to run Python, nothing else
_INHERITED = ("PATH", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "VIRTUAL_ENV", "HOME", "TMPDIR")


class Worker:
    def __init__(self, runtime: ProcessRuntime) -> None:
        self.runtime = runtime
        self.proc: asyncio.subprocess.Process | None = None
        self.reader: asyncio.StreamReader | None = None
        self.request_fd = -1
        self.request_id = "-"
        self._log_tasks: list[asyncio.Task[None]] = []

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        requests_r, requests_w = os.pipe()
        responses_r, responses_w = os.pipe()
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "hub.runtimes.worker",
                self.runtime.handler,
                str(requests_r),
                str(responses_w),
                str(self.runtime.memory_mb),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self.runtime.environment,
                pass_fds=(requests_r, responses_w),
                cwd=self.runtime.task_root,
            )
        finally:
            os.close(requests_r)
            os.close(responses_w)
        affinity.release_child(self.proc.pid)  # a pinned hub's workers still run on every CPU (cpu_affinity)
        self.request_fd = requests_w
        loop = asyncio.get_running_loop()
        reader = self.reader = asyncio.StreamReader(limit=2**31)
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(responses_r, "rb", buffering=0)
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._log_tasks = [
            asyncio.ensure_future(self._forward(self.proc.stdout)),
            asyncio.ensure_future(self._forward(self.proc.stderr)),
        ]
        ready = await self._read(self.runtime.init_timeout)
        if ready is None or not ready.get("ready"):
            await self.kill()
            detail = (ready or {}).get("error") or {"errorMessage": await self._death()}
            raise HandlerLoadError(
                f"function {self.runtime.function_name!r}: the worker could not load {self.runtime.handler!r}: "
                f"{detail.get('errorType', 'Error')}: {detail.get('errorMessage')}"
            )

    async def _forward(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip("\n")
            log.info(text, extra=fields(function=self.runtime.function_name, request_id=self.request_id))

    async def _read(self, timeout: float) -> dict[str, Any] | None:
        assert self.reader is not None
        try:
            header = await asyncio.wait_for(self.reader.readexactly(_HEADER.size), timeout)
            (length,) = _HEADER.unpack(header)
            body = await asyncio.wait_for(self.reader.readexactly(length), timeout)
        except asyncio.IncompleteReadError:
            return None
        return json.loads(body)  # type: ignore[no-any-return]

    async def call(self, event: Any, context: LambdaContext) -> Result:
        started = time.perf_counter()
        self.request_id = context.aws_request_id
        message = {
            "event": event,
            "context": {
                "aws_request_id": context.aws_request_id,
                "function_name": context.function_name,
                "invoked_function_arn": context.invoked_function_arn,
                "memory_limit_in_mb": context.memory_limit_in_mb,
                "log_group_name": context.log_group_name,
                "log_stream_name": context.log_stream_name,
                "deadline": time.time() + context.get_remaining_time_in_millis() / 1000,
            },
        }
        body = msgspec.json.encode(message)  # the event is the hub's own JSON values: encoded in C
        try:
            await asyncio.to_thread(_write_all, self.request_fd, _HEADER.pack(len(body)) + body)
            response = await self._read(context.timeout)
        except TimeoutError:
            await self.kill()
            return self._failed(
                "Sandbox.Timedout", f"Task timed out after {context.timeout:.2f} seconds", started, context, "Timeout"
            )
        except OSError:
            response = None
        if response is None:
            reason = await self._death()
            return self._failed(
                "Runtime.ExitError",
                f"RequestId: {context.aws_request_id} Error: {reason}",
                started,
                context,
                "Unhandled",
            )
        if response.get("replace"):
            await self.kill()
        duration = time.perf_counter() - started
        if response["ok"]:
            return Result(True, response["payload"], duration, context.aws_request_id)
        return Result(False, response["payload"], duration, context.aws_request_id, "Unhandled")

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
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        await self._drain_logs()
        for task in self._log_tasks:
            task.cancel()
        if self.request_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.request_fd)
            self.request_fd = -1


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


class ProcessRuntime:
    def __init__(
        self,
        function_name: str,
        handler: str,
        *,
        memory_mb: int,
        environment: dict[str, str],
        workers: int,
        region: str,
        timeout: float,
        task_root: str | None = None,
    ) -> None:
        self.function_name = function_name
        self.handler = handler
        self.memory_mb = memory_mb
        self.task_root = task_root or os.getcwd()
        self.init_timeout = max(10.0, timeout)
        self.environment = {k: os.environ[k] for k in _INHERITED if k in os.environ}
        self.environment["PYTHONPATH"] = os.pathsep.join(
            dict.fromkeys(p for p in (self.task_root, *sys.path) if p and os.path.isdir(p))
        )
        self.environment.update(
            {
                "AWS_LAMBDA_FUNCTION_NAME": function_name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_REGION": region,
                "AWS_DEFAULT_REGION": region,
                "_HANDLER": handler,
                "LAMBDA_TASK_ROOT": self.task_root,
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.environment.update(environment)
        self._idle: list[Worker] = []
        self._slots = asyncio.Semaphore(workers)
        self._all: set[Worker] = set()

    async def start(self) -> None:
        """Start one warm worker; raises HandlerLoadError if the handler cannot be imported."""
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

    async def invoke(self, event: Any, context: LambdaContext) -> Result:
        async with self._slots:
            worker = None
            while self._idle and worker is None:
                candidate = self._idle.pop()
                if candidate.alive:
                    worker = candidate
                else:
                    self._all.discard(candidate)
            if worker is None:
                try:
                    worker = await self._spawn()
                except HandlerLoadError as exc:
                    return Result(
                        False,
                        error_payload("Runtime.ImportModuleError", str(exc)),
                        0.0,
                        context.aws_request_id,
                        "Unhandled",
                    )
            try:
                result = await worker.call(event, context)
            except asyncio.CancelledError:
                await worker.kill()
                self._all.discard(worker)
                raise
            if worker.alive:
                self._idle.append(worker)
            else:
                self._all.discard(worker)
            return result

    async def close(self) -> None:
        workers, self._all, self._idle = list(self._all), set(), []
        await asyncio.gather(*(w.kill() for w in workers), return_exceptions=True)
