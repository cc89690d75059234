"""When a person does not want to be interrupted: daily quiet hours and an explicit pause.

Pure functions of the preferences and a wall-clock instant; times are epoch seconds so Redis
scores, Kafka records and tests share one clock.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from beepgpt.contracts import Preferences, QuietHours

UTC = ZoneInfo("UTC")

SNOOZED = "snoozed"
"""The reason a snooze gives (`hold_until`); an alert held by it is audited `snoozed`."""


def zone(name: str) -> ZoneInfo:
    """The user's time zone; an unknown name falls back to UTC rather than failing an alert."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def clock_time(hhmm: str) -> time:
    """An "HH:MM" the contract validated, as a time of day."""
    hours, minutes = hhmm.split(":")
    return time(int(hours), int(minutes))


def quiet_window_end(quiet: QuietHours, now: float) -> float | None:
    """If `now` is inside the daily quiet window, the instant it ends; otherwise None.

    Windows may cross midnight (22:00-07:00). A window whose start equals its end is empty:
    "quiet all day" is what `/beep pause` is for. Wall-clock times are read in the user's zone,
    so a window keeps its local hours across daylight-saving changes.
    """
    start, end = clock_time(quiet.start), clock_time(quiet.end)
    if start == end:
        return None
    tz = zone(quiet.tz)
    local = datetime.fromtimestamp(now, tz)
    at = local.time().replace(tzinfo=None)
    if start < end:
        if not start <= at < end:
            return None
        end_day = local.date()
    else:
        if end <= at < start:
            return None
        end_day = local.date() + timedelta(days=1) if at >= start else local.date()
    ends = datetime.combine(end_day, end, tzinfo=tz).timestamp()
    # A local end time skipped by a DST jump can land before `now`; never hold into the past.
    return max(ends, now)


def hold_until(prefs: Preferences, now: float) -> tuple[float, str] | None:
    """When alerts may flow again (and why they wait), or None when they may flow now.

    A pause or a snooze (a DM's Snooze button: a pause with its own audited outcome) that ends
    inside quiet hours holds until the quiet window ends too.
    """
    reasons: list[str] = []
    until = now
    if prefs.paused_until is not None and prefs.paused_until > now:
        until = prefs.paused_until
        reasons.append("paused")
    if prefs.snoozed_until is not None and prefs.snoozed_until > now:
        until = max(until, prefs.snoozed_until)
        reasons.append(SNOOZED)
    if prefs.quiet_hours is not None:
        # Check at `until`: the pause may end inside the window.
        quiet_end = quiet_window_end(prefs.quiet_hours, until)
        if quiet_end is not None and quiet_end > until:
            until = quiet_end
            reasons.append("quiet hours")
    if not reasons:
        return None
    return until, " and ".join(reasons)
