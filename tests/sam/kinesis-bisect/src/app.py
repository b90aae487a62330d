import base64
import json
import os

import boto3

sqs = boto3.client("sqs")


def lambda_handler(event, context):
    """Forwards each click; a malformed record fails the batch (bisected until it is alone, then sent on)."""
    clicks = []
    for record in event["Records"]:
        click = json.loads(base64.b64decode(record["kinesis"]["data"]))
        if "page" not in click:
            raise ValueError(f"malformed click {click}")
        clicks.append(click["page"])
    for page in clicks:
        sqs.send_message(QueueUrl=os.environ["OUTPUT_QUEUE_URL"], MessageBody=page)
