"""The notifier end to end: real broker, real Redis, the Slack stand-in, nothing faked."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from zoneinfo import ZoneInfo

from notifier_helpers import FakeClock, candidate, decisions, opted_in, publish
from prometheus_client import REGISTRY

from beepgpt.contracts import Notification
from beepgpt.kafka import EventProducer, header
from beepgpt.settings import KafkaSettings, RedisSettings, SlackSettings
from beepgpt.topics import CANDIDATES
from devstack.slack_standin import SlackStandin
from devstack.topic_reader import read_topic
from notifier.service import Notifier
from notifier.settings import NotifierSettings

ALICE, BOB, CAROL, DAVE = "U0ALICE", "U0BOB", "U0CAROL", "U0DAVE"
PARIS = ZoneInfo("Europe/Paris")


def paris(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=PARIS).timestamp()


@asynccontextmanager
async def running(
    kafka: KafkaSettings,
    redis: RedisSettings,
    slack: SlackSettings,
    settings: NotifierSettings,
    clock: Callable[[], float] | None = None,
) -> AsyncIterator[Notifier]:
    notifier = Notifier(kafka, redis, slack, settings, **({"clock": clock} if clock else {}))
    await notifier.start()
    try:
        yield notifier
    finally:
        await notifier.stop()


def dms(standin: SlackStandin) -> list[str]:
    return [p.channel or "" for p in standin.recorder.find_posts(method="chat.postMessage")]


async def test_one_candidate_becomes_one_readable_dm(
    kafka_topics: KafkaSettings,
    redis_settings: RedisSettings,
    slack_settings: SlackSettings,
    notifier_settings: NotifierSettings,
    standin: SlackStandin,
) -> None:
    await publish(kafka_topics, [opted_in(BOB), candidate(BOB), candidate(DAVE)])
    async with running(kafka_topics, redis_settings, slack_settings, notifier_settings):
        found = await decisions(kafka_topics, 2)
        posts = await standin.wait_for_posts(1, method="chat.postMessage")
    outcomes = {d.user: d.outcome for d in found}
    assert outcomes == {BOB: "sent", DAVE: "not_opted_in"}
    post = posts[0]
    assert post.channel
    assert post.channel.startswith("D")
    text = post.block_text
    assert "#project" in text
    assert "@alice" in text
    assert "@carol" in text
    assert "<@" not in text
    assert "streaming decisions" in text
    sent = next(d for d in found if d.outcome == "sent")
    assert sent.dm_ts == post.ts
    assert sent.dm_channel == post.channel


async def test_the_same_candidate_three_times_and_by_two_instances_gives_one_dm(
    kafka_topics: KafkaSettings,
    redis_settings: RedisSettings,
    slack_settings: SlackSettings,
    notifier_settings: NotifierSettings,
    standin: SlackStandin,
) -> None:
    """Two instances share a group (partitions split between them) and a third reads the same
    topic in another group, as a second deployment would: 6 records, 3 readers, 2 DMs."""
    shadow = notifier_settings.model_copy(update={"group_id": "notifier-shadow"})
    await publish(kafka_topics, [opted_in(BOB), opted_in(CAROL)])
    async with (
        running(kafka_topics, redis_settings, slack_settings, notifier_settings),
        running(kafka_topics, redis_settings, slack_settings, notifier_settings),
        running(kafka_topics, redis_settings, slack_settings, shadow),
    ):
        await publish(kafka_topics, [candidate(BOB), candidate(CAROL)] * 3)
        found = await decisions(kafka_topics, 12, idle=1.0)
    assert len(found) == 12
    assert Counter(d.outcome for d in found) == {"sent": 2, "deduplicated": 10}
    channels = dms(standin)
    assert len(channels) == 2
    assert len(set(channels)) == 2


async def test_a_thread_and_the_channel_conversation_its_parent_opened_give_one_dm(
    kafka_topics: KafkaSettings,
    redis_settings: RedisSettings,
    slack_settings: SlackSettings,
    notifier_settings: NotifierSettings,
    standin: SlackStandin,
) -> None:
    """Live, a thread's parent first opens a channel conversation, then the thread starts with it:
    one DM about that opening message. A thread under a later message is news of its own."""
    opened = "C0PROJECT:1700000000.000100"
    await publish(
        kafka_topics,
        [
            opted_in(BOB),
            candidate(BOB, opened),
            candidate(BOB, f"{opened}/thread"),
            candidate(BOB, "C0PROJECT:1700000100.000200/thread"),
        ],
    )
    async with running(kafka_topics, redis_settings, slack_settings, notifier_settings):
        found = await decisions(kafka_topics, 3)
    assert [(d.conversation_id, d.outcome) for d in found] == [
        (opened, "sent"),
        (f"{opened}/thread", "deduplicated"),
        ("C0PROJECT:1700000100.000200/thread", "sent"),
    ]
    assert len(dms(standin)) == 2


async def test_a_429_storm_delays_but_loses_and_duplicates_nothing(
    kafka_topics: KafkaSettings,
    redis_settings: RedisSettings,
    slack_settings: SlackSettings,
    notifier_settings: NotifierSettings,
    standin: SlackStandin,
) -> None:
    users = [ALICE, BOB, CAROL, DAVE]
    conversations = [f"C0PROJECT:17000000{i:02d}.000100" for i in range(3)]
    standin.faults.rate_limit("chat.postMessage", times=8, retry_after=1)
    standin.faults.add("chat.postMessage", status=503, times=3)
    await publish(kafka_topics, [opted_in(u) for u in users])
    await publish(kafka_topics, [candidate(u, c) for u in users for c in conversations])
    async with running(kafka_topics, redis_settings, slack_settings, notifier_settings):
        found = await decisions(kafka_topics, 12, idle=0.5)
    assert Counter(d.outcome for d in found) == {"sent": 12}
    posts = standin.recorder.find_posts(method="chat.postMessage")
    assert len(posts) == 12
    assert len({p.ts for p in posts}) == 12
    assert standin.call_count("chat.postMessage") == 12 + 8 + 3


async def test_quiet_hours_hold_alerts_for_one_digest_when_they_end(
    kafka_topics: KafkaSettings,
    redis_settings: RedisSettings,
    slack_settings: SlackSettings,
    notifier_settings: NotifierSettings,
    standin: SlackStandin,
) -> None:
    clock = FakeClock(1_709_679_600.0)  # 2024-03-05 23:00 UTC
    quiet = {"start": "22:00", "end": "07:00", "tz": "UTC"}
    await publish(kafka_topics, [opted_in(BOB, quiet_hours=quiet), opted_in(CAROL)])
    await publish(
        kafka_topics,
        [candidate(BOB, "C0PROJECT:1.1"), candidate(BOB, "C0GENERAL:2.2"), candidate(CAROL, "C0PROJECT:1.1")],
    )
    async with running(kafka_topics, redis_settings, slack_settings, notifier_settings, clock) as notifier:
        found = await decisions(kafka_topics, 3)
        assert sorted((d.user, d.outcome) for d in found) == [(BOB, "held"), (BOB, "held"), (CAROL, "sent")]
        assert await notifier.digests.sweep() == 0  # still quiet: nothing goes
        clock.advance(8 * 3600 + 60)  # 07:01
        assert await notifier.digests.sweep() == 1
        assert await notifier.digests.sweep() == 0
        found = await decisions(kafka_topics, 5)
    digest = [d for d in found if d.outcome == "digest"]
    assert sorted(d.conversation_id for d in digest) == ["C0GENERAL:2.2", "C0PROJECT:1.1"]
    posts = standin.recorder.find_posts(method="chat.postMessage")
    assert len(posts) == 2
    bob_post = next(p for p in posts if p.ts == digest[0].dm_ts)
    assert "While you were away: 2 conversations" in bob_post.block_text
    assert "quiet hours" in bob_post.block_text


async def test_over_the_rate_limit_alerts_wait_for_a_digest(
    kafka_topics: KafkaSettings,
    redis_settings: RedisSettings,
    slack_settings: SlackSettings,
    notifier_settings: NotifierSettings,
    standin: SlackStandin,
) -> None:
    clock = FakeClock()
    settings = notifier_settings.model_copy(update={"burst": 2, "rate_per_hour": 6})
    await publish(kafka_topics, [opted_in(BOB)])
    await publish(kafka_topics, [candidate(BOB, f"C0PROJECT:{i}.1") for i in range(5)])
    async with running(kafka_topics, redis_settings, slack_settings, settings, clock) as notifier:
        found = await decisions(kafka_topics, 5)
        assert Counter(d.outcome for d in found) == {"sent": 2, "rate_limited": 3}
        assert await notifier.digests.sweep() == 0
        clock.advance(600)  # one token back (6 per hour)
        assert await notifier.digests.sweep() == 1
        found = await decisions(kafka_topics, 8)
    assert Counter(d.outcome for d in found) == {"sent": 2, "rate_limited": 3, "digest": 3}
    assert len(standin.recorder.find_posts(method="chat.postMessage")) == 3


def outcomes_of(user: str, found: list[Notification]) -> list[str]:
    return [d.outcome for d in found if d.user == user]


async def test_over_the_daily_budget_alerts_wait_for_the_persons_digest_time(
    kafka_topics: KafkaSettings,
    redis_settings: RedisSettings,
    slack_settings: SlackSettings,
    notifier_settings: NotifierSettings,
    standin: SlackStandin,
) -> None:
    """Four alert candidates in one morning: with the default budget (3) three DMs come at once and
    the fourth in the 13:00 digest; with a budget of 1, one DM and a digest of three."""
    clock = FakeClock(paris("2024-03-05 10:00"))
    over_before = REGISTRY.get_sample_value("beepgpt_notifier_decisions_total", {"outcome": "over_budget"})
    await publish(
        kafka_topics, [opted_in(BOB, tz="Europe/Paris"), opted_in(CAROL, tz="Europe/Paris", daily_budget=1)]
    )
    await publish(kafka_topics, [candidate(u, f"C0PROJECT:{i}.1") for u in (BOB, CAROL) for i in range(4)])
    async with running(kafka_topics, redis_settings, slack_settings, notifier_settings, clock) as notifier:
        found = await decisions(kafka_topics, 8)
        assert outcomes_of(BOB, found) == ["sent", "sent", "sent", "over_budget"]
        assert outcomes_of(CAROL, found) == ["sent", "over_budget", "over_budget", "over_budget"]
        held = [d for d in found if d.outcome == "over_budget"]
        assert all("over the daily budget" in d.detail and "2024-03-05 12:00 UTC" in d.detail for d in held)
        over_after = REGISTRY.get_sample_value("beepgpt_notifier_decisions_total", {"outcome": "over_budget"})
        assert (over_after or 0.0) - (over_before or 0.0) == 4
        assert len(dms(standin)) == 4
        clock.advance(3 * 3600 - 60)  # 12:59 in Paris: not yet
        assert await notifier.digests.sweep() == 0
        clock.advance(60)  # 13:00
        assert await notifier.digests.sweep() == 2
        assert await notifier.digests.sweep() == 0  # one digest each, with everything held
        found = await decisions(kafka_topics, 12)
    digests = [d for d in found if d.outcome == "digest"]
    assert sorted((d.user, d.conversation_id) for d in digests) == [
        (BOB, "C0PROJECT:3.1"),
        (CAROL, "C0PROJECT:1.1"),
        (CAROL, "C0PROJECT:2.1"),
        (CAROL, "C0PROJECT:3.1"),
    ]
    posts = {p.ts: p for p in standin.recorder.find_posts(method="chat.postMessage")}
    assert len(posts) == 6  # 3 + 1 DMs, then one digest each
    bob = posts[next(d.dm_ts for d in digests if d.user == BOB) or ""]
    assert "Held back: you had your 3 DMs for today" in bob.block_text
    carol = posts[next(d.dm_ts for d in digests if d.user == CAROL) or ""]
    assert "Your digest: 3 conversations" in carol.block_text
    assert "Held back: you had your 1 DM for today" in carol.block_text


async def test_digests_do_not_count_and_each_person_has_their_own_day(
    kafka_topics: KafkaSettings,
    redis_settings: RedisSettings,
    slack_settings: SlackSettings,
    notifier_settings: NotifierSettings,
    standin: SlackStandin,
) -> None:
    """Budget 1 each. Carol's quiet-hours digest leaves her DM of the day untouched. Dave (Paris)
    and Alice (UTC) each have one DM before midnight in Paris; after it, Dave's day is new and
    Alice's (still 23:10 in UTC) is not."""
    clock = FakeClock(paris("2024-03-05 06:00"))
    quiet = {"start": "22:00", "end": "07:00", "tz": "Europe/Paris"}
    await publish(
        kafka_topics,
        [
            opted_in(CAROL, daily_budget=1, quiet_hours=quiet),  # her zone: her quiet hours'
            opted_in(DAVE, daily_budget=1, tz="Europe/Paris"),
            opted_in(ALICE, daily_budget=1, tz="UTC"),
            candidate(CAROL, "C0PROJECT:1.1"),
        ],
    )
    async with running(kafka_topics, redis_settings, slack_settings, notifier_settings, clock) as notifier:
        assert outcomes_of(CAROL, await decisions(kafka_topics, 1)) == ["held"]
        clock.now = paris("2024-03-05 07:00:30")
        assert await notifier.digests.sweep() == 1
        await publish(kafka_topics, [candidate(CAROL, "C0PROJECT:2.2"), candidate(CAROL, "C0PROJECT:3.3")])
        assert outcomes_of(CAROL, await decisions(kafka_topics, 4)) == [
            "held",
            "digest",
            "sent",
            "over_budget",
        ]
        clock.now = paris("2024-03-05 23:50")
        await publish(kafka_topics, [candidate(DAVE, "C0PROJECT:4.4"), candidate(ALICE, "C0PROJECT:4.4")])
        await decisions(kafka_topics, 6)
        clock.now = paris("2024-03-06 00:10")
        await publish(kafka_topics, [candidate(DAVE, "C0PROJECT:5.5"), candidate(ALICE, "C0PROJECT:5.5")])
        found = await decisions(kafka_topics, 8)
    assert outcomes_of(DAVE, found) == ["sent", "sent"]
    assert outcomes_of(ALICE, found) == ["sent", "over_budget"]
    alice = next(d for d in found if d.user == ALICE and d.outcome == "over_budget")
    assert "1 of 1 real-time DMs on 2024-03-05 (UTC)" in alice.detail


