"""The `files` source: the watched folder as one unordered lane (settle semantics: see the package docstring)."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from connectors.files.config import FilesConfig
from connectors.files.events import md5_of, s3_record
from connectors.files.watch import WATCHED_EVENTS, Forwarder, observer
from hub.records import Outcome, Record
from hub.s3endpoint import RESERVED
from hub.source import LaneEnded, SourceContext


@dataclass(frozen=True, slots=True)
class Identity:
    """A file's version: its size and modification time. A file is handled again only when it changes."""

    size: int
    mtime_ns: int

    def __str__(self) -> str:
        return f"{self.size}:{self.mtime_ns}"


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
        """Load the handled files from the store, start watching the folder and rescan it: files created or changed
        while the hub was down are found."""
        self._closed.clear()
        self._loop = asyncio.get_running_loop()
        self.root.mkdir(parents=True, exist_ok=True)
        self._real_root = os.path.realpath(self.root)
        self._handled = {_unstored(k): v for k, v in (await self.context.store.get_all(self.scope)).items()}
        watching = observer()
        # only the events that say a file changed: opens and read-only closes (our own MD5 reads among them)
        # would only fill the kernel's inotify queue
        forwarder = Forwarder(self, self._loop)
        watching.schedule(forwarder, str(self.root), recursive=self.config.recursive, event_filter=WATCHED_EVENTS)
        watching.start()  # before the scan, so nothing written meanwhile is missed
        self._observer = watching
        await self._scan(startup=True)
        self.log.info(
            "watching %s",
            self.root,
            extra={"fields": {"mapping": self.context.mapping, "known_files": len(self._handled)}},
        )

    async def lanes(self) -> AsyncIterator[FilesSource]:
        """Its one unordered lane (itself), until it closes."""
        yield self
        await self._closed.wait()

    def render(self, records: Sequence[Record], attempt: int) -> Any:
        """The S3 event of the records, as a bucket notification sends it."""
        return {"Records": [r.payload for r in records]}

    async def close(self) -> None:
        """Stop watching and forget what was found but not handed on (the next open finds it again)."""
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
        """Up to `limit` records of files that settled (stopped changing); [] when `timeout` passed; LaneEnded once
        closed."""
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
        """Store the identity of every settled file: a restart does not handle it again. Failed files are not stored."""
        updates: dict[str, str | None] = {}
        for record in outcome.settled:
            key, identity = _position(record)
            updates[key] = identity
        if updates:
            await self.context.store.put_many(self.scope, {_stored(k): v for k, v in updates.items()})
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
        if key == RESERVED or key.startswith(RESERVED + "/"):  # the S3 endpoint's staging: never an object
            return None
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
        """A file was deleted: forget it, and emit `ObjectRemoved:Delete` when `events` asks for it."""
        self._cancel_pending(path)
        key = self.relative_key(path)
        if key is None or self._closed.is_set() or key not in self._handled:
            return
        if "removed" in self.config.events:
            self._emit_removed(key)
        else:
            self._handled.pop(key, None)
            self._spawn(self.context.store.delete(self.scope, _stored(key)))

    def on_directory(self, path: str, *, moved_in: bool) -> None:
        """A folder appeared: its files may never send events of their own. Moved in, its files are complete."""
        self._spawn(self._scan(under=path, complete=moved_in))

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

    async def _scan(self, *, startup: bool = False, under: str | None = None, complete: bool = False) -> None:
        """Queue every complete, unhandled file; at start also notice files removed while the hub was down.

        `complete`: every file found is complete (a folder moved in), even one whose size is still being watched.
        """
        found = await asyncio.to_thread(self._walk, under or str(self.root))
        settle = self.config.settle_time
        now = time.time()
        for path, key, mtime, identity in found:
            if self._handled.get(key) == identity or key in self._in_flight:
                continue
            if complete:
                self._cancel_pending(path)
            elif path in self._pending:
                continue
            if complete or now - mtime >= settle:
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
                await self.context.store.put_many(self.scope, dict.fromkeys(map(_stored, gone)))
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


_BYTES_MARK = "/"
"""Starts the stored form of a key that is not UTF-8 (a relative key never starts with it)."""


def _stored(key: str) -> str:
    """A key as the checkpoint store keeps it: itself, or, for a file name that is not UTF-8 (lone surrogates,
    which no store encodes), its bytes in base64 after _BYTES_MARK."""
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return _BYTES_MARK + base64.urlsafe_b64encode(key.encode("utf-8", "surrogateescape")).decode("ascii")
    return key


def _unstored(stored: str) -> str:
    """The key of a stored key (the inverse of _stored)."""
    if not stored.startswith(_BYTES_MARK):
        return stored
    return base64.urlsafe_b64decode(stored[len(_BYTES_MARK) :]).decode("utf-8", "surrogateescape")


def _position(record: Record) -> tuple[str, str | None]:
    """A file record's position: its key and identity (None for a removal)."""
    return cast(tuple[str, str | None], record.position)
