"""A Lambda handler that reads its upload and writes its result through S3, unchanged, against a watched folder:
the hub as a real process serves the folders over its S3 endpoint and the function runs in worker processes."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import boto3

from tests.helpers import HubProcess, wait_for


def thumbnail_config(tmp: Path) -> dict[str, Any]:
    # Nothing about the endpoint is written for the function: the hub hands it AWS_ENDPOINT_URL_S3, credentials
    # the endpoint accepts and AWS_REGION, as Lambda hands a function its region and role. The secret is set here
    # only so that the test's own client can sign requests.
    return {
        "checkpoints": f"sqlite:///{tmp / 'state.db'}",
        "shutdown_grace": "5s",
        "s3_endpoint": {"secret_access_key": "${S3_SECRET}", "buckets": {"thumbnails": str(tmp / "thumbs")}},
        "functions": {
            "thumbnail": {
                "handler": "functions.thumbnail.handler",
                "timeout": "20s",
                "environment": {"THUMBNAIL_BUCKET": "thumbnails"},
            }
        },
        "mappings": [
            {
                "name": "uploads",
                "function": "thumbnail",
                "source": {"type": "files", "path": str(tmp / "uploads"), "suffix": ".jpg", "settle_time": "200ms"},
            }
        ],
    }


def without_aws_region(hub: HubProcess) -> HubProcess:
    """The hub's own environment names no region: a handler's module-level boto3 client still gets one."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        hub.env.pop(name, None)
    return hub


def endpoint_url(hub: HubProcess) -> str:
    line = wait_for(lambda: next((x for x in hub.log().splitlines() if "s3 endpoint" in x), None), what="the url")
    return str(line.split("url=")[1].split()[0])


def thumbnails(tmp: Path) -> list[Path]:
    root = tmp / "thumbs"
    return sorted(p for p in root.rglob("*") if p.is_file() and ".eventhub-s3" not in p.parts) if root.exists() else []


def test_a_dropped_file_is_read_and_its_result_written_through_the_s3_api(tmp_path: Path) -> None:
    secret = uuid.uuid4().hex
    with without_aws_region(HubProcess(tmp_path, thumbnail_config(tmp_path), {"S3_SECRET": secret})) as hub:
        hub.start()
        hub.wait_log("watching")
        assert secret not in hub.log(), "the endpoint's secret is never logged"
        image = bytes(range(256)) * 40
        (tmp_path / "uploads" / "holiday 2024").mkdir(parents=True)
        (tmp_path / "uploads" / "holiday 2024" / "Happy Face ü.jpg").write_bytes(image)
        wait_for(lambda: thumbnails(tmp_path), what="the thumbnail")
        assert thumbnails(tmp_path) == [tmp_path / "thumbs" / "thumbs" / "holiday 2024" / "Happy Face ü.jpg"]
        assert thumbnails(tmp_path)[0].read_bytes() == image[::4]


def test_an_object_put_through_the_endpoint_fires_the_mapping_once(tmp_path: Path) -> None:
    secret = uuid.uuid4().hex
    config = thumbnail_config(tmp_path)
    del config["mappings"][0]["source"]["suffix"]  # every key fires: the endpoint's staged files must not
    with without_aws_region(HubProcess(tmp_path, config, {"S3_SECRET": secret})) as hub:
        hub.start()
        hub.wait_log("watching")
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint_url(hub),
            region_name="us-east-1",
            aws_access_key_id="eventhub",
            aws_secret_access_key=secret,
        )
        assert {b["Name"] for b in s3.list_buckets()["Buckets"]} == {"uploads", "thumbnails"}
        s3.put_object(Bucket="uploads", Key="cat.jpg", Body=b"meow" * 1000, ContentType="image/jpeg")
        wait_for(lambda: thumbnails(tmp_path), what="the thumbnail")
        thumb = s3.get_object(Bucket="thumbnails", Key="thumbs/cat.jpg")
        assert thumb["Body"].read() == (b"meow" * 1000)[::4]
        assert thumb["ContentType"] == "image/jpeg"
        # a second object proves the first was handled once: the staged temporary file never fired
        s3.put_object(Bucket="uploads", Key="dog.jpg", Body=b"woof" * 10)
        wait_for(lambda: len(thumbnails(tmp_path)) == 2, what="the second thumbnail")
        hub.stop()
        assert "mapping=uploads polled=2 filtered_out=0 invoked=2 failed_invoke=0" in hub.log()
    assert [p.name for p in thumbnails(tmp_path)] == ["cat.jpg", "dog.jpg"]
