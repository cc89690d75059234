"""The controls end to end: a DM's Mute / Fewer like this / Snooze buttons, `/beep mute`, App
Home and digest schedules, clicked and typed through the ingest app (Socket Mode, the stand-in),
saved to `user.preferences` on the broker — and the notifier's next decisions (Redis), audited on
`notifications.sent` with their own outcomes."""

from __future__ import annotations

from typing import Any

from notifier_helpers import FakeClock, candidate, decisions, publish
from test_notifier_service import BOB, running
from test_notifier_slack_commands import beep, experience  # noqa: F401  (the fixture)

from beepgpt.contracts import FEWER_ACTION, MUTE_ACTION, SNOOZE_ACTIONS, Candidate
from beepgpt.settings import KafkaSettings, RedisSettings, SlackSettings
from devstack.slack_standin import SlackStandin
from devstack.slack_standin.recorder import Post
from ingest.slack_app import SlackExperience
from ingest.slack_app.app_home import SCHEDULE_ACTION, UNMUTE_ACTION
from notifier import dm
from notifier.settings import NotifierSettings

FLOW = "C0PROJECT:1700000000.000100"
THREAD = "C0PROJECT:1700000000.000100/thread"


def conversation(n: int) -> str:
    return f"C0PROJECT:{1700001000 + n}.000100"


async def click(standin: SlackStandin, post: Post, action_id: str) -> None:
    """Click one of the DM's controls as Slack would send it."""
    row = next(b for b in post.blocks or [] if b.get("block_id", "").endswith(dm.CONTROLS_SUFFIX))
    button = next(e for e in row["elements"] if e["action_id"] == action_id)
    message: dict[str, Any] = {"type": "message", "ts": post.ts, "text": post.text, "blocks": post.blocks}
    await standin.push_interactive(
        standin.events.block_actions(
            action_id,
            user_id=BOB,
            value=button["value"],
            block_id=row["block_id"],
            channel_id=post.channel,
            message=message,
        )
    )


async def test_each_dm_button_shows_in_the_next_decisions(
    kafka_topics: KafkaSettings,
    redis_settings: RedisSettings,
    slack_settings: SlackSettings,
    notifier_settings: NotifierSettings,
    standin: SlackStandin,
    experience: SlackExperience,  # noqa: F811
) -> None:
    await beep(standin, BOB, "follow streaming decisions")
    async with running(kafka_topics, redis_settings, slack_settings, notifier_settings) as notifier:
        await notifier.preferences.wait_for(BOB, lambda p: p.opted_in)
        prefs = notifier.preferences.get(BOB)
        assert prefs is not None
        topic = prefs.topics[0].id

        def alert(conversation_id: str, **fields: object) -> Candidate:
            made: Candidate = candidate(BOB, conversation_id, topic_id=topic, **{"threshold": 0.6, **fields})
            return made

        await publish(kafka_topics, [alert(FLOW)])
        assert [d.outcome for d in await decisions(kafka_topics, 1)] == ["sent"]
        post = (await standin.wait_for_posts(1, method="chat.postMessage"))[0]

        # Mute this conversation: its thread (a new candidate, the same opening message) is muted.
        await click(standin, post, MUTE_ACTION)
        await notifier.preferences.wait_for(BOB, lambda p: bool(p.mutes))
        updated = (await standin.wait_for_posts(1, method="chat.update"))[-1]
        assert "Muted this conversation in <#C0PROJECT>" in updated.block_text
        assert MUTE_ACTION not in str(updated.blocks)  # the controls row became the note
        told = (await standin.wait_for_posts(1, method="response_url"))[-1]
        assert "Muted this conversation" in told.text
        await publish(kafka_topics, [alert(THREAD)])
        muted = (await decisions(kafka_topics, 2))[-1]
        assert (muted.outcome, muted.detail) == ("muted", "you muted this conversation; C0PROJECT")

        # Fewer like this, twice: the topic's bar goes from 0.6 to 0.8 to 0.9.
        await click(standin, post, FEWER_ACTION)
        await notifier.preferences.wait_for(BOB, lambda p: bool(p.weights))
        told = (await standin.wait_for_posts(2, method="response_url"))[-1]
        assert "Alerts about your topic “streaming decisions” now need a closer match (weight 0.5)" in told.text
        await publish(
            kafka_topics,
            [alert(conversation(1), score=0.75), alert(conversation(2))],
        )
        assert [d.outcome for d in (await decisions(kafka_topics, 4))[-2:]] == ["down_weighted", "sent"]
        await click(standin, post, FEWER_ACTION)
        await notifier.preferences.wait_for(BOB, lambda p: p.weights[0].weight == 0.25)
        await publish(kafka_topics, [alert(conversation(3))])  # 0.87 < 0.9
        found = (await decisions(kafka_topics, 5))[-1]
        assert found.outcome == "down_weighted"
        assert "below the raised bar 0.900" in found.detail

        # Snooze 1 hour: the next alert waits for a digest, audited `snoozed`; /beep resume ends it.
        await click(standin, post, SNOOZE_ACTIONS["1h"])
        await notifier.preferences.wait_for(BOB, lambda p: p.snoozed_until is not None)
        told = (await standin.wait_for_posts(4, method="response_url"))[-1]
        assert "Snoozed until <!date^" in told.text
        await publish(kafka_topics, [alert(conversation(4), threshold=0.0)])
        snoozed = (await decisions(kafka_topics, 6))[-1]
        assert snoozed.outcome == "snoozed"
        assert snoozed.detail.startswith("snoozed; digest after")
        assert "Resumed" in await beep(standin, BOB, "resume")
        await notifier.preferences.wait_for(BOB, lambda p: p.snoozed_until is None)
        await publish(kafka_topics, [alert(conversation(5), threshold=0.0)])
        assert (await decisions(kafka_topics, 7))[-1].outcome == "sent"


