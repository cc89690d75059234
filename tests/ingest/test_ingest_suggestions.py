"""Suggested topics in the Slack app, end to end: `beepgpt suggest --publish`'s records on the real
broker, `/beep suggest` and App Home through ingest over Socket Mode and the Slack stand-in, and
the Follow button writing the person's preferences through `/beep follow`'s path."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from ingest_helpers import slack_settings

from beepgpt.contracts import SUGGEST_ACTION, Preferences, SuggestedTopic, SuggestionExample, Suggestions
from beepgpt.settings import KafkaSettings, RedisSettings, ServiceSettings
from beepgpt.topics import PREFERENCES
from devstack.slack_standin import SlackStandin
from devstack.slack_standin.blocks import block_problems
from devstack.topic_reader import read_topic
from ingest.service import IngestService
from ingest.settings import IngestSettings
from ingest.slack_app import SlackExperience
from offline.suggestions import publish

BOB = "U0BOB"
CAROL = "U0CAROL"

FRAUD = "fraud detection, anomaly detection, models"
INVENTORY = "inventory tracking, synchronization, supply"


def suggestions(user: str) -> Suggestions:
    def example(i: int, line: str) -> SuggestionExample:
        return SuggestionExample(
            conversation_id=f"C0PROJECT:169080{i}000.000100",
            channel="C0PROJECT",
            first_ts=f"169080{i}000.000100",
            first_line=line,
        )

    return Suggestions(
        user=user,
        conversations=40,
        topics=[
            SuggestedTopic(
                name=FRAUD,
                conversations=23,
                examples=[
                    example(1, "Let's look at the fraud model's recall"),
                    example(2, "Card <fraud> spikes"),
                ],
            ),
            SuggestedTopic(name=INVENTORY, conversations=17, examples=[example(3, "Warehouse sync lags")]),
        ],
    )


@pytest_asyncio.fixture
async def experience(
    kafka_topics: KafkaSettings, redis_settings: RedisSettings, slack: SlackStandin
) -> AsyncIterator[SlackExperience]:
    """The ingest service with the Slack experience's listeners, connected over Socket Mode."""
    experience = SlackExperience(kafka_topics)
    await experience.start()
    service = IngestService(
        ingest=IngestSettings(http_port=0),
        kafka=kafka_topics,
        slack=slack_settings(slack),
        redis=redis_settings,
        service=ServiceSettings(http_host="127.0.0.1", http_port=0),
        extra_listeners=[experience.register],
    )
    await service.start()
    try:
        await slack.wait_for_socket(1)
        yield experience
    finally:
        await service.stop()
        await experience.stop()


async def beep_suggest(slack: SlackStandin, user: str) -> dict[str, object]:
    ack = await slack.push_slash_command(slack.events.slash_command("/beep", "suggest", user_id=user))
    assert ack.payload is not None
    assert ack.payload.get("response_type", "ephemeral") == "ephemeral"
    return ack.payload


def follow_buttons(blocks: list[dict[str, object]]) -> list[str]:
    values = []
    for block in blocks:
        accessory = block.get("accessory")
        if isinstance(accessory, dict) and accessory.get("action_id") == SUGGEST_ACTION:
            values.append(str(accessory["value"]))
    return values


async def latest_preferences(kafka: KafkaSettings, count: int) -> Preferences:
    records = [PREFERENCES.decode(r.value) for r in await read_topic(kafka, PREFERENCES.name, count=count)]
    decoded: Preferences = records[-1]
    return decoded


async def test_beep_suggest_lists_published_suggestions_and_follow_follows_the_name(
    kafka_topics: KafkaSettings, slack: SlackStandin, experience: SlackExperience
) -> None:
    await publish([suggestions(BOB)], kafka_topics)
    await experience.suggestions.wait_for(BOB)

    payload = await beep_suggest(slack, BOB)
    blocks = payload["blocks"]
    assert isinstance(blocks, list)
    assert block_problems(blocks) == []
    assert follow_buttons(blocks) == [FRAUD, INVENTORY]
    shown = str(blocks)
    assert "23 of your conversations" in shown
    assert "<#C0PROJECT>" in shown
    assert "Card &lt;fraud&gt; spikes" in shown  # the first line is quoted, never read as markup
    assert FRAUD in str(payload["text"])

    click = slack.events.block_actions(SUGGEST_ACTION, user_id=BOB, value=FRAUD, block_id="suggested:0")
    await slack.push_interactive(click)
    prefs = await latest_preferences(kafka_topics, 1)
    assert prefs.user == BOB
    assert [t.text for t in prefs.topics] == [FRAUD]
    assert prefs.opted_in  # following opts in, as `/beep follow` does
    answer = (await slack.wait_for_posts(1, method="response_url"))[-1]
    assert f"Following “{FRAUD}”" in answer.text

    # What is followed is no longer suggested; `/beep list` shows it like any topic.
    again = await beep_suggest(slack, BOB)
    assert follow_buttons(again["blocks"]) == [INVENTORY]  # type: ignore[arg-type]
    listing = await slack.push_slash_command(slack.events.slash_command("/beep", "list", user_id=BOB))
    assert listing.payload is not None
    assert f"1. {FRAUD}" in str(listing.payload["text"])


async def test_beep_suggest_without_suggestions_says_where_they_come_from(
    slack: SlackStandin, experience: SlackExperience
) -> None:
    payload = await beep_suggest(slack, CAROL)
    assert "No suggestions yet" in str(payload["text"])
    assert "blocks" not in payload or not follow_buttons(payload["blocks"])  # type: ignore[arg-type]


async def test_app_home_shows_suggested_topics_and_follow_there_updates_it(
    kafka_topics: KafkaSettings, slack: SlackStandin, experience: SlackExperience
) -> None:
    await publish([suggestions(CAROL)], kafka_topics)
    await experience.suggestions.wait_for(CAROL)
    await slack.push_event(slack.events.app_home_opened(CAROL))
    home = (await slack.wait_for_posts(1, method="views.publish"))[-1]
    assert home.user == CAROL
    assert "Suggested topics" in home.block_text
    assert home.view is not None
    assert follow_buttons(home.view["blocks"]) == [FRAUD, INVENTORY]

    click = slack.events.block_actions(
        SUGGEST_ACTION, user_id=CAROL, value=INVENTORY, block_id="suggested:1", container_type="view"
    )
    await slack.push_interactive(click)
    home = (await slack.wait_for_posts(2, method="views.publish"))[-1]
    assert home.view is not None
    assert follow_buttons(home.view["blocks"]) == [FRAUD]
    assert INVENTORY in home.block_text  # now under the topics Carol follows, with Unfollow
    prefs = await latest_preferences(kafka_topics, 1)
    assert [t.text for t in prefs.topics] == [INVENTORY]
