"""An SQS-triggered handler, with partial batch responses (ReportBatchItemFailures)."""

import json
import logging

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)


def handler(event, context):
    failures = []
    for record in event["Records"]:
        try:
            job = json.loads(record["body"])
            logger.info("job %s (attempt %s)", job.get("id"), record["attributes"]["ApproximateReceiveCount"])
        except ValueError:
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
