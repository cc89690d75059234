"""A person's daily budget of real-time DMs and their digest schedule: the pure rules, in one place.

Two questions are answered here and nowhere else, so the decision path, the digest sweep and
the tests cannot disagree:

- which day an alert counts against: the person's *local* day (their budget resets at their
  midnight, not at UTC's);
- when the person's next digest time is: the first of their digest times at or after an instant,
  read in their time zone.

A time zone is read the way quiet hours read theirs (`quiet_hours.zone`: an unknown name is UTC
rather than a failed alert), and which zone is the person's is the contract's rule
(`Preferences.zone_name`). Instants are epoch seconds, the clock the rest of the notifier uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from beepgpt.contracts import Preferences
from beepgpt.settings import AlertDefaults
from notifier.quiet_hours import UTC, clock_time, zone


@dataclass(frozen=True)
class Allowance:
    """How many real-time DMs a person gets a day, and when what is over them arrives."""

    daily_budget: int
    digest_times: tuple[time, ...]
    zone: ZoneInfo


def allowance(prefs: Preferences | None, defaults: AlertDefaults) -> Allowance:
    """The person's own choices where they made them, the deployment's defaults elsewhere."""
    if prefs is None:
        return Allowance(defaults.daily_budget, _times(defaults.digest_times), UTC)
    budget = defaults.daily_budget if prefs.daily_budget is None else prefs.daily_budget
    times = defaults.digest_times if prefs.digest_times is None else prefs.digest_times
    return Allowance(budget, _times(times), zone(prefs.zone_name))


def _times(hhmm: Sequence[str]) -> tuple[time, ...]:
    return tuple(sorted(clock_time(t) for t in hhmm))


def budget_day(allowed: Allowance, now: float) -> str:
    """The person's local date at `now` ("2024-03-05"): the budget counts DMs per such day."""
    return datetime.fromtimestamp(now, allowed.zone).date().isoformat()


def next_digest_at(allowed: Allowance, at: float) -> float:
    """The first of the person's digest times at or after `at`, as an instant.

    Wall-clock times keep their local hour across daylight-saving changes. A time the clocks
    skip (02:30 on the spring night) is read with the offset before the jump, so it lands just
    after it; that can reorder a day's times, hence the minimum over every candidate rather than
    the first in order. Two days ahead always holds one: a day has at least one digest time.
    """
    today = datetime.fromtimestamp(at, allowed.zone).date()
    instants = [
        datetime.combine(today + timedelta(days=offset), moment, tzinfo=allowed.zone).timestamp()
        for offset in range(3)
        for moment in allowed.digest_times
    ]
    return min(instant for instant in instants if instant >= at)


def over_budget_why(daily_budget: int) -> str:
    """Why an alert waits, in the person's terms; the digest says "Held back: <this>"."""
    if daily_budget == 0:
        return "you get alerts as digests only"
    return f"you had your {daily_budget} DM{'' if daily_budget == 1 else 's'} for today"
