"""The controls' pure side in ingest: what a click on an alert's control, `/beep mute` and a
plain-words digest schedule do to a person's preferences, and what the reply says."""

from __future__ import annotations

from beepgpt.contracts import (
    FEWER_ACTION,
    MUTE_ACTION,
    SNOOZE_ACTIONS,
    FeedbackButton,
    FollowedTopic,
    Preferences,
)
from ingest.slack_app import beep_command as beep
from ingest.slack_app.alert_controls import change, noted

NOW = 1_709_629_200.0  # 2024-03-05 09:00 UTC
TOPIC = FollowedTopic(id="t-1", text="streaming <decisions>", created_at=0.0)


def prefs(**fields: object) -> Preferences:
    return Preferences.model_validate({"user": "U1", "opted_in": True, "tz": "UTC", "topics": [TOPIC], **fields})


def test_each_control_changes_the_preferences_and_says_what_and_how_to_undo() -> None:
    topic_alert = FeedbackButton(conversation_id="C0INFRA:1700000000.000100/thread", reason="topic", topic_id="t-1")
    muted = change(MUTE_ACTION, topic_alert, prefs(), NOW)
    assert muted.prefs is not None
    assert [(m.channel, m.conversation_id) for m in muted.prefs.mutes] == [("C0INFRA", topic_alert.conversation_id)]
    assert "Muted this conversation in <#C0INFRA> for 30 days" in muted.note
    assert "`/beep unmute <#C0INFRA>`" in muted.note
    fewer = change(FEWER_ACTION, topic_alert, prefs(), NOW)
    assert fewer.prefs is not None
    assert [(w.topic_id, w.weight) for w in fewer.prefs.weights] == [("t-1", 0.5)]
    assert "your topic “streaming &lt;decisions&gt;” now need a closer match (weight 0.5)" in fewer.note
    interest = FeedbackButton(conversation_id="C0INFRA:1700000000.000100", reason="interest")
    by_channel = change(FEWER_ACTION, interest, prefs(), NOW)
    assert "Alerts from <#C0INFRA> now need a stronger sign" in by_channel.note
    snoozed = change(SNOOZE_ACTIONS["tomorrow"], topic_alert, prefs(), NOW)
    assert snoozed.prefs is not None
    assert snoozed.prefs.snoozed_until == NOW + 24 * 3600  # 09:00 the next day, UTC
    assert change(SNOOZE_ACTIONS["1h"], topic_alert, prefs(), NOW).prefs.snoozed_until == NOW + 3600  # type: ignore[union-attr]


def test_the_clicked_controls_row_becomes_the_note() -> None:
    blocks = [{"type": "section", "block_id": "a"}, {"type": "actions", "block_id": "beepgpt:m:controls"}]
    assert noted(blocks, "beepgpt:m:controls", "done")[1]["type"] == "context"
    assert noted(blocks, "beepgpt:m:controls", "done")[0] == blocks[0]


def test_mute_and_unmute_commands_read_slacks_escaped_channels() -> None:
    assert beep.parse("mute <#C0INFRA|infra>") == beep.MuteChannel("C0INFRA")
    assert beep.parse("mute <#C0INFRA>") == beep.MuteChannel("C0INFRA")
    assert beep.parse("mute") == beep.ShowMutes()
    assert beep.parse("unmute all") == beep.UnmuteChannel(None)
    assert isinstance(beep.parse("mute infra"), beep.Invalid)
    muted = beep.apply(beep.MuteChannel("C0INFRA"), prefs(), NOW)
    assert muted.prefs is not None
    assert muted.prefs.muted_channels(NOW) == ["C0INFRA"]
    assert beep.apply(beep.MuteChannel("C0INFRA"), muted.prefs, NOW).prefs is None  # already muted
    assert "Muted channels: <#C0INFRA>" in beep.apply(beep.ListAll(), muted.prefs, NOW).reply
    unmuted = beep.apply(beep.UnmuteChannel("C0INFRA"), muted.prefs, NOW)
    assert unmuted.prefs is not None
    assert unmuted.prefs.mutes == []
    assert beep.apply(beep.UnmuteChannel(None), unmuted.prefs, NOW).reply == "Nothing is muted."


def test_a_digest_schedule_in_plain_words_and_resume_ends_a_snooze() -> None:
    assert beep.parse("digest three times a day") == beep.Schedule("three_times_a_day")
    assert beep.parse("digest Once  a day") == beep.Schedule("once_a_day")
    assert beep.parse("digest real-time") == beep.Schedule("real_time")
    assert beep.parse("digest 3x") == beep.Digest(("09:00", "13:00", "17:00"))  # the times only, as before
    once = beep.apply(beep.Schedule("once_a_day"), prefs(), NOW)
    assert once.prefs is not None
    assert (once.prefs.daily_budget, once.prefs.digest_times) == (0, ["09:00"])
    assert "Digest once a day: at 09:00 (UTC), and no real-time DMs" in once.reply
    assert beep.apply(beep.Schedule("once_a_day"), once.prefs, NOW).prefs is None
    assert "Alerts: once a day" in beep.describe_schedule(once.prefs, beep.BUILT_IN_DEFAULTS)
    back = beep.apply(beep.Schedule("real_time"), once.prefs, NOW)
    assert back.prefs is not None
    assert (back.prefs.daily_budget, back.prefs.digest_times) == (None, None)
    resumed = beep.apply(beep.Resume(), prefs(snoozed_until=NOW + 60), NOW)
    assert resumed.prefs is not None
    assert resumed.prefs.snoozed_until is None
