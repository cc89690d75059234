"""`/beep` parsing and its effect on preferences (pure), and the App Home view's shape."""

from __future__ import annotations

import pytest

from beepgpt.contracts import FollowedTopic, Notification, Preferences, QuietHours
from devstack.slack_standin.blocks import MAX_VIEW_BLOCKS, block_problems
from ingest.commands import beep_command as beep
from ingest.commands.app_home import home_view

NOW = 1_700_000_000.0


def prefs(**fields: object) -> Preferences:
    return Preferences.model_validate({"user": "U1", **fields})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", beep.Help()),
        ("help", beep.Help()),
        ("follow  streaming   technology decisions ", beep.Follow("streaming technology decisions")),
        ("follow data &amp; ML", beep.Follow("data & ML")),
        ("FOLLOW x", beep.Follow("x")),
        ("unfollow 2", beep.Unfollow(2)),
        ("unfollow all", beep.Unfollow("all")),
        ("list", beep.ListAll()),
        ("pause 2h", beep.Pause(7200)),
        ("pause 1h30m", beep.Pause(5400)),
        ("pause 45 min", beep.Pause(2700)),
        ("pause 1 day", beep.Pause(86400)),
        ("resume", beep.Resume()),
        ("quiet 22:00-07:00", beep.Quiet("22:00", "07:00", None)),
        ("quiet 22-7 Europe/Paris", beep.Quiet("22:00", "07:00", "Europe/Paris")),
        ("quiet off", beep.Quiet(None, None, None)),
        ("on", beep.Alerts(True)),
        ("off", beep.Alerts(False)),
    ],
)
def test_parse(text: str, expected: object) -> None:
    assert beep.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("follow", "What should I follow?"),
        ("follow    ", "What should I follow?"),
        ("follow " + "x" * 5_000, "5,000 characters"),
        ("unfollow", "Use its number"),
        ("unfollow 0", "Use its number"),
        ("unfollow two", "Use its number"),
        ("pause", "For how long?"),
        ("pause soon", "For how long?"),
        ("pause 0m", "For how long?"),
        ("pause 90d", "at most 30 days"),
        ("quiet 25:00-07:00", "24-hour time"),
        ("quiet 22:00", "24-hour time"),
        ("quiet 9-9", "different start and end"),
        ("quiet 22-7 Mars/Olympus", "don't know the time zone"),
        ("dance", "I don't know `/beep dance`"),
        ("<script>" * 20, "I don't know"),
    ],
)
def test_bad_input_gets_a_helpful_reply(text: str, hint: str) -> None:
    parsed = beep.parse(text)
    assert isinstance(parsed, beep.Invalid)
    assert hint in parsed.reply
    assert "<script>" not in parsed.reply


def test_follow_opts_in_and_refuses_duplicates_and_too_many() -> None:
    result = beep.apply(beep.Follow("Streaming decisions"), prefs(), NOW)
    assert result.prefs is not None
    assert result.prefs.opted_in
    assert [t.text for t in result.prefs.topics] == ["Streaming decisions"]
    assert "Alerts are now on" in result.reply
    again = beep.apply(beep.Follow("streaming DECISIONS"), result.prefs, NOW)
    assert again.prefs is None
    assert "already follow" in again.reply
    full = prefs(topics=[FollowedTopic(id=str(i), text=f"t{i}") for i in range(beep.MAX_TOPICS)])
    assert beep.apply(beep.Follow("one more"), full, NOW).prefs is None


def test_unfollow_by_number_or_all() -> None:
    current = prefs(opted_in=True, topics=[FollowedTopic(id="a", text="A"), FollowedTopic(id="b", text="B")])
    one = beep.apply(beep.Unfollow(1), current, NOW)
    assert one.prefs is not None
    assert [t.id for t in one.prefs.topics] == ["b"]
    assert beep.apply(beep.Unfollow(3), current, NOW).prefs is None
    everything = beep.apply(beep.Unfollow("all"), current, NOW)
    assert everything.prefs is not None
    assert everything.prefs.topics == []


def test_pause_resume_quiet_and_alerts() -> None:
    paused = beep.apply(beep.Pause(3600), prefs(opted_in=True), NOW)
    assert paused.prefs is not None
    assert paused.prefs.paused_until == NOW + 3600
    assert "<!date^" in paused.reply
    resumed = beep.apply(beep.Resume(), paused.prefs, NOW + 60)
    assert resumed.prefs is not None
    assert resumed.prefs.paused_until is None
    assert beep.apply(beep.Resume(), resumed.prefs, NOW).prefs is None
    quiet = beep.apply(beep.Quiet("22:00", "07:00", None), prefs(), NOW, user_tz="Europe/Paris")
    assert quiet.prefs is not None
    assert quiet.prefs.quiet_hours == QuietHours(start="22:00", end="07:00", tz="Europe/Paris")
    off = beep.apply(beep.Alerts(False), prefs(opted_in=True), NOW)
    assert off.prefs is not None
    assert not off.prefs.opted_in


def test_list_escapes_what_people_typed() -> None:
    current = prefs(opted_in=True, topics=[FollowedTopic(id="a", text="<!channel> & <@U2>")])
    reply = beep.apply(beep.ListAll(), current, NOW).reply
    assert "<!channel>" not in reply
    assert "&lt;!channel&gt; &amp; &lt;@U2&gt;" in reply


def test_home_view_is_valid_block_kit() -> None:
    current = prefs(
        opted_in=True,
        paused_until=NOW + 600,
        quiet_hours=QuietHours(start="22:00", end="07:00"),
        topics=[FollowedTopic(id=str(i), text="t" * 200) for i in range(beep.MAX_TOPICS)],
    )
    alerts = [
        Notification(user="U1", conversation_id="C1:1700000000.000100", outcome="sent", decided_at=NOW),
        Notification(
            user="U1", conversation_id="C1:1700000000.000200/thread", outcome="sent", decided_at=NOW
        ),
        Notification(user="U1", conversation_id="odd", outcome="digest", decided_at=NOW),
    ]
    view = home_view(current, alerts, NOW)
    assert view["type"] == "home"
    recent = next(b["text"]["text"] for b in view["blocks"] if "• <#C1>" in str(b))
    assert recent.count(" started <!date^1700000000^") == 2  # the thread's start read from its id too
    assert "<#C1> (a thread) started" in recent
    assert block_problems(view["blocks"], limit=MAX_VIEW_BLOCKS) == []
    empty = home_view(prefs(), [], NOW)
    assert "Turn on alerts" in str(empty)
