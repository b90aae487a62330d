"""An Amazon MQ for RabbitMQ-triggered handler: messages come grouped by `queue::vhost`, bodies base64-encoded."""

import base64
import logging

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)


def handler(event, context):
    for queue, messages in event["rmqMessagesByQueue"].items():
        for message in messages:
            body = base64.b64decode(message["data"]).decode(errors="replace")
            logger.info("%s: %s (redelivered: %s)", queue, body, message["redelivered"])
