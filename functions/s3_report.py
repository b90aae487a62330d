"""An S3-triggered handler: runs unchanged on Lambda behind an S3 bucket notification."""

import json
import logging
from urllib.parse import unquote_plus

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)


def handler(event, context):
    reports = []
    for record in event["Records"]:
        bucket = record["s3"]["bucket"]["name"]
        key = unquote_plus(record["s3"]["object"]["key"])
        size = record["s3"]["object"].get("size")
        logger.info("%s s3://%s/%s (%s bytes)", record["eventName"], bucket, key, size)
        reports.append({"bucket": bucket, "key": key, "size": size})
    return {"statusCode": 200, "body": json.dumps(reports)}
