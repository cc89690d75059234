"""Creating topics explicitly: a topic that is only referenced gets whatever the broker defaults to."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from beepgpt.kafka.clients import new_admin
from beepgpt.settings import KafkaSettings
from beepgpt.topics import Topic

log = logging.getLogger(__name__)


async def ensure_topics(
    settings: KafkaSettings, topics: Iterable[Topic], *, with_dlq: bool = True
) -> list[str]:
    """Create missing topics (and their dead-letter topics) with the configured partitioning.

    Returns the names it created. Safe to call from every instance at start-up: a topic that
    already exists is left as it is.
    """
    wanted: dict[str, NewTopic] = {}
    for topic in topics:
        configs = {"cleanup.policy": "compact"} if topic.compacted else {}
        wanted[topic.name] = NewTopic(
            topic.name, settings.partitions, settings.replication_factor, topic_configs=configs
        )
        if with_dlq:
            wanted[topic.dlq] = NewTopic(topic.dlq, settings.partitions, settings.replication_factor)
    admin = new_admin(settings, request_timeout_ms=settings.request_timeout_ms)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [new for name, new in wanted.items() if name not in existing]
        created: list[str] = []
        for new in missing:  # one by one: a concurrent creator makes only its own call fail
            try:
                await admin.create_topics([new])
                created.append(new.name)
            except TopicAlreadyExistsError:
                pass
        if created:
            log.info("created topics", extra={"topics": created})
        return created
    finally:
        await admin.close()
