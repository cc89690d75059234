"""Dedup claims (real Redis) and the publisher's behaviour when Redis goes away and comes back."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from ingest_helpers import read_values
from prometheus_client import REGISTRY

from beepgpt.contracts import SlackMessage
from beepgpt.kafka import EventProducer, make_headers
from beepgpt.settings import KafkaSettings, RedisSettings
from beepgpt.topics import SLACK_MESSAGES
from devstack.local_stack import RedisServer
from ingest.dedup import MemoryDedup, RedisDedup
from ingest.publisher import Outgoing, Publisher


async def test_redis_claims_first_wins_and_a_retried_claim_stays_ours(redis_settings: RedisSettings) -> None:
    dedup = RedisDedup(redis_settings, ttl_s=120)
    try:
        assert await dedup.claim([("Ev1", "a:1"), ("Ev1", "b:1"), ("Ev2", "a:2")]) == [True, False, True]
        # the same claim again (its reply was lost) is still ours; anyone else's is a duplicate
        assert await dedup.claim([("Ev1", "a:1"), ("Ev1", "c:9")]) == [True, False]
        client = aioredis.Redis.from_url(redis_settings.url)
        ttl = await client.ttl(f"{redis_settings.key_prefix}ingest:event:Ev1")
        await client.aclose()
        assert 0 < ttl <= 120
    finally:
        await dedup.close()


async def test_memory_claims_expire_and_stay_bounded() -> None:
    now = [0.0]
    dedup = MemoryDedup(ttl_s=10, max_entries=2, clock=lambda: now[0])
    assert await dedup.claim([("Ev1", "t1"), ("Ev1", "t2"), ("Ev1", "t1")]) == [True, False, True]
    now[0] = 11.0
    assert await dedup.claim([("Ev1", "t3")]) == [True]  # expired: Slack stopped retrying long ago
    assert await dedup.claim([("Ev2", "t4"), ("Ev3", "t5")]) == [True, True]
    assert await dedup.claim([("Ev1", "t6")]) == [True]  # evicted by the bound


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
