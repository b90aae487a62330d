"""The S3 endpoint's reads: ListBuckets, ListObjects(V2) with continuation tokens, and GetObject / HeadObject
with Range, streamed from the file."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from email.utils import formatdate

from aiohttp import web

from hub.s3endpoint.store import Folders, ObjectInfo, S3Error, no_such_key
from hub.s3endpoint.xml import listing_xml, xml_document

RANGE = re.compile(r"bytes=(\d*)-(\d*)")
"""A Range header (or x-amz-copy-source-range) of one byte range."""
CHUNK = 1 << 20
"""Bytes read or written at a time."""


def iso(ts: float) -> str:
    """Epoch seconds as S3 writes times in XML: ISO-8601 UTC with milliseconds."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _object_headers(info: ObjectInfo) -> dict[str, str]:
    headers = {
        "ETag": f'"{info.etag}"',
        "Last-Modified": formatdate(info.mtime, usegmt=True),
        "Content-Type": info.content_type,
        "Accept-Ranges": "bytes",
    }
    headers.update({f"x-amz-meta-{k}": v for k, v in info.metadata.items()})
    return headers


def list_buckets(folders: Folders) -> web.Response:
    """ListBuckets: every served folder that exists, with its creation time."""
    buckets = []
    for name, root in sorted(folders.roots.items()):
        try:
            created = root.stat().st_ctime
        except OSError:
            continue
        buckets.append({"Name": name, "CreationDate": iso(created)})
    return xml_document(
        "ListAllMyBucketsResult",
        Owner={"ID": "hub", "DisplayName": "hub"},
        Buckets=[("Bucket", b) for b in buckets],
    )


async def list_objects(folders: Folders, bucket: str, query: dict[str, str]) -> web.Response:
    """ListObjectsV2 (`list-type=2`) or ListObjects: up to `max-keys` keys after the marker, grouped by delimiter."""
    v2 = query.get("list-type") == "2"
    prefix, delimiter = query.get("prefix", ""), query.get("delimiter", "")
    try:
        max_keys = max(0, min(1000, int(query.get("max-keys", "1000"))))
    except ValueError:
        raise S3Error(400, "InvalidArgument", "max-keys must be an integer.") from None
    if v2 and "continuation-token" in query:
        after = _untoken(query["continuation-token"])
    else:
        after = query.get("start-after" if v2 else "marker", "")
    contents, prefixes, next_after = await asyncio.to_thread(
        folders.listing, bucket, prefix, delimiter, after, max_keys
    )
    return listing_xml(
        bucket=bucket,
        query=query,
        v2=v2,
        contents=[(o.key, iso(o.mtime), o.etag, o.size) for o in contents],
        prefixes=prefixes,
        next_after=next_after,
        next_token=_token(next_after) if next_after is not None else None,
    )


async def get_object(folders: Folders, request: web.Request, bucket: str, key: str) -> web.StreamResponse:
    """GetObject or HeadObject, with one byte range (206) when asked; the body is streamed from the file."""
    info = await asyncio.to_thread(folders.head, bucket, key)
    headers = _object_headers(info)
    start, end = 0, info.size - 1
    status = 200
    match = RANGE.fullmatch(request.headers.get("Range", "").strip())
    if match is not None and any(match.groups()):
        first, last = match.groups()
        if first:
            start, end = int(first), min(int(last), info.size - 1) if last else info.size - 1
        else:
            start = max(0, info.size - int(last))
        if start >= info.size or start > end:
            raise S3Error(416, "InvalidRange", "The requested range is not satisfiable", RangeRequested=match[0])
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{info.size}"
    length = max(0, end - start + 1)
    headers["Content-Length"] = str(length)
    response = web.StreamResponse(status=status, headers=headers)
    if request.method == "HEAD":
        await response.prepare(request)
        return response
    path = folders.path(bucket, key)
    try:
        f = await asyncio.to_thread(open, path, "rb")
    except OSError:
        raise no_such_key(key) from None
    try:
        await response.prepare(request)
        await asyncio.to_thread(f.seek, start)
        remaining = length
        while remaining > 0:
            chunk = await asyncio.to_thread(f.read, min(CHUNK, remaining))
            if not chunk:  # the file shrank under us: the client sees a short body, as it would a reset
                break
            await response.write(chunk)
            remaining -= len(chunk)
        await response.write_eof()
    finally:
        await asyncio.to_thread(f.close)
    return response


def _token(after: str) -> str:
    return after.encode().hex()


def _untoken(token: str) -> str:
    try:
        return bytes.fromhex(token).decode()
    except ValueError:
        raise S3Error(400, "InvalidArgument", "The continuation token provided is incorrect.") from None
