"""The `kafka` connector (a topic read by a consumer group) and the `kafka` on-failure destination.

aiokafka is imported only when a source opens or a destination first sends, so a hub without Kafka mappings
never imports it.
"""

from __future__ import annotations

from connectors.kafka.config import KafkaConfig, KafkaDestinationConfig
from connectors.kafka.destination import build as build_destination
from connectors.kafka.events import EVENT_SOURCE, msk_sample_event, sample_event
from connectors.kafka.source import KafkaSource
from hub.source import ConnectorSpec, DestinationSpec

CONNECTOR = ConnectorSpec(
    type="kafka",
    config=KafkaConfig,
    build=KafkaSource,
    family="stream",
    summary="A Kafka topic read by a consumer group, as Lambda's self-managed Kafka or Amazon MSK event source.",
    sample_event=sample_event,
    sample_variants={"msk": msk_sample_event},
    data_key="value",
    defaults={"batch_size": 100, "maximum_batching_window": 0.5},
    retries_with_destination=10,  # AWS: a Kafka mapping's unlimited retries become 10 once it has a destination
    requires=("aiokafka",),
    extra="kafka",
    shares_work=True,
)

DESTINATION = DestinationSpec(
    type="kafka", config=KafkaDestinationConfig, build=build_destination, requires=("aiokafka",), extra="kafka"
)

__all__ = ["CONNECTOR", "DESTINATION", "EVENT_SOURCE", "KafkaConfig", "KafkaDestinationConfig", "KafkaSource"]
