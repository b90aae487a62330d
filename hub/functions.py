"""A configured function: its runtime, its reserved concurrency and the invocation log line."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from hub.config import FunctionConfig
from hub.logs import fields
from hub.runtimes import LambdaContext, Result, Runtime, error_payload
from hub.runtimes.python import PythonRuntime

log = logging.getLogger("hub.invoke")


class Function:
    def __init__(self, name: str, config: FunctionConfig, *, region: str, account_id: str) -> None:
        self.name = name
        self.config = config
        self.region = region
        self.account_id = account_id
        self.arn = f"arn:aws:lambda:{region}:{account_id}:function:{name}"
        threads = config.concurrency if config.concurrency else 32
        self.runtime: Runtime = PythonRuntime(config.handler, threads=threads)
        self._slots = asyncio.Semaphore(config.concurrency) if config.concurrency else None

    async def start(self) -> None:
        await self.runtime.start()

    def context(self) -> LambdaContext:
        return LambdaContext(
            function_name=self.name,
            memory_limit_in_mb=self.config.memory,
            timeout=self.config.timeout,
            region=self.region,
            account_id=self.account_id,
        )

    async def invoke(self, event: Any, *, mapping: str = "", records: int = 1, attempt: int = 1) -> Result:
        """One invocation, logged with its request id, duration and outcome. Never raises for function faults."""
        context = self.context()
        if self.config.concurrency == 0:
            result = Result(
                False,
                error_payload("TooManyRequestsException", "Rate Exceeded. (reserved concurrency is 0)"),
                0.0,
                context.aws_request_id,
                "Throttled",
            )
        elif self._slots is None:
            result = await self.runtime.invoke(event, context)
        else:
            async with self._slots:
                context = self.context()  # the timeout counts from when the function starts
                result = await self.runtime.invoke(event, context)
        level = logging.INFO if result.ok else logging.WARNING
        log.log(
            level,
            "invoked" if result.ok else f"failed: {result.error_message}",
            extra=fields(
                function=self.name,
                mapping=mapping,
                request_id=result.request_id,
                duration_ms=round(result.duration * 1000, 3),
                outcome="success" if result.ok else (result.error or "error").lower(),
                records=records,
                attempt=attempt,
            ),
        )
        return result

    async def close(self) -> None:
        await self.runtime.close()
