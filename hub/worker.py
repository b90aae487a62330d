"""An execution environment of `runtime: python`: a worker process that imports the handler once, then runs
invocations one at a time, as a Lambda execution environment does.

`python -m hub.worker HANDLER REQUEST_FD RESPONSE_FD MEMORY_MB HUB_PID`. It sits at the top of the package, and
imports asyncio only for an `async def` handler, so that starting an environment costs the interpreter, msgspec
and the handler's own imports, nothing of the hub's. The memory limit is set on the process
(RLIMIT_DATA: the heap and every private mapping) before the handler is imported. Frames (a 4-byte big-endian
length, then the body) come in on REQUEST_FD and go out on RESPONSE_FD, so the handler's own stdout and stderr stay
free for its logs, which the hub reads and tags with the function and request id. A request's body is the JSON
`{"event": ..., "context": {...}}`; a response's is one status byte (READY, INIT_FAILED, OK, FAILED, REPLACE) and
the JSON of the result or of Lambda's error object, so that the hub decodes the handler's result and nothing else.
The handler is found as Lambda's Python runtime finds it, and its failures take the shape Lambda gives them
(`find_handler`, `error`, `to_json`, shared with the in-process runtime). This module imports nothing of the hub, so
the cold start is the handler's own.
"""

from __future__ import annotations

import decimal
import gc
import importlib
import inspect
import json
import logging
import os
import resource
import struct
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import msgspec

_HEADER = struct.Struct(">I")
_READ_SIZE = 1 << 16

READY = b"R"
"""The handler is loaded: invocations may come (the only response without JSON)."""
INIT_FAILED = b"E"
"""The handler cannot be loaded: Lambda's init error object follows."""
OK = b"0"
"""The handler returned: its result follows, as Lambda's runtime serialises it."""
FAILED = b"1"
"""The invocation failed: Lambda's error object follows."""
REPLACE = b"2"
"""The invocation failed and this environment can no longer be trusted (out of memory): the hub replaces it."""
_HUB = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_ASYNCIO = os.path.join(os.path.dirname(os.__file__), "asyncio")


class LoadFault(Exception):
    """The handler cannot be loaded: `error_type` and the message are Lambda's (Runtime.ImportModuleError, ...)."""

    def __init__(self, error_type: str, message: str, stack: list[str] | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.stack = stack or []


def find_handler(handler: str) -> Callable[..., Any]:
    """Import the handler as Lambda's Python runtime does: `module.function`, where the module may be a file name
    with hyphens (`my-fn.handler`) or a path (`src/app.handler`). Raises LoadFault with Lambda's error."""
    module_name, _, function_name = handler.rpartition(".")
    if not module_name:
        raise LoadFault("Runtime.MalformedHandlerName", f"Bad handler '{handler}': not enough values to unpack")
    if module_name.split(".")[0] in sys.builtin_module_names:
        raise LoadFault(
            "Runtime.BuiltInModuleConflict", f"Cannot use built-in module {module_name} as a handler module"
        )
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as exc:
        raise LoadFault("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}") from exc
    except SyntaxError as exc:
        trace = [f'  File "{exc.filename}" Line {exc.lineno}\n    {exc.text}']
        raise LoadFault("Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {exc}", trace) from exc
    found = getattr(module, function_name, None)
    if not callable(found):
        raise LoadFault("Runtime.HandlerNotFound", f"Handler '{function_name}' missing on module '{module_name}'")
    return found  # type: ignore[no-any-return]


def handler_frames(exc: BaseException) -> list[str]:
    """The stack trace as Lambda reports it: the handler's frames only (the runtime's own leading frames dropped),
    each formatted by `traceback.format_list`."""
    frames = traceback.extract_tb(exc.__traceback__)
    start = 0
    while start < len(frames) and frames[start].filename.startswith((_HUB, _ASYNCIO)):
        start += 1
    return traceback.format_list(frames[start:] or frames[-1:])


def error(exc: BaseException, request_id: str, error_type: str | None = None) -> dict[str, Any]:
    """Lambda's error object for a handler's exception."""
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "requestId": request_id,
        "stackTrace": handler_frames(exc),
    }


def _number(value: object) -> object:
    if isinstance(value, decimal.Decimal):  # as Lambda's runtime writes a Decimal: as the number it is
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_ENCODER = json.JSONEncoder(default=_number)
"""`json.dumps(value, default=_number)` without making an encoder per call."""


