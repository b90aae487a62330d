import json
import os

import boto3

sqs = boto3.client("sqs")


def lambda_handler(event, context):
    """Publishes the report the schedule asks for on the reports queue."""
    sqs.send_message(QueueUrl=os.environ["REPORTS_QUEUE_URL"], MessageBody=json.dumps({"report": event["report"]}))
