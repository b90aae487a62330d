"""`runtime: http`: POST the event as JSON to a URL.

A 2xx answer with a JSON body (or an empty one, read as null) is the function's result; anything else is a
failed invocation that names the status and quotes the start of the body (at most BODY_QUOTED characters, with
every configured secret masked: a server may echo the request's headers, the Authorization token among them). The
request carries Lambda's request id and deadline as headers.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from hub import redact
from hub.runtimes import LambdaContext, Result, error_payload

BODY_QUOTED = 300
"""The most characters of a failed answer's body quoted in the error message (it goes into logs and records)."""


class HttpRuntime:
    """Runs a function by POSTing the event to `url`: the answer's body is the result; an error status, a timeout or
    a refused connection is a failed invocation."""

    def __init__(self, url: str, *, headers: dict[str, str], authorization_env: str | None, function_name: str):
        self.url = url
        self.headers = {"Content-Type": "application/json", **headers}
        self.authorization_env = authorization_env
        self.function_name = function_name
        self._session: Any = None

    async def start(self) -> None:
        """Open the HTTP session; raises HandlerLoadError when `authorization_env` names a variable that is not set."""
        import aiohttp

        if self.authorization_env:
            token = os.environ.get(self.authorization_env)
            if token is None:
                from hub.runtimes.python import HandlerLoadError

                raise HandlerLoadError(
                    f"function {self.function_name!r}: environment variable {self.authorization_env} "
                    "(authorization_env) is not set"
                )
            self.headers["Authorization"] = token
            redact.remember([token])  # the configuration's loader did too, unless the variable came later
        self._session = aiohttp.ClientSession()

    async def invoke(self, event: Any, context: LambdaContext) -> Result:
        """POST the event with Lambda's headers (request id, deadline, function name); the JSON answer is the result."""
        import aiohttp

        started = time.perf_counter()
        request_id = context.aws_request_id
        headers = {
            **self.headers,
            "Lambda-Runtime-Aws-Request-Id": request_id,
            "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + context.get_remaining_time_in_millis()),
            "Lambda-Runtime-Invoked-Function-Arn": context.invoked_function_arn,
        }

        def failed(kind: str, message: str, error: str = "Unhandled") -> Result:
            return Result(False, error_payload(kind, message), time.perf_counter() - started, request_id, error)

        try:
            async with self._session.post(
                self.url, data=json.dumps(event), headers=headers, timeout=aiohttp.ClientTimeout(total=context.timeout)
            ) as response:
                body = await response.read()
                status = response.status
        except TimeoutError:
            return failed("Sandbox.Timedout", f"Task timed out after {context.timeout:.2f} seconds", "Timeout")
        except aiohttp.ClientError as exc:
            return failed("Http.ConnectionError", f"POST {self.url}: {type(exc).__name__}: {exc}")
        if not 200 <= status < 300:
            return failed("Http.StatusError", f"POST {self.url} answered {status}: {quoted(body)}")
        if not body.strip():
            return Result(True, None, time.perf_counter() - started, request_id)
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):  # not JSON, or nested deeper than Python reads
            return failed("Http.InvalidResponse", f"POST {self.url} answered {status} with a body that is not JSON")
        return Result(True, payload, time.perf_counter() - started, request_id)

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def quoted(body: bytes) -> str:
    """The start of a response body fit for an error message: masked, at most BODY_QUOTED characters, and saying
    how much was left out."""
    # masked before it is cut, so that no prefix of a secret is left at the cut; read no more than can be shown
    text = redact.text(body[: BODY_QUOTED * 16].decode(errors="replace"))
    if len(text) <= BODY_QUOTED:  # then it is the whole body: 16 bytes per character is more than UTF-8 takes
        return text
    return f"{text[:BODY_QUOTED]}... ({len(body)} bytes in all)"
