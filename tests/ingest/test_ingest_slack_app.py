"""The Slack app (ingest/slack_app): `/beep` parsing and replies, the App Home view as Slack validates it."""

from __future__ import annotations

import pytest

from beepgpt.contracts import (
    SUGGEST_ACTION,
    FollowedTopic,
    Notification,
    Preferences,
    QuietHours,
    SuggestedTopic,
    SuggestionExample,
    Suggestions,
)
from beepgpt.settings import AlertDefaults
from devstack.slack_standin.blocks import MAX_VIEW_BLOCKS, block_problems
from ingest.slack_app import beep_command as beep
from ingest.slack_app import suggested as suggested_ui
from ingest.slack_app.app_home import BUDGET_ACTION, DIGEST_ACTION, SCHEDULE_ACTION, home_view

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
        ("budget", beep.ShowSchedule()),
        ("budget 5", beep.Budget(5)),
        ("budget 0", beep.Budget(0)),
        ("budget 50", beep.Budget(50)),
        ("budget default", beep.Budget(None)),
        ("digest", beep.ShowSchedule()),
        ("digest 3x", beep.Digest(("09:00", "13:00", "17:00"))),
        ("digest 1X", beep.Digest(("09:00",))),
        ("digest 1× Europe/Paris", beep.Digest(("09:00",), "Europe/Paris")),
        ("digest 17:00,8:30", beep.Digest(("08:30", "17:00"))),
        ("digest 9, 1700, 9:00 America/New_York", beep.Digest(("09:00", "17:00"), "America/New_York")),
        ("digest 08:30 16:00", beep.Digest(("08:30", "16:00"))),
        ("digest default", beep.Digest(None)),
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
        ("budget 51", "from 0 to 50"),
        ("budget -1", "from 0 to 50"),
        ("budget lots", "from 0 to 50"),
        ("digest 25:00", "24-hour time"),
        ("digest sometimes", "When should your digest arrive?"),
        ("digest 3x Mars/Olympus", "don't know the time zone"),
        ("digest 6,7,8,9,10,11,12", "At most 6 digests a day"),
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


def test_budget_and_digest_change_preferences_and_say_what_they_mean() -> None:
    five = beep.apply(beep.Budget(5), prefs(opted_in=True, tz="Europe/Paris"), NOW)
    assert five.prefs is not None
    assert five.prefs.daily_budget == 5
    assert "5 real-time DMs a day" in five.reply
    assert "09:00, 13:00 and 17:00 (Europe/Paris), the default" in five.reply
    assert beep.apply(beep.Budget(5), five.prefs, NOW).prefs is None  # already so
    assert "already 5" in beep.apply(beep.Budget(5), five.prefs, NOW).reply
    none = beep.apply(beep.Budget(0), five.prefs, NOW)
    assert none.prefs is not None
    assert "every alert waits for your digest" in none.reply
    back = beep.apply(beep.Budget(None), none.prefs, NOW)
    assert back.prefs is not None
    assert back.prefs.daily_budget is None
    once = beep.apply(beep.Digest(("09:00",), "Asia/Tokyo"), back.prefs, NOW)
    assert once.prefs is not None
    assert (once.prefs.digest_times, once.prefs.tz) == (["09:00"], "Asia/Tokyo")
    assert "Digest times set: 09:00 (Asia/Tokyo)" in once.reply
    assert "3 real-time DMs a day, the default" in once.reply
    # The deployment's defaults are what "default" shows.
    deployment = AlertDefaults.model_construct(daily_budget=2, digest_times=["12:00"])
    shown = beep.apply(beep.ShowSchedule(), prefs(), NOW, defaults=deployment).reply
    assert "2 real-time DMs a day, the default" in shown
    assert "12:00 (UTC), the default" in shown


def test_the_first_change_records_the_persons_slack_time_zone() -> None:
    assert beep.wants_slack_zone(beep.Alerts(True), prefs())
    assert not beep.wants_slack_zone(beep.Alerts(True), prefs(tz="Europe/Paris"))
    assert not beep.wants_slack_zone(beep.ListAll(), prefs())
    assert not beep.wants_slack_zone(beep.ShowSchedule(), prefs())
    assert beep.wants_slack_zone(beep.Quiet("22:00", "07:00", None), prefs(tz="Europe/Paris"))
    on = beep.apply(beep.Alerts(True), prefs(), NOW, user_tz="America/New_York")
    assert on.prefs is not None
    assert on.prefs.tz == "America/New_York"
    # Slack did not answer: nothing recorded (the next change asks again), and UTC meanwhile.
    unknown = beep.apply(beep.Budget(2), prefs(), NOW, user_tz=None)
    assert unknown.prefs is not None
    assert unknown.prefs.tz is None
    assert "(UTC)" in unknown.reply
    # A zone of one's own is never replaced by Slack's.
    kept = beep.apply(beep.Budget(2), prefs(tz="Europe/Paris"), NOW, user_tz="America/New_York")
    assert kept.prefs is not None
    assert kept.prefs.tz == "Europe/Paris"


