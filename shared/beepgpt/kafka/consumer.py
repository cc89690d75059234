"""Consumers in groups with manual commits: a service commits only what it has fully handled."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer

from beepgpt.settings import KafkaSettings


def make_consumer(
    settings: KafkaSettings, group_id: str | None, *topics: str, **overrides: Any
) -> AIOKafkaConsumer:
    """A consumer that starts at the oldest record of a new group and never auto-commits."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": settings.session_timeout_ms,
        "heartbeat_interval_ms": settings.heartbeat_interval_ms,
        "request_timeout_ms": max(settings.request_timeout_ms, settings.session_timeout_ms + 5_000),
        "max_partition_fetch_bytes": max(settings.max_request_size, 1_048_576),
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)
