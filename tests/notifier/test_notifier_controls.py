"""A person's controls as pure rules: mutes, "fewer like this", snoozes and digest-only schedules
— what the contract keeps (bounded), and what the notifier decides from it."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from notifier_helpers import candidate

from beepgpt.contracts import (
    MAX_MUTED_CHANNELS,
    MAX_MUTED_CONVERSATIONS,
    MAX_WEIGHTS,
    MIN_WEIGHT,
    MUTE_CONVERSATION_S,
    Preferences,
    QuietHours,
    TooManyMutes,
    raised_bar,
    snooze_end,
)
from beepgpt.settings import AlertDefaults
from notifier.budget import allowance
from notifier.controls import controlled
from notifier.decisions import admit
from notifier.digest import digest_why, ready_at
from notifier.held import HeldAlert
from notifier.stages import Work, controls_stage, hold_stage

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2024, 3, 5, 10, 0, tzinfo=PARIS).timestamp()
FLOW = "C0PROJECT:1700000000.000100"
THREAD = "C0PROJECT:1700000000.000100/thread"
OTHER = "C0PROJECT:1700000500.000100"


def prefs(**fields: object) -> Preferences:
    return Preferences.model_validate({"user": "U1", "opted_in": True, "tz": "Europe/Paris", **fields})


# --- mutes -----------------------------------------------------------------------------------------


def test_a_conversation_mute_covers_its_flow_and_thread_and_expires() -> None:
    muted = prefs().with_mute("C0PROJECT", THREAD, NOW)
    assert controlled(muted, candidate("U1", FLOW), NOW) == ("muted", "you muted this conversation; C0PROJECT")
    assert controlled(muted, candidate("U1", THREAD), NOW) is not None
    assert controlled(muted, candidate("U1", OTHER), NOW) is None  # another conversation of the channel
    assert controlled(muted, candidate("U1", FLOW), NOW + MUTE_CONVERSATION_S) is None  # expired


def test_a_channel_mute_covers_every_conversation_of_it_until_unmuted() -> None:
    muted = prefs().with_mute("C0PROJECT", FLOW, NOW).with_mute("C0PROJECT", None, NOW)
    assert [m.conversation_id for m in muted.mutes] == [None]  # the channel mute covers the conversation's
    assert controlled(muted, candidate("U1", OTHER), NOW + 10 * MUTE_CONVERSATION_S) == (
        "muted",
        "you muted this channel; C0PROJECT",
    )
    assert controlled(muted, candidate("U1", "C0OTHER:1.1"), NOW) is None
    assert muted.with_mute("C0PROJECT", None, NOW) == muted  # muting twice changes nothing
    assert controlled(muted.without_mute("C0PROJECT", NOW), candidate("U1", OTHER), NOW) is None


def test_mutes_are_bounded_conversations_push_out_the_oldest_channels_are_capped() -> None:
    many = prefs()
    for i in range(MAX_MUTED_CONVERSATIONS + 5):
        many = many.with_mute("C0PROJECT", f"C0PROJECT:{1700000000 + i}.000100", NOW + i)
    kept = [m.conversation_id for m in many.mutes]
    assert len(kept) == MAX_MUTED_CONVERSATIONS
    assert kept[0] == "C0PROJECT:1700000005.000100"  # the five oldest went
    channels = prefs()
    for i in range(MAX_MUTED_CHANNELS):
        channels = channels.with_mute(f"C{i:08d}", None, NOW)
    with pytest.raises(TooManyMutes):
        channels.with_mute("C0ONEMORE", None, NOW)
    # expired conversation mutes are dropped at the next change
    later = many.with_mute("C0PROJECT", OTHER, NOW + MUTE_CONVERSATION_S + 100)
    assert [m.conversation_id for m in later.mutes] == [OTHER]
    assert prefs().with_mute("C1", None, NOW).with_mute("C2", FLOW, NOW).without_mute(None, NOW).mutes == []


# --- fewer like this ------------------------------------------------------------------------------


def test_the_bar_moves_towards_certainty_and_the_score_is_left_alone() -> None:
    assert raised_bar(0.4, 1.0) == 0.4
    assert raised_bar(0.4, 0.5) == pytest.approx(0.7)
    assert raised_bar(0.2, 0.25) == pytest.approx(0.8)


def test_fewer_like_this_weighs_a_topic_for_topic_alerts_and_a_channel_for_interest_alerts() -> None:
    once, weight = prefs().with_fewer("topic", "C0PROJECT", "t-1", NOW)
    assert (weight.topic_id, weight.channel, weight.weight) == ("t-1", None, 0.5)
    # 0.87 against a topic line of 0.6: the bar is now 0.8, still cleared; twice, 0.9: not.
    assert controlled(once, candidate("U1", threshold=0.6), NOW) is None
    twice, _ = once.with_fewer("topic", "C0PROJECT", "t-1", NOW)
    outcome, detail = controlled(twice, candidate("U1", threshold=0.6), NOW) or ("", "")
    assert outcome == "down_weighted"
    assert "topic t-1, weight 0.25" in detail
    assert "below the raised bar 0.900 (was 0.600)" in detail
    # Another topic, or the same channel's interest alerts, are not affected by a topic's weight.
    assert controlled(twice, candidate("U1", topic_id="t-2", threshold=0.6), NOW) is None
    interest = candidate("U1", reason="interest", topic_id=None, score=0.5, threshold=0.3)
    assert controlled(twice, interest, NOW) is None
    by_channel, weight = prefs().with_fewer("interest", "C0PROJECT", None, NOW)
    assert (weight.topic_id, weight.channel) == (None, "C0PROJECT")
    assert controlled(by_channel, interest, NOW) == (
        "down_weighted",
        "fewer like this (channel C0PROJECT, weight 0.5): score 0.500 below the raised bar 0.650 (was 0.300)",
    )
    # A candidate from a scorer that does not say its bar cannot be weighed: it goes on.
    assert controlled(twice, candidate("U1"), NOW) is None


def test_weights_floor_and_are_bounded() -> None:
    floor = prefs()
    for _ in range(6):
        floor, weight = floor.with_fewer("topic", "C1", "t-1", NOW)
    assert weight.weight == MIN_WEIGHT
    assert len(floor.weights) == 1
    many = prefs()
    for i in range(MAX_WEIGHTS + 3):
        many, _ = many.with_fewer("interest", f"C{i:08d}", None, NOW)
    assert len(many.weights) == MAX_WEIGHTS
    assert many.weights[0].channel == "C00000003"
    assert many.without_weights().weights == []


def test_controls_stop_before_the_claim_with_their_own_outcomes() -> None:
    people = {
        "U1": prefs().with_mute("C0PROJECT", None, NOW),
        "U2": prefs(user="U2"),
    }
    works = [
        Work(record=None, candidate=candidate(u), rid=f"r{u}", received=0.0)  # type: ignore[arg-type]
        for u in ("U1", "U2")
    ]
    gate = controls_stage(works, people.get, NOW)
    assert [w.user for w in gate.moving] == ["U2"]
    assert [(w.user, w.decision.outcome if w.decision else "") for w in gate.stopped] == [("U1", "muted")]
    assert gate.finishes == []  # no claim taken, none to finish


# --- snooze ----------------------------------------------------------------------------------------


def test_a_snooze_ends_in_an_hour_or_tomorrow_morning_in_the_persons_zone() -> None:
    assert snooze_end("1h", NOW, "Europe/Paris") == NOW + 3600
    assert snooze_end("tomorrow", NOW, "Europe/Paris") == datetime(2024, 3, 6, 9, 0, tzinfo=PARIS).timestamp()
    late = datetime(2024, 3, 5, 23, 30, tzinfo=PARIS).timestamp()
    assert snooze_end("tomorrow", late, "Europe/Paris") == datetime(2024, 3, 6, 9, 0, tzinfo=PARIS).timestamp()
    assert snooze_end("tomorrow", NOW, "Mars/Olympus") == datetime(2024, 3, 6, 9, 0, tzinfo=ZoneInfo("UTC")).timestamp()


def test_a_snoozed_alert_is_held_and_audited_snoozed() -> None:
    snoozed = prefs(snoozed_until=NOW + 3600)
    admission = admit(snoozed, NOW)
    assert (admission.action, admission.until, admission.snoozed) == ("hold", NOW + 3600, True)
    work = Work(record=None, candidate=candidate("U1"), rid="r1", received=0.0, admission=admission)  # type: ignore[arg-type]
    gate = hold_stage([work], NOW)
    assert gate.stopped[0].decision is not None
    assert gate.stopped[0].decision.outcome == "snoozed"
    assert gate.holds[0].why == "snoozed"
    assert digest_why(gate.holds) == "Held back during your snooze"
    assert not admit(prefs(paused_until=NOW + 60), NOW).snoozed  # a pause stays `held`
    assert admit(snoozed, NOW + 3600).action == "deliver"


# --- digest schedules ------------------------------------------------------------------------------


def held(reason: str, at: float) -> HeldAlert:
    return HeldAlert(candidate=candidate("U1"), record="r", reason=reason, why="quiet hours", due=at, held_at=at)  # type: ignore[arg-type]


def test_a_schedule_in_plain_words_is_a_budget_of_zero_and_its_digest_times() -> None:
    three = prefs().with_schedule("three_times_a_day")
    assert (three.daily_budget, three.digest_times, three.schedule) == (0, ["09:00", "13:00", "17:00"], "three_times_a_day")
    once = three.with_schedule("once_a_day")
    assert (once.daily_budget, once.digest_times, once.schedule) == (0, ["09:00"], "once_a_day")
    back = once.with_schedule("real_time")
    assert (back.daily_budget, back.digest_times, back.schedule) == (None, None, "real_time")
    assert prefs().schedule == "real_time"  # the default
    assert prefs(daily_budget=0, digest_times=["08:30"]).schedule is None  # times of their own


def test_on_a_digest_only_schedule_quiet_hours_alerts_join_the_next_digest_time() -> None:
    defaults = AlertDefaults.model_construct()
    quiet = QuietHours(start="22:00", end="07:00", tz="Europe/Paris")
    night = datetime(2024, 3, 5, 23, 0, tzinfo=PARIS).timestamp()
    morning = datetime(2024, 3, 6, 7, 0, tzinfo=PARIS).timestamp()
    real_time = allowance(prefs(quiet_hours=quiet), defaults)
    assert ready_at([held("held", night)], real_time, morning) == morning  # as the window ends
    once = allowance(prefs(quiet_hours=quiet).with_schedule("once_a_day"), defaults)
    nine = datetime(2024, 3, 6, 9, 0, tzinfo=PARIS).timestamp()
    assert ready_at([held("held", night), held("over_budget", night)], once, morning) == nine
    assert ready_at([held("held", night)], once, nine + 60) == nine + 60  # due: goes now
