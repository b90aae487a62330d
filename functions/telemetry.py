"""An IoT rule's Lambda handler: device telemetry, as `SELECT *, topic() AS topic FROM 'sensors/+/telemetry'` sends
it (the `mqtt` source with `topic_key: topic`).

A JSON payload arrives as the object itself; a payload that is not JSON arrives as `{"data": "<base64>"}` (AWS's
`SELECT encode(*, 'base64') AS data`). A reading above ALERT_TEMPERATURE is logged as an alert.
"""

import base64
import logging
import os

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)


def handler(event, context):
    if not isinstance(event, dict):
        return {"ignored": type(event).__name__}
    device = event.get("device") or _device_of(event.get("topic", "")) or "unknown"
    if "data" in event and "temperature" not in event:
        raw = base64.b64decode(event["data"])
        logger.info("binary telemetry from %s: %d bytes", device, len(raw))
        return {"device": device, "bytes": len(raw)}
    temperature = event.get("temperature")
    limit = float(os.environ.get("ALERT_TEMPERATURE", "30"))
    if isinstance(temperature, int | float) and temperature > limit:
        logger.warning("ALERT %s: %.1f > %.1f", device, temperature, limit)
    return {"device": device, "temperature": temperature}


def _device_of(topic):
    """The device of `sensors/<device>/telemetry`."""
    levels = topic.split("/")
    return levels[1] if len(levels) > 2 else None
