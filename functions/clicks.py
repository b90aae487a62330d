"""A Kinesis-triggered handler that counts clicks per page in tumbling windows (TumblingWindowInSeconds).

The state returned by one invocation is passed to the next invocation of the same window; the final invocation
of a window (isFinalInvokeForWindow) reports the totals.
"""

import base64
import json
import logging

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)


def handler(event, context):
    counts = dict(event.get("state") or {})
    for record in event["Records"]:
        click = json.loads(base64.b64decode(record["kinesis"]["data"]))
        counts[click["page"]] = counts.get(click["page"], 0) + 1
    if event.get("isFinalInvokeForWindow"):
        logger.info("window %s..%s: %s", event["window"]["start"], event["window"]["end"], counts)
    return {"state": counts, "batchItemFailures": []}
