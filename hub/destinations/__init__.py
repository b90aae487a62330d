"""Destinations: where records go when a mapping gives up on them.

A destination's `send` returns only once the documents are durable there; only then does the source settle
the records. `file` is built in; connectors provide the others (`sqs`, `kafka`, `s3`, ...).
"""

from __future__ import annotations

import asyncio
import json
import os
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hub import registry
from hub.config import FileDestination
from hub.source import Destination, Document

_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Path, asyncio.Lock]] = weakref.WeakKeyDictionary()


def file_lock(path: Path) -> asyncio.Lock:
    """The lock every writer of this file holds in this process, one per event loop: the file destination appends
    under it, and a replay (hub.readback) rewrites the file under it, so that no append is lost to a rewrite."""
    per_loop = _locks.setdefault(asyncio.get_running_loop(), {})
    return per_loop.setdefault(path.resolve(), asyncio.Lock())


class FileSink:
    """Appends one JSON document per line, fsynced before `send` returns.

    A dead letter (a document with attributes) is the line `{"Body": <the event>, "MessageAttributes": {...}}`:
    SQS's SendMessage shape, with the event itself (not its JSON text) as the body.
    """

    per_record = False
    includes_payload = False

    def __init__(self, config: FileDestination) -> None:
        self.path = Path(config.path)
        self.name = f"file:{self.path}"

    def _append(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    async def send(self, documents: Sequence[Document]) -> None:
        """Append one line per document and fsync before returning."""
        data = b"".join((json.dumps(_line(d), separators=(",", ":"), default=str) + "\n").encode() for d in documents)
        async with file_lock(self.path):
            await asyncio.to_thread(self._append, data)

    async def close(self) -> None:
        """Nothing to release: each send opens and closes the file."""


def _line(document: Document) -> Any:
    if document.attributes is None:
        return document.body
    return {"Body": document.body, "MessageAttributes": document.attributes}


def build_destination(config: Any, region: str) -> Destination | None:
    """The destination of a validated on-failure or dead-letter config (`file` or a registered type); None for none."""
    if config is None:
        return None
    if isinstance(config, FileDestination):
        return FileSink(config)
    return registry.get_destination(config.type).build(config, region)
