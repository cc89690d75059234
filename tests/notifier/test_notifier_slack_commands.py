"""`/beep`, App Home and the feedback buttons, through the ingest app (Socket Mode) and the
stand-in — and their effect on what the notifier does next."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from notifier_helpers import candidate, decisions, publish
from test_notifier_service import BOB, CAROL, running

from beepgpt.contracts import Preferences
from beepgpt.settings import KafkaSettings, RedisSettings, ServiceSettings, SlackSettings
from beepgpt.topics import FEEDBACK, PREFERENCES
from devstack.slack_standin import SlackStandin
from devstack.topic_reader import read_topic
from ingest.service import IngestService
from ingest.settings import IngestSettings
from ingest.slack_app import SlackExperience
from notifier import dm
from notifier.settings import NotifierSettings


@pytest_asyncio.fixture
async def experience(
    kafka_topics: KafkaSettings, redis_settings: RedisSettings, standin: SlackStandin
) -> AsyncIterator[SlackExperience]:
    """The ingest service with the Slack experience's listeners, connected over Socket Mode."""
    slack = SlackSettings(
        slack_bot_token=standin.bot_token,
        slack_app_token=standin.app_token,
        slack_signing_secret=standin.signing_secret,
        api_url=standin.api_url,
    )
    experience = SlackExperience(kafka_topics)
    await experience.start()
    service = IngestService(
        ingest=IngestSettings(http_port=0),
        kafka=kafka_topics,
        slack=slack,
        redis=redis_settings,
        service=ServiceSettings(http_host="127.0.0.1", http_port=0),
        extra_listeners=[experience.register],
    )
    await service.start()
    try:
        await standin.wait_for_socket(1)
        yield experience
    finally:
        await service.stop()
        await experience.stop()


async def beep(standin: SlackStandin, user: str, text: str) -> str:
    ack = await standin.push_slash_command(standin.events.slash_command("/beep", text, user_id=user))
    assert ack.payload is not None
    reply = str(ack.payload.get("text", ""))
    assert ack.payload.get("response_type", "ephemeral") == "ephemeral"
    return reply


async def preferences(kafka: KafkaSettings, count: int) -> list[Preferences]:
    return [PREFERENCES.decode(r.value) for r in await read_topic(kafka, PREFERENCES.name, count=count)]


async def test_slash_commands_write_preferences_and_answer_helpfully(
    kafka_topics: KafkaSettings, standin: SlackStandin, experience: SlackExperience
) -> None:
    assert "Following “streaming technology decisions”" in await beep(
        standin, BOB, "follow streaming technology decisions"
    )
    assert "Following" in await beep(standin, BOB, "follow database migrations")
    assert "Quiet hours set: 22:00–07:00 (Etc/UTC)" in await beep(standin, BOB, "quiet 22:00-07:00")
    assert "Paused until <!date^" in await beep(standin, BOB, "pause 2h")
    listing = await beep(standin, BOB, "list")
    assert "1. streaming technology decisions" in listing
    assert "2. database migrations" in listing
    assert "Stopped following “streaming technology decisions”" in await beep(standin, BOB, "unfollow 1")
    # Bad input: a helpful ephemeral reply, nothing written.
    assert "What should I follow?" in await beep(standin, BOB, "follow")
    assert "5,000 characters" in await beep(standin, BOB, "follow " + "x" * 5_000)
    assert "I don't know `/beep dance`" in await beep(standin, BOB, "dance")
    assert "Use its number" in await beep(standin, BOB, "unfollow 7x")
    records = await preferences(kafka_topics, 5)
    latest = records[-1]
    assert latest.user == BOB
    assert latest.opted_in
    assert [t.text for t in latest.topics] == ["database migrations"]
    assert latest.quiet_hours is not None
    assert latest.quiet_hours.start == "22:00"
    assert latest.paused_until is not None
    # Every change refreshed App Home too.
    home = await standin.wait_for_posts(1, method="views.publish")
    assert home[-1].user == BOB


async def test_app_home_shows_settings_and_its_buttons_change_them(
    kafka_topics: KafkaSettings, standin: SlackStandin, experience: SlackExperience
) -> None:
    await beep(standin, CAROL, "follow incident reviews")
    await standin.wait_for_posts(1, method="views.publish")
    standin.recorder.reset()
    await standin.push_event(standin.events.app_home_opened(CAROL))
    home = (await standin.wait_for_posts(1, method="views.publish"))[-1]
    assert "incident reviews" in home.block_text
    assert "Alerts are *on*" in home.block_text
    toggle = standin.events.block_actions(
        "beepgpt_home_toggle", user_id=CAROL, value="off", container_type="view"
    )
    await standin.push_interactive(toggle)
    home = (await standin.wait_for_posts(2, method="views.publish"))[-1]
    assert "Alerts are *off*" in home.block_text
    records = await preferences(kafka_topics, 2)
    assert records[-1].user == CAROL
    assert not records[-1].opted_in


