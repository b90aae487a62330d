"""A scheduled handler: receives EventBridge's "Scheduled Event" envelope."""

import logging

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)


def handler(event, context):
    logger.info("heartbeat for %s at %s (request %s)", event["resources"][0], event["time"], context.aws_request_id)
    return {"ok": True, "time": event["time"]}
