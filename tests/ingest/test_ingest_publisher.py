"""Dedup marks (real Redis), and the publisher when Redis or Kafka go away and come back or a
publisher dies with events in flight."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from ingest_helpers import counter, read_values
from prometheus_client import REGISTRY

from beepgpt.contracts import SlackMessage
from beepgpt.kafka import EventProducer, make_headers
from beepgpt.settings import KafkaSettings, RedisSettings
from beepgpt.topics import SLACK_MESSAGES
from devstack.local_stack import Broker, RedisServer
from devstack.topic_reader import read_topic
from ingest.dedup import MemoryDedup, RedisDedup
from ingest.publisher import Outgoing, Publisher


async def test_redis_marks_what_was_published_and_forgets_after_the_ttl(
    redis_settings: RedisSettings,
) -> None:
    dedup = RedisDedup(redis_settings, ttl_s=120)
    try:
        assert await dedup.published(["Ev1", "Ev2"]) == [False, False]  # checking marks nothing
        assert await dedup.published(["Ev1"]) == [False]
        await dedup.mark_published(["Ev1"])
        await dedup.mark_published(["Ev1"])  # idempotent: a retried mark is harmless
        assert await dedup.published(["Ev1", "Ev2", "Ev1"]) == [True, False, True]
        client = aioredis.Redis.from_url(redis_settings.url)
        ttl = await client.ttl(f"{redis_settings.key_prefix}ingest:published:Ev1")
        await client.aclose()
        assert 0 < ttl <= 120
    finally:
        await dedup.close()


async def test_memory_marks_expire_and_stay_bounded() -> None:
    now = [0.0]
    dedup = MemoryDedup(ttl_s=10, max_entries=2, clock=lambda: now[0])
    assert await dedup.published(["Ev1"]) == [False]
    await dedup.mark_published(["Ev1"])
    assert await dedup.published(["Ev1", "Ev2"]) == [True, False]
    now[0] = 11.0
    assert await dedup.published(["Ev1"]) == [False]  # expired: Slack stopped retrying long ago
    await dedup.mark_published(["Ev1", "Ev2", "Ev3"])
    assert await dedup.published(["Ev1", "Ev2", "Ev3"]) == [False, True, True]  # evicted by the bound


def message(text: str) -> SlackMessage:
    return SlackMessage(channel="C0GENERAL", ts="1690400000.000100", user="U0ALICE", text=text)


def outgoing(text: str, event_id: str) -> Outgoing:
    return Outgoing(
        SLACK_MESSAGES.name,
        "C0GENERAL",
        message(text),
        make_headers("ingest"),
        event_id=event_id,
        reason="message.new",
    )


async def test_redis_outage_holds_events_in_the_buffer_and_loses_nothing(kafka_topics: KafkaSettings) -> None:
    server = await asyncio.to_thread(RedisServer.start)
    port = server.port
    settings = RedisSettings(url=server.url, key_prefix="outage:")
    producer = EventProducer(kafka_topics, "ingest")
    await producer.start()
    dedup = RedisDedup(settings, ttl_s=60)
    publisher = Publisher(producer, dedup, capacity=10, backoff_max_s=0.05)
    await publisher.start()
    retries = REGISTRY.get_sample_value("beepgpt_ingest_publish_retries_total", {"cause": "redis"}) or 0.0
    try:
        assert publisher.offer(outgoing("before", "EvBefore"))
        await publisher.wait_idle(timeout=30)

        await asyncio.to_thread(server.stop)
        for item in (
            outgoing("during", "EvDuring"),
            outgoing("during", "EvDuring"),
            outgoing("also", "EvAlso"),
        ):
            assert publisher.offer(item)  # acks stay instant: the buffer takes them
        server = await asyncio.to_thread(RedisServer.start, port)  # the worker fails claims meanwhile
        await publisher.wait_idle(timeout=30)
        assert publisher.healthy
        records = await read_values(kafka_topics, 3)
    finally:
        await publisher.stop(10)
        await producer.stop()
        await dedup.close()
        await asyncio.to_thread(server.stop)

    assert [SLACK_MESSAGES.decode(r.value).text for r in records] == ["before", "during", "also"]
    after = REGISTRY.get_sample_value("beepgpt_ingest_publish_retries_total", {"cause": "redis"}) or 0.0
    assert after > retries


async def test_an_event_lost_in_flight_is_published_by_its_redelivery(
    kafka_topics: KafkaSettings, redis_settings: RedisSettings, broker: Broker
) -> None:
    """The process taking an event dies before Kafka acknowledged it (and so before Slack got an
    ack): nothing may remember the event_id as seen, or Slack's redelivery would be dropped."""
    dedup = RedisDedup(redis_settings, ttl_s=60)
    first_producer = EventProducer(kafka_topics, "ingest")
    await first_producer.start()
    first = Publisher(first_producer, dedup, capacity=10, backoff_max_s=0.05, ack_budget_s=2.9)
    await first.start()
    try:
        broker.pause()
        try:
            original = outgoing("first attempt", "EvLost")
            assert first.offer(original)
            assert await first.stop(timeout=0.5) == 1  # stands in for the kill: Kafka never acked it
            assert await first.wait(original) == "lost"  # a listener still waiting refuses it
            assert await dedup.published(["EvLost"]) == [False]
        finally:
            broker.resume()

        producer = EventProducer(kafka_topics, "ingest")
        await producer.start()
        second = Publisher(producer, dedup, capacity=10)
        await second.start()
        try:
            redelivery = outgoing("redelivery", "EvLost")
            assert second.offer(redelivery)
            assert await second.wait(redelivery) == "durable"
            assert await dedup.published(["EvLost"]) == [True]
            # and once it is published, a further retry is a duplicate that still gets its ack
            retry = outgoing("retry", "EvLost")
            assert second.offer(retry)
            assert await second.wait(retry) == "durable"
            marker = outgoing("marker", "EvMarker")  # same channel, so the same partition
            assert second.offer(marker)
            await second.wait_idle(timeout=30)
        finally:
            await second.stop(10)
            await producer.stop()
    finally:
        await first_producer.stop()  # may still flush the orphaned first attempt: a harmless duplicate
        await dedup.close()
    texts = [SLACK_MESSAGES.decode(r.value).text for r in await read_topic(kafka_topics, SLACK_MESSAGES.name)]
    assert "redelivery" in texts
    assert "retry" not in texts
    assert "marker" in texts


