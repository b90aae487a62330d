"""A Kafka-triggered handler (self-managed Kafka event), with partial batch responses.

Runs unchanged on Lambda behind a Kafka event source mapping with FunctionResponseTypes
[ReportBatchItemFailures].
"""

import base64
import json
import logging

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)


def handler(event, context):
    failures = []
    for partition, records in event["records"].items():
        for record in records:
            try:
                order = json.loads(base64.b64decode(record["value"]))
                logger.info("order %s for %s from %s@%s", order["id"], order["total"], partition, record["offset"])
            except (ValueError, KeyError) as exc:
                logger.warning("cannot process %s@%s: %s", partition, record["offset"], exc)
                failures.append({"itemIdentifier": {"partition": partition, "offset": record["offset"]}})
    return {"batchItemFailures": failures}
