import json
import os

import boto3

sqs = boto3.client("sqs")


def lambda_handler(event, context):
    """Sends each order's total to the results queue; an order without items fails alone."""
    failures = []
    for record in event["Records"]:
        order = json.loads(record["body"])
        if not order.get("items"):
            failures.append({"itemIdentifier": record["messageId"]})
            continue
        total = sum(item["price"] * item["qty"] for item in order["items"])
        sqs.send_message(
            QueueUrl=os.environ["RESULTS_QUEUE_URL"],
            MessageBody=json.dumps({"order": order["id"], "total": total, "stage": os.environ["STAGE"]}),
        )
    return {"batchItemFailures": failures}
