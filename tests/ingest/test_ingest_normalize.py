"""The pure normalizer, table-driven over every event shape Slack sends (and some it should not)."""

from __future__ import annotations

from typing import Any

import pytest

from beepgpt.contracts import SlackMessage, SlackReaction
from beepgpt.topics import SLACK_MESSAGES, encode
from ingest.normalize import (
    Accepted,
    Dropped,
    Envelope,
    Rejected,
    Rules,
    envelope_of,
    normalize_event,
)
from ingest.settings import IngestSettings

CH = "C0123ABCD"
U1 = "U0AAA1111"
U2 = "U0BBB2222"
BOT_USER = "U0BOT0001"
ENV = Envelope(event_id="Ev01ABC", team="T0TEAM", event_time=1690400000.0)
RULES = Rules(bot_users=frozenset({BOT_USER}), max_text_chars=40_000)


def message(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "message",
        "channel": CH,
        "user": U1,
        "text": "hello team",
        "ts": "1690400001.000100",
        "event_ts": "1690400001.000100",
        "channel_type": "channel",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def changed(new: dict[str, Any], previous: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "message",
        "subtype": "message_changed",
        "hidden": True,
        "channel": CH,
        "message": new,
        "previous_message": previous
        if previous is not None
        else {"type": "message", "user": U1, "text": "helo team", "ts": new.get("ts")},
        "event_ts": "1690400100.000200",
        "ts": "1690400100.000200",
    }
    event.update(fields)
    return event


def reaction(kind: str = "reaction_added", **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": kind,
        "user": U2,
        "reaction": "thumbsup",
        "item_user": U1,
        "item": {"type": "message", "channel": CH, "ts": "1690400001.000100"},
        "event_ts": "1690400200.000300",
    }
    event.update(fields)
    return event


EDITED_INNER = {
    "type": "message",
    "user": U1,
    "text": "hello team!",
    "ts": "1690400001.000100",
    "edited": {"user": U1, "ts": "1690400099.000000"},
}

# (name, event, expected: SlackMessage/SlackReaction fields to check, or Dropped/Rejected reason)
ACCEPTED: list[tuple[str, Any, dict[str, Any]]] = [
    (
        "new message",
        message(),
        {
            "kind": "message",
            "action": "new",
            "channel": CH,
            "user": U1,
            "text": "hello team",
            "ts": "1690400001.000100",
            "thread_ts": None,
            "event_time": 1690400001.0001,
        },
    ),
    (
        "thread reply",
        message(ts="1690400005.000100", thread_ts="1690400001.000100", parent_user_id=U2),
        {"action": "new", "thread_ts": "1690400001.000100", "in_thread": True},
    ),
    (
        "thread parent (thread_ts == ts)",
        message(thread_ts="1690400001.000100", reply_count=3),
        {"thread_ts": "1690400001.000100", "in_thread": False},
    ),
    (
        "thread_broadcast",
        message(subtype="thread_broadcast", thread_ts="1690400000.000001", root={"ts": "1690400000.000001"}),
        {"action": "new", "subtype": "thread_broadcast", "thread_ts": "1690400000.000001", "in_thread": True},
    ),
    (
        # thread_broadcast's older name ("also send to #channel"), still in exports of that time
        "reply_broadcast",
        message(subtype="reply_broadcast", thread_ts="1690400000.000001"),
        {"action": "new", "subtype": "reply_broadcast", "thread_ts": "1690400000.000001", "in_thread": True},
    ),
    ("file share with text", message(subtype="file_share", files=[{"id": "F1"}]), {"subtype": "file_share"}),
    ("file share without text", message(subtype="file_share", text=None), {"text": ""}),
    ("/me message", message(subtype="me_message", text="waves"), {"subtype": "me_message"}),
    ("public channel message", message(), {"channel_kind": "public"}),
    (
        "message without channel_type (an export folder with no listing): kind unknown",
        message(channel_type=None),
        {"channel_kind": None},
    ),
    (
        "edited via message_changed",
        changed(EDITED_INNER),
        {
            "action": "edited",
            "ts": "1690400001.000100",
            "text": "hello team!",
            "user": U1,
            "event_time": 1690400099.0,
        },
    ),
    (
        "edited thread reply",
        changed({**EDITED_INNER, "thread_ts": "1690400000.000001"}),
        {"action": "edited", "thread_ts": "1690400000.000001"},
    ),
    (
        "edit without edited.ts uses event_ts",
        changed({k: v for k, v in EDITED_INNER.items() if k != "edited"}),
        {"action": "edited", "event_time": 1690400100.0002},
    ),
    (
        "deleted via message_deleted",
        {
            "type": "message",
            "subtype": "message_deleted",
            "hidden": True,
            "channel": CH,
            "ts": "1690400300.000400",
            "deleted_ts": "1690400001.000100",
            "event_ts": "1690400300.000400",
            "previous_message": {
                "type": "message",
                "user": U1,
                "text": "oops",
                "ts": "1690400001.000100",
                "thread_ts": "1690400000.000001",
            },
        },
        {
            "action": "deleted",
            "ts": "1690400001.000100",
            "text": "",
            "user": U1,
            "thread_ts": "1690400000.000001",
            "event_time": 1690400300.0004,
        },
    ),
    (
        "deleted without previous_message",
        {
            "type": "message",
            "subtype": "message_deleted",
            "channel": CH,
            "deleted_ts": "1690400001.000100",
            "event_ts": "1690400300.000400",
        },
        {"action": "deleted", "user": None},
    ),
    (
        "thread parent replaced by a tombstone",
        changed(
            {
                "type": "message",
                "subtype": "tombstone",
                "user": "USLACKBOT",
                "text": "This message was deleted.",
                "ts": "1690400001.000100",
                "thread_ts": "1690400001.000100",
                "hidden": True,
            }
        ),
        {"action": "deleted", "ts": "1690400001.000100", "user": None},
    ),
    (
        "tombstone line in an export",
        message(subtype="tombstone", user="USLACKBOT", text="This message was deleted."),
        {"action": "deleted", "user": None},
    ),
    (
        "reaction added",
        reaction(),
        {
            "kind": "reaction",
            "action": "added",
            "channel": CH,
            "item_ts": "1690400001.000100",
            "user": U2,
            "reaction": "thumbsup",
            "event_time": 1690400200.0003,
        },
    ),
    ("reaction removed", reaction("reaction_removed"), {"kind": "reaction", "action": "removed"}),
    (
        "reaction with skin tone",
        reaction(reaction="+1::skin-tone-2"),
        {"reaction": "+1::skin-tone-2"},
    ),
]


@pytest.mark.parametrize(("name", "event", "expected"), ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_accepted(name: str, event: Any, expected: dict[str, Any]) -> None:
    outcome = normalize_event(event, ENV, RULES)
    assert isinstance(outcome, Accepted), outcome
    for field, value in expected.items():
        assert getattr(outcome.event, field) == value, field
    assert outcome.event.event_id == ENV.event_id
    assert outcome.event.team == "T0TEAM"
    assert outcome.key == outcome.event.channel
    # whatever was accepted serializes and reads back as the topic's contract
    assert SLACK_MESSAGES.decode(encode(outcome.event)) == outcome.event


DROPPED: list[tuple[str, Any, str]] = [
    ("bot_message subtype", message(subtype="bot_message", bot_id="B01", user=None), "bot"),
    ("message with bot_id", message(bot_id="B01", app_id="A01"), "bot"),
    ("message with bot_profile", message(bot_profile={"id": "B01"}), "bot"),
    ("our own bot user", message(user=BOT_USER), "bot"),
    ("slackbot", message(user="USLACKBOT", text="reminder"), "bot"),
    ("slackbot_response", message(subtype="slackbot_response"), "bot"),
    (
        "channel_join",
        message(subtype="channel_join", text="<@U0AAA1111> has joined the channel"),
        "channel_join",
    ),
    ("channel_leave", message(subtype="channel_leave"), "channel_leave"),
    ("channel_topic", message(subtype="channel_topic", topic="x"), "channel_topic"),
    ("channel_purpose", message(subtype="channel_purpose"), "channel_purpose"),
    ("channel_name", message(subtype="channel_name"), "channel_name"),
    ("channel_archive", message(subtype="channel_archive"), "channel_archive"),
    ("pinned_item", message(subtype="pinned_item"), "pinned_item"),
    ("reminder_add", message(subtype="reminder_add"), "reminder_add"),
    ("bot_add", message(subtype="bot_add"), "bot_add"),
    ("group_join", message(subtype="group_join"), "group_join"),
    ("message_replied (legacy)", message(subtype="message_replied", hidden=True), "message_replied"),
    ("direct message", message(channel="D0DIRECT1", channel_type="im"), "direct_message"),
    ("App Home message to the bot", message(channel="D0DIRECT1", channel_type="app_home"), "direct_message"),
    ("DM id without channel_type", message(channel="D0DIRECT1", channel_type=None), "direct_message"),
    ("group DM", message(channel="G0MPIM001", channel_type="mpim"), "group_dm"),
    # Private channels are not read by default (the bot may be invited; a DM quoting one could
    # reach a non-member): an intended change, formerly accepted. Rules(private_channels=True)
    # reads them (test_private_channels_are_read_only_when_the_rules_allow_them).
    (
        "private channel message (bot invited)",
        message(channel="G0PRIVATE", channel_type="group"),
        "private_channel",
    ),
    (
        "private channel with a C id (Slack's ids since 2021): channel_type decides, not the id",
        message(channel="C0PRIVATE", channel_type="group"),
        "private_channel",
    ),
    ("edit in a private channel", changed(EDITED_INNER, channel_type="group"), "private_channel"),
    ("edit in a DM", changed(EDITED_INNER, channel="D0DIRECT1", channel_type="im"), "direct_message"),
    (
        "deletion in a group DM",
        {
            "type": "message",
            "subtype": "message_deleted",
            "channel": "G0MPIM001",
            "channel_type": "mpim",
            "deleted_ts": "1690400001.000100",
            "event_ts": "1690400300.000400",
        },
        "group_dm",
    ),
    ("tombstone in a private channel", message(subtype="tombstone", channel_type="group"), "private_channel"),
    ("edit of a bot message", changed({**EDITED_INNER, "bot_id": "B01"}), "bot"),
    (
        "message_changed with the same text (unfurl)",
        changed(
            {**EDITED_INNER, "attachments": [{"title": "link"}]},
            {"type": "message", "user": U1, "text": "hello team!", "ts": EDITED_INNER["ts"]},
        ),
        "unchanged_edit",
    ),
    (
        "deletion of a bot message",
        {
            "type": "message",
            "subtype": "message_deleted",
            "channel": CH,
            "deleted_ts": "1690400001.000100",
            "event_ts": "1690400300.000400",
            "previous_message": {
                "type": "message",
                "subtype": "bot_message",
                "bot_id": "B1",
                "ts": "1690400001.000100",
            },
        },
        "bot",
    ),
    ("reaction on a file", reaction(item={"type": "file", "file": "F01"}), "reaction_not_on_message"),
    ("reaction by our bot", reaction(user=BOT_USER), "bot"),
]


@pytest.mark.parametrize(("name", "event", "reason"), DROPPED, ids=[c[0] for c in DROPPED])
def test_dropped(name: str, event: Any, reason: str) -> None:
    outcome = normalize_event(event, ENV, RULES)
    assert isinstance(outcome, Dropped), outcome
    assert outcome.reason == reason


REJECTED: list[tuple[str, Any, str]] = [
    ("not an object", ["type", "message"], "invalid_event"),
    ("no event at all", None, "missing_field"),
    ("no type", {"channel": CH}, "missing_field"),
    ("unknown event type", {"type": "app_mention", "user": U1}, "unknown_event_type"),
    ("unknown subtype", message(subtype="huddle_started_v9"), "unknown_subtype"),
    ("subtype not a string", message(subtype=7), "invalid_field"),
    ("message without channel", message(channel=None), "missing_field"),
    ("message without ts", message(ts=None), "missing_field"),
    ("message without user", message(user=None), "missing_field"),
    ("ts not a number", message(ts="yesterday"), "invalid_field"),
    ("ts of the wrong type", message(ts=1690400001.0001), "invalid_field"),
    ("text of the wrong type", message(text={"rich": "text"}), "invalid_field"),
    ("channel id with a lone surrogate", message(channel="C\ud800X"), "invalid_field"),
    ("channel id far too long", message(channel="C" * 500), "invalid_field"),
    ("thread_ts garbage", message(thread_ts="abc"), "invalid_field"),
    ("channel_type Slack never documented", message(channel_type="secret_room"), "invalid_field"),
    ("channel_type not a string", message(channel_type=["channel"]), "invalid_field"),
    ("message_changed without message", changed(EDITED_INNER) | {"message": None}, "missing_field"),
    ("message_changed with message a string", changed(EDITED_INNER) | {"message": "hi"}, "invalid_field"),
    (
        "message_changed with unknown inner subtype",
        changed({**EDITED_INNER, "subtype": "weird"}),
        "unknown_subtype",
    ),
    (
        "message_deleted without deleted_ts",
        {"type": "message", "subtype": "message_deleted", "channel": CH, "event_ts": "1.0"},
        "missing_field",
    ),
    ("reaction without item", reaction(item=None), "missing_field"),
    ("reaction without user", reaction(user=None), "missing_field"),
    ("reaction item without channel", reaction(item={"type": "message", "ts": "1.2"}), "missing_field"),
    ("reaction name empty", reaction(reaction=""), "invalid_field"),
]


@pytest.mark.parametrize(("name", "event", "reason"), REJECTED, ids=[c[0] for c in REJECTED])
def test_rejected(name: str, event: Any, reason: str) -> None:
    outcome = normalize_event(event, ENV, RULES)
    assert isinstance(outcome, Rejected), outcome
    assert outcome.reason == reason
    assert outcome.detail
    outcome.detail.encode("utf-8")  # details go into headers and logs: never a lone surrogate


def test_four_megabyte_text_is_truncated_to_slacks_limit() -> None:
    outcome = normalize_event(message(text="x" * 4_000_000), ENV, RULES)
    assert isinstance(outcome, Accepted)
    assert isinstance(outcome.event, SlackMessage)
    assert len(outcome.event.text) == 40_000
    assert outcome.repairs == ("truncated",)
    assert len(encode(outcome.event)) < 1_048_576  # fits a default Kafka record


def test_lone_surrogates_are_replaced_and_valid_pairs_kept() -> None:
    outcome = normalize_event(message(text="bad \ud800 half, good 😀, bad \udfff"), ENV, RULES)
    assert isinstance(outcome, Accepted)
    assert isinstance(outcome.event, SlackMessage)
    assert outcome.event.text == "bad \ufffd half, good 😀, bad \ufffd"
    assert outcome.repairs == ("replaced_surrogates",)
    encode(outcome.event)  # serializes


def test_nul_characters_are_removed() -> None:
    outcome = normalize_event(message(text="a\x00b"), ENV, RULES)
    assert isinstance(outcome, Accepted)
    assert isinstance(outcome.event, SlackMessage)
    assert outcome.event.text == "ab"
    assert outcome.repairs == ("removed_nul",)


def test_truncation_limit_is_a_rule() -> None:
    outcome = normalize_event(message(text="abcdef"), ENV, Rules(max_text_chars=3))
    assert isinstance(outcome, Accepted)
    assert isinstance(outcome.event, SlackMessage)
    assert outcome.event.text == "abc"


def test_without_envelope_an_export_line_keeps_its_own_times() -> None:
    outcome = normalize_event(message(team="T0EXPORT"))
    assert isinstance(outcome, Accepted)
    assert outcome.event.event_id is None
    assert outcome.event.team == "T0EXPORT"
    assert outcome.event.event_time == pytest.approx(1690400001.0001)


def test_reaction_event_time_falls_back_to_the_envelope() -> None:
    event = reaction()
    del event["event_ts"]
    outcome = normalize_event(event, ENV, RULES)
    assert isinstance(outcome, Accepted)
    assert isinstance(outcome.event, SlackReaction)
    assert outcome.event.event_time == ENV.event_time


def test_envelope_of_an_event_callback() -> None:
    body = {"type": "event_callback", "team_id": "T0TEAM", "event_id": "Ev0XYZ", "event_time": 1690400000}
    assert envelope_of(body) == Envelope(event_id="Ev0XYZ", team="T0TEAM", event_time=1690400000.0)
    assert envelope_of({"event_id": 5, "team_id": "\ud800"}) == Envelope()


def test_never_raises_on_odd_values() -> None:
    odd: list[Any] = [0, "", [], {}, {"type": 5}, {"type": "message", "subtype": None}, message(edited="x")]
    odd += [changed(EDITED_INNER) | {"previous_message": "x"}, reaction(item=[1, 2])]
    for event in odd:
        assert isinstance(normalize_event(event, ENV, RULES), Accepted | Dropped | Rejected)


PRIVATE_EVENTS: list[tuple[str, Any, str]] = [
    ("new", message(channel="G0PRIVATE", channel_type="group"), "new"),
    ("edited", changed(EDITED_INNER, channel="G0PRIVATE", channel_type="group"), "edited"),
    (
        "deleted",
        {
            "type": "message",
            "subtype": "message_deleted",
            "channel": "G0PRIVATE",
            "channel_type": "group",
            "deleted_ts": "1690400001.000100",
            "event_ts": "1690400300.000400",
        },
        "deleted",
    ),
]


@pytest.mark.parametrize(("name", "event", "action"), PRIVATE_EVENTS, ids=[c[0] for c in PRIVATE_EVENTS])
def test_private_channels_are_read_only_when_the_rules_allow_them(name: str, event: Any, action: str) -> None:
    refused = normalize_event(event, ENV, RULES)
    assert refused == Dropped("private_channel", "G0PRIVATE is private")
    allowed = normalize_event(event, ENV, Rules(bot_users=RULES.bot_users, private_channels=True))
    assert isinstance(allowed, Accepted), allowed
    assert isinstance(allowed.event, SlackMessage)
    assert (allowed.event.action, allowed.event.channel_kind) == (action, "private")
    assert SLACK_MESSAGES.decode(encode(allowed.event)) == allowed.event


def test_dms_are_never_read_even_when_private_channels_are() -> None:
    rules = Rules(private_channels=True)
    assert normalize_event(message(channel="D0DIRECT1", channel_type="im"), ENV, rules) == Dropped(
        "direct_message", "D0DIRECT1 is im"
    )
    assert isinstance(normalize_event(message(channel="G0MPIM001", channel_type="mpim"), ENV, rules), Dropped)


def test_a_shared_channel_is_read_and_marked_shared() -> None:
    """Slack says a channel is shared with another organization in the envelope, not the event."""
    body = {"team_id": "T0TEAM", "event_id": "Ev0SHR", "is_ext_shared_channel": True, "event": message()}
    envelope = envelope_of(body)
    assert envelope.ext_shared
    outcome = normalize_event(body["event"], envelope, RULES)
    assert isinstance(outcome, Accepted)
    assert isinstance(outcome.event, SlackMessage)
    assert outcome.event.channel_kind == "shared"
    edit = normalize_event(changed(EDITED_INNER, channel_type="channel"), envelope, RULES)
    assert isinstance(edit, Accepted)
    assert isinstance(edit.event, SlackMessage)
    assert edit.event.channel_kind == "shared"
    # a private channel that is shared stays private (skipped by default, "private" when allowed)
    private = message(channel_type="group")
    assert normalize_event(private, envelope, RULES) == Dropped("private_channel", f"{CH} is private")
    allowed = normalize_event(private, envelope, Rules(private_channels=True))
    assert isinstance(allowed, Accepted)
    assert isinstance(allowed.event, SlackMessage)
    assert allowed.event.channel_kind == "private"
    # only a literal true counts
    assert not envelope_of({"is_ext_shared_channel": "yes"}).ext_shared


def test_rules_from_settings_carry_the_private_channel_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Rules.from_settings(IngestSettings()).private_channels is False
    monkeypatch.setenv("BEEPGPT_INGEST_PRIVATE_CHANNELS", "true")
    rules = Rules.from_settings(IngestSettings(max_text_chars=7), frozenset({BOT_USER}))
    assert (rules.private_channels, rules.max_text_chars, rules.bot_users) == (True, 7, frozenset({BOT_USER}))
