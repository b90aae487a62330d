import base64
import json
import os

import boto3

sqs = boto3.client("sqs")


def lambda_handler(event, context):
    """Flags large payments (the mapping's filter passes only amounts over 100)."""
    for records in event["records"].values():
        for record in records:
            payment = json.loads(base64.b64decode(record["value"]))
            sqs.send_message(QueueUrl=os.environ["OUTPUT_QUEUE_URL"], MessageBody=payment["id"])
