"""A digest's audit records are built as a real-time alert's are: through the running notifier,
every alert delivered in a digest is audited with the newest message it covered (`latest_ts`)."""

from __future__ import annotations

from notifier_helpers import FakeClock, candidate, decisions, opted_in, publish

from beepgpt.redis_client import redis_client
from beepgpt.settings import KafkaSettings, RedisSettings, SlackSettings
from devstack.slack_standin import SlackStandin
from notifier.held import HeldAlerts
from notifier.service import Notifier
from notifier.settings import NotifierSettings

BOB = "U0BOB"


async def test_a_digests_audit_records_carry_latest_ts(
    kafka_topics: KafkaSettings,
    redis_settings: RedisSettings,
    slack_settings: SlackSettings,
    notifier_settings: NotifierSettings,
    standin: SlackStandin,
) -> None:
    clock = FakeClock(1_709_679_600.0)  # 2024-03-05 23:00 UTC, inside Bob's quiet hours
    quiet = {"start": "22:00", "end": "07:00", "tz": "UTC"}
    await publish(kafka_topics, [opted_in(BOB, quiet_hours=quiet)])
    await publish(
        kafka_topics,
        [
            candidate(BOB, "C0PROJECT:1.1", latest_ts="1709679000.000100"),
            candidate(BOB, "C0GENERAL:2.2", latest_ts="1709679500.000200"),
        ],
    )
    notifier = Notifier(kafka_topics, redis_settings, slack_settings, notifier_settings, clock=clock)
    await notifier.start()
    try:
        held = await decisions(kafka_topics, 2)
        assert [d.outcome for d in held] == ["held", "held"]
        clock.advance(8 * 3600 + 60)  # 07:01: the quiet hours are over
        assert await notifier.digests.sweep() == 1
        found = await decisions(kafka_topics, 4)
    finally:
        await notifier.stop()
    digest = {d.conversation_id: d for d in found if d.outcome == "digest"}
    assert {c: d.latest_ts for c, d in digest.items()} == {
        "C0PROJECT:1.1": "1709679000.000100",
        "C0GENERAL:2.2": "1709679500.000200",
    }
    assert {c: d.latest_ts for c, d in digest.items()} == {d.conversation_id: d.latest_ts for d in held}
    assert len({d.dm_ts for d in digest.values()}) == 1  # one digest DM for both
    assert standin.call_count("chat.postMessage") == 1


async def test_an_unreadable_held_entry_is_set_aside_and_others_still_get_their_digests(
    kafka_topics: KafkaSettings,
    redis_settings: RedisSettings,
    slack_settings: SlackSettings,
    notifier_settings: NotifierSettings,
    standin: SlackStandin,
) -> None:
    """One person's damaged entry (written by a newer version, or by hand) must not stop the
    sweep: theirs go to quarantine with the reason, everyone else's digests go out."""
    carol = "U0CAROL"
    clock = FakeClock(1_709_679_600.0)  # 23:00 UTC, inside both people's quiet hours
    quiet = {"start": "22:00", "end": "07:00", "tz": "UTC"}
    await publish(kafka_topics, [opted_in(BOB, quiet_hours=quiet), opted_in(carol, quiet_hours=quiet)])
    await publish(kafka_topics, [candidate(BOB, "C0PROJECT:1.1"), candidate(carol, "C0PROJECT:1.1")])
    notifier = Notifier(kafka_topics, redis_settings, slack_settings, notifier_settings, clock=clock)
    await notifier.start()
    try:
        assert [d.outcome for d in await decisions(kafka_topics, 2)] == ["held", "held"]
        client = redis_client(redis_settings)
        held = HeldAlerts(client, redis_settings.key_prefix)
        await client.hset(held.held_key(BOB), "C0GENERAL:9.9", b'{"candidate": {"user": 5}}')
        clock.advance(8 * 3600 + 60)
        assert await notifier.digests.sweep() == 1  # Carol's
        found = await decisions(kafka_topics, 3)
        quarantined = await client.hgetall(held.quarantine_key(BOB))
        assert not await client.exists(held.held_key(BOB), held.inflight_key(BOB))
        assert BOB.encode() not in await client.zrange(held.due_key, 0, -1)
        assert await notifier.digests.sweep() == 0  # nothing of Bob's is tried again
        await client.aclose()
    finally:
        await notifier.stop()
    assert [(d.user, d.outcome) for d in found[2:]] == [(carol, "digest")]
    assert [p.channel for p in standin.recorder.find_posts(method="chat.postMessage")] == [found[2].dm_channel]
    assert quarantined[b"reason"].startswith(b"HeldAlert: ")  # which record, and why
    assert {k for k in quarantined if k.startswith(b"held:") or k == b"inflight"}  # kept to read
