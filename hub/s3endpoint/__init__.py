"""An S3-compatible endpoint over local folders: each folder is a bucket, each file an object.

A `files` mapping sends S3 event notifications for a folder; a handler written for Lambda then reads the object
with `s3.get_object(Bucket=..., Key=...)` and writes its result with `put_object` / `upload_file`. This endpoint
makes those calls work unchanged against the folders: functions find it through `AWS_ENDPOINT_URL_S3`, the
variable boto3 reads (`Hub.function_environment()`).

`hub.s3endpoint.store` maps buckets to folders, `hub.s3endpoint.sigv4` checks request signatures and
`hub.s3endpoint.server` speaks the protocol (`S3Endpoint`). This module stays free of imports so the `files`
connector can learn the reserved name without loading the server.
"""

from __future__ import annotations

RESERVED = ".eventhub-s3"
"""The folder, at the top of each bucket folder, where the endpoint stages writes (temporary files, multipart
parts) and keeps object metadata. It is never an object: listings skip it, keys under it are refused, and the
`files` connector ignores it, so a write fires a mapping once, when the finished file is renamed into place."""
