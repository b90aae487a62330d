"""The `files` source's view of the folder through watchdog: which events it watches, the observer, and the
handler that hands events from the observer's thread to the event loop."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any, Protocol

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
"""The events that say a file or folder changed (others, such as opens, would only fill inotify's queue)."""


class Watcher(Protocol):
    """What the handler calls on the loop (connectors.files.source.FilesSource)."""

    def on_change(self, path: str, *, complete: bool) -> None:
        """A file was written (`complete`: closed after writing, or moved in whole)."""
        ...

    def on_removed(self, path: str) -> None:
        """A file was deleted or moved out."""
        ...

    def on_directory(self, path: str, *, moved_in: bool) -> None:
        """A folder was created, or moved in with its files."""
        ...


def observer() -> Any:
    """A watchdog observer that tells a file moved in from outside the folder from a file created in it.

    On Linux, inotify's IN_MOVED_TO without its IN_MOVED_FROM (a move from an unwatched folder) is a `moved`
    event with no source (watchdog's full events) rather than `created`: the file is complete at once, where a
    created file waits for its close or for `settle_time`. Elsewhere a move in from outside is `created`.
    """
    if sys.platform.startswith("linux"):
        from watchdog.observers.inotify import InotifyObserver

        return InotifyObserver(generate_full_events=True)
    from watchdog.observers import Observer

    return Observer()


class Forwarder(FileSystemEventHandler):
    """watchdog handler: hands events from the observer thread to the loop."""

    def __init__(self, source: Watcher, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.source = source
        self.loop = loop

    def dispatch(self, event: FileSystemEvent) -> None:
        """Hand one watchdog event to the source's loop, as a change, a removal or a new folder."""
        kind = event.event_type
        src = os.fsdecode(event.src_path)
        call = self.loop.call_soon_threadsafe
        try:
            # a move's missing side is "": from outside the folder (no src) or out of it (no dest)
            dest = os.fsdecode(event.dest_path) if kind == "moved" else ""
            if event.is_directory:
                if kind == "created":
                    call(lambda: self.source.on_directory(src, moved_in=False))
                elif kind == "moved" and dest:
                    call(lambda: self.source.on_directory(dest, moved_in=True))
                return
            if kind == "closed":
                call(lambda: self.source.on_change(src, complete=True))
            elif kind in ("created", "modified"):
                call(lambda: self.source.on_change(src, complete=False))
            elif kind == "moved":
                if src:
                    call(self.source.on_removed, src)
                if dest:  # a rename is a complete file: it never waits for settle_time
                    call(lambda: self.source.on_change(dest, complete=True))
            elif kind == "deleted":
                call(self.source.on_removed, src)
        except RuntimeError:  # the loop is closed: the hub is stopping
            pass
