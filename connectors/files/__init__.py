"""`files`: a local folder as an S3 bucket. Each complete file is an S3 `ObjectCreated:Put` event.

| settle   | meaning for files                                                                             |
| -------- | --------------------------------------------------------------------------------------------- |
| success  | the file's identity (path, size, mtime) is written to the checkpoint store: never handled again |
| failure  | nothing is written: the file is handled again at the next rescan or restart                    |
| ordering | none between files (S3 gives none); each file is its own asynchronous invocation               |

A file is complete when the writer closes it (inotify's close-after-write) or, where no close is seen, when
its size and mtime have not changed for `settle_time`. A file renamed into place is complete at once, whether it
was renamed within the folder or moved in from another folder (as are the files of a folder moved in). Files
that arrived while the hub was down are found by the scan at start; a periodic rescan catches anything the
watcher missed. A symlink that leads outside the folder is refused with a log line.

The hub's S3 endpoint (`hub.s3endpoint`) serves the folder as the bucket the events name. It stages its writes
under the folder's `.eventhub-s3/`, which this connector ignores: an object written through the endpoint fires
the mapping once, when it is renamed into place, as a PUT into a bucket with a notification does on S3.
"""

from __future__ import annotations

from pathlib import Path

from connectors.files.config import FilesConfig
from connectors.files.events import iso, md5_of, s3_record, sample_event
from connectors.files.source import FilesSource, Identity
from connectors.files.watch import WATCHED_EVENTS
from hub.source import ConnectorSpec

CONNECTOR = ConnectorSpec(
    type="files",
    config=FilesConfig,
    build=FilesSource,
    family="async",
    summary="A local folder as an S3 bucket: complete files become S3 ObjectCreated events.",
    sample_event=sample_event,
    buckets=lambda config: {config.bucket or Path(config.path).absolute().name: str(Path(config.path).absolute())},
    leases="source",  # several hubs on a shared file system: the one holding the folder's lease watches it
)

__all__ = [
    "CONNECTOR",
    "WATCHED_EVENTS",
    "FilesConfig",
    "FilesSource",
    "Identity",
    "iso",
    "md5_of",
    "s3_record",
    "sample_event",
]
