"""`files`: a local folder as an S3 bucket. Each complete file is an S3 `ObjectCreated:Put` event.

| settle   | meaning for files                                                                             |
| -------- | --------------------------------------------------------------------------------------------- |
| success  | the file's identity (path, size, mtime) is written to the checkpoint store: never handled again |
| failure  | nothing is written: the file is handled again at the next rescan or restart                    |
| ordering | none between files (S3 gives none); each file is its own asynchronous invocation               |

A file is complete when the writer closes it (inotify's close-after-write) or, where no close is seen, when
its size and mtime have not changed for `settle_time`. A file moved into the folder is complete at once. Files
that arrived while the hub was down are found by the scan at start; a periodic rescan catches anything the
watcher missed. A symlink that leads outside the folder is refused with a log line.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import quote_plus

from pydantic import BaseModel, ConfigDict, Field
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)

from hub.records import Outcome, Record
from hub.source import ConnectorSpec, LaneEnded, SourceContext
from hub.types import Duration

WATCHED_EVENTS = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileClosedEvent,
    FileMovedEvent,
    FileDeletedEvent,
    DirCreatedEvent,
    DirMovedEvent,
    DirDeletedEvent,
]


class FilesConfig(BaseModel):
    """Watch a local folder; every complete file becomes an S3 event notification."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["files"]
    path: str = Field(description="The folder to watch (created if missing).")
    bucket: str | None = Field(None, description="`s3.bucket.name` in events. Default: the folder's name.")
    recursive: bool = Field(True, description="Watch sub-folders too; keys are paths relative to the folder.")
    prefix: str = Field("", description="Only keys that start with this.")
    suffix: str = Field("", description="Only keys that end with this (e.g. `.jpg`).")
    events: list[Literal["created", "removed"]] = Field(
        ["created"], min_length=1, description="`created` (ObjectCreated:Put) and/or `removed` (ObjectRemoved:Delete)."
    )
    settle_time: Duration = Field(
        1.0, ge=0, description="A file not closed yet is complete once its size has been stable this long."
    )
    rescan_interval: Duration = Field(30.0, ge=0, description="Rescan the folder this often (0: only at start).")


@dataclass(frozen=True, slots=True)
class Identity:
    size: int
    mtime_ns: int

    def __str__(self) -> str:
        return f"{self.size}:{self.mtime_ns}"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def md5_of(path: str) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def s3_record(
    *,
    event_name: str,
    bucket: str,
    key: str,
    event_time: float,
    region: str,
    configuration_id: str,
    sequencer: str,
    size: int | None = None,
    etag: str | None = None,
) -> dict[str, Any]:
    """One `Records[]` entry of an S3 event notification (AWS's eventVersion 2.1 shape)."""
    obj: dict[str, Any] = {"key": quote_plus(key, safe="/")}
    if size is not None:
        obj["size"] = size
        obj["eTag"] = etag
    obj["versionId"] = "null"  # S3's version id of an object in an unversioned bucket
    obj["sequencer"] = sequencer
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": region,
        "eventTime": iso(event_time),
        "eventName": event_name,
        "userIdentity": {"principalId": "hub"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {
            "x-amz-request-id": secrets.token_hex(8).upper(),
            "x-amz-id-2": secrets.token_urlsafe(48),
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": configuration_id,
            "bucket": {"name": bucket, "ownerIdentity": {"principalId": "hub"}, "arn": f"arn:aws:s3:::{bucket}"},
            "object": obj,
        },
    }


