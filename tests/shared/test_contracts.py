"""The contracts round-trip through JSON, skip fields added later and refuse newer versions."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from beepgpt import topics
from beepgpt.contracts import (
    MAX_DAILY_BUDGET,
    MAX_DIGEST_TIMES,
    Candidate,
    ConversationEvent,
    ConversationMessage,
    Preferences,
    QuietHours,
    SlackMessage,
    SlackReaction,
    conversation_id,
    split_conversation_id,
)


def test_slack_messages_topic_tells_messages_and_reactions_apart() -> None:
    message = SlackMessage(channel="C1", ts="1690797600.000100", user="U1", text="hi")
    reaction = SlackReaction(channel="C1", item_ts="1690797600.000100", user="U2", reaction="eyes")
    assert topics.SLACK_MESSAGES.decode(topics.encode(message)) == message
    assert topics.SLACK_MESSAGES.decode(topics.encode(reaction)) == reaction


def test_ts_strings_keep_their_microseconds() -> None:
    message = SlackMessage(channel="C1", ts="1690797600.000100", user="U1", text="x")
    decoded = topics.SLACK_MESSAGES.decode(topics.encode(message))
    assert decoded.ts == "1690797600.000100"


def test_a_field_added_by_newer_code_is_ignored_so_additive_changes_roll_out_in_any_order() -> None:
    message = SlackMessage(channel="C1", ts="1690797600.000100", user="U1", text="hi")
    raw = topics.encode(message).replace(b"}", b', "added_later": {"x": 1}}', 1)
    assert topics.SLACK_MESSAGES.decode(raw) == message


@pytest.mark.parametrize("topic", topics.ALL_TOPICS, ids=lambda t: t.name)
def test_every_topic_refuses_a_record_of_a_newer_schema_version(topic: topics.Topic) -> None:
    # A change older code would misread comes with a new version: older consumers dead-letter it.
    with pytest.raises(ValidationError, match="schema_version"):
        topic.decode(b'{"schema_version": 2, "kind": "message"}')


def test_a_thread_parent_belongs_to_the_channel_flow() -> None:
    parent = SlackMessage(channel="C1", ts="5.0", thread_ts="5.0", user="U1")
    reply = SlackMessage(channel="C1", ts="6.0", thread_ts="5.0", user="U2")
    assert not parent.in_thread
    assert reply.in_thread


def test_conversation_event_round_trip() -> None:
    event = ConversationEvent(
        kind="updated",
        conversation_id=conversation_id("C1", "5.000000"),
        channel="C1",
        first_ts="5.000000",
        last_ts="6.000000",
        version=2,
        messages=[ConversationMessage(ts="5.000000", user="U1", text="kafka or pulsar?")],
        participants=["U1"],
        message_count=1,
    )
    assert event.conversation_id == "C1:5.000000"
    assert topics.CONVERSATIONS.decode(topics.encode(event)) == event


def test_quiet_hours_are_validated() -> None:
    with pytest.raises(ValidationError):
        QuietHours(start="25:00", end="08:00")
    prefs = Preferences(user="U1", opted_in=True, quiet_hours=QuietHours(start="22:00", end="07:30"))
    assert topics.PREFERENCES.decode(topics.encode(prefs)) == prefs


def test_a_preferences_record_from_before_budgets_reads_with_the_defaults() -> None:
    old = b'{"schema_version": 1, "user": "U1", "opted_in": true, "topics": [], "updated_at": 5.0}'
    prefs = topics.PREFERENCES.decode(old)
    assert (prefs.daily_budget, prefs.digest_times, prefs.tz) == (None, None, None)
    assert prefs.zone_name == "UTC"
    tokyo = QuietHours(start="22:00", end="07:00", tz="Asia/Tokyo")
    assert prefs.model_copy(update={"quiet_hours": tokyo}).zone_name == "Asia/Tokyo"


def test_budget_and_digest_times_are_bounded_and_have_one_spelling() -> None:
    prefs = Preferences(
        user="U1", daily_budget=0, digest_times=["17:00", "09:00", "17:00"], tz="Europe/Paris"
    )
    assert prefs.digest_times == ["09:00", "17:00"]
    assert topics.PREFERENCES.decode(topics.encode(prefs)) == prefs
    assert Preferences(user="U1", daily_budget=MAX_DAILY_BUDGET).daily_budget == MAX_DAILY_BUDGET
    for bad in (
        {"daily_budget": -1},
        {"daily_budget": MAX_DAILY_BUDGET + 1},
        {"digest_times": []},  # held alerts must go out some time
        {"digest_times": ["24:00"]},
        {"digest_times": ["9:00"]},
        {"digest_times": [f"{h:02d}:00" for h in range(MAX_DIGEST_TIMES + 1)]},
        {"tz": "x" * 65},
    ):
        with pytest.raises(ValidationError):
            Preferences.model_validate({"user": "U1", **bad})


def test_every_topic_has_a_dead_letter_twin() -> None:
    assert {t.dlq for t in topics.ALL_TOPICS} == {f"{t.name}.dlq" for t in topics.ALL_TOPICS}
    assert topics.PREFERENCES.compacted


def test_candidate_requires_an_explanation() -> None:
    with pytest.raises(ValidationError):
        Candidate.model_validate(
            {
                "user": "U1",
                "conversation_id": "C1:1",
                "version": 1,
                "channel": "C1",
                "latest_ts": "1",
                "score": 0.9,
                "reason": "topic",
            }
        )


def test_conversation_ids_of_flows_and_threads_differ_and_split_back() -> None:
    flow, thread = conversation_id("C1", "5.000000"), conversation_id("C1", "5.000000", "5.000000")
    assert flow != thread
    assert split_conversation_id(flow) == ("C1", "5.000000", False)
    assert split_conversation_id(thread) == ("C1", "5.000000", True)
