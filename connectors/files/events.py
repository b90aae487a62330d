"""The S3 event notification shape the `files` connector sends (also used by `s3`)."""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any
from urllib.parse import quote_plus

from hub.isotime import iso_seconds


def iso(ts: float) -> str:
    """Epoch seconds as S3 writes `eventTime`: ISO-8601 UTC with milliseconds (a file's mtime can be past 9999)."""
    return iso_seconds(ts)


def md5_of(path: str) -> str:
    """The file's MD5, hex: the ETag S3 gives an object uploaded in one part."""
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
    # a file name that is not UTF-8 comes as lone surrogates (os.fsdecode): its key shows its very bytes, %-encoded
    obj: dict[str, Any] = {"key": quote_plus(key.encode("utf-8", "surrogateescape"), safe="/")}
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


def sample_event(configuration_id: str = "example-mapping") -> dict[str, Any]:
    """An `ObjectCreated:Put` event as an S3 bucket notification sends it, for `hub events files`."""
    return {
        "Records": [
            s3_record(
                event_name="ObjectCreated:Put",
                bucket="example-bucket",
                key="images/Happy Face.jpg",
                event_time=time.time(),
                region="us-east-1",
                configuration_id=configuration_id,
                sequencer="0055AED6DCD90281E5",
                size=1024,
                etag="d41d8cd98f00b204e9800998ecf8427e",
            )
        ]
    }