async def test_commands_change_what_the_notifier_does_next(
    kafka_topics: KafkaSettings,
    redis_settings: RedisSettings,
    slack_settings: SlackSettings,
    notifier_settings: NotifierSettings,
    standin: SlackStandin,
    experience: SlackExperience,
) -> None:
    async with running(kafka_topics, redis_settings, slack_settings, notifier_settings) as notifier:
        await publish(kafka_topics, [candidate(BOB, "C0PROJECT:1.1")])
        assert [d.outcome for d in await decisions(kafka_topics, 1)] == ["not_opted_in"]
        await beep(standin, BOB, "on")
        await notifier.preferences.wait_for(BOB, lambda p: p.opted_in)
        await publish(kafka_topics, [candidate(BOB, "C0PROJECT:2.2")])
        assert [d.outcome for d in await decisions(kafka_topics, 2)][-1] == "sent"
        await beep(standin, BOB, "pause 1h")
        await notifier.preferences.wait_for(BOB, lambda p: p.paused_until is not None)
        await publish(kafka_topics, [candidate(BOB, "C0PROJECT:3.3")])
        assert [d.outcome for d in await decisions(kafka_topics, 3)][-1] == "held"


async def test_budget_and_digest_commands_and_app_home_set_what_the_notifier_applies(
    kafka_topics: KafkaSettings,
    redis_settings: RedisSettings,
    slack_settings: SlackSettings,
    notifier_settings: NotifierSettings,
    standin: SlackStandin,
    experience: SlackExperience,
) -> None:
    assert "Daily budget set: 1 real-time DM a day" in await beep(standin, BOB, "budget 1")
    assert "from 0 to 50" in await beep(standin, BOB, "budget 99")
    assert "Digest times set: 08:30 and 16:00 (Europe/Paris)" in await beep(
        standin, BOB, "digest 16:00,08:30 Europe/Paris"
    )
    shown = await beep(standin, BOB, "budget")
    assert "Daily budget: 1 real-time DM a day" in shown
    assert "Digest: 08:30 and 16:00 (Europe/Paris)" in shown
    help_text = await beep(standin, BOB, "help")
    assert "/beep budget" in help_text
    assert "/beep digest" in help_text
    await beep(standin, BOB, "on")
    records = await preferences(kafka_topics, 3)
    assert records[0].tz == "Etc/UTC"  # the first change recorded Bob's zone as Slack knows it
    assert (records[-1].daily_budget, records[-1].digest_times, records[-1].tz) == (
        1,
        ["08:30", "16:00"],
        "Europe/Paris",
    )
    async with running(kafka_topics, redis_settings, slack_settings, notifier_settings) as notifier:
        await notifier.preferences.wait_for(BOB, lambda p: p.opted_in)
        await publish(kafka_topics, [candidate(BOB, "C0PROJECT:1.1"), candidate(BOB, "C0PROJECT:2.2")])
        found = await decisions(kafka_topics, 2)
    assert [d.outcome for d in found] == ["sent", "over_budget"]
    assert "(Europe/Paris)" in found[1].detail
    # App Home shows both and its buttons change them.
    standin.recorder.reset()
    await standin.push_event(standin.events.app_home_opened(BOB))
    home = (await standin.wait_for_posts(1, method="views.publish"))[-1]
    assert "*Daily budget*: 1 real-time DM a day" in home.block_text
    assert "*Digest*: 08:30 and 16:00 (Europe/Paris)" in home.block_text
    for published, (action_id, value) in enumerate(
        (("beepgpt_home_budget:5", "5"), ("beepgpt_home_digest:1x", "1x")), start=2
    ):
        await standin.push_interactive(
            standin.events.block_actions(action_id, user_id=BOB, value=value, container_type="view")
        )
        home = (await standin.wait_for_posts(published, method="views.publish"))[-1]
    assert "*Daily budget*: 5 real-time DMs a day" in home.block_text
    assert "*Digest*: 09:00 (Europe/Paris)" in home.block_text
    latest = (await preferences(kafka_topics, 5))[-1]
    assert (latest.daily_budget, latest.digest_times) == (5, ["09:00"])


