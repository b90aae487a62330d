"""The worker process of `runtime: process`: imports the handler once, then runs invocations one at a time.

`python -m hub.runtimes.worker HANDLER REQUEST_FD RESPONSE_FD MEMORY_MB`. The memory limit is set on the process
(RLIMIT_DATA: the heap and every private mapping) before the handler is imported. Frames (4-byte big-endian
length + JSON) come in on REQUEST_FD and go out on RESPONSE_FD, so the handler's own stdout and
stderr stay free for its logs, which the hub reads and tags with the function and request id. This module
imports nothing of the hub beyond the small shared helpers, so the cold start is the handler's own.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import resource
import struct
import sys
import time
import traceback
from typing import Any

_HEADER = struct.Struct(">I")
REQUESTS, RESPONSES = -1, -1


def read_frame(fd: int) -> Any:
    header = _read_exact(fd, _HEADER.size)
    if header is None:
        return None
    (length,) = _HEADER.unpack(header)
    body = _read_exact(fd, length)
    return None if body is None else json.loads(body)


def _read_exact(fd: int, n: int) -> bytes | None:
    chunks, remaining = [], n
    while remaining:
        chunk = os.read(fd, remaining)
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def write_frame(fd: int, message: Any) -> None:
    body = json.dumps(message).encode()
    data = _HEADER.pack(len(body)) + body
    while data:
        written = os.write(fd, data)
        data = data[written:]


class Context:
    """The Lambda `context` inside a worker; the same attributes as hub.runtimes.LambdaContext."""

    def __init__(self, fields: dict[str, Any]) -> None:
        self.aws_request_id: str = fields["aws_request_id"]
        self.function_name: str = fields["function_name"]
        self.function_version: str = "$LATEST"
        self.invoked_function_arn: str = fields["invoked_function_arn"]
        self.memory_limit_in_mb: int = fields["memory_limit_in_mb"]
        self.log_group_name: str = fields["log_group_name"]
        self.log_stream_name: str = fields["log_stream_name"]
        self.identity = None
        self.client_context = None
        self._deadline: float = fields["deadline"]

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


def error(exc: BaseException, error_type: str | None = None) -> dict[str, Any]:
    frames = traceback.extract_tb(exc.__traceback__)[1:]
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "stackTrace": [line.rstrip("\n") for line in traceback.format_list(frames)],
    }


def main() -> None:
    global REQUESTS, RESPONSES
    handler_path, REQUESTS, RESPONSES, memory_mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="[%(levelname)s] %(name)s: %(message)s")
    sys.path.insert(0, os.environ.get("LAMBDA_TASK_ROOT", os.getcwd()))
    module_name, _, attr = handler_path.rpartition(".")
    try:
        handler = getattr(__import__(module_name, fromlist=[attr]), attr)
        if not callable(handler):
            raise TypeError(f"{handler_path} is not callable")
    except Exception as exc:
        write_frame(RESPONSES, {"ready": False, "error": error(exc, "Runtime.ImportModuleError")})
        return
    write_frame(RESPONSES, {"ready": True})
    loop = asyncio.new_event_loop() if inspect.iscoroutinefunction(handler) else None
    while (request := read_frame(REQUESTS)) is not None:
        context = Context(request["context"])
        try:
            value = handler(request["event"], context)
            if loop is not None:
                value = loop.run_until_complete(value)
            sys.stdout.flush()
            try:
                write_frame(RESPONSES, {"ok": True, "payload": value, "replace": False})
                continue
            except (TypeError, ValueError) as exc:  # nothing was written: json.dumps failed first
                message = f"Unable to marshal response: {exc}"
                response = {
                    "ok": False,
                    "payload": {"errorMessage": message, "errorType": "Runtime.MarshalError", "stackTrace": []},
                    "replace": False,
                }
        except MemoryError as exc:
            # the worker's heap may be in any state: answer, then let the hub replace this worker
            payload = error(exc, "Runtime.OutOfMemory")
            payload["errorMessage"] = f"the function used more than its memory limit ({memory_mb} MB)"
            response = {"ok": False, "payload": payload, "replace": True}
        except Exception as exc:
            response = {"ok": False, "payload": error(exc), "replace": False}
        sys.stdout.flush()
        write_frame(RESPONSES, response)


if __name__ == "__main__":
    main()
