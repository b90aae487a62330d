"""The `kafka` on-failure destination: one message per given-up record, keyed by the record's own key.

This is AWS's `kafka://<topic>` destination (reference d.4): the dispatcher builds each message's body (the
failure metadata plus a one-record Kafka event as `payload`); this module produces it with acks=all and returns
only once every message is acknowledged, or raises (the dispatcher retries with backoff).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from connectors.kafka.config import KafkaDestinationConfig, client_options
from connectors.kafka.diagnosis import raise_for_configuration
from hub.source import Document


class KafkaDestination:
    """A Kafka topic as a destination: one message per given-up record, with the record's key (an idempotent
    producer, acks=all)."""

    per_record = True
    includes_payload = True

    def __init__(self, config: KafkaDestinationConfig) -> None:
        self.config = config
        self.name = f"kafka:{config.topic}"
        self._producer: Any = None
        self._starting = asyncio.Lock()

    async def _started(self) -> Any:
        async with self._starting:
            if self._producer is None:
                from aiokafka import AIOKafkaProducer
                from aiokafka.errors import KafkaConnectionError

                options = client_options(self.config)
                producer = AIOKafkaProducer(
                    **options,
                    client_id=self.config.client_id,
                    acks="all",
                    request_timeout_ms=int(self.config.send_timeout * 1000),
                )
                try:
                    await producer.start()
                except KafkaConnectionError:
                    await producer.stop()
                    await raise_for_configuration(self.config, options)  # aiokafka's error does not say why
                    raise
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def send(self, documents: Sequence[Document]) -> None:
        """Produce every document (JSON body, original key) and wait until the brokers acknowledged all of them."""
        if not documents:
            return
        producer = await self._started()
        try:
            deliveries = [
                await producer.send(
                    self.config.topic,
                    value=json.dumps(document.body, separators=(",", ":"), default=str).encode(),
                    key=document.key,
                )
                for document in documents
            ]
            await asyncio.wait_for(asyncio.gather(*deliveries), self.config.send_timeout)
        except BaseException:
            # A producer that failed may hold a broken connection or a poisoned batch: start afresh next time.
            await self.close()
            raise

    async def close(self) -> None:
        """Flush and stop the producer."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()


def build(config: KafkaDestinationConfig, region: str) -> KafkaDestination:
    """The destination of a validated `{type: kafka}` config (the region is not used)."""
    return KafkaDestination(config)