def to_json(value: Any) -> str:
    """A handler's result as Lambda's runtime serialises it (json.dumps, a Decimal as its number); raises TypeError,
    ValueError or RecursionError (nested too deep) if it cannot be."""
    if value is None:  # what most handlers return
        return "null"
    return _ENCODER.encode(value)


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
        self._deadline: float = time.time() + fields["timeout"]  # made as the invocation begins

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the invocation times out (0 once it has)."""
        return max(0, int((self._deadline - time.time()) * 1000))


class Channel:
    """The worker's end of the two pipes."""

    def __init__(self, requests: int, responses: int) -> None:
        self.requests, self.responses = requests, responses
        self._decode = msgspec.json.Decoder().decode
        self._rest = b""

    def read(self) -> Any:
        """The next request's decoded body; None when the hub closed the pipe."""
        header = self._take(_HEADER.size)
        if header is None:
            return None
        body = self._take(_HEADER.unpack(header)[0])
        if body is None:
            return None
        # A JSON document holds no reference cycles: the collector would only walk the new event again and again
        # while it is built (a fifth of the decode). It runs as before from the handler's first allocation on.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._decode(body)
        finally:
            if collecting:
                gc.enable()

    def _take(self, n: int) -> bytes | None:
        """The next `n` bytes of the request pipe; None at its end. A read asks for what is there (a small request
        is one read: its length and its body together), and keeps what goes beyond `n` for the next call."""
        rest = self._rest
        if len(rest) >= n:
            self._rest = rest[n:]
            return rest[:n]
        chunks, have = [rest], len(rest)
        while have < n:
            chunk = os.read(self.requests, max(n - have, _READ_SIZE))
            if not chunk:
                return None
            chunks.append(chunk)
            have += len(chunk)
        data = b"".join(chunks)
        self._rest = data[n:]
        return data[:n]

    def write(self, status: bytes, payload: bytes = b"") -> None:
        """Send one response (its length, then its status byte and payload), whole."""
        data = memoryview(b"".join((_HEADER.pack(len(status) + len(payload)), status, payload)))
        while data:
            data = data[os.write(self.responses, data) :]


def _die_with_the_hub(hub: int) -> None:
    """An environment never outlives its hub: one left running would finish an invocation the hub never settles,
    while the restarted hub delivers the same records again (out of order, twice at once). Linux: the kernel
    kills this process when the hub's process ends (PR_SET_PDEATHSIG); a hub gone before that was set is seen
    here."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != hub:
        os._exit(1)


def main() -> None:
    """The worker process: load the handler (reporting an init error to the hub), then answer invocations one at a
    time until the hub closes the pipe, under the function's memory limit; exits when the hub dies."""
    handler_path, requests, responses, memory_mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    _die_with_the_hub(int(sys.argv[5]))
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="[%(levelname)s] %(name)s: %(message)s")
    task_root = os.environ.get("LAMBDA_TASK_ROOT", os.getcwd())
    if sys.path[0] != task_root:
        sys.path.insert(0, task_root)
    channel = Channel(requests, responses)
    try:
        handler = find_handler(handler_path)
    except LoadFault as fault:
        failure = {"errorMessage": str(fault), "errorType": fault.error_type, "stackTrace": fault.stack}
        channel.write(INIT_FAILED, json.dumps(failure).encode())
        return
    except Exception as exc:  # the module raised while it was imported: Lambda's init error
        channel.write(INIT_FAILED, json.dumps(error(exc, "")).encode())
        return
    channel.write(READY)
    loop = None
    if inspect.iscoroutinefunction(handler):
        import asyncio

        loop = asyncio.new_event_loop()
    while (request := channel.read()) is not None:
        context = Context(request["context"])
        try:
            value = handler(request["event"], context)
            if loop is not None:
                value = loop.run_until_complete(value)
            try:
                status, payload = OK, to_json(value)
            except (TypeError, ValueError, RecursionError) as exc:  # a result nested too deep too
                failure = {
                    "errorMessage": f"Unable to marshal response: {exc}",
                    "errorType": "Runtime.MarshalError",
                    "requestId": context.aws_request_id,
                    "stackTrace": [],
                }
                status, payload = FAILED, json.dumps(failure)
        except MemoryError as exc:
            # the worker's heap may be in any state: answer, then let the hub replace this environment
            failure = error(exc, context.aws_request_id, "Runtime.OutOfMemory")
            failure["errorMessage"] = f"the function used more than its memory limit ({memory_mb} MB)"
            status, payload = REPLACE, json.dumps(failure)
        except Exception as exc:
            status, payload = FAILED, json.dumps(error(exc, context.aws_request_id))
        sys.stdout.flush()
        sys.stderr.flush()
        channel.write(status, payload.encode())
        if status == REPLACE:
            return  # begin nothing more here: what the hub sent behind it runs in another environment


if __name__ == "__main__":
    main()
