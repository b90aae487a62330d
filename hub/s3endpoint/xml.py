"""The XML documents of the S3 protocol that the endpoint answers with."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote
from xml.etree import ElementTree

from aiohttp import web

from hub.s3endpoint.store import S3Error

NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"


def _fill(element: ElementTree.Element, fields: Mapping[str, Any]) -> None:
    """str/int: a child with that text; a Mapping: a child filled the same way; a list of (tag, Mapping): a
    child holding one element per item (`Buckets` > `Bucket`); None: nothing."""
    for name, value in fields.items():
        if value is None:
            continue
        child = ElementTree.SubElement(element, name)
        if isinstance(value, Mapping):
            _fill(child, value)
        elif isinstance(value, list):
            for tag, item in value:
                _fill(ElementTree.SubElement(child, tag), item)
        else:
            child.text = str(value).lower() if isinstance(value, bool) else str(value)


def _render(root: ElementTree.Element) -> bytes:
    body: bytes = ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)
    return body


def xml_document(
    tag: str, *, text: str | None = None, _items: Sequence[tuple[str, Mapping[str, Any]]] | None = None, **fields: Any
) -> web.Response:
    """A 200 response with an S3 result document: `<tag xmlns=S3>` holding `fields`, then `_items` as
    repeated children (`DeleteResult` > `Deleted`...)."""
    root = ElementTree.Element(tag, xmlns=NAMESPACE)
    root.text = text
    _fill(root, fields)
    for name, item in _items or []:
        _fill(ElementTree.SubElement(root, name), item)
    return web.Response(body=_render(root), content_type="application/xml")


def error_xml(err: S3Error, resource: str, request_id: str) -> bytes:
    """S3's XML error document for `err` on `resource`."""
    root = ElementTree.Element("Error")
    _fill(root, {"Code": err.code, "Message": err.message, **err.extra, "Resource": resource})
    _fill(root, {"RequestId": request_id})
    return _render(root)


def listing_xml(
    *,
    bucket: str,
    query: Mapping[str, str],
    v2: bool,
    contents: list[tuple[str, str, str, int]],
    prefixes: list[str],
    next_after: str | None,
    next_token: str | None,
) -> web.Response:
    """ListObjectsV2 / ListObjects: `contents` are (key, last modified, etag, size). With `encoding-type=url`
    (boto3 asks for it) keys and prefixes are URL-encoded, as S3 does, and botocore decodes them."""
    encode = query.get("encoding-type") == "url"

    def enc(value: str | None) -> str | None:
        return quote(value, safe="/") if encode and value is not None else value

    root = ElementTree.Element("ListBucketResult", xmlns=NAMESPACE)
    head: dict[str, Any] = {"Name": bucket, "Prefix": enc(query.get("prefix", ""))}
    if v2:
        head["StartAfter"] = enc(query.get("start-after"))
        head["ContinuationToken"] = query.get("continuation-token")
        head["NextContinuationToken"] = next_token
        head["KeyCount"] = len(contents) + len(prefixes)
    else:
        head["Marker"] = enc(query.get("marker", ""))
        head["NextMarker"] = enc(next_after)
    head["MaxKeys"] = query.get("max-keys", "1000")
    head["Delimiter"] = enc(query.get("delimiter"))
    head["EncodingType"] = "url" if encode else None
    head["IsTruncated"] = next_after is not None
    _fill(root, head)
    for key, modified, etag, size in contents:
        item = {
            "Key": enc(key),
            "LastModified": modified,
            "ETag": f'"{etag}"',
            "Size": size,
            "StorageClass": "STANDARD",
        }
        _fill(ElementTree.SubElement(root, "Contents"), item)
    for prefix in prefixes:
        _fill(ElementTree.SubElement(root, "CommonPrefixes"), {"Prefix": enc(prefix)})
    return web.Response(body=_render(root), content_type="application/xml")
