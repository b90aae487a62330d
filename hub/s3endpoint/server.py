"""`S3Endpoint`: the S3 protocol over `Folders`, on aiohttp.

Operations (path-style `http://host:port/bucket/key`, or virtual-hosted `bucket.host`): ListBuckets,
HeadBucket, GetBucketLocation, ListObjectsV2 and ListObjects (prefix, delimiter, continuation), GetObject (with
Range) and HeadObject, PutObject, CopyObject, DeleteObject, DeleteObjects, and multipart uploads (Create,
UploadPart, UploadPartCopy, Complete, Abort). Errors are S3's XML error documents with S3's codes and statuses.
Every request must be signed (Signature Version 4) with the endpoint's credentials. Buckets are the configured
folders: they cannot be created or deleted through the endpoint.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote
from xml.etree import ElementTree

from aiohttp import web

from hub.s3endpoint import sigv4
from hub.s3endpoint.reads import CHUNK, RANGE, get_object, iso, list_buckets, list_objects
from hub.s3endpoint.store import Folders, S3Error, Staged
from hub.s3endpoint.xml import error_xml, xml_document

if TYPE_CHECKING:
    import os

log = logging.getLogger("hub.s3endpoint")


def _user_metadata(request: web.Request) -> dict[str, str]:
    return {
        k[len("x-amz-meta-") :].lower(): v for k, v in request.headers.items() if k.lower().startswith("x-amz-meta-")
    }


class S3Endpoint:
    """Serves {bucket: folder} over the S3 protocol.

    `start(host, port)` listens (port 0: any free port; loopback by default) and sets `.url`; `close()` stops it
    and is safe to call twice. It accepts requests signed with `access_key_id` and `secret_access_key` (the
    secret is random unless given) or with one of the pairs of `also_accept` ({access key id: secret}: the
    credentials functions are given as their execution role, so they reach the endpoint with them too). No
    secret appears in a log line or an error.
    """

    def __init__(
        self,
        buckets: Mapping[str, str | os.PathLike[str]],
        *,
        access_key_id: str = "eventhub",
        secret_access_key: str | None = None,
        region: str = "us-east-1",
        also_accept: Mapping[str, str] | None = None,
    ) -> None:
        self.folders = Folders(buckets)
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key or secrets.token_urlsafe(30)
        self.credentials = {**(also_accept or {}), access_key_id: self.secret_access_key}
        self.region = region
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on host:port and return the URL functions use (`AWS_ENDPOINT_URL_S3`)."""
        await asyncio.to_thread(self.folders.prepare)
        app = web.Application(client_max_size=0)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        server = site._server
        assert isinstance(server, asyncio.Server)
        bound_host, bound_port = server.sockets[0].getsockname()[:2]
        shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(bound_host, bound_host)
        self.url = f"http://[{shown}]:{bound_port}" if ":" in shown else f"http://{shown}:{bound_port}"
        return self.url

    async def close(self) -> None:
        """Stop serving. Safe to call twice."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # ---- dispatch --------------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        request_id = secrets.token_hex(8).upper()
        raw_path, _, raw_query = request.raw_path.partition("?")
        try:
            signed_payload = sigv4.verify(
                method=request.method,
                raw_path=raw_path,
                raw_query=raw_query,
                headers=request.headers,
                credentials=self.credentials,
            )
            if "aws-chunked" in request.headers.get("Content-Encoding", ""):
                raise S3Error(501, "NotImplemented", "aws-chunked payloads are not supported: send plain bodies.")
            bucket, key = self._address(request, unquote(raw_path))
            query = dict(parse_qsl(raw_query, keep_blank_values=True))
            response = await self._route(request, bucket, key, query, signed_payload)
        except S3Error as err:
            if err.status >= 500 or request.method == "HEAD":
                log.debug("s3 %s %s: %s", request.method, request.path, err.code)
            body = b"" if request.method == "HEAD" else error_xml(err, raw_path, request_id)
            response = web.Response(status=err.status, body=body, content_type="application/xml")
        response.headers["x-amz-request-id"] = request_id
        return response

    def _address(self, request: web.Request, path: str) -> tuple[str, str]:
        host = request.headers.get("Host", "").rsplit(":", 1)[0]
        for bucket in self.folders.roots:
            if host.startswith(bucket + "."):  # virtual-hosted style: bucket.host/key
                return bucket, path.lstrip("/")
        bucket, _, key = path.lstrip("/").partition("/")
        return bucket, key

    async def _route(
        self, request: web.Request, bucket: str, key: str, query: dict[str, str], signed: str | None
    ) -> web.StreamResponse:
        method = request.method
        if not bucket:
            if method == "GET":
                return list_buckets(self.folders)
            raise S3Error(405, "MethodNotAllowed", "The specified method is not allowed against this resource.")
        folders = self.folders
        if not key:
            await asyncio.to_thread(folders.root, bucket)
            if method == "HEAD":
                return web.Response(headers={"x-amz-bucket-region": self.region})
            if method == "GET" and "location" in query:
                return xml_document("LocationConstraint", text=None if self.region == "us-east-1" else self.region)
            if method == "GET":
                return await list_objects(folders, bucket, query)
            if method == "POST" and "delete" in query:
                return await self._delete_objects(request, bucket, signed)
            if method == "PUT":
                raise S3Error(409, "BucketAlreadyOwnedByYou", "Buckets are the hub's folders.", BucketName=bucket)
            raise S3Error(501, "NotImplemented", "Buckets are the hub's configured folders.")
        if method in ("GET", "HEAD"):
            return await get_object(folders, request, bucket, key)
        if method == "DELETE":
            if "uploadId" in query:
                await asyncio.to_thread(folders.abort_upload, bucket, key, query["uploadId"])
            else:
                await asyncio.to_thread(folders.delete, bucket, key)
            return web.Response(status=204)
        if method == "POST" and "uploads" in query:
            upload_id = await asyncio.to_thread(
                folders.create_upload, bucket, key, self._content_type(request), _user_metadata(request)
            )
            return xml_document("InitiateMultipartUploadResult", Bucket=bucket, Key=key, UploadId=upload_id)
        if method == "POST" and "uploadId" in query:
            return await self._complete(request, bucket, key, query["uploadId"], signed)
        if method == "PUT":
            return await self._put(request, bucket, key, query, signed)
        raise S3Error(405, "MethodNotAllowed", "The specified method is not allowed against this resource.")

    @staticmethod
    def _content_type(request: web.Request) -> str:
        return request.headers.get("Content-Type") or "binary/octet-stream"

    # ---- operations ------------------------------------------------------------------------------------------

    async def _receive(self, request: web.Request, bucket: str, signed: str | None) -> Staged:
        """Stream the request body into a staged file of `bucket`, checking the signed payload hash."""
        staged = await asyncio.to_thread(Staged, self.folders.staging(bucket))
        try:
            buffer = bytearray()
            async for chunk in request.content.iter_chunked(CHUNK):
                buffer += chunk
                if len(buffer) >= CHUNK:
                    await asyncio.to_thread(staged.write, bytes(buffer))
                    buffer.clear()
            if buffer:
                await asyncio.to_thread(staged.write, bytes(buffer))
            await asyncio.to_thread(staged.close)
            sigv4.check_payload(signed, staged.sha256.hexdigest())
        except BaseException:
            await asyncio.to_thread(staged.discard)
            raise
        return staged

    async def _copy_source(self, request: web.Request, bucket: str, *, ranged: bool) -> Staged:
        source = unquote(request.headers["x-amz-copy-source"].split("?versionId=")[0]).lstrip("/")
        src_bucket, _, src_key = source.partition("/")
        byte_range = None
        if ranged and "x-amz-copy-source-range" in request.headers:
            match = RANGE.fullmatch(request.headers["x-amz-copy-source-range"].strip())
            if match is None or not all(match.groups()):
                raise S3Error(400, "InvalidArgument", "The x-amz-copy-source-range value must be bytes=first-last.")
            byte_range = (int(match[1]), int(match[2]))
            info = await asyncio.to_thread(self.folders.head, src_bucket, src_key)
            if byte_range[1] >= info.size or byte_range[0] > byte_range[1]:
                raise S3Error(400, "InvalidRange", "The requested range is not satisfiable")
        return await asyncio.to_thread(self.folders.copy_to_staging, src_bucket, src_key, bucket, byte_range)

    async def _put(
        self, request: web.Request, bucket: str, key: str, query: dict[str, str], signed: str | None
    ) -> web.Response:
        folders = self.folders
        copying = "x-amz-copy-source" in request.headers
        if "uploadId" in query and "partNumber" in query:
            try:
                number = int(query["partNumber"])
            except ValueError:
                number = 0
            if not 1 <= number <= 10000:
                raise S3Error(400, "InvalidArgument", "Part number must be an integer between 1 and 10000.")
            await asyncio.to_thread(folders.upload, bucket, key, query["uploadId"])
            if copying:
                staged = await self._copy_source(request, bucket, ranged=True)
            else:
                staged = await self._receive(request, bucket, signed)
            try:
                etag = await asyncio.to_thread(folders.store_part, bucket, key, query["uploadId"], number, staged)
            finally:
                await asyncio.to_thread(staged.discard)
            if copying:
                return xml_document("CopyPartResult", ETag=f'"{etag}"', LastModified=iso(datetime.now().timestamp()))
            return web.Response(headers={"ETag": f'"{etag}"'})
        if copying:
            source = unquote(request.headers["x-amz-copy-source"].split("?versionId=")[0]).lstrip("/")
            src_bucket, _, src_key = source.partition("/")
            src = await asyncio.to_thread(folders.head, src_bucket, src_key)
            staged = await self._copy_source(request, bucket, ranged=False)
            if request.headers.get("x-amz-metadata-directive", "COPY").upper() == "REPLACE":
                content_type, metadata = self._content_type(request), _user_metadata(request)
            else:
                content_type, metadata = src.content_type, src.metadata
            info = await asyncio.to_thread(
                folders.commit, bucket, key, staged.path, staged.md5.hexdigest(), content_type, metadata
            )
            return xml_document("CopyObjectResult", LastModified=iso(info.mtime), ETag=f'"{info.etag}"')
        staged = await self._receive(request, bucket, signed)
        info = await asyncio.to_thread(
            folders.commit,
            bucket,
            key,
            staged.path,
            staged.md5.hexdigest(),
            self._content_type(request),
            _user_metadata(request),
        )
        return web.Response(headers={"ETag": f'"{info.etag}"'})

    async def _body(self, request: web.Request, signed: str | None) -> ElementTree.Element:
        body = await request.read()
        sigv4.check_payload(signed, hashlib.sha256(body).hexdigest())
        try:
            root = ElementTree.fromstring(body)
        except ElementTree.ParseError:
            raise S3Error(400, "MalformedXML", "The XML you provided was not well-formed.") from None
        for element in root.iter():  # S3's namespace is optional in requests
            element.tag = element.tag.rpartition("}")[2]
        return root

    async def _complete(
        self, request: web.Request, bucket: str, key: str, upload_id: str, signed: str | None
    ) -> web.Response:
        root = await self._body(request, signed)
        parts = []
        for part in root.findall("Part"):
            try:
                parts.append((int(part.findtext("PartNumber", "")), part.findtext("ETag", "")))
            except ValueError:
                raise S3Error(400, "MalformedXML", "The XML you provided was not well-formed.") from None
        info = await asyncio.to_thread(self.folders.complete_upload, bucket, key, upload_id, parts)
        return xml_document(
            "CompleteMultipartUploadResult",
            Location=f"{self.url}/{bucket}/{key}",
            Bucket=bucket,
            Key=key,
            ETag=f'"{info.etag}"',
        )

    async def _delete_objects(self, request: web.Request, bucket: str, signed: str | None) -> web.Response:
        root = await self._body(request, signed)
        quiet = (root.findtext("Quiet") or "").lower() == "true"
        deleted: list[tuple[str, dict[str, str]]] = []
        errors: list[tuple[str, dict[str, str]]] = []
        for obj in root.findall("Object"):
            key = obj.findtext("Key") or ""
            try:
                await asyncio.to_thread(self.folders.delete, bucket, key)
            except S3Error as err:
                errors.append(("Error", {"Key": key, "Code": err.code, "Message": err.message}))
                continue
            if not quiet:
                deleted.append(("Deleted", {"Key": key}))
        return xml_document("DeleteResult", _items=deleted + errors)