class FilesSource:
    """One lane: the folder. Unordered; each file is settled on its own."""

    ordered = False

    def __init__(self, config: FilesConfig, context: SourceContext) -> None:
        self.config = config
        self.context = context
        self.root = Path(config.path).absolute()
        self.key = str(self.root)
        self.bucket = config.bucket or self.root.name
        self.scope = context.scope("files")
        self.log = context.log
        self._handled: dict[str, str] = {}
        self._in_flight: dict[str, str] = {}
        self._pending: dict[str, tuple[tuple[int, int] | None, asyncio.TimerHandle]] = {}
        self._queue: asyncio.Queue[Record] = asyncio.Queue()
        self._refused: set[str] = set()
        self._observer: Any = None
        self._closed = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._rescan_handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._real_root = ""

    # ---- Source ----------------------------------------------------------------------------------------------

    async def open(self) -> None:
        from watchdog.observers import Observer

        self._closed.clear()
        self._loop = asyncio.get_running_loop()
        self.root.mkdir(parents=True, exist_ok=True)
        self._real_root = os.path.realpath(self.root)
        self._handled = await self.context.store.get_all(self.scope)
        handler = _Forwarder(self)
        observer = Observer()
        # only the events that say a file changed: opens and read-only closes (our own MD5 reads among them)
        # would only fill the kernel's inotify queue
        observer.schedule(handler, str(self.root), recursive=self.config.recursive, event_filter=WATCHED_EVENTS)
        observer.start()  # before the scan, so nothing written meanwhile is missed
        self._observer = observer
        await self._scan(startup=True)
        self.log.info(
            "watching %s",
            self.root,
            extra={"fields": {"mapping": self.context.mapping, "known_files": len(self._handled)}},
        )

    async def lanes(self) -> AsyncIterator[FilesSource]:
        yield self
        await self._closed.wait()

    def render(self, records: Sequence[Record], attempt: int) -> Any:
        return {"Records": [r.payload for r in records]}

    async def close(self) -> None:
        self._closed.set()
        if self._rescan_handle is not None:
            self._rescan_handle.cancel()
        for _, handle in self._pending.values():
            handle.cancel()
        self._pending.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._observer is not None:
            observer, self._observer = self._observer, None
            observer.stop()
            await asyncio.to_thread(observer.join, 5)
        self._in_flight.clear()
        self._queue = asyncio.Queue()

    # ---- Lane ------------------------------------------------------------------------------------------------

    async def read(self, limit: int, timeout: float | None) -> list[Record]:
        if self._closed.is_set():
            raise LaneEnded(self.key)
        try:
            first = (
                await asyncio.wait_for(self._queue.get(), timeout) if timeout is not None else await self._queue.get()
            )
        except TimeoutError:
            return []
        out = [first]
        while len(out) < limit and not self._queue.empty():
            out.append(self._queue.get_nowait())
        return out

    async def settle(self, outcome: Outcome) -> None:
        updates: dict[str, str | None] = {}
        for record in outcome.settled:
            key, identity = _position(record)
            updates[key] = identity
        if updates:
            await self.context.store.put_many(self.scope, updates)
            for key, value in updates.items():
                if value is None:
                    self._handled.pop(key, None)
                else:
                    self._handled[key] = value
        for record in outcome.settled + outcome.failed:
            key, identity = _position(record)
            if self._in_flight.get(key) == (identity or "-"):
                del self._in_flight[key]

    # ---- discovery -------------------------------------------------------------------------------------------

    def relative_key(self, path: str) -> str | None:
        """The object key of `path`, or None when the file is outside the filters."""
        try:
            rel = os.path.relpath(path, self.root)
        except ValueError:
            return None
        if rel.startswith(".."):
            return None
        key = rel.replace(os.sep, "/")
        if not self.config.recursive and "/" in key:
            return None
        if not key.startswith(self.config.prefix) or not key.endswith(self.config.suffix):
            return None
        return key

    def _inside(self, path: str) -> bool:
        real = os.path.realpath(path)
        if real == self._real_root or real.startswith(self._real_root + os.sep):
            return True
        if path not in self._refused:
            self._refused.add(path)
            self.log.warning(
                "refusing %s: it is a symlink that leads outside %s (to %s)",
                path,
                self.root,
                real,
                extra={"fields": {"mapping": self.context.mapping}},
            )
        return False

    def on_change(self, path: str, *, complete: bool) -> None:
        """A file was written (complete: closed or moved in). Runs on the loop."""
        key = self.relative_key(path)
        if key is None or self._closed.is_set():
            return
        if complete:
            self._cancel_pending(path)
            self._spawn(self._ready(path, key))
        else:
            self._watch_until_stable(path, None)

    def on_removed(self, path: str) -> None:
        self._cancel_pending(path)
        key = self.relative_key(path)
        if key is None or self._closed.is_set() or key not in self._handled:
            return
        if "removed" in self.config.events:
            self._emit_removed(key)
        else:
            self._handled.pop(key, None)
            self._spawn(self.context.store.delete(self.scope, key))

    def on_directory(self, path: str) -> None:
        """A folder appeared (created or moved in): its files may never send events of their own."""
        self._spawn(self._scan(under=path))

    def _cancel_pending(self, path: str) -> None:
        entry = self._pending.pop(path, None)
        if entry is not None:
            entry[1].cancel()

    def _watch_until_stable(self, path: str, seen: tuple[int, int] | None) -> None:
        assert self._loop is not None
        self._cancel_pending(path)
        handle = self._loop.call_later(max(self.config.settle_time, 0.01), self._check_stable, path)
        self._pending[path] = (seen, handle)

    def _check_stable(self, path: str) -> None:
        entry = self._pending.pop(path, None)
        if entry is None:
            return
        try:
            st = os.stat(path)
        except OSError:
            return
        now_seen = (st.st_size, st.st_mtime_ns)
        if now_seen == entry[0] or time.time() - st.st_mtime >= self.config.settle_time:
            key = self.relative_key(path)
            if key is not None:
                self._spawn(self._ready(path, key))
        else:
            self._watch_until_stable(path, now_seen)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ready(self, path: str, key: str) -> None:
        """Build the record of a complete file and queue it, unless it was handled or is in flight."""
        try:
            record = await asyncio.to_thread(self._created_record, path, key)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return
        except OSError as exc:
            self.log.warning("cannot read %s: %s", path, exc, extra={"fields": {"mapping": self.context.mapping}})
            return
        if record is None:
            return
        identity = record.position[1]  # type: ignore[index]
        if self._handled.get(key) == identity or self._in_flight.get(key) == identity or self._closed.is_set():
            return
        self._in_flight[key] = identity
        self._queue.put_nowait(record)

    def _created_record(self, path: str, key: str) -> Record | None:
        """Runs in a worker thread: stat, symlink check and MD5 stay off the event loop."""
        if not self._inside(path):
            return None
        st = os.stat(path)
        if not os.path.isfile(path):
            return None
        identity = str(Identity(st.st_size, st.st_mtime_ns))
        if self._handled.get(key) == identity or self._in_flight.get(key) == identity:
            return None
        payload = s3_record(
            event_name="ObjectCreated:Put",
            bucket=self.bucket,
            key=key,
            event_time=st.st_mtime,
            region=self.context.region,
            configuration_id=self.context.mapping,
            sequencer=f"{st.st_mtime_ns:016X}",
            size=st.st_size,
            etag=md5_of(path),
        )
        return Record(self.key, (key, identity), payload, timestamp=st.st_mtime, size=1024, item_id=key)

    def _emit_removed(self, key: str) -> None:
        now = time.time()
        payload = s3_record(
            event_name="ObjectRemoved:Delete",
            bucket=self.bucket,
            key=key,
            event_time=now,
            region=self.context.region,
            configuration_id=self.context.mapping,
            sequencer=f"{time.time_ns():016X}",
        )
        self._in_flight[key] = "-"
        self._queue.put_nowait(Record(self.key, (key, None), payload, timestamp=now, size=512, item_id=key))

    async def _scan(self, *, startup: bool = False, under: str | None = None) -> None:
        """Queue every complete, unhandled file; at start also notice files removed while the hub was down."""
        found = await asyncio.to_thread(self._walk, under or str(self.root))
        settle = self.config.settle_time
        now = time.time()
        for path, key, mtime, identity in found:
            if self._handled.get(key) == identity or key in self._in_flight or path in self._pending:
                continue
            if now - mtime >= settle:
                self._spawn(self._ready(path, key))
            else:
                self._watch_until_stable(path, None)
        if startup:
            present = {key for _, key, _, _ in found}
            gone = [k for k in self._handled if k not in present]
            if "removed" in self.config.events:
                for key in gone:
                    self._emit_removed(key)
            elif gone:
                for key in gone:
                    self._handled.pop(key)
                await self.context.store.put_many(self.scope, dict.fromkeys(gone))
        if under is None and self.config.rescan_interval > 0 and not self._closed.is_set():
            assert self._loop is not None
            self._rescan_handle = self._loop.call_later(self.config.rescan_interval, self._spawn_rescan)

    def _spawn_rescan(self) -> None:
        self._spawn(self._scan())

    def _walk(self, top: str) -> list[tuple[str, str, float, str]]:
        """(path, key, mtime, identity) of every file under `top` that the filters let through."""
        out = []
        for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
            if not self.config.recursive:
                dirnames.clear()
            for name in filenames:
                path = os.path.join(dirpath, name)
                key = self.relative_key(path)
                if key is None:
                    continue
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                out.append((path, key, st.st_mtime, str(Identity(st.st_size, st.st_mtime_ns))))
        return out