async def test_a_lifted_pause_releases_held_alerts_and_opt_out_drops_them(
    kafka_topics: KafkaSettings,
    redis_settings: RedisSettings,
    slack_settings: SlackSettings,
    notifier_settings: NotifierSettings,
    standin: SlackStandin,
) -> None:
    clock = FakeClock()
    await publish(
        kafka_topics,
        [opted_in(BOB, paused_until=clock.now + 86_400), opted_in(CAROL, paused_until=clock.now + 86_400)],
    )
    await publish(kafka_topics, [candidate(BOB), candidate(CAROL)])
    async with running(kafka_topics, redis_settings, slack_settings, notifier_settings, clock) as notifier:
        assert Counter(d.outcome for d in await decisions(kafka_topics, 2)) == {"held": 2}
        await publish(kafka_topics, [opted_in(BOB), opted_in(CAROL).model_copy(update={"opted_in": False})])
        await notifier.preferences.wait_for(CAROL, lambda p: not p.opted_in)
        await notifier.preferences.wait_for(BOB, lambda p: p.paused_until is None)
        assert await notifier.digests.sweep() == 1  # expedited: no need to wait for the pause's end
        found = await decisions(kafka_topics, 4)
    assert sorted((d.user, d.outcome) for d in found) == [
        (BOB, "digest"),
        (BOB, "held"),
        (CAROL, "held"),
        (CAROL, "not_opted_in"),
    ]
    assert dms(standin) == [dms(standin)[0]]


