"""Reading a whole topic from the beginning without joining a group: for tests, demo and bench."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from beepgpt.settings import KafkaSettings


async def read_topic(
    settings: KafkaSettings,
    topic: str,
    *,
    count: int | None = None,
    timeout: float = 30.0,
    idle: float = 0.0,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Records of every partition of `topic`, oldest first per partition.

    With `count`, waits until that many records arrived (TimeoutError if they do not within
    `timeout`), then keeps reading for `idle` seconds so a test can see that nothing more (no
    duplicate) follows. Without `count`, reads up to the partitions' current end offsets.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    try:
        partitions = await _partitions(consumer, topic, timeout)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: list[ConsumerRecord[bytes, bytes]] = []
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout

        async def done() -> bool:
            if count is None:
                return all([await consumer.position(tp) >= end for tp, end in ends.items()])
            return len(records) >= count

        while not await done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"read {len(records)} of {count} records from {topic}")
            batch = await consumer.getmany(timeout_ms=int(min(remaining, 0.5) * 1000))
            for tp_records in batch.values():
                records.extend(tp_records)
        idle_until = time.monotonic() + idle
        while (remaining := idle_until - time.monotonic()) > 0:
            batch = await consumer.getmany(timeout_ms=int(remaining * 1000))
            for tp_records in batch.values():
                records.extend(tp_records)
        return records
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str, timeout: float) -> list[TopicPartition]:
    deadline = time.monotonic() + timeout
    while True:
        found: Any = consumer.partitions_for_topic(topic)
        if found:
            return [TopicPartition(topic, p) for p in sorted(found)]
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {topic} has no partitions")
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.1)
