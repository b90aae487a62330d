import base64
import os

import boto3

sqs = boto3.client("sqs")


def lambda_handler(event, context):
    """Forwards every message of every queue of the batch."""
    for messages in event["rmqMessagesByQueue"].values():
        for message in messages:
            sqs.send_message(
                QueueUrl=os.environ["OUTPUT_QUEUE_URL"], MessageBody=base64.b64decode(message["data"]).decode()
            )
