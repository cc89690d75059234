"""aiokafka internals: the group coordinator and the client behind an `AIOKafkaConsumer`."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata


async def fetch_committed_offsets(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
) -> dict[TopicPartition, OffsetAndMetadata]:
    """The group's committed offsets *with their metadata*, in one request.

    Touches `consumer._coordinator.fetch_committed_offsets` (a `GroupCoordinator`, set by
    `start()`): the public `committed()` returns the offset alone, one partition per request, and
    the sessionizer keeps its replay marks in the commit metadata.
    """
    found: dict[TopicPartition, OffsetAndMetadata] = await consumer._coordinator.fetch_committed_offsets(
        partitions
    )
    return found


async def force_metadata_update(consumer: AIOKafkaConsumer) -> None:
    """Ask the brokers for fresh cluster metadata now.

    Touches `consumer._client.force_metadata_update` (the consumer's `AIOKafkaClient`): a
    consumer without a group subscription never refreshes metadata by itself, so a reader that
    waits for a topic's partitions to appear would otherwise wait for the periodic refresh.
    """
    await consumer._client.force_metadata_update()
