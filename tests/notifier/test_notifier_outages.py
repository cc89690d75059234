"""Crashes and outages: Redis going away mid-batch, an instance dying after its post, a live
instance still sending. Nothing is lost and no DM is sent twice."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from notifier_helpers import FakeClock, candidate, decisions, opted_in, posted_alerts, publish, wait_until
from slack_sdk.web.async_client import AsyncWebClient
from test_notifier_service import ALICE, BOB, CAROL, DAVE, running

from beepgpt.settings import KafkaSettings, RedisSettings, SlackSettings
from beepgpt.topics import CANDIDATES
from devstack.local_stack import RedisServer
from devstack.slack_standin import SlackStandin
from devstack.topic_reader import read_topic
from notifier.dedup import ClaimState, DedupStore, Finish, conversation_marker, record_id
from notifier.delivery import Delivery
from notifier.directory import Directory
from notifier.held import HeldAlert, HeldAlerts
from notifier.settings import NotifierSettings
from notifier.slack_sender import SlackSender


@pytest_asyncio.fixture
async def private_redis() -> AsyncIterator[RedisServer]:
    server = RedisServer.start()
    try:
        yield server
    finally:
        server.stop()


async def test_redis_stopped_and_restarted_mid_stream_loses_nothing_and_sends_nothing_twice(
    kafka_topics: KafkaSettings,
    slack_settings: SlackSettings,
    notifier_settings: NotifierSettings,
    standin: SlackStandin,
    private_redis: RedisServer,
) -> None:
    users = [ALICE, BOB, CAROL, DAVE]
    redis = RedisSettings(url=private_redis.url, key_prefix="outage:")
    before = [candidate(u, f"C0PROJECT:{i}.1") for i in range(3) for u in users]
    during = [candidate(u, f"C0GENERAL:{i}.2") for i in range(3) for u in users]
    await publish(kafka_topics, [opted_in(u) for u in users])
    # The first post is slow: Redis goes away while the batch is still sending.
    standin.faults.add("chat.postMessage", delay=3.0, times=1)
    await publish(kafka_topics, before + before[:4])
    server = private_redis
    async with running(kafka_topics, redis, slack_settings, notifier_settings) as notifier:
        await standin.wait_for_calls("chat.postMessage", 1, timeout=30)
        server.stop()
        await wait_until(lambda: not notifier.ready, what="the notifier noticing Redis is gone")
        await publish(kafka_topics, during + during)
        server = RedisServer.start(port=private_redis.port)
        try:
            await wait_until(lambda: notifier.ready, what="the notifier resuming")
            found = await decisions(kafka_topics, 16 + 24, idle=1.0)
            assert notifier.redone_batches >= 1  # the outage did hit a batch in flight
        finally:
            server.stop()
    assert len(found) == 40
    sent = Counter((d.user, d.conversation_id) for d in found if d.outcome == "sent")
    assert len(sent) == 24
    assert set(sent.values()) == {1}
    assert Counter(d.outcome for d in found) == {"sent": 24, "deduplicated": 16}
    alerts = posted_alerts(standin)
    assert len(alerts) == 24
    assert len(set(alerts)) == 24


async def test_a_redis_that_turns_read_only_is_an_outage_waited_out(
    kafka_topics: KafkaSettings,
    slack_settings: SlackSettings,
    notifier_settings: NotifierSettings,
    standin: SlackStandin,
    private_redis: RedisServer,
) -> None:
    """A failover makes the old primary a replica for a while: it answers PING but refuses every
    write with READONLY. The notifier waits (not ready, nothing decided) instead of ending or
    spinning, and once writes work again every candidate is decided once."""
    users = [ALICE, BOB, CAROL, DAVE]
    redis = RedisSettings(url=private_redis.url, key_prefix="readonly:")
    # three conversations a person: within the daily budget, so each is sent (or it is a bug)
    before = [candidate(u, f"C0PROJECT:{i}.1") for i in range(1) for u in users]
    during = [candidate(u, f"C0GENERAL:{i}.2") for i in range(2) for u in users]
    await publish(kafka_topics, [opted_in(u) for u in users])
    admin = aioredis.Redis.from_url(private_redis.url)
    try:
        async with running(kafka_topics, redis, slack_settings, notifier_settings) as notifier:
            await publish(kafka_topics, before)
            await decisions(kafka_topics, len(before), idle=0.5)
            # a replica of a primary that is not there (yet): reads work, writes get READONLY
            await admin.execute_command("REPLICAOF", "127.0.0.1", "1")
            await publish(kafka_topics, during)
            await wait_until(lambda: not notifier.ready, what="the notifier noticing Redis refuses writes")
            assert not notifier.runtime.stopping
            await admin.execute_command("REPLICAOF", "NO", "ONE")
            await wait_until(lambda: notifier.ready, what="the notifier resuming")
            found = await decisions(kafka_topics, len(before) + len(during), idle=1.0)
    finally:
        await admin.aclose()
    assert len(found) == len(before) + len(during)
    assert Counter(d.outcome for d in found) == {"sent": len(before) + len(during)}
    assert len(set(posted_alerts(standin))) == len(before) + len(during)


@pytest.mark.parametrize("had_posted", [True, False])
async def test_an_instance_that_died_mid_send_is_taken_over_without_a_second_dm(
    kafka_topics: KafkaSettings,
    redis_settings: RedisSettings,
    slack_settings: SlackSettings,
    notifier_settings: NotifierSettings,
    standin: SlackStandin,
    had_posted: bool,
) -> None:
    alert = candidate(BOB)
    await publish(kafka_topics, [opted_in(BOB), alert])
    record = (await read_topic(kafka_topics, CANDIDATES.name, count=1))[0]
    rid = record_id(notifier_settings.group_id, record.topic, record.partition, record.offset)
    client = aioredis.Redis.from_url(redis_settings.url)
    try:
        # The dead instance took the claim (and maybe posted) but never recorded the outcome.
        dedup = DedupStore(client, redis_settings.key_prefix, 3600)
        await dedup.claim_many([(BOB, alert.conversation_id, ClaimState("claim", rid, owner="dead"))])
        earlier = None
        if had_posted:
            web = AsyncWebClient(token=standin.bot_token, base_url=standin.api_url, retry_handlers=[])
            sender = SlackSender(web, notifier_settings)
            delivery = Delivery(sender, Directory(sender, 60))
            earlier, _ = await delivery.alert(alert, conversation_marker(BOB, alert.conversation_id))
        async with running(kafka_topics, redis_settings, slack_settings, notifier_settings):
            found = await decisions(kafka_topics, 1, idle=0.5)
    finally:
        await client.aclose()
    assert [d.outcome for d in found] == ["sent"]
    assert len(posted_alerts(standin)) == 1
    if earlier is not None:
        assert found[0].dm_ts == earlier.ts


async def test_a_live_instance_still_sending_is_waited_for(
    kafka_topics: KafkaSettings,
    redis_settings: RedisSettings,
    slack_settings: SlackSettings,
    notifier_settings: NotifierSettings,
    standin: SlackStandin,
) -> None:
    alert = candidate(BOB)
    await publish(kafka_topics, [opted_in(BOB), alert])
    record = (await read_topic(kafka_topics, CANDIDATES.name, count=1))[0]
    rid = record_id(notifier_settings.group_id, record.topic, record.partition, record.offset)
    client = aioredis.Redis.from_url(redis_settings.url)
    try:
        dedup = DedupStore(client, redis_settings.key_prefix, 3600)
        await dedup.heartbeat("busy", 60)
        await dedup.claim_many([(BOB, alert.conversation_id, ClaimState("claim", rid, owner="busy"))])
        async with running(kafka_topics, redis_settings, slack_settings, notifier_settings) as notifier:
            # Nothing is decided while the other instance holds the claim; then it finishes.
            await wait_until(lambda: notifier.owner_waits >= 1, what="the notifier waiting")
            done = ClaimState("done", rid, outcome="sent", dm_channel="D0BOB", dm_ts="1700000000.000001")
            await dedup.finish_many([Finish(BOB, alert.conversation_id, done)])
            found = await decisions(kafka_topics, 1, idle=0.5)
    finally:
        await client.aclose()
    assert [(d.outcome, d.dm_ts) for d in found] == [("sent", "1700000000.000001")]
    assert posted_alerts(standin) == []


async def test_an_alert_slack_keeps_refusing_waits_for_the_retry_sweep(
    kafka_topics: KafkaSettings,
    redis_settings: RedisSettings,
    slack_settings: SlackSettings,
    notifier_settings: NotifierSettings,
    standin: SlackStandin,
) -> None:
    clock = FakeClock()
    settings = notifier_settings.model_copy(update={"max_attempts": 2})
    outage = standin.faults.add("chat.postMessage", status=502, times=None)
    await publish(kafka_topics, [opted_in(BOB), candidate(BOB)])
    async with running(kafka_topics, redis_settings, slack_settings, settings, clock) as notifier:
        held = await decisions(kafka_topics, 1)
        assert [d.outcome for d in held] == ["held"]
        assert "slack unavailable" in held[0].detail
        standin.faults.remove(outage)
        assert await notifier.digests.sweep() == 0  # not due yet
        clock.advance(settings.retry_later_s + 1)
        assert await notifier.digests.sweep() == 1
        found = await decisions(kafka_topics, 2)
    assert [d.outcome for d in found] == ["held", "digest"]
    assert len(posted_alerts(standin)) == 1


@pytest.mark.parametrize("had_posted", [True, False])
async def test_a_digest_interrupted_by_a_crash_is_resumed_without_a_second_dm(
    kafka_topics: KafkaSettings,
    redis_settings: RedisSettings,
    slack_settings: SlackSettings,
    notifier_settings: NotifierSettings,
    standin: SlackStandin,
    had_posted: bool,
) -> None:
    clock = FakeClock()
    client = aioredis.Redis.from_url(redis_settings.url)
    alerts = [candidate(BOB, "C0PROJECT:1.1"), candidate(BOB, "C0GENERAL:2.2")]
    try:
        # A dead instance had taken BOB's held alerts for a digest (and maybe posted it).
        held = HeldAlerts(client, redis_settings.key_prefix)
        await held.hold_many(
            [
                HeldAlert(
                    candidate=c, record=f"r{i}", reason="held", why="paused", due=clock.now, held_at=clock.now
                )
                for i, c in enumerate(alerts)
            ]
        )
        inflight = await held.begin(BOB, "dead-digest", "dead", clock.now)
        assert inflight is not None
        if had_posted:
            web = AsyncWebClient(token=standin.bot_token, base_url=standin.api_url, retry_handlers=[])
            sender = SlackSender(web, notifier_settings)
            entries = [(c, conversation_marker(BOB, c.conversation_id)) for c in alerts]
            await Delivery(sender, Directory(sender, 60)).digest(
                BOB, entries, "dead-digest", "paused", max_items=10
            )
        await publish(kafka_topics, [opted_in(BOB)])
        async with running(
            kafka_topics, redis_settings, slack_settings, notifier_settings, clock
        ) as notifier:
            assert await notifier.digests.sweep() == 1
            assert await notifier.digests.sweep() == 0
            found = await decisions(kafka_topics, 2)
    finally:
        await client.aclose()
    assert sorted(d.outcome for d in found) == ["digest", "digest"]
    assert len(standin.recorder.find_posts(method="chat.postMessage")) == 1
    assert sorted(c for _, c in posted_alerts(standin)) == ["C0GENERAL:2.2", "C0PROJECT:1.1"]


async def test_work_queued_for_a_digest_before_a_crash_is_not_also_sent(
    kafka_topics: KafkaSettings,
    redis_settings: RedisSettings,
    slack_settings: SlackSettings,
    notifier_settings: NotifierSettings,
    standin: SlackStandin,
) -> None:
    """The earlier attempt queued the alert (rate limited) but died before recording that."""
    alert = candidate(BOB)
    await publish(kafka_topics, [opted_in(BOB), alert])
    record = (await read_topic(kafka_topics, CANDIDATES.name, count=1))[0]
    rid = record_id(notifier_settings.group_id, record.topic, record.partition, record.offset)
    client = aioredis.Redis.from_url(redis_settings.url)
    try:
        dedup = DedupStore(client, redis_settings.key_prefix, 3600)
        await dedup.claim_many([(BOB, alert.conversation_id, ClaimState("claim", rid, owner="dead"))])
        # Due far in the future: the sweep must not deliver it while this test looks at the redo.
        queued = HeldAlert(
            candidate=alert, record=rid, reason="rate_limited", why="rate limit", due=1e12, held_at=0
        )
        await HeldAlerts(client, redis_settings.key_prefix).hold_many([queued])
        async with running(kafka_topics, redis_settings, slack_settings, notifier_settings):
            found = await decisions(kafka_topics, 1, idle=0.5)
    finally:
        await client.aclose()
    assert [d.outcome for d in found] == ["rate_limited"]
    assert posted_alerts(standin) == []
