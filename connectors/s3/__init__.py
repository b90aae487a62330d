"""`s3`: Amazon S3 (or an S3-compatible store) as S3 event notifications invoke Lambda: each event is one
asynchronous invocation (retries, `maximum_event_age`, then the destination).

| settle   | meaning for S3                                                                                     |
| -------- | -------------------------------------------------------------------------------------------------- |
| success  | notifications: the SQS message that carried the event is deleted; poll: the object's ETag and     |
|          | LastModified are written to the checkpoint store (and the watermark moves): never handled again    |
| failure  | only when the hub stops mid-retry: notifications: the message waits out its visibility timeout;    |
|          | poll: nothing is written, the object is found again by the next listing                            |
| ordering | none (S3 gives none; compare `s3.object.sequencer` per key), up to `max_concurrency` in flight     |

`mode: notifications` reads the SQS queue a bucket sends its event notifications to (a QueueConfiguration).
Each message is one invocation whose event is the message's `{"Records": [...]}` as S3 wrote it; S3's
`s3:TestEvent` messages are deleted without an invocation; an S3 event that came through SNS (not raw
delivery) is unwrapped. A message that is not an S3 event is left alone (with a warning): the queue's redrive
policy deals with it. The message stays invisible while its invocation and retries run (see `connectors/sqs/`).

`mode: poll` is for stores that send no notifications: every `poll_interval` the bucket is listed
(ListObjectsV2 under `prefix`, keys ending with `suffix`) and every new or overwritten object becomes an
`ObjectCreated:Put` record. What was handled is kept in a bounded form:
- the watermark W: a LastModified time before which every object is handled (it moves only past objects
  that have settled, never past one still in flight);
- the identity (`ETag@LastModified`) of each handled object modified after W - `lookback`.
An object is new when its LastModified is after W - `lookback` and its identity is not the one stored for its
key: an overwrite (new ETag or LastModified) is a new event; objects older than the lookback are never listed as
new again, so the state holds only what was modified in the last `lookback`. The lookback covers objects that
show up in a listing later than their LastModified says (a multipart upload is stamped when it began). The
first start of a `LATEST` mapping puts W at the newest object there is (old objects are not events);
`TRIM_HORIZON` handles every object already in the bucket.
"""

from __future__ import annotations

from typing import Any

from connectors.files import sample_event as files_sample_event
from connectors.s3.config import S3Config
from connectors.s3.notifications import NotificationSource
from connectors.s3.poll import PollSource
from hub.source import ConnectorSpec, SourceContext

__all__ = ["CONNECTOR", "NotificationSource", "PollSource", "S3Config", "build", "sample_event"]


def build(config: S3Config, context: SourceContext) -> NotificationSource | PollSource:
    """The source of a mapping: a NotificationSource or a PollSource, as `mode` says."""
    return NotificationSource(config, context) if config.mode == "notifications" else PollSource(config, context)


def sample_event() -> dict[str, Any]:
    """An `ObjectCreated:Put` event as S3 sends it, for `hub events s3`."""
    return files_sample_event("example-notification")


CONNECTOR = ConnectorSpec(
    type="s3",
    config=S3Config,
    build=build,
    family="async",
    summary="S3 event notifications: from the SQS queue a bucket notifies, or by listing a bucket (poll).",
    sample_event=sample_event,
    requires=("aioboto3",),
    extra="aws",
    shares_work=lambda config: config.mode == "notifications",  # a bucket listing is not shared
    shares_work_when="use `mode: notifications` (or a shared store, for `mode: poll`)",
    leases=lambda config: "source" if config.mode == "poll" else None,
)
