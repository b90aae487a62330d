"""A webhook receiver behind an HTTP API route, written exactly as for Lambda (payload format 2.0)."""

import json
import logging

log = logging.getLogger(__name__)
log.setLevel(logging.INFO)


def handler(event, context):
    source = (event.get("pathParameters") or {}).get("source", "unknown")
    log.info("webhook from %s: %d bytes", source, len(event.get("body") or ""))
    return {"statusCode": 202, "body": json.dumps({"received": True, "source": source})}
