import os

import boto3

sqs = boto3.client("sqs")


def lambda_handler(event, context):
    """Notifies each new order (the mapping's filter lets only inserts with status NEW through)."""
    for record in event["Records"]:
        order_id = record["dynamodb"]["NewImage"]["id"]["S"]
        sqs.send_message(QueueUrl=os.environ["NOTIFY_QUEUE_URL"], MessageBody=order_id)
    return {"batchItemFailures": []}
