"""The daily budget's pure rules: which local day an alert counts against, when the next digest
time is, when held alerts may go out, and what the digest says about them."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from beepgpt.contracts import Candidate, Preferences, QuietHours
from beepgpt.settings import AlertDefaults
from notifier.budget import Allowance, allowance, budget_day, next_digest_at, over_budget_why
from notifier.digest import digest_title, digest_why, ready_at
from notifier.held import HeldAlert, HoldReason

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
UTC = ZoneInfo("UTC")
DEFAULTS = AlertDefaults.model_construct()  # 3 a day; 09:00, 13:00, 17:00


def at(text: str, tz: ZoneInfo = PARIS) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


def prefs(**fields: object) -> Preferences:
    return Preferences.model_validate({"user": "U1", "opted_in": True, **fields})


def paris(**fields: object) -> Allowance:
    return allowance(prefs(tz="Europe/Paris", **fields), DEFAULTS)


# --- whose zone, which budget ------------------------------------------------------------------------


def test_the_persons_own_choices_win_over_the_defaults() -> None:
    assert allowance(None, DEFAULTS).daily_budget == 3
    assert allowance(None, DEFAULTS).zone == UTC
    own = allowance(prefs(daily_budget=0, digest_times=["17:00", "08:30"], tz="Asia/Tokyo"), DEFAULTS)
    assert own.daily_budget == 0  # 0 is a choice (digests only), not "unset"
    assert [t.isoformat("minutes") for t in own.digest_times] == ["08:30", "17:00"]
    assert own.zone == ZoneInfo("Asia/Tokyo")
    deployment = AlertDefaults.model_construct(daily_budget=7, digest_times=["12:00"])
    assert allowance(prefs(), deployment).daily_budget == 7
    assert [t.isoformat("minutes") for t in allowance(prefs(), deployment).digest_times] == ["12:00"]


def test_the_zone_is_the_persons_else_their_quiet_hours_else_utc() -> None:
    quiet = QuietHours(start="22:00", end="07:00", tz="America/New_York")
    assert allowance(prefs(quiet_hours=quiet), DEFAULTS).zone == NEW_YORK
    assert allowance(prefs(quiet_hours=quiet, tz="Europe/Paris"), DEFAULTS).zone == PARIS
    assert allowance(prefs(), DEFAULTS).zone == UTC
    assert allowance(prefs(tz="Mars/Olympus"), DEFAULTS).zone == UTC  # as quiet hours read it


# --- the budget's day --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instant", "zone", "day"),
    [
        (at("2024-03-05 23:59", PARIS), PARIS, "2024-03-05"),
        (at("2024-03-06 00:00", PARIS), PARIS, "2024-03-06"),  # still 23:00 on the 5th in UTC
        (at("2024-03-06 00:00", PARIS), UTC, "2024-03-05"),
        (at("2024-03-06 03:00", UTC), NEW_YORK, "2024-03-05"),  # 22:00 the evening before
        (at("2024-03-31 02:30", UTC), PARIS, "2024-03-31"),  # the night clocks jump
    ],
)
def test_the_budget_counts_the_persons_local_day(instant: float, zone: ZoneInfo, day: str) -> None:
    allowed = Allowance(3, (), zone)
    assert budget_day(allowed, instant) == day


# --- the next digest time ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2024-03-05 08:00", "2024-03-05 09:00"),
        ("2024-03-05 10:00", "2024-03-05 13:00"),
        ("2024-03-05 13:00", "2024-03-05 13:00"),  # at the time itself: that digest
        ("2024-03-05 13:00:01", "2024-03-05 17:00"),
        ("2024-03-05 17:30", "2024-03-06 09:00"),  # after the last one: tomorrow's first
        ("2024-03-05 23:59", "2024-03-06 09:00"),
    ],
)
def test_the_next_digest_time_in_the_persons_zone(now: str, expected: str) -> None:
    assert next_digest_at(paris(), at(now)) == at(expected)


def test_a_once_a_day_digest_and_other_zones() -> None:
    once = paris(digest_times=["09:00"])
    assert next_digest_at(once, at("2024-03-05 09:30")) == at("2024-03-06 09:00")
    new_york = allowance(prefs(tz="America/New_York"), DEFAULTS)
    # 15:00 in Paris is 09:00 in New York: that person's morning digest is due then.
    assert next_digest_at(new_york, at("2024-03-05 14:00")) == at("2024-03-05 15:00")


def test_digest_times_keep_their_local_hour_across_daylight_saving() -> None:
    # The spring night (31 March 2024, 02:00 → 03:00 in Paris) and the autumn one (27 October).
    assert next_digest_at(paris(), at("2024-03-30 18:00")) == at("2024-03-31 09:00")
    assert at("2024-03-31 09:00") - at("2024-03-30 17:00") == 15 * 3600  # a 23-hour night
    assert next_digest_at(paris(), at("2024-10-26 18:00")) == at("2024-10-27 09:00")


def test_a_digest_time_the_clocks_skip_lands_just_after_the_jump() -> None:
    night = paris(digest_times=["02:30", "03:00"])
    # 02:30 does not exist that night; it is read as 03:30 summer time, after 03:00: the minimum
    # instant wins, not the first time in the list.
    first = next_digest_at(night, at("2024-03-31 00:00"))
    assert first == at("2024-03-31 03:00")
    assert next_digest_at(night, first + 1) == at("2024-03-31 01:30", UTC)  # 03:30 CEST


def test_why_an_alert_over_the_budget_waits() -> None:
    assert over_budget_why(3) == "you had your 3 DMs for today"
    assert over_budget_why(1) == "you had your 1 DM for today"
    assert over_budget_why(0) == "you get alerts as digests only"


# --- when held alerts go out, and what their digest says --------------------------------------------


def held(reason: HoldReason, held_at: float, why: str = "") -> HeldAlert:
    candidate = Candidate(
        user="U1",
        conversation_id=f"C1:{held_at}",
        version=1,
        channel="C1",
        latest_ts="1.000001",
        score=0.5,
        reason="interest",
        explanation="why",
    )
    return HeldAlert(candidate=candidate, record="r", reason=reason, why=why, due=0.0, held_at=held_at)


def test_alerts_over_the_budget_wait_for_the_digest_time_unless_a_digest_goes_anyway() -> None:
    ten, now = at("2024-03-05 10:00"), at("2024-03-05 11:00")
    budget_only = [held("over_budget", ten), held("over_budget", ten + 60)]
    assert ready_at(budget_only, paris(), now) == at("2024-03-05 13:00")
    assert ready_at(budget_only, paris(), at("2024-03-05 14:00")) == at("2024-03-05 14:00")
    # Another reason's digest is a DM anyway: the over-budget alerts ride along, no extra interruption.
    assert ready_at([*budget_only, held("rate_limited", ten)], paris(), now) == now
    assert ready_at([], paris(), now) == now  # a resumed digest: let the sweep take it
    # Read with the schedule the person has now: a switch to once a day moves it to tomorrow.
    assert ready_at(budget_only, paris(digest_times=["09:00"]), now) == at("2024-03-06 09:00")


def test_the_digest_says_why_it_comes_late() -> None:
    budget = [
        held("over_budget", 1.0, "you had your 5 DMs for today"),
        held("over_budget", 2.0, over_budget_why(3)),
    ]
    assert digest_why(budget) == "Held back: you had your 3 DMs for today"  # the budget when the last came
    assert digest_title(budget) == "Your digest"
    mixed = [*budget, held("held", 3.0, "quiet hours")]
    assert digest_why(mixed) == "Held back during your quiet hours; Held back: you had your 3 DMs for today"
    assert digest_title(mixed) == "While you were away"