async def test_unknown_users_and_a_revoked_token_are_refused_without_blocking_others(
    kafka_topics: KafkaSettings,
    redis_settings: RedisSettings,
    slack_settings: SlackSettings,
    notifier_settings: NotifierSettings,
    standin: SlackStandin,
) -> None:
    """Who may read what is asked before anything is sent: someone Slack does not know, or any
    check Slack refuses (a revoked token), is `not_permitted`, the claim released."""
    await publish(kafka_topics, [opted_in("U0GONE"), opted_in(BOB), opted_in(CAROL)])
    await publish(kafka_topics, [candidate("U0GONE"), candidate(BOB), candidate("U0GONE", "C0GENERAL:9.9")])
    async with running(kafka_topics, redis_settings, slack_settings, notifier_settings):
        found = await decisions(kafka_topics, 3)
        assert sorted((d.user, d.outcome) for d in found) == [
            (BOB, "sent"),
            ("U0GONE", "not_permitted"),
            ("U0GONE", "not_permitted"),
        ]
        assert all("user_not_found" in d.detail for d in found if d.outcome == "not_permitted")
        standin.revoke_token()
        await publish(kafka_topics, [candidate(CAROL)])
        carol = [d for d in await decisions(kafka_topics, 4) if d.user == CAROL]
        assert [d.outcome for d in carol] == ["not_permitted"]
        assert "token_revoked" in carol[0].detail
        standin.reset()  # the token works again (a refused check is not cached): the alert goes
        await publish(kafka_topics, [candidate(CAROL)])
        carol = [d for d in await decisions(kafka_topics, 5) if d.user == CAROL]
    assert [d.outcome for d in carol] == ["not_permitted", "sent"]


async def test_unreadable_candidates_are_dead_lettered_and_the_rest_decided(
    kafka_topics: KafkaSettings,
    redis_settings: RedisSettings,
    slack_settings: SlackSettings,
    notifier_settings: NotifierSettings,
    standin: SlackStandin,
) -> None:
    await publish(kafka_topics, [opted_in(BOB)])
    async with EventProducer(kafka_topics, "test") as producer:
        await producer.send(CANDIDATES, BOB, b'{"user": "U0BOB", "schema_version": 99')
        await producer.send(CANDIDATES, BOB, candidate(BOB))
    async with running(kafka_topics, redis_settings, slack_settings, notifier_settings):
        found = await decisions(kafka_topics, 1, idle=0.5)
        dead = await read_topic(kafka_topics, CANDIDATES.dlq, count=1)
    assert [d.outcome for d in found] == ["sent"]
    assert header(dead[0].headers, "dlq.service") == "notifier"
