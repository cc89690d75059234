"""Quoted messages as they are now, through the running notifier, the broker, Redis and the
stand-in: a message deleted or edited while its alert waited for a digest is drawn as it is now,
and a DM already sent is updated in place (`chat.update`) when a message it quotes changes."""

from __future__ import annotations

import asyncio
import json
import time

from notifier_helpers import FakeClock, candidate, decisions, opted_in, publish

from beepgpt.contracts import SlackMessage
from beepgpt.kafka import EventProducer
from beepgpt.redis_client import redis_client
from beepgpt.settings import KafkaSettings, RedisSettings, SlackSettings
from beepgpt.topics import SLACK_MESSAGES
from devstack.slack_standin import SlackStandin
from notifier.corrections import Change, Corrections, corrected
from notifier.service import Notifier
from notifier.settings import NotifierSettings

BOB = "U0BOB"
ASKED = "1700000000.000100"  # the helpers' first preview line: "shall we pick … Kafka or Pulsar?"
ANSWERED = "1700000100.000200"  # the second: "… Kafka, ADR: …"


async def change(kafka: KafkaSettings, *messages: SlackMessage) -> None:
    async with EventProducer(kafka, "test") as producer:
        for message in messages:
            await (await producer.send_soon(SLACK_MESSAGES, message.channel, message))


async def until_recorded(redis: RedisSettings, ts: str, timeout: float = 30.0) -> None:
    """Until the notifier's corrections consumer has stored the change of (C0PROJECT, ts)."""
    client = redis_client(redis)
    store = Corrections(client, redis.key_prefix, change_ttl_s=60, sent_ttl_s=60)
    deadline = time.monotonic() + timeout
    try:
        while not await client.exists(store.change_key(("C0PROJECT", ts))):
            assert time.monotonic() < deadline, f"the change of {ts} was not recorded"
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()


def test_a_deleted_line_goes_and_an_edited_one_shows_its_new_text() -> None:
    alert = candidate(BOB)
    now = corrected(
        alert,
        {("C0PROJECT", ASKED): Change(deleted=True), ("C0PROJECT", ANSWERED): Change(text="Pulsar after all")},
    )
    assert [(line.ts, line.text) for line in now.preview] == [(ANSWERED, "Pulsar after all")]
    assert corrected(alert, {("C0OTHER", ASKED): Change(deleted=True)}) is alert  # another channel's


async def test_a_digest_quotes_the_conversation_as_it_is_now(
    kafka_topics: KafkaSettings,
    redis_settings: RedisSettings,
    slack_settings: SlackSettings,
    notifier_settings: NotifierSettings,
    standin: SlackStandin,
) -> None:
    clock = FakeClock(1_709_679_600.0)  # 23:00 UTC, inside Bob's quiet hours
    await publish(kafka_topics, [opted_in(BOB, quiet_hours={"start": "22:00", "end": "07:00", "tz": "UTC"})])
    await publish(kafka_topics, [candidate(BOB), candidate(BOB, "C0PROJECT:1700000500.000100")])
    notifier = Notifier(kafka_topics, redis_settings, slack_settings, notifier_settings, clock=clock)
    await notifier.start()
    try:
        assert [d.outcome for d in await decisions(kafka_topics, 2)] == ["held", "held"]
        await change(
            kafka_topics,
            SlackMessage(channel="C0PROJECT", ts=ASKED, action="deleted"),
            SlackMessage(channel="C0PROJECT", ts=ANSWERED, action="edited", text="Pulsar after all", user="U0CAROL"),
        )
        await until_recorded(redis_settings, ASKED)
        await until_recorded(redis_settings, ANSWERED)
        clock.advance(8 * 3600 + 60)  # 07:01
        assert await notifier.digests.sweep() == 1
        await decisions(kafka_topics, 4)
    finally:
        await notifier.stop()
    [digest] = standin.recorder.find_posts(method="chat.postMessage")
    drawn = json.dumps(digest.blocks)
    assert "Kafka or Pulsar" not in drawn  # deleted while held: never quoted
    assert "Pulsar after all" in drawn
    assert "ADR" not in drawn  # the edit replaced the text


async def test_a_sent_dm_is_updated_when_a_message_it_quotes_is_deleted(
    kafka_topics: KafkaSettings,
    redis_settings: RedisSettings,
    slack_settings: SlackSettings,
    notifier_settings: NotifierSettings,
    standin: SlackStandin,
) -> None:
    await publish(kafka_topics, [opted_in(BOB), candidate(BOB)])
    notifier = Notifier(kafka_topics, redis_settings, slack_settings, notifier_settings)
    await notifier.start()
    try:
        [sent] = await decisions(kafka_topics, 1)
        assert sent.outcome == "sent"
        [post] = await standin.wait_for_posts(1, method="chat.postMessage")
        assert "Kafka or Pulsar" in json.dumps(post.blocks)
        await change(kafka_topics, SlackMessage(channel="C0PROJECT", ts=ASKED, action="deleted"))
        [update] = await standin.wait_for_posts(1, timeout=30, method="chat.update")
    finally:
        await notifier.stop()
    assert (update.channel, update.ts) == (sent.dm_channel, sent.dm_ts)
    assert "Kafka or Pulsar" not in json.dumps(update.blocks)
    assert "ADR" in json.dumps(update.blocks)  # the rest of the quote stays
    assert standin.call_count("chat.postMessage") == 1  # corrected in place, not sent again