async def test_a_redelivery_of_an_event_in_flight_joins_it_and_acks_past_the_budget_are_counted(
    kafka_topics: KafkaSettings, broker: Broker
) -> None:
    producer = EventProducer(kafka_topics, "ingest")
    await producer.start()
    publisher = Publisher(producer, MemoryDedup(60, 100), capacity=10, backoff_max_s=0.05, ack_budget_s=0.1)
    await publisher.start()
    duplicates = counter("duplicate", "message.new")
    try:
        broker.pause()
        try:
            original = outgoing("slow broker", "EvSlow")
            copy = outgoing("slow broker", "EvSlow")
            assert publisher.offer(original)
            assert publisher.offer(copy)
            assert publisher.depth == 1  # the copy takes no room
            assert await publisher.wait(original) == "buffered"
            assert await publisher.wait(copy) == "buffered"
            assert publisher.acked_early == 1
            assert REGISTRY.get_sample_value("beepgpt_ingest_buffer_acked") == 1
        finally:
            broker.resume()
        await publisher.wait_idle(timeout=30)
        assert publisher.acked_early == 0
        records = await read_values(kafka_topics, 1)
    finally:
        await publisher.stop(10)
        await producer.stop()
    assert [SLACK_MESSAGES.decode(r.value).text for r in records] == ["slow broker"]
    assert counter("duplicate", "message.new") == duplicates + 1
