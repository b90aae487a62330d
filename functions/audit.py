"""A Redis-streams-triggered handler: each record carries the entry's fields under `data`."""

import logging

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)


def handler(event, context):
    for record in event["Records"]:
        logger.info("%s %s: %s", record["stream"], record["messageId"], record["data"])
    return {"batchItemFailures": []}
