"""The contracts round-trip through JSON, skip fields added later and refuse newer versions."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any, get_args

import pytest
from pydantic import BaseModel, ValidationError

from beepgpt import topics
from beepgpt.contracts import (
    FEEDBACK_ACTIONS,
    MAX_DAILY_BUDGET,
    MAX_DIGEST_TIMES,
    NOT_USEFUL_ACTION,
    NOTIFICATION_OUTCOMES,
    OPEN_ACTION,
    USEFUL_ACTION,
    Candidate,
    ChannelKind,
    ConversationEvent,
    ConversationMessage,
    Feedback,
    FeedbackButton,
    Notification,
    NotificationOutcome,
    Preferences,
    QuietHours,
    SlackMessage,
    SlackReaction,
    SuggestedTopic,
    SuggestionExample,
    Suggestions,
    UnreadableButton,
    conversation_id,
    is_notification_outcome,
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


def test_a_message_record_written_before_channel_kind_existed_reads_as_unknown_not_public() -> None:
    # The exact shape ingest wrote before the field: it must still validate, and say "unknown".
    old = (
        b'{"schema_version": 1, "kind": "message", "action": "new", "team": "T1", "channel": "G1",'
        b' "ts": "1690797600.000100", "thread_ts": null, "user": "U1", "text": "hi", "subtype": null,'
        b' "event_id": "Ev1", "event_time": 1690797600.0001}'
    )
    decoded = topics.SLACK_MESSAGES.decode(old)
    assert isinstance(decoded, SlackMessage)
    assert decoded.channel_kind is None


@pytest.mark.parametrize("kind", get_args(ChannelKind))
def test_channel_kind_round_trips(kind: str) -> None:
    message = SlackMessage(channel="C1", ts="1690797600.000100", user="U1", text="hi", channel_kind=kind)
    assert topics.SLACK_MESSAGES.decode(topics.encode(message)) == message


def test_an_unknown_channel_kind_is_refused() -> None:
    with pytest.raises(ValidationError, match="channel_kind"):
        SlackMessage(channel="C1", ts="1.1", user="U1", channel_kind="secret")  # type: ignore[arg-type]


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
    settings = topics.all_topic_settings()
    assert set(settings) == {t.name for t in topics.ALL_TOPICS} | {t.dlq for t in topics.ALL_TOPICS}
    for topic in topics.ALL_TOPICS:
        dlq = settings[topic.dlq]
        assert (dlq.partitions, dlq.configs()) == (3, {"retention.ms": str(14 * 24 * 3600 * 1000)})
        assert dlq.partitions <= topic.partitions


def test_topics_are_created_with_their_retention_or_compaction() -> None:
    assert topics.SLACK_MESSAGES.settings.configs() == {"retention.ms": "604800000"}
    assert topics.PREFERENCES.settings.configs() == {"cleanup.policy": "compact"}
    # a topic without retention would get the broker's default; a compacted one with one would
    # lose people's preferences: neither can be defined
    with pytest.raises(ValueError, match="retention"):
        topics.TopicSettings("t", 1, "delete", None)
    with pytest.raises(ValueError, match="retention"):
        topics.TopicSettings("t", 1, "compact", timedelta(days=1))
    with pytest.raises(ValueError, match="partitions"):
        topics.TopicSettings("t", 0, "delete", timedelta(days=1))


KEYED: list[tuple[topics.Topic, BaseModel, str]] = [
    (topics.SLACK_MESSAGES, SlackMessage(channel="C1", ts="1.1", user="U1"), "C1"),
    (topics.SLACK_MESSAGES, SlackReaction(channel="C1", item_ts="1.1", user="U2", reaction="eyes"), "C1"),
    (
        topics.CONVERSATIONS,
        ConversationEvent(
            kind="updated", conversation_id="C1:1.1", channel="C1", first_ts="1.1", last_ts="1.1",
            version=1, messages=[], participants=[], message_count=0,
        ),
        "C1:1.1",
    ),
    (
        topics.CANDIDATES,
        Candidate(
            user="U3", conversation_id="C1:1.1", version=1, channel="C1", latest_ts="1.1", score=0.5,
            reason="interest", explanation="x",
        ),
        "U3",
    ),
    (topics.SENT, Notification(user="U3", conversation_id="C1:1.1", outcome="sent"), "U3"),
    (topics.PREFERENCES, Preferences(user="U3"), "U3"),
    (topics.FEEDBACK, Feedback(user="U3", conversation_id="C1:1.1", useful=True), "U3"),
    (
        topics.SUGGESTIONS,
        Suggestions(
            user="U3", conversations=4,
            topics=[SuggestedTopic(name="fraud detection", conversations=4, examples=[
                SuggestionExample(conversation_id="C1:1.1", channel="C1", first_ts="1.1", first_line="hi")
            ])],
        ),
        "U3",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("topic", "value", "key"), KEYED, ids=lambda v: getattr(v, "name", ""))
def test_every_topic_keys_its_records_by_its_key_field(
    topic: topics.Topic, value: BaseModel, key: str
) -> None:
    assert topic.key_of(value) == key
    assert topic.decode(topics.encode(value)) == value


def test_every_topic_has_a_keyed_example() -> None:
    assert {t.name for t, _, _ in KEYED} == {t.name for t in topics.ALL_TOPICS}


# --- notification outcomes ----------------------------------------------------------------------


def test_the_outcome_list_is_the_contract_s() -> None:
    assert get_args(NotificationOutcome) == NOTIFICATION_OUTCOMES
    assert "over_budget" in NOTIFICATION_OUTCOMES
    assert all(is_notification_outcome(o) for o in NOTIFICATION_OUTCOMES)
    assert not is_notification_outcome("unknown")
    with pytest.raises(ValidationError):
        Notification(user="U1", conversation_id="C1:1.1", outcome="unknown")  # type: ignore[arg-type]


# --- DM buttons -----------------------------------------------------------------------------------


def _candidate(**overrides: Any) -> Candidate:
    fields: dict[str, Any] = {
        "user": "U3",
        "conversation_id": "C9:1700000000.000100",
        "version": 1,
        "channel": "C9",
        "latest_ts": "1700000000.000100",
        "score": 0.87654321,
        "score_space": "all-MiniLM-L6-v2",
        "reason": "topic",
        "topic_id": "t-1",
        "explanation": "x",
    }
    return Candidate.model_validate({**fields, **overrides})


def test_a_button_value_round_trips_from_candidate_to_feedback() -> None:
    value = FeedbackButton.from_candidate(_candidate()).encode()
    # the wire form DMs already in people's Slack carry: Feedback's names, `space` for the model
    assert json.loads(value) == {
        "conversation_id": "C9:1700000000.000100",
        "reason": "topic",
        "topic_id": "t-1",
        "score": 0.876543,
        "space": "all-MiniLM-L6-v2",
    }
    assert " " not in value
    button, dropped = FeedbackButton.decode(value)
    assert dropped == frozenset()
    feedback = button.feedback("U3", NOT_USEFUL_ACTION)
    assert (feedback.user, feedback.conversation_id, feedback.useful) == ("U3", "C9:1700000000.000100", False)
    assert (feedback.reason, feedback.topic_id, feedback.score, feedback.score_space) == (
        "topic", "t-1", 0.876543, "all-MiniLM-L6-v2",
    )  # fmt: skip
    assert button.feedback("U3", USEFUL_ACTION).useful
    assert set(FEEDBACK_ACTIONS) == {USEFUL_ACTION, NOT_USEFUL_ACTION}
    assert OPEN_ACTION not in FEEDBACK_ACTIONS


def test_a_candidate_never_carries_an_impossible_score() -> None:
    for impossible in (float("nan"), float("inf"), 1.5, -3.0):
        with pytest.raises(ValidationError):
            _candidate(score=impossible)
    interest = FeedbackButton.from_candidate(_candidate(reason="interest", topic_id=None, score_space=None))
    assert json.loads(interest.encode()) == {
        "conversation_id": "C9:1700000000.000100", "reason": "interest", "score": 0.876543,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "dropped"),
    [
        ('{"conversation_id":"C:1.1","score":NaN}', {"score"}),
        ('{"conversation_id":"C:1.1","score":1e400}', {"score"}),
        ('{"conversation_id":"C:1.1","score":7}', {"score"}),
        ('{"conversation_id":"C:1.1","score":"0.5"}', {"score"}),
        ('{"conversation_id":"C:1.1","score":true}', {"score"}),
        ('{"conversation_id":"C:1.1","score":0.5,"space":["x"]}', {"space"}),
        ('{"conversation_id":"C:1.1","score":0.5,"space":""}', {"space"}),
        ('{"conversation_id":"C:1.1","score":"x","space":' + json.dumps("m" * 201) + "}", {"score", "space"}),
        ('{"conversation_id":"C:1.1","score":1,"later":{"x":1}}', set()),  # a key added later: ignored
    ],
)
def test_a_tampered_score_or_space_is_dropped_and_the_click_still_counts(raw: str, dropped: set[str]) -> None:
    button, lost = FeedbackButton.decode(raw)
    assert button.conversation_id == "C:1.1"
    assert lost == dropped
    assert (button.score is None) == ("score" in dropped)
    assert button.score_space is None


@pytest.mark.parametrize(
    "raw",
    [
        "{not json",
        "[" * 1_999,  # deeper than json.loads can recurse
        '["conversation_id"]',
        '{"reason":"topic","topic_id":"t-1"}',  # no conversation
        '{"conversation_id":5}',
        '{"conversation_id":"C:1.1","reason":"gossip"}',
        '{"conversation_id":"C:1.1","topic_id":["t"]}',
    ],
)
def test_a_value_that_is_not_ours_is_unreadable(raw: str) -> None:
    with pytest.raises(UnreadableButton):
        FeedbackButton.decode(raw)


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


# --- field constraints ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"ts": "abc"}, "ts"),
        ({"ts": "١٧٠٠٠٠٠٠٠٠.000100"}, "ts"),  # digits, but not ASCII ones
        ({"ts": "4294967296.000000"}, "ts"),  # 2**32 s: past what the query's nanoseconds hold
        ({"thread_ts": "1700000000.x"}, "thread_ts"),
        ({"event_time": float("inf")}, "event_time"),
        ({"event_time": float("nan")}, "event_time"),
        ({"event_time": -1.0}, "event_time"),
        ({"text": "x" * 40_001}, "text"),
    ],
)
def test_a_message_with_a_value_no_service_can_use_is_refused(fields: dict[str, Any], field: str) -> None:
    good = {"channel": "C1", "ts": "1700000000.000100", "user": "U1", "text": "hi", "event_time": 1.7e9}
    SlackMessage.model_validate(good)
    with pytest.raises(ValidationError) as refused:
        SlackMessage.model_validate(good | fields)
    assert [e["loc"][-1] for e in refused.value.errors()] == [field]


def test_a_pause_ends_at_most_thirty_days_ahead() -> None:
    now = time.time()
    assert Preferences(user="U1", paused_until=now + 29 * 86_400).paused_until is not None
    assert Preferences(user="U1", paused_until=now - 400 * 86_400).paused_until is not None  # long over
    for absurd in (now + 400 * 86_400, float("inf"), float("nan")):
        with pytest.raises(ValidationError, match="paused_until"):
            Preferences(user="U1", paused_until=absurd)


def test_counts_and_versions_are_not_negative() -> None:
    with pytest.raises(ValidationError, match="version"):
        _candidate(version=-1)
    assert _candidate(version=1_700_000_000_000_000).version == 1_700_000_000_000_000  # time-based