def _position(record: Record) -> tuple[str, str | None]:
    """A file record's position: its key and identity (None for a removal)."""
    return cast(tuple[str, str | None], record.position)


class _Forwarder(FileSystemEventHandler):
    """watchdog handler: hands events from the observer thread to the loop."""

    def __init__(self, source: FilesSource) -> None:
        super().__init__()
        self.source = source
        assert source._loop is not None
        self.loop = source._loop

    def dispatch(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        src = os.fsdecode(event.src_path)
        call = self.loop.call_soon_threadsafe
        try:
            if event.is_directory:
                if kind in ("created", "moved"):
                    target = os.fsdecode(event.dest_path) if kind == "moved" else src
                    call(self.source.on_directory, target)
                return
            if kind == "closed":
                call(lambda: self.source.on_change(src, complete=True))
            elif kind in ("created", "modified"):
                call(lambda: self.source.on_change(src, complete=False))
            elif kind == "moved":
                dest = os.fsdecode(event.dest_path)
                call(self.source.on_removed, src)
                call(lambda: self.source.on_change(dest, complete=True))
            elif kind == "deleted":
                call(self.source.on_removed, src)
        except RuntimeError:  # the loop is closed: the hub is stopping
            pass


def sample_event() -> dict[str, Any]:
    return {
        "Records": [
            s3_record(
                event_name="ObjectCreated:Put",
                bucket="example-bucket",
                key="images/Happy Face.jpg",
                event_time=time.time(),
                region="us-east-1",
                configuration_id="example-mapping",
                sequencer="0055AED6DCD90281E5",
                size=1024,
                etag="d41d8cd98f00b204e9800998ecf8427e",
            )
        ]
    }


CONNECTOR = ConnectorSpec(
    type="files",
    config=FilesConfig,
    build=FilesSource,
    family="async",
    summary="A local folder as an S3 bucket: complete files become S3 ObjectCreated events.",
    sample_event=sample_event,
)
