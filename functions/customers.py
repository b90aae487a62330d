"""A DynamoDB Streams-triggered handler: one record per item change, with the images the stream view carries."""

import logging

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)


def handler(event, context):
    failures = []
    for record in event["Records"]:
        change = record["dynamodb"]
        logger.info("%s %s -> %s", record["eventName"], change["Keys"], change.get("NewImage"))
    return {"batchItemFailures": failures}
