"""Consumers in groups with manual commits: a service commits only what it has fully handled."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError
from aiokafka.structs import OffsetAndMetadata

from beepgpt.kafka.clients import new_consumer
from beepgpt.observability.metrics import CONSUMER_LAG
from beepgpt.settings import KafkaSettings
from beepgpt.shims.aiokafka import fetch_committed_offsets


def make_consumer(
    settings: KafkaSettings, group_id: str | None, *topics: str, **overrides: Any
) -> AIOKafkaConsumer:
    """A consumer that starts at the oldest record of a new group and never auto-commits."""
    options: dict[str, Any] = {
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": settings.session_timeout_ms,
        "heartbeat_interval_ms": settings.heartbeat_interval_ms,
        "request_timeout_ms": max(settings.request_timeout_ms, settings.session_timeout_ms + 5_000),
        "max_partition_fetch_bytes": max(settings.max_request_size, 1_048_576),
        "fetch_max_wait_ms": settings.fetch_max_wait_ms,
    }
    options.update(overrides)
    return new_consumer(settings, *topics, **options)


async def report_lag(consumer: AIOKafkaConsumer, service: str) -> None:
    """Set `beepgpt_kafka_consumer_lag` for every partition the consumer holds: the partition's
    end (as of the last fetch) minus the consumer's position.

    Call it after every poll, empty ones too: a gauge set only when records arrive would keep
    showing the last backlog of a consumer that has long caught up. A partition whose position
    is not known yet (just assigned, offset being looked up) is skipped rather than waited for.
    """
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        if highwater is None:
            continue
        try:
            position = await asyncio.wait_for(consumer.position(tp), 0.05)
        except (TimeoutError, IllegalStateError):
            continue
        CONSUMER_LAG.labels(tp.topic, str(tp.partition), service).set(max(0, highwater - position))


async def committed_with_metadata(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
) -> dict[TopicPartition, OffsetAndMetadata]:
    """The group's committed offsets *with their metadata*, for the partitions that have one.

    aiokafka's public `committed()` returns the offset alone, one partition per request; a
    service that keeps state in the commit metadata (the sessionizer's replay marks) needs the
    coordinator's call, fenced in `beepgpt.shims.aiokafka`.
    """
    return await fetch_committed_offsets(consumer, partitions)
