"""Ingest services running in the test's event loop against the real broker, Redis and the Slack stand-in."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from ingest_helpers import StartIngest, slack_settings

from beepgpt.kafka import EventProducer
from beepgpt.settings import KafkaSettings, RedisSettings, ServiceSettings
from devstack.slack_standin import SlackStandin
from ingest.dedup import MemoryDedup
from ingest.publisher import Publisher
from ingest.service import IngestService
from ingest.settings import IngestSettings


@pytest_asyncio.fixture
async def slack() -> AsyncIterator[SlackStandin]:
    async with SlackStandin() as standin:
        yield standin


@pytest.fixture
def start_ingest(
    kafka_topics: KafkaSettings, redis_settings: RedisSettings, slack: SlackStandin
) -> StartIngest:
    """`async with start_ingest(mode="http", buffer_size=10) as service:` — stopped (drained) after."""

    @contextlib.asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[IngestService]:
        settings = IngestSettings(http_host="127.0.0.1", http_port=0, **overrides)
        service = IngestService(
            ingest=settings,
            kafka=kafka_topics,
            slack=slack_settings(slack),
            redis=redis_settings,
            service=ServiceSettings(http_host="127.0.0.1", http_port=0, shutdown_timeout_s=20),
        )
        await service.start()
        try:
            if settings.mode == "socket":
                await slack.wait_for_socket(1)
            yield service
        finally:
            await service.stop()

    return start


@pytest_asyncio.fixture
async def publisher(kafka_topics: KafkaSettings) -> AsyncIterator[Publisher]:
    """A real publisher on the test broker, for tests that run the Bolt app without the service."""
    producer = EventProducer(kafka_topics, "ingest")
    await producer.start()
    publisher = Publisher(producer, MemoryDedup(ttl_s=60, max_entries=100), capacity=100)
    await publisher.start()
    try:
        yield publisher
    finally:
        assert await publisher.stop(10.0) == 0
        await producer.stop()
