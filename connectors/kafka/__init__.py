"""The `kafka` connector (a topic read by a consumer group) and the `kafka` on-failure destination.

aiokafka is imported only when a source opens or a destination first sends, so a hub without Kafka mappings
never imports it.
"""

from __future__ import annotations

from typing import Any

from connectors.kafka.config import KafkaConfig, KafkaDestinationConfig
from connectors.kafka.destination import build as build_destination
from connectors.kafka.events import EVENT_SOURCE, msk_sample_event, sample_event
from connectors.kafka.source import KafkaSource
from hub.source import ConnectorSpec, DestinationSpec, SourceContext


async def _reread(config: KafkaConfig, context: SourceContext, info: dict[str, Any]) -> Any:
    from connectors.kafka.failures import reread

    return await reread(config, context, info)


def _inbox(config: KafkaDestinationConfig, region: str, store: Any, mapping: str) -> Any:
    from connectors.kafka.failures import inbox

    return inbox(config, region, store, mapping)


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
    batch_info_key="KafkaBatchInfo",
    reread=_reread,
)

DESTINATION = DestinationSpec(
    type="kafka",
    config=KafkaDestinationConfig,
    build=build_destination,
    requires=("aiokafka",),
    extra="kafka",
    inbox=_inbox,
)

__all__ = ["CONNECTOR", "DESTINATION", "EVENT_SOURCE", "KafkaConfig", "KafkaDestinationConfig", "KafkaSource"]
