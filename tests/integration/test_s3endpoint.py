"""The S3 endpoint over folders, driven by boto3 as a Lambda handler drives S3: a real server on a free loopback
port over a temporary folder, its own event loop in a thread (boto3 is synchronous)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from hub.s3endpoint import RESERVED
from hub.s3endpoint.server import S3Endpoint

SECRET = "test-secret-" + uuid.uuid4().hex


class Running:
    def __init__(self, endpoint: S3Endpoint, loop: asyncio.AbstractEventLoop) -> None:
        self.endpoint = endpoint
        self.loop = loop

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Running]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    endpoint = S3Endpoint(
        {"inbox": tmp_path / "inbox", "results": tmp_path / "out"}, secret_access_key=SECRET, region="us-east-1"
    )
    running = Running(endpoint, loop)
    running.call(endpoint.start("127.0.0.1", 0))
    try:
        yield running
    finally:
        running.call(endpoint.close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def client(url: str, secret: str = SECRET, key_id: str = "eventhub") -> Any:
    # a region other than the endpoint's: clients configured for any region are accepted
    return boto3.client(
        "s3", endpoint_url=url, region_name="eu-west-3", aws_access_key_id=key_id, aws_secret_access_key=secret
    )


@pytest.fixture
def s3(server: Running) -> Any:
    return client(server.endpoint.url)


def code_of(excinfo: pytest.ExceptionInfo[ClientError]) -> str:
    return str(excinfo.value.response["Error"]["Code"])


def test_buckets_are_the_folders(server: Running, s3: Any, tmp_path: Path) -> None:
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["inbox", "results"]
    assert (tmp_path / "inbox").is_dir() and (tmp_path / "out").is_dir()
    s3.head_bucket(Bucket="inbox")
    with pytest.raises(ClientError) as missing:
        s3.head_bucket(Bucket="nope")
    assert code_of(missing) == "404"
    with pytest.raises(ClientError) as listing:
        s3.list_objects_v2(Bucket="nope")
    assert code_of(listing) == "NoSuchBucket"
    assert s3.get_bucket_location(Bucket="inbox").get("LocationConstraint") is None


def test_put_get_head_keep_bytes_etag_type_and_metadata(s3: Any, tmp_path: Path) -> None:
    key = "photos/2024/Happy Face ü+1.jpg"
    body = b"\xff\xd8 not really a jpeg " * 50
    put = s3.put_object(Bucket="inbox", Key=key, Body=body, ContentType="image/jpeg", Metadata={"camera": "x100"})
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    assert (tmp_path / "inbox" / "photos" / "2024" / "Happy Face ü+1.jpg").read_bytes() == body
    got = s3.get_object(Bucket="inbox", Key=key)
    assert got["Body"].read() == body
    assert got["ETag"] == put["ETag"]
    assert got["ContentType"] == "image/jpeg"
    assert got["Metadata"] == {"camera": "x100"}
    head = s3.head_object(Bucket="inbox", Key=key)
    assert head["ContentLength"] == len(body) and head["ETag"] == put["ETag"]
    staging = tmp_path / "inbox" / RESERVED
    assert not [p for p in staging.rglob("tmp-*")], "no staged file is left behind"


def test_a_file_put_in_the_folder_directly_is_an_object(s3: Any, tmp_path: Path) -> None:
    first, second = b"a,b\n1,2\n", b"changed behind the endpoint's back"
    (tmp_path / "inbox" / "report.csv").write_bytes(first)
    head = s3.head_object(Bucket="inbox", Key="report.csv")
    assert head["ETag"] == f'"{hashlib.md5(first).hexdigest()}"'
    assert head["ContentType"] == "text/csv"
    (tmp_path / "inbox" / "report.csv").write_bytes(second)
    assert s3.get_object(Bucket="inbox", Key="report.csv")["ETag"] == f'"{hashlib.md5(second).hexdigest()}"'


def test_range_gets(s3: Any) -> None:
    s3.put_object(Bucket="inbox", Key="digits", Body=b"0123456789")
    assert s3.get_object(Bucket="inbox", Key="digits", Range="bytes=2-5")["Body"].read() == b"2345"
    tail = s3.get_object(Bucket="inbox", Key="digits", Range="bytes=-3")
    assert tail["Body"].read() == b"789" and tail["ContentRange"] == "bytes 7-9/10"
    assert s3.get_object(Bucket="inbox", Key="digits", Range="bytes=8-")["Body"].read() == b"89"
    assert s3.get_object(Bucket="inbox", Key="digits", Range="bytes=8-100")["Body"].read() == b"89"
    with pytest.raises(ClientError) as beyond:
        s3.get_object(Bucket="inbox", Key="digits", Range="bytes=10-20")
    assert code_of(beyond) == "InvalidRange"


def test_missing_keys_and_buckets_are_s3_errors(s3: Any) -> None:
    with pytest.raises(ClientError) as key:
        s3.get_object(Bucket="inbox", Key="missing.txt")
    assert code_of(key) == "NoSuchKey"
    assert key.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as head:
        s3.head_object(Bucket="inbox", Key="missing.txt")
    assert code_of(head) == "404"
    with pytest.raises(ClientError) as bucket:
        s3.get_object(Bucket="elsewhere", Key="x")
    assert code_of(bucket) == "NoSuchBucket"


def test_copy_object_keeps_or_replaces_metadata(s3: Any, tmp_path: Path) -> None:
    s3.put_object(Bucket="inbox", Key="src.txt", Body=b"payload", ContentType="text/plain", Metadata={"a": "1"})
    copied = s3.copy_object(Bucket="results", Key="copies/dst.txt", CopySource={"Bucket": "inbox", "Key": "src.txt"})
    assert copied["CopyObjectResult"]["ETag"] == f'"{hashlib.md5(b"payload").hexdigest()}"'
    assert (tmp_path / "out" / "copies" / "dst.txt").read_bytes() == b"payload"
    kept = s3.head_object(Bucket="results", Key="copies/dst.txt")
    assert kept["ContentType"] == "text/plain" and kept["Metadata"] == {"a": "1"}
    s3.copy_object(
        Bucket="results",
        Key="copies/replaced.txt",
        CopySource="inbox/src.txt",
        MetadataDirective="REPLACE",
        ContentType="application/json",
        Metadata={"b": "2"},
    )
    replaced = s3.head_object(Bucket="results", Key="copies/replaced.txt")
    assert replaced["ContentType"] == "application/json" and replaced["Metadata"] == {"b": "2"}
    with pytest.raises(ClientError) as missing:
        s3.copy_object(Bucket="results", Key="x", CopySource="inbox/nothing-here")
    assert code_of(missing) == "NoSuchKey"


def test_delete_object_and_objects(s3: Any, tmp_path: Path) -> None:
    for key in ("a.txt", "b.txt", "dir/c.txt"):
        s3.put_object(Bucket="inbox", Key=key, Body=key.encode())
    assert s3.delete_object(Bucket="inbox", Key="a.txt")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert not (tmp_path / "inbox" / "a.txt").exists()
    assert s3.delete_object(Bucket="inbox", Key="a.txt")["ResponseMetadata"]["HTTPStatusCode"] == 204
    result = s3.delete_objects(Bucket="inbox", Delete={"Objects": [{"Key": "b.txt"}, {"Key": "dir/c.txt"}]})
    assert sorted(d["Key"] for d in result["Deleted"]) == ["b.txt", "dir/c.txt"]
    assert s3.list_objects_v2(Bucket="inbox")["KeyCount"] == 0


def test_list_objects_v2_prefix_delimiter_and_pages(s3: Any) -> None:
    keys = ["a.txt", "photos/2023/x.jpg", "photos/2024/y.jpg", "photos/2024/z z.jpg", "photos/top.jpg", "zeta"]
    for key in keys:
        s3.put_object(Bucket="inbox", Key=key, Body=b"x")
    everything = s3.list_objects_v2(Bucket="inbox")
    assert [o["Key"] for o in everything["Contents"]] == keys, "sorted, and the staging folder is not listed"
    top = s3.list_objects_v2(Bucket="inbox", Delimiter="/")
    assert [o["Key"] for o in top["Contents"]] == ["a.txt", "zeta"]
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["photos/"]
    photos = s3.list_objects_v2(Bucket="inbox", Prefix="photos/", Delimiter="/")
    assert [o["Key"] for o in photos["Contents"]] == ["photos/top.jpg"]
    assert [p["Prefix"] for p in photos["CommonPrefixes"]] == ["photos/2023/", "photos/2024/"]
    pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket="inbox", PaginationConfig={"PageSize": 2}))
    assert [len(p.get("Contents", [])) for p in pages] == [2, 2, 2]
    assert [o["Key"] for p in pages for o in p["Contents"]] == keys
    delimited = s3.get_paginator("list_objects_v2").paginate(
        Bucket="inbox", Delimiter="/", PaginationConfig={"PageSize": 1}
    )
    entries = [o["Key"] for p in delimited for o in p.get("Contents", [])]
    assert entries == ["a.txt", "zeta"]
    after = s3.list_objects_v2(Bucket="inbox", StartAfter="photos/2024/y.jpg")
    assert [o["Key"] for o in after["Contents"]] == ["photos/2024/z z.jpg", "photos/top.jpg", "zeta"]
    v1 = s3.list_objects(Bucket="inbox", Prefix="photos/2024/")
    assert [o["Key"] for o in v1["Contents"]] == ["photos/2024/y.jpg", "photos/2024/z z.jpg"]


def test_upload_file_over_8_mb_is_a_multipart_upload_with_s3s_etag(s3: Any, tmp_path: Path) -> None:
    data = os.urandom(9 * 1024 * 1024 + 123)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    s3.upload_file(str(source), "results", "uploads/big.bin")
    assert (tmp_path / "out" / "uploads" / "big.bin").read_bytes() == data
    part = 8 * 1024 * 1024  # boto3's multipart_chunksize
    digests = hashlib.md5(hashlib.md5(data[:part]).digest() + hashlib.md5(data[part:]).digest()).hexdigest()
    assert s3.head_object(Bucket="results", Key="uploads/big.bin")["ETag"] == f'"{digests}-2"'
    target = tmp_path / "downloaded.bin"
    s3.download_file("results", "uploads/big.bin", str(target))
    assert target.read_bytes() == data
    assert not list((tmp_path / "out" / RESERVED / "uploads").iterdir()), "the parts are gone once complete"


def test_multipart_errors_and_abort(s3: Any, tmp_path: Path) -> None:
    upload = s3.create_multipart_upload(Bucket="inbox", Key="mp.bin")["UploadId"]
    small = s3.upload_part(Bucket="inbox", Key="mp.bin", UploadId=upload, PartNumber=1, Body=b"tiny")
    s3.upload_part(Bucket="inbox", Key="mp.bin", UploadId=upload, PartNumber=2, Body=b"last")
    parts = [{"PartNumber": 1, "ETag": '"' + "0" * 32 + '"'}]
    with pytest.raises(ClientError) as wrong:
        s3.complete_multipart_upload(Bucket="inbox", Key="mp.bin", UploadId=upload, MultipartUpload={"Parts": parts})
    assert code_of(wrong) == "InvalidPart"
    good = [{"PartNumber": 1, "ETag": small["ETag"]}]
    done = s3.complete_multipart_upload(Bucket="inbox", Key="mp.bin", UploadId=upload, MultipartUpload={"Parts": good})
    assert done["ETag"] == f'"{hashlib.md5(hashlib.md5(b"tiny").digest()).hexdigest()}-1"'
    assert (tmp_path / "inbox" / "mp.bin").read_bytes() == b"tiny"

    upload = s3.create_multipart_upload(Bucket="inbox", Key="small.bin")["UploadId"]
    etags = [
        s3.upload_part(Bucket="inbox", Key="small.bin", UploadId=upload, PartNumber=n, Body=b"x")["ETag"]
        for n in (1, 2)
    ]
    with pytest.raises(ClientError) as too_small:
        s3.complete_multipart_upload(
            Bucket="inbox",
            Key="small.bin",
            UploadId=upload,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in zip((1, 2), etags, strict=True)]},
        )
    assert code_of(too_small) == "EntityTooSmall"
    s3.abort_multipart_upload(Bucket="inbox", Key="small.bin", UploadId=upload)
    with pytest.raises(ClientError) as gone:
        s3.upload_part(Bucket="inbox", Key="small.bin", UploadId=upload, PartNumber=3, Body=b"x")
    assert code_of(gone) == "NoSuchUpload"
    assert not (tmp_path / "inbox" / "small.bin").exists()


def test_keys_that_would_leave_the_folder_are_refused(s3: Any, tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_bytes(b"keep out")
    for key in ("../secret.txt", "a/../../secret.txt", "./x", "a//b", f"{RESERVED}/meta/x"):
        with pytest.raises(ClientError) as refused:
            s3.get_object(Bucket="inbox", Key=key)
        assert code_of(refused) == "InvalidArgument", key
        with pytest.raises(ClientError):
            s3.put_object(Bucket="inbox", Key=key, Body=b"overwritten")
    assert outside.read_bytes() == b"keep out"
    (tmp_path / "inbox" / "link").symlink_to(tmp_path)
    with pytest.raises(ClientError) as through_link:
        s3.get_object(Bucket="inbox", Key="link/secret.txt")
    assert code_of(through_link) == "AccessDenied"
    with pytest.raises(ClientError) as write_through_link:
        s3.put_object(Bucket="inbox", Key="link/new.txt", Body=b"x")
    assert code_of(write_through_link) == "AccessDenied"
    assert not (tmp_path / "new.txt").exists()


def test_requests_must_be_signed_with_the_endpoints_credentials(server: Running, s3: Any) -> None:
    s3.put_object(Bucket="inbox", Key="private.txt", Body=b"x")
    with pytest.raises(ClientError) as wrong_secret:
        client(server.endpoint.url, secret="guess").get_object(Bucket="inbox", Key="private.txt")
    assert code_of(wrong_secret) == "SignatureDoesNotMatch"
    with pytest.raises(ClientError) as wrong_key:
        client(server.endpoint.url, key_id="someone").get_object(Bucket="inbox", Key="private.txt")
    assert code_of(wrong_key) == "InvalidAccessKeyId"
    with pytest.raises(urllib.error.HTTPError) as unsigned:
        urllib.request.urlopen(f"{server.endpoint.url}/inbox/private.txt", timeout=10)
    assert unsigned.value.code == 403
    assert b"<Code>AccessDenied</Code>" in unsigned.value.read()
    assert SECRET not in str(wrong_secret.value) and SECRET not in str(wrong_key.value)
    presigned = s3.generate_presigned_url("get_object", Params={"Bucket": "inbox", "Key": "private.txt"})
    with urllib.request.urlopen(presigned, timeout=10) as response:
        assert response.read() == b"x"


def test_close_is_safe_twice(server: Running) -> None:
    server.call(server.endpoint.close())
    server.call(server.endpoint.close())
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{server.endpoint.url}/", timeout=5)


async def test_the_hub_serves_its_files_folders_and_tells_functions_where(tmp_path: Path) -> None:
    from hub.app import Hub
    from hub.checkpoints import open_store
    from hub.config import load_config

    (tmp_path / "hub.yaml").write_text(
        "functions:\n  fn: {handler: functions.recorder.record}\n"
        f"mappings:\n  - {{function: fn, source: {{type: files, path: {tmp_path}/drop, bucket: uploads}}}}\n"
    )
    hub = Hub(load_config(tmp_path / "hub.yaml"), store=open_store("memory://"))
    await hub.start()
    try:
        env = hub.function_environment()
        assert set(env) == {"AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
        assert env["AWS_ENDPOINT_URL_S3"].startswith("http://127.0.0.1:")
        s3 = client(env["AWS_ENDPOINT_URL_S3"], secret=env["AWS_SECRET_ACCESS_KEY"], key_id=env["AWS_ACCESS_KEY_ID"])
        await asyncio.to_thread(s3.put_object, Bucket="uploads", Key="hello.txt", Body=b"hi")
        assert (tmp_path / "drop" / "hello.txt").read_bytes() == b"hi"
    finally:
        await hub._stack.aclose()
