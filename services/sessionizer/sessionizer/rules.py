"""The conversation rules that live outside the Kaskada query, as plain functions and values.

Kaskada's live sources need rows in time order (one older row silently ends the live result
iterator, and a row at the very time of a row of an earlier `add` fails the query: see
`Timeline`), so every row passes through a `Timeline` before it is added: late rows are clamped
to just after the newest time fed, and new messages older than anything the query remembers are
dropped, because they could be duplicates of messages it has forgotten. Both are counted.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from beepgpt.person_messages import PERSON_SUBTYPES, is_person_message

CONVERSATIONAL_SUBTYPES: tuple[str, ...] = tuple(sorted(PERSON_SUBTYPES))
"""Message subtypes people write (`beepgpt.person_messages`, the rule ingest applies too), in a
fixed order for the query's filter; every other subtype (bot_message, channel_join, ...) is not."""

NS = 1_000_000_000


def to_ns(seconds: float) -> int:
    """Seconds (a Slack ts as float) → integer nanoseconds, rounded to Slack's microseconds."""
    return round(seconds * 1_000_000) * 1_000


def to_seconds(ns: int) -> float:
    return ns / NS


def slack_ts_ns(ts: str) -> int:
    """A Slack ts string → nanoseconds without float rounding ("1690797600.000100")."""
    whole, _, frac = ts.partition(".")
    return int(whole) * NS + int((frac + "000000")[:6]) * 1_000


def is_conversational(subtype: str | None, user: str | None) -> bool:
    """What forms conversations: people's messages, never bots or housekeeping (docs/conversations.md).

    `beepgpt.person_messages.is_person_message`, ingest's rule. The query applies the same test
    (query.py, from `CONVERSATIONAL_SUBTYPES`); this one lets the feeder skip rows cheaply.
    """
    return is_person_message(subtype, user)


class Lateness(enum.Enum):
    ON_TIME = "on_time"
    CLAMPED = "clamped"
    DROPPED = "dropped"


@dataclass(frozen=True)
class Placement:
    """Where a row goes on the query's timeline; `time_ns` is None when it is dropped."""

    time_ns: int | None
    lateness: Lateness


class Timeline:
    """Keeps the times fed to one query instance strictly increasing.

    Strictly, not merely non-decreasing: Kaskada 0.6.1 fails a live query ("invalid batch input
    bounds … In shift_to") when a row arrives at the same time as a row of an earlier `add`
    (measured: heartbeats, then a message late enough to be clamped onto the last heartbeat's
    time; the real-Slack demo hit it whenever a message arrived after its own ts had passed). So
    a row that is not later than the newest one lands 1 ns after it.

    `horizon_ns` is the time of the first message fed: the query remembers (and so deduplicates)
    every message since then. A new message older than that could be a redelivery of one it never
    saw or has forgotten after a rebuild, so it is dropped rather than risk doubling it.
    """

    def __init__(self) -> None:
        self.horizon_ns: int | None = None
        self.last_ns: int | None = None

    def message(self, sent_ns: int) -> Placement:
        if self.horizon_ns is None:
            self.horizon_ns = sent_ns
        if sent_ns < self.horizon_ns:
            return Placement(None, Lateness.DROPPED)
        return self._place(sent_ns)

    def amendment(self, at_ns: int) -> Placement:
        """Edits, deletions and reactions: where they land in time only orders them; never dropped."""
        return self._place(at_ns)

    def tick(self, at_ns: int = 0) -> int:
        """Heartbeats and rows that only pass through (skipped records): at `at_ns`, or just after
        the newest row if that is later. A heartbeat must land after every row fed anyway: a live
        query releases the newest rows' outputs only once a later row arrives."""
        placed = self._place(at_ns).time_ns
        assert placed is not None, "only new messages are ever dropped"
        return placed

    def _place(self, at_ns: int) -> Placement:
        if self.last_ns is None or at_ns > self.last_ns:
            self.last_ns = at_ns
            return Placement(at_ns, Lateness.ON_TIME)
        late = at_ns < self.last_ns
        self.last_ns += 1
        return Placement(self.last_ns, Lateness.CLAMPED if late else Lateness.ON_TIME)


def float_ts(ts: str) -> float:
    """The float form of a Slack ts used in conversation ids printed for people (`thread`)."""
    value = float(ts)
    if math.isnan(value):
        raise ValueError(f"not a Slack ts: {ts!r}")
    return value
