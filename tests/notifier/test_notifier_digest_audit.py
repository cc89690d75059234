"""A digest's audit records are built as a real-time alert's are: through the running notifier,
every alert delivered in a digest is audited with the newest message it covered (`latest_ts`)."""

from __future__ import annotations

from notifier_helpers import FakeClock, candidate, decisions, opted_in, publish

from beepgpt.settings import KafkaSettings, RedisSettings, SlackSettings
from devstack.slack_standin import SlackStandin
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
