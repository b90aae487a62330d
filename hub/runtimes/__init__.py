"""Runtimes run a function: the same event in, the same kind of result out, whatever runs the handler."""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(slots=True)
class Result:
    """What one invocation gave.

    ok        the handler returned (payload is its return value)
    payload   the return value, or Lambda's error object {errorMessage, errorType, stackTrace}
    error     None, "Unhandled" (the handler raised or its result was unusable) or "Timeout"
    """

    ok: bool
    payload: Any
    duration: float
    request_id: str
    error: str | None = None

    @property
    def error_message(self) -> str:
        """`errorType: errorMessage` of a failed invocation, for log lines; "" when it succeeded."""
        if self.ok:
            return ""
        if isinstance(self.payload, dict):
            return f"{self.payload.get('errorType', 'Error')}: {self.payload.get('errorMessage', '')}"
        return str(self.payload)


def error_payload(error_type: str, message: str, stack: list[str] | None = None) -> dict[str, Any]:
    """Lambda's error object: `{errorMessage, errorType, stackTrace}`."""
    return {"errorMessage": message, "errorType": error_type, "stackTrace": stack or []}


def check_serialisable(value: Any) -> str | None:
    """None if `value` is a valid Lambda response (JSON-serialisable as Lambda's runtime serialises it), else
    Lambda's message for it."""
    from hub.worker import to_json

    try:
        to_json(value)
    except (TypeError, ValueError, RecursionError) as exc:
        return f"Unable to marshal response: {exc}"
    return None


_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)
"""The version (4) and variant (RFC 4122) bits of a version-4 UUID, as uuid.UUID(version=4) sets them."""


def request_id() -> str:
    """A request id in the form of Lambda's (a version-4 UUID): from `random`, not the system's entropy source
    (uuid4 reads os.urandom, a system call per invocation); an id need not be unpredictable, only unique. The
    string of `uuid.UUID(int=random.getrandbits(128), version=4)`, formatted without making the UUID object."""
    digits = "%032x" % (random.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET)
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def log_stream_name() -> str:
    """A log stream name as Lambda gives one to each execution environment: `YYYY/MM/DD/[$LATEST]<hex>`."""
    return time.strftime("%Y/%m/%d/[$LATEST]") + uuid.uuid4().hex


@dataclass
class LambdaContext:
    """The `context` object a Lambda handler receives."""

    function_name: str
    memory_limit_in_mb: int
    timeout: float
    region: str = "us-east-1"
    account_id: str = "000000000000"
    aws_request_id: str = field(default_factory=request_id)
    function_version: str = "$LATEST"
    identity: Any = None
    client_context: Any = None
    log_stream_name: str = ""
    """Lambda names a log stream per execution environment, not per invocation: a Function passes its own."""
    _deadline: float = 0.0

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout
        self.invoked_function_arn = f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        if not self.log_stream_name:
            self.log_stream_name = log_stream_name()

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the invocation times out (0 once it has)."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class Runtime(Protocol):
    """What runs a function's handler: a worker process (`python`), the hub's own process (`in-process`), an HTTP
    endpoint or AWS Lambda. Each takes the same event and gives the same kind of Result."""

    async def start(self) -> None:
        """Load the handler (the cold start). Raises if it cannot be loaded."""
        ...

    async def invoke(self, event: Any, context: LambdaContext) -> Result:
        """Run the handler once. Never raises for the handler's own failures: they are a failed Result."""
        ...

    async def close(self) -> None:
        """Stop everything it started (processes, sessions). Invocations in flight end."""
