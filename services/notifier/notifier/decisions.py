"""The notifier's rules, with no I/O: who may be messaged, and what a dedup key's holder means.

A candidate goes through the named stages of `stages` (admit → claim → held → budget/rate →
send → record), each a pure function over the batch, with one Redis round trip per batch in
`service`; the two rules here are what the first two stages apply:

1. `admit`: opted in? paused or in quiet hours? (preferences + clock)
2. `verdict`: the dedup claim (free, a duplicate, or this record's own unfinished work)

The token bucket and the daily budget (`budget`) follow in `stages.budget_stage`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal

from beepgpt.contracts import Preferences
from notifier.dedup import ClaimState
from notifier.quiet_hours import SNOOZED, hold_until


@dataclass(frozen=True)
class Admission:
    """The preference gate: drop (not opted in), hold until a time, or go on to delivery."""

    action: Literal["drop", "hold", "deliver"]
    until: float | None = None
    why: str = ""

    @property
    def snoozed(self) -> bool:
        """Held (among other reasons) by the person's snooze: audited `snoozed`, not `held`."""
        return self.action == "hold" and SNOOZED in self.why.split(" and ")


def admit(prefs: Preferences | None, now: float) -> Admission:
    """Only people who opted in are messaged; a pause, a snooze or quiet hours hold alerts for a digest."""
    if prefs is None or not prefs.opted_in:
        return Admission("drop", why="not opted in")
    held = hold_until(prefs, now)
    if held is not None:
        until, why = held
        return Admission("hold", until=until, why=why)
    return Admission("deliver")


class Verdict(Enum):
    """What an existing dedup key means for the record that tried to take it."""

    NEW = "new"  # the key was free: this record owns the conversation now
    DUPLICATE = "duplicate"  # another record already has (or had) it
    RECORDED = "recorded"  # this record finished before; only its audit may be missing
    RESUME = "resume"  # this process's own unfinished claim (a batch redone after an error)
    TAKEOVER = "takeover"  # an unfinished claim of a process that is gone
    WAIT = "wait"  # an unfinished claim of a live process: it may be sending right now


def verdict(existing: ClaimState | None, record: str, owner: str, owner_alive: bool) -> Verdict:
    """Classify a claim attempt; `owner_alive` matters only for another owner's unfinished claim."""
    if existing is None:
        return Verdict.NEW
    if existing.record != record:
        return Verdict.DUPLICATE
    if existing.kind == "done":
        return Verdict.RECORDED
    if existing.owner == owner:
        return Verdict.RESUME
    return Verdict.WAIT if owner_alive else Verdict.TAKEOVER
