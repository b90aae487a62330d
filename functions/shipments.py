"""A NATS JetStream-triggered handler (the hub's `nats` event, docs/events/nats.md), with partial batch responses:
each record carries its subject and its payload, base64-encoded, in `data`; a payload that is not JSON fails alone."""

import base64
import json
import logging

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)


def handler(event, context):
    failures = []
    for record in event["Records"]:
        try:
            shipment = json.loads(base64.b64decode(record["data"]))
        except ValueError:
            failures.append({"itemIdentifier": record["messageId"]})
            continue
        attempt = record["attributes"]["ApproximateReceiveCount"]
        logger.info("%s #%s (delivery %s): %s", record["subject"], record["messageId"], attempt, shipment)
    return {"batchItemFailures": failures}
