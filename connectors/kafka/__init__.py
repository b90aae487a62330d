"""The `kafka` connector (a topic read by a consumer group) and the `kafka` on-failure destination.

aiokafka is imported only when a source opens or a destination first sends, so a hub without Kafka mappings
never imports it.
"""

from __future__ import annotations

from typing import Any

from connectors.kafka.config import KafkaConfig, KafkaDestinationConfig
from connectors.kafka.destination import build as build_destination
from connectors.kafka.source import EVENT_SOURCE, KafkaSource
from hub.source import ConnectorSpec, DestinationSpec


def sample_event() -> dict[str, Any]:
    """A self-managed Kafka event as AWS sends it (no eventSourceArn: that is for Amazon MSK only)."""
    return {
        "eventSource": EVENT_SOURCE,
        "bootstrapServers": "b-1.kafka.example.com:9092,b-2.kafka.example.com:9092",
        "records": {
            "mytopic-0": [
                {
                    "topic": "mytopic",
                    "partition": 0,
                    "offset": 15,
                    "timestamp": 1545084650987,
                    "timestampType": "CREATE_TIME",
                    "key": "a2V5LTE=",
                    "value": "SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==",
                    "headers": [{"headerKey": [104, 101, 97, 100, 101, 114, 86, 97, 108, 117, 101]}],
                }
            ]
        },
    }


CONNECTOR = ConnectorSpec(
    type="kafka",
    config=KafkaConfig,
    build=KafkaSource,
    family="stream",
    summary="A Kafka topic read by a consumer group, as Lambda's self-managed Apache Kafka event source.",
    sample_event=sample_event,
    data_key="value",
    defaults={"batch_size": 100, "maximum_batching_window": 0.5, "maximum_retry_attempts_with_destination": 10},
)

DESTINATION = DestinationSpec(type="kafka", config=KafkaDestinationConfig, build=build_destination)

__all__ = ["CONNECTOR", "DESTINATION", "KafkaConfig", "KafkaDestinationConfig", "KafkaSource"]