async def test_channel_mutes_by_command_and_app_home(
    kafka_topics: KafkaSettings,
    redis_settings: RedisSettings,
    slack_settings: SlackSettings,
    notifier_settings: NotifierSettings,
    standin: SlackStandin,
    experience: SlackExperience,  # noqa: F811
) -> None:
    await beep(standin, BOB, "on")
    assert "Muted <#C0PROJECT>" in await beep(standin, BOB, "mute <#C0PROJECT|project>")
    assert "pick the channel from Slack's list" in await beep(standin, BOB, "mute project")
    assert "Muted channels: <#C0PROJECT>" in await beep(standin, BOB, "mute")
    async with running(kafka_topics, redis_settings, slack_settings, notifier_settings) as notifier:
        await notifier.preferences.wait_for(BOB, lambda p: bool(p.muted_channels(0)))
        await publish(kafka_topics, [candidate(BOB, conversation(1)), candidate(BOB, "C0GENERAL:1.1")])
        found = await decisions(kafka_topics, 2)
        assert sorted((d.conversation_id, d.outcome) for d in found) == [
            ("C0GENERAL:1.1", "sent"),
            (conversation(1), "muted"),
        ]
        # App Home lists it; its Unmute button lets the channel's next alert through.
        standin.recorder.reset()
        await standin.push_event(standin.events.app_home_opened(BOB))
        home = (await standin.wait_for_posts(1, method="views.publish"))[-1]
        assert "Muted channels: <#C0PROJECT>" in home.block_text
        await standin.push_interactive(
            standin.events.block_actions(UNMUTE_ACTION, user_id=BOB, value="C0PROJECT", container_type="view")
        )
        home = (await standin.wait_for_posts(2, method="views.publish"))[-1]
        assert "No muted channels" in home.block_text
        await notifier.preferences.wait_for(BOB, lambda p: not p.mutes)
        await publish(kafka_topics, [candidate(BOB, conversation(2))])
        assert (await decisions(kafka_topics, 3))[-1].outcome == "sent"


async def test_a_digest_schedule_in_plain_words_holds_everything_for_its_digest_time(
    kafka_topics: KafkaSettings,
    redis_settings: RedisSettings,
    slack_settings: SlackSettings,
    notifier_settings: NotifierSettings,
    standin: SlackStandin,
    experience: SlackExperience,  # noqa: F811
) -> None:
    await beep(standin, BOB, "on")
    await beep(standin, BOB, "quiet 22:00-07:00")
    assert "Digest once a day: at 09:00 (Etc/UTC), and no real-time DMs" in await beep(
        standin, BOB, "digest once a day"
    )
    assert "Alerts: once a day" in await beep(standin, BOB, "digest")
    clock = FakeClock(1_709_679_600.0)  # 2024-03-05 23:00 UTC: inside Bob's quiet hours
    async with running(kafka_topics, redis_settings, slack_settings, notifier_settings, clock) as notifier:
        await notifier.preferences.wait_for(BOB, lambda p: p.daily_budget == 0)
        await publish(kafka_topics, [candidate(BOB, conversation(1))])
        assert [d.outcome for d in await decisions(kafka_topics, 1)] == ["held"]
        clock.advance(9 * 3600)  # 08:00, quiet hours over
        await publish(kafka_topics, [candidate(BOB, conversation(2))])
        found = await decisions(kafka_topics, 2)
        assert [d.outcome for d in found] == ["held", "over_budget"]
        assert "over the daily budget: 0 of 0" in found[1].detail
        assert await notifier.digests.sweep() == 0  # quiet hours ended at 07:00, the digest is at 09:00
        assert standin.recorder.find_posts(method="chat.postMessage") == []
        clock.advance(3600)  # 09:00
        assert await notifier.digests.sweep() == 1
        digest = (await decisions(kafka_topics, 4))[-2:]
        assert [d.outcome for d in digest] == ["digest", "digest"]
        posts = standin.recorder.find_posts(method="chat.postMessage")
        assert len(posts) == 1
        assert "2 conversations" in posts[0].block_text
    # App Home: the schedule in plain words, and its buttons.
    standin.recorder.reset()
    await standin.push_event(standin.events.app_home_opened(BOB))
    home = (await standin.wait_for_posts(1, method="views.publish"))[-1]
    assert "*Alerts arrive*: once a day" in home.block_text
    await standin.push_interactive(
        standin.events.block_actions(
            f"{SCHEDULE_ACTION}:real_time", user_id=BOB, value="real_time", container_type="view"
        )
    )
    home = (await standin.wait_for_posts(2, method="views.publish"))[-1]
    assert "*Alerts arrive*: real time" in home.block_text
