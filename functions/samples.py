"""A handler for trying a configuration with the `memory` connector: logs each record's lane and data."""

import logging

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)


def handler(event, context):
    for record in event["Records"]:
        logger.info("%s %s: %s", record["lane"], record["messageId"], record["data"])
    return {"batchItemFailures": []}