def test_help_and_list_show_the_budget_and_digest() -> None:
    assert "`/beep budget" in beep.HELP
    assert "`/beep digest 3x`" in beep.HELP
    listing = beep.apply(beep.ListAll(), prefs(daily_budget=1, digest_times=["08:30", "16:00"]), NOW).reply
    assert "Daily budget: 1 real-time DM a day" in listing
    assert "Digest: 08:30 and 16:00 (UTC)" in listing


def test_home_view_shows_the_budget_and_digest_with_the_current_choice_marked() -> None:
    view = home_view(prefs(opted_in=True, daily_budget=5, digest_times=["09:00"], tz="Europe/Paris"), [], NOW)
    assert block_problems(view["blocks"], limit=MAX_VIEW_BLOCKS) == []
    text = str(view)
    assert "*Daily budget*: 5 real-time DMs a day" in text
    assert "*Digest*: 09:00 (Europe/Paris)" in text
    rows = {b["block_id"]: b["elements"] for b in view["blocks"] if b["type"] == "actions"}
    marked = {
        row: [e["value"] for e in elements if e.get("style") == "primary"] for row, elements in rows.items()
    }
    assert marked == {BUDGET_ACTION: ["5"], DIGEST_ACTION: ["1x"], SCHEDULE_ACTION: ["real_time"]}
    assert all(len({e["action_id"] for e in row}) == len(row) for row in rows.values())  # unique in a block
    defaults = home_view(prefs(opted_in=True), [], NOW)
    rows = {b["block_id"]: b["elements"] for b in defaults["blocks"] if b["type"] == "actions"}
    assert [e["value"] for e in rows[BUDGET_ACTION] if e.get("style")] == ["default"]
    assert [e["value"] for e in rows[DIGEST_ACTION] if e.get("style")] == ["default"]


# --- suggested topics ----------------------------------------------------------------------------


def suggested(*names: str) -> Suggestions:
    example = SuggestionExample(
        conversation_id="C1:1690800000.000100",
        channel="C1",
        first_ts="1690800000.000100",
        first_line="Kafka lag?",
    )
    return Suggestions(
        user="U1",
        conversations=30,
        topics=[SuggestedTopic(name=n, conversations=10, examples=[example, example]) for n in names],
    )


def test_beep_suggest_parses_and_needs_no_time_zone() -> None:
    assert beep.parse("suggest") == beep.Suggest()
    assert beep.parse("Suggestions") == beep.Suggest()
    assert not beep.wants_slack_zone(beep.Suggest(), prefs())
    assert "/beep suggest" in beep.HELP


def test_suggest_reply_has_a_follow_button_per_suggestion_not_yet_followed() -> None:
    followed = prefs(topics=[FollowedTopic(id="a", text="Fraud Detection")])
    answer = suggested_ui.reply(followed, suggested("fraud detection", "kafka lag", "warehouse sync"))
    assert block_problems(answer["blocks"]) == []
    buttons = [b["accessory"] for b in answer["blocks"] if "accessory" in b]
    assert [(b["action_id"], b["value"]) for b in buttons] == [
        (SUGGEST_ACTION, "kafka lag"),
        (SUGGEST_ACTION, "warehouse sync"),
    ]
    assert "<#C1>" in str(answer["blocks"])
    assert "kafka lag" in answer["text"]
    assert "No suggestions yet" in suggested_ui.reply(prefs(), None)["text"]
    assert "already follow" in suggested_ui.reply(followed, suggested("fraud detection"))["text"]


def test_home_view_has_a_suggested_topics_section() -> None:
    view = home_view(prefs(opted_in=True), [], NOW, suggestions=suggested(*(f"topic {i}" for i in range(8))))
    assert block_problems(view["blocks"], limit=MAX_VIEW_BLOCKS) == []
    text = str(view["blocks"])
    assert "Suggested topics" in text
    values = [
        b["accessory"]["value"]
        for b in view["blocks"]
        if b.get("accessory", {}).get("action_id") == SUGGEST_ACTION
    ]
    assert values == [f"topic {i}" for i in range(5)]  # the top five
    assert "No suggestions yet" in str(home_view(prefs(), [], NOW)["blocks"])
