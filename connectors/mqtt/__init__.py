"""`mqtt`: MQTT topic filters (QoS 1, a persistent session), each message invoking the function as an AWS IoT rule's
Lambda action does: asynchronously, once per message, with the payload as the event.

| settle   | meaning for MQTT                                                                                      |
| -------- | ----------------------------------------------------------------------------------------------------- |
| success  | the message's PUBACK (also for given-up messages, which the destination already took, and filtered    |
|          | ones), sent in the order the messages arrived unless `puback_order: settled`                          |
| failure  | only when the hub stops mid-retry (or a dispatch fault): no PUBACK, and MQTT has no negative one: the |
|          | connection is reopened (or the hub restarts) and the broker sends every message without one again     |
| ordering | none (one unordered lane, up to `max_concurrency` messages in flight; a redelivered one comes again   |
|          | after newer ones may have been handled)                                                               |

Family: `async`. MQTT has no redelivery within a connection: a QoS 1 message without its PUBACK comes again only
when the same session reconnects. So the hub does what IoT does for a Lambda action, Lambda's asynchronous
invocation: a failed invocation is retried by the dispatcher (`maximum_retry_attempts`, default 2, with backoff),
then the message goes to `destination_config.on_failure` (and the function's dead-letter queue), and only then is
it acked: a PUBACK always means the outcome is final.

Session: MQTT 5 connects with clean_start=0 and a Session Expiry Interval (`session_expiry`, default 1 day), MQTT
3.1.1 with clean_session=0, under a client id derived from the mapping's name (`client_id` to choose it), so the
broker queues what is published while the hub is down and sends it, with every message that had no PUBACK, when the
hub is back (mosquitto queues at most `max_queued_messages` per session, 1000 by default, and drops the rest).

Flow: the broker sends at most its in-flight window of messages without a PUBACK: MQTT 5's Receive Maximum, which
the hub sets (`receive_maximum`, default 10 x max_concurrency, at least 100; mosquitto honours it over its own
`max_inflight_messages`), or for MQTT 3.1.1 the broker's own window (mosquitto: `max_inflight_messages`, default 20).
That window bounds what is read, in flight or waiting for an earlier message's PUBACK, and so the duplicates after a
crash; keep it above `max_concurrency`, or invocations wait for the window. With `puback_order: received` (the MQTT
specification's order), a message in retry holds back the PUBACKs of the messages after it, and once the window is
full the broker sends nothing more until it settles.

The event is the payload as `SELECT * FROM '<filter>'` sends it (connectors/mqtt/events.py): the parsed JSON,
`{"data": "<base64>"}` for a payload that is not JSON, `{}` for an empty one; `topic_key` adds the topic. Retained
messages are not events (an IoT rule sees publishes, not a replay): MQTT 5 subscribes with Retain Handling 2, and
under 3.1.1 a message marked retained (sent because a subscription was made) is acked unseen. MQTT carries no
publish time, so `maximum_event_age` counts from a message's arrival at the hub. `shared_group` subscribes as
`$share/<group>/<filter>` (MQTT 5) so that hubs, or a mapping's pollers, share the messages.

aiomqtt does not expose manual acknowledgement: connectors/mqtt/acks.py reaches paho-mqtt's `manual_ack_set` and
`ack` through it, in that one place, and tests fail if a release changes them.
"""

from __future__ import annotations

from connectors.mqtt.acks import AckWindow, LibraryChanged, manual_acks
from connectors.mqtt.config import MqttConfig, check_filter
from connectors.mqtt.events import BINARY_KEY, iot_event, sample_event
from connectors.mqtt.source import MqttSource
from hub.source import ConnectorSpec

CONNECTOR = ConnectorSpec(
    type="mqtt",
    config=MqttConfig,
    build=MqttSource,
    family="async",
    summary="MQTT topic filters (QoS 1, persistent session), one invocation per message as an AWS IoT rule sends it.",
    sample_event=sample_event,
    requires=("aiomqtt",),
    extra="mqtt",
    shares_work=lambda config: config.shared_group is not None,  # a shared subscription: the broker splits the work
    shares_work_when="set `shared_group` (an MQTT 5 shared subscription: mqtt with shared_group)",
)

__all__ = [
    "BINARY_KEY",
    "CONNECTOR",
    "AckWindow",
    "LibraryChanged",
    "MqttConfig",
    "MqttSource",
    "check_filter",
    "iot_event",
    "manual_acks",
    "sample_event",
]
