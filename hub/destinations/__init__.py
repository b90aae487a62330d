"""Destinations: where records go when a mapping gives up on them.

A destination's `send` returns only once the record is durable there; only then does the source settle it.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any, Protocol

from hub.config import FileDestination


class Destination(Protocol):
    name: str

    async def send(self, record: dict[str, Any], *, key: str | None = None) -> None:
        """Store one failure record durably; raise on failure (the dispatcher retries)."""
        ...

    async def close(self) -> None: ...


class FileSink:
    """Appends one JSON document per line, fsynced before `send` returns."""

    def __init__(self, config: FileDestination) -> None:
        self.path = Path(config.path)
        self.name = f"file:{self.path}"
        self._lock = asyncio.Lock()

    def _append(self, line: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    async def send(self, record: dict[str, Any], *, key: str | None = None) -> None:
        line = (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode()
        async with self._lock:
            await asyncio.to_thread(self._append, line)

    async def close(self) -> None:
        pass


def build_destination(config: Any) -> Destination | None:
    if config is None:
        return None
    if isinstance(config, FileDestination):
        return FileSink(config)
    raise ValueError(f"unsupported destination {config!r}")
