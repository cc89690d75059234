"""The notifier's pure rules: quiet hours, pauses, the preference gate and dedup verdicts."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from beepgpt.contracts import Preferences, QuietHours
from notifier.decisions import Verdict, admit, verdict
from notifier.dedup import ClaimState, record_id
from notifier.quiet_hours import hold_until, quiet_window_end

PARIS = ZoneInfo("Europe/Paris")


def at(text: str, tz: ZoneInfo = PARIS) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


@pytest.mark.parametrize(
    ("now", "expected_end"),
    [
        ("2024-03-05 21:59", None),
        ("2024-03-05 22:00", "2024-03-06 07:00"),
        ("2024-03-05 23:30", "2024-03-06 07:00"),
        ("2024-03-06 06:59", "2024-03-06 07:00"),
        ("2024-03-06 07:00", None),
        ("2024-03-06 12:00", None),
    ],
)
def test_quiet_window_across_midnight(now: str, expected_end: str | None) -> None:
    quiet = QuietHours(start="22:00", end="07:00", tz="Europe/Paris")
    end = quiet_window_end(quiet, at(now))
    assert end == (None if expected_end is None else at(expected_end))


def test_quiet_window_within_a_day_and_empty_window() -> None:
    lunch = QuietHours(start="12:00", end="13:30", tz="Europe/Paris")
    assert quiet_window_end(lunch, at("2024-03-05 12:10")) == at("2024-03-05 13:30")
    assert quiet_window_end(lunch, at("2024-03-05 13:30")) is None
    assert quiet_window_end(QuietHours(start="09:00", end="09:00"), at("2024-03-05 09:00")) is None


def test_quiet_hours_keep_local_time_across_daylight_saving() -> None:
    quiet = QuietHours(start="22:00", end="07:00", tz="Europe/Paris")
    # Night of the spring change (31 March 2024): the window still ends at 07:00 local time.
    assert quiet_window_end(quiet, at("2024-03-30 23:00")) == at("2024-03-31 07:00")


def test_unknown_time_zone_falls_back_to_utc() -> None:
    quiet = QuietHours(start="22:00", end="07:00", tz="Mars/Olympus")
    assert quiet_window_end(quiet, at("2024-03-05 23:00", ZoneInfo("UTC"))) == at(
        "2024-03-06 07:00", ZoneInfo("UTC")
    )


def test_a_pause_that_ends_inside_quiet_hours_holds_until_they_end() -> None:
    quiet = QuietHours(start="22:00", end="07:00", tz="Europe/Paris")
    prefs = Preferences(user="U1", opted_in=True, paused_until=at("2024-03-05 23:00"), quiet_hours=quiet)
    assert hold_until(prefs, at("2024-03-05 20:00")) == (at("2024-03-06 07:00"), "paused and quiet hours")
    assert hold_until(prefs.model_copy(update={"quiet_hours": None}), at("2024-03-05 20:00")) == (
        at("2024-03-05 23:00"),
        "paused",
    )
    assert hold_until(prefs, at("2024-03-06 08:00")) is None


def test_admission_only_lets_opted_in_people_through() -> None:
    now = at("2024-03-05 12:00")
    assert admit(None, now).action == "drop"
    assert admit(Preferences(user="U1"), now).action == "drop"
    assert admit(Preferences(user="U1", opted_in=True), now).action == "deliver"
    paused = Preferences(user="U1", opted_in=True, paused_until=now + 60)
    assert admit(paused, now).action == "hold"
    assert admit(paused, now).until == now + 60


def test_dedup_states_round_trip() -> None:
    claim = ClaimState("claim", record_id("notifier", "notifications.candidates", 2, 41), owner="abc")
    assert ClaimState.parse(claim.encode()) == claim
    done = ClaimState("done", claim.record, outcome="sent", dm_channel="D1", dm_ts="1.000001")
    assert ClaimState.parse(done.encode()) == done
    assert ClaimState.parse("garbage").record == "?"
    assert "|" not in record_id("a|b", "t", 0, 1)


def test_verdicts_tell_own_unfinished_work_from_duplicates() -> None:
    me, other, rec = "me", "other", "g:t:0:5"
    assert verdict(None, rec, me, False) is Verdict.NEW
    assert verdict(ClaimState("claim", "g:t:0:4", owner=other), rec, me, True) is Verdict.DUPLICATE
    assert verdict(ClaimState("done", "g:t:0:4", outcome="sent"), rec, me, False) is Verdict.DUPLICATE
    assert verdict(ClaimState("done", rec, outcome="sent"), rec, me, False) is Verdict.RECORDED
    assert verdict(ClaimState("claim", rec, owner=me), rec, me, True) is Verdict.RESUME
    assert verdict(ClaimState("claim", rec, owner=other), rec, me, True) is Verdict.WAIT
    assert verdict(ClaimState("claim", rec, owner=other), rec, me, False) is Verdict.TAKEOVER
