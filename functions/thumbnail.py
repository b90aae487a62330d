"""An image-resize style handler, written exactly as for Lambda behind an S3 bucket notification: it reads the
uploaded object through the S3 API and writes a smaller version to another bucket (never the one that triggered
it: on S3 as here, writing into the watched bucket under a key the notification matches would invoke it again).

The "resize" keeps every 4th byte, which is all a test needs; a real one would use an image library.
"""

import os
from urllib.parse import unquote_plus

import boto3

s3 = boto3.client("s3")  # made once per execution environment, as Lambda handlers do
TARGET_BUCKET = os.environ.get("THUMBNAIL_BUCKET", "thumbnails")


def handler(event, context):
    written = []
    for record in event["Records"]:
        bucket = record["s3"]["bucket"]["name"]
        key = unquote_plus(record["s3"]["object"]["key"])
        original = s3.get_object(Bucket=bucket, Key=key)
        data = original["Body"].read()
        target = f"thumbs/{key}"
        s3.put_object(Bucket=TARGET_BUCKET, Key=target, Body=data[::4], ContentType=original["ContentType"])
        written.append({"bucket": TARGET_BUCKET, "key": target, "size": len(data[::4])})
    return {"thumbnails": written}
