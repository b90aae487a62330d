import base64
import json
import os

import boto3

sqs = boto3.client("sqs")


def lambda_handler(event, context):
    """Tells the seen queue what each record said, and where it came from."""
    for record in event["Records"]:
        source = record["eventSource"]
        if source == "aws:sqs":
            said = record["body"]
        elif source == "aws:kinesis":
            said = base64.b64decode(record["kinesis"]["data"]).decode()
        else:
            said = record["dynamodb"]["NewImage"]["id"]["S"]
        sqs.send_message(QueueUrl=os.environ["SEEN_QUEUE_URL"], MessageBody=json.dumps([source, said]))