async def test_clicking_a_dm_button_produces_a_feedback_event(
    kafka_topics: KafkaSettings,
    redis_settings: RedisSettings,
    slack_settings: SlackSettings,
    notifier_settings: NotifierSettings,
    standin: SlackStandin,
    experience: SlackExperience,
) -> None:
    await beep(standin, BOB, "follow streaming decisions")
    async with running(kafka_topics, redis_settings, slack_settings, notifier_settings) as notifier:
        await notifier.preferences.wait_for(BOB, lambda p: p.opted_in)
        await publish(kafka_topics, [candidate(BOB)])
        post = (await standin.wait_for_posts(1, method="chat.postMessage"))[0]
    # Click the notifier's own "Useful" button, as Slack would send it.
    actions = next(b for b in post.blocks or [] if b["type"] == "actions")
    useful = next(e for e in actions["elements"] if e["action_id"] == dm.USEFUL_ACTION)
    message: dict[str, Any] = {"type": "message", "ts": post.ts, "text": post.text, "blocks": post.blocks}
    click = standin.events.block_actions(
        useful["action_id"],
        user_id=BOB,
        value=useful["value"],
        block_id=actions["block_id"],
        channel_id=post.channel,
        message=message,
    )
    await standin.push_interactive(click)
    feedback = [FEEDBACK.decode(r.value) for r in await read_topic(kafka_topics, FEEDBACK.name, count=1)]
    assert len(feedback) == 1
    fb = feedback[0]
    assert (fb.user, fb.conversation_id, fb.useful, fb.reason, fb.topic_id, fb.score, fb.score_space) == (
        BOB,
        "C0PROJECT:1700000000.000100",
        True,
        "topic",
        "t-1",
        0.87,  # the candidate's topic score, carried by the button: the scorer learns from it
        "all-MiniLM-L6-v2",  # and the model it was measured in: after a model change it is left out
    )
    updated = (await standin.wait_for_posts(1, method="chat.update"))[0]
    assert "thanks" in updated.block_text
    assert dm.USEFUL_ACTION not in str(updated.blocks)


async def test_tampered_feedback_buttons_are_ignored_and_never_break_ingest(
    kafka_topics: KafkaSettings,
    standin: SlackStandin,
    experience: SlackExperience,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A value that does not parse records nothing; a score that is not a finite number in
    [-1, 1] is dropped (logged) but the click still counts; ingest keeps acknowledging."""
    values = [
        "{not json",
        "[" * 1_999,  # deeper than json.loads can recurse
        '{"reason":"topic","topic_id":"t-1"}',  # no conversation
        '{"conversation_id":"C0PROJECT:1.1","reason":"topic","topic_id":"t-1","score":NaN}',
        '{"conversation_id":"C0PROJECT:2.2","reason":"topic","topic_id":"t-1","score":1e400}',
        '{"conversation_id":"C0PROJECT:3.3","reason":"topic","topic_id":"t-1","score":7}',
        '{"conversation_id":"C0PROJECT:4.4","reason":"topic","topic_id":"t-1","score":"0.5"}',
        '{"conversation_id":"C0PROJECT:5.5","reason":"topic","topic_id":"t-1","score":true}',
        '{"conversation_id":"C0PROJECT:6.6","reason":"topic","topic_id":"t-1"}',  # a DM from before scores
        '{"conversation_id":"C0PROJECT:7.7","reason":"topic","topic_id":"t-1","score":-0.25,"space":["x"]}',
    ]
    with caplog.at_level(logging.WARNING, logger="ingest.slack_app.feedback_buttons"):
        for value in values:  # each is acknowledged (push_interactive raises if not)
            await standin.push_interactive(
                standin.events.block_actions(dm.NOT_USEFUL_ACTION, user_id=BOB, value=value)
            )
    warnings = [r.getMessage() for r in caplog.records if r.name == "ingest.slack_app.feedback_buttons"]
    assert warnings.count("feedback button with an unreadable value") == 3
    assert warnings.count("feedback button score ignored: not a finite number in [-1, 1]") == 5
    records = await read_topic(kafka_topics, FEEDBACK.name, count=7, idle=0.5)
    feedback = [FEEDBACK.decode(r.value) for r in records]
    assert [(f.conversation_id, f.useful, f.score) for f in feedback] == [
        ("C0PROJECT:1.1", False, None),
        ("C0PROJECT:2.2", False, None),
        ("C0PROJECT:3.3", False, None),
        ("C0PROJECT:4.4", False, None),
        ("C0PROJECT:5.5", False, None),
        ("C0PROJECT:6.6", False, None),
        ("C0PROJECT:7.7", False, -0.25),
    ]
    assert feedback[-1].score_space is None  # a space that is not a short string is dropped
