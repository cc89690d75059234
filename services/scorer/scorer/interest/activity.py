"""What the workspace has been doing, kept up to date message by message: the interest model's memory.

The pair model (`scorer.interest.pairs`) scores a (person, conversation) pair from what is known
about the person at that moment — where they post, whom they answer, what they write about, when
they are around. All of that lives here, as state that one `observe` call per message updates in
constant time. Training replays history through it, the scorer keeps feeding it live, and a
person who joined after training is scored from their first messages: nothing is keyed by a
class index fixed at training time.

Counts decay with time (a person who answered Ana every day last year and never since is not
Ana's answerer any more). They are stored as *growing weights*: a message at time t adds
`exp((t - origin) / tau)`, and a count read at time `now` is the stored sum times
`exp(-(now - origin) / tau)`. Every count of one kind then decays by the same factor, so ranking
people needs no arithmetic per person, and an update touches one number.

A person *answers* Q when they post in a conversation after Q did; each such message adds one
answer shared among the conversation's earlier authors (the latest `ANSWER_AUTHORS`).

Two profiles per person: what they write about (the mean of their own messages' vectors) and
what they *take part in* — the subject of each conversation as it stood when they joined it,
before their own words. In a Q&A channel the second says what someone answers; the first mixes
in what they ask.
"""

from __future__ import annotations

import heapq
import json
import math
import re
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]

TAU_S = 30 * 86_400.0
"""Time constant of every decayed count: a decayed count reads close to "in the last month"."""

RECENT_S = 2 * 3600.0
"""The window of "recently active in this channel" (the recent-activity rule's two hours)."""

MEMBER_S = 60 * 86_400.0
"""Who counts as a channel's member for candidate search: posted there in the last 60 days."""

ANSWER_AUTHORS = 3
"""A message answers at most the latest three other authors of its conversation."""

SUBJECT_DECAY = 0.4
"""A conversation's running subject: each message moves it this far towards its own vector (the
latest five messages carry about 90 % of it)."""

PROFILE_WINDOW = 50
"""A profile is the running mean of a person's first 50 messages, then a moving average of about
the last 50: it follows what someone writes about now, not forever."""

_MAX_EXPONENT = 600.0
"""Growing weights are rebased before exp() could overflow (float64 holds e^709)."""


class Window:
    """Who did something in the last `RECENT_S`, counted per person, slid forward as time goes."""

    def __init__(self) -> None:
        self.events: deque[tuple[float, str]] = deque()
        self.counts: Counter[str] = Counter()

    def add(self, ts: float, user: str) -> None:
        self.events.append((ts, user))
        self.counts[user] += 1

    def slide(self, now: float) -> Counter[str]:
        while self.events and self.events[0][0] < now - RECENT_S:
            _, user = self.events.popleft()
            self.counts[user] -= 1
            if self.counts[user] <= 0:
                del self.counts[user]
        return self.counts


@dataclass
class Person:
    """One person's running figures."""

    messages: int = 0
    first_ts: float = 0.0
    last_ts: float = 0.0
    hours: list[int] = field(default_factory=lambda: [0] * 24)
    joins: float = 0.0
    """decayed count of conversations joined (posted in after someone else)"""
    profile: Vector | None = None
    profiled: int = 0
    joined_profile: Vector | None = None
    """the running mean of the subjects of the conversations they joined, as they joined"""
    joined_profiled: int = 0


class Activity:
    """The workspace's recent activity; see the module docstring for what is counted and why."""

    def __init__(self, origin: float = 0.0) -> None:
        self.origin = origin
        self.people: dict[str, Person] = {}
        self.channel_counts: dict[str, dict[str, float]] = {}
        """channel → person → growing weight of their messages there"""
        self.channel_last: dict[str, dict[str, float]] = {}
        """channel → person → time of their last message there"""
        self.answered: dict[str, dict[str, float]] = {}
        """person → the people they answered → growing weight"""
        self.answerers: dict[str, dict[str, float]] = {}
        """the same graph the other way: person → who answered them"""
        self._channel_totals: dict[str, float] = {}
        """channel → the sum of its `channel_counts` (kept, not summed per question)"""
        self._recent: dict[str, Window] = {}
        """channel → who posted there lately"""
        self._recent_joins: dict[str, Window] = {}
        """channel → who joined someone else's conversation there lately (answering, not asking)"""
        self._conversations: dict[str, list[str]] = {}
        """conversation id → its distinct authors, oldest first (for answers and joins)"""
        self._seen: dict[str, float] = {}
        """conversation id → the newest message time observed (live events repeat messages)"""
        self._subjects: dict[str, Vector] = {}
        """conversation id → its running subject (for the profile of what people join)"""

    # --- time ---------------------------------------------------------------------------------

    def _weight(self, ts: float) -> float:
        exponent = (ts - self.origin) / TAU_S
        if exponent > _MAX_EXPONENT:
            self._rebase(ts)
            exponent = 0.0
        return math.exp(exponent)

    def decay(self, now: float) -> float:
        """The factor that turns a stored growing weight into a count as of `now`."""
        return math.exp(-(now - self.origin) / TAU_S)

    def _rebase(self, ts: float) -> None:
        factor = math.exp(-(ts - self.origin) / TAU_S)
        for table in (*self.channel_counts.values(), *self.answered.values(), *self.answerers.values()):
            for key in table:
                table[key] *= factor
        for channel in self._channel_totals:
            self._channel_totals[channel] *= factor
        for person in self.people.values():
            person.joins *= factor
        self.origin = ts

    # --- updates ------------------------------------------------------------------------------

    def observe(
        self,
        conversation_id: str,
        channel: str,
        user: str,
        ts: float,
        vector: Vector | None = None,
    ) -> bool:
        """Count one message; returns False for a message already counted (a repeated event)."""
        if ts <= self._seen.get(conversation_id, -math.inf):
            return False
        self._seen[conversation_id] = ts
        weight = self._weight(ts)
        person = self.people.get(user)
        if person is None:
            person = self.people[user] = Person(first_ts=ts)
        person.messages += 1
        person.last_ts = max(person.last_ts, ts)
        person.hours[int(ts // 3600) % 24] += 1
        if vector is not None:
            self._profile(person, vector)
        counts = self.channel_counts.setdefault(channel, {})
        counts[user] = counts.get(user, 0.0) + weight
        self._channel_totals[channel] = self._channel_totals.get(channel, 0.0) + weight
        self.channel_last.setdefault(channel, {})[user] = ts
        self._recent.setdefault(channel, Window()).add(ts, user)
        authors = self._conversations.setdefault(conversation_id, [])
        subject = self._subjects.get(conversation_id)
        if user not in authors:
            if authors:
                person.joins += weight
                self._recent_joins.setdefault(channel, Window()).add(ts, user)
                if subject is not None:
                    person.joined_profiled += 1
                    person.joined_profile = _moving(person.joined_profile, subject, person.joined_profiled)
            authors.append(user)
        if vector is not None:
            self._subjects[conversation_id] = (
                vector.astype(np.float32).copy()
                if subject is None
                else subject + SUBJECT_DECAY * (vector.astype(np.float32) - subject)
            )
        earlier = [a for a in authors if a != user][-ANSWER_AUTHORS:]
        for other in earlier:
            share = weight / len(earlier)
            given = self.answered.setdefault(user, {})
            given[other] = given.get(other, 0.0) + share
            got = self.answerers.setdefault(other, {})
            got[user] = got.get(user, 0.0) + share
        return True

    def closed(self, conversation_id: str) -> None:
        """The conversation is over: forget its authors (its counts stay)."""
        self._conversations.pop(conversation_id, None)
        self._seen.pop(conversation_id, None)
        self._subjects.pop(conversation_id, None)

    def forget(self, user: str) -> bool:
        """Drop everything known about `user` (`beepgpt forget`); False when nothing was.

        Their figures and profiles, their weight in every channel (the channel totals lose it
        too), the answer graph both ways, the recent windows and the open conversations' authors.
        What others did stays as it was, including answering them: those edges are gone with the
        person, their own counts are not rewritten."""
        found = self.people.pop(user, None) is not None
        for channel, counts in self.channel_counts.items():
            weight = counts.pop(user, None)
            if weight is not None:
                found = True
                self._channel_totals[channel] = self._channel_totals.get(channel, 0.0) - weight
        for last in self.channel_last.values():
            found = last.pop(user, None) is not None or found
        for graph, mirror in ((self.answered, self.answerers), (self.answerers, self.answered)):
            for other in graph.pop(user, {}):
                found = True
                mirror.get(other, {}).pop(user, None)
        for graph in (self.answered, self.answerers):
            for other in [o for o, edges in graph.items() if not edges]:
                del graph[other]
        for windows in (self._recent, self._recent_joins):
            for window in windows.values():
                if user in window.counts:
                    found = True
                    window.events = deque(e for e in window.events if e[1] != user)
                    del window.counts[user]
        for authors in self._conversations.values():
            if user in authors:
                found = True
                authors.remove(user)
        return found

    def _profile(self, person: Person, vector: Vector) -> None:
        person.profiled += 1
        person.profile = _moving(person.profile, vector, person.profiled)

    # --- reads --------------------------------------------------------------------------------

    def recent_in_channel(self, channel: str, now: float) -> Counter[str]:
        """Messages per person in the channel over the last `RECENT_S`."""
        window = self._recent.get(channel)
        return window.slide(now) if window is not None else Counter()

    def recent_joins(self, channel: str, now: float) -> Counter[str]:
        """Conversations joined per person in the channel over the last `RECENT_S`."""
        window = self._recent_joins.get(channel)
        return window.slide(now) if window is not None else Counter()

    def channel_activity(self, channel: str, user: str, now: float) -> float:
        return self.channel_counts.get(channel, {}).get(user, 0.0) * self.decay(now)

    def channel_total(self, channel: str, now: float) -> float:
        return self._channel_totals.get(channel, 0.0) * self.decay(now)

    def answers(self, user: str, other: str, now: float) -> float:
        """How often `user` answered `other`, as a count of about the last month."""
        return self.answered.get(user, {}).get(other, 0.0) * self.decay(now)

    def members(self, channel: str, now: float) -> dict[str, float]:
        """People who posted in the channel within `MEMBER_S`, with their time of last post there."""
        last = self.channel_last.get(channel, {})
        return {user: ts for user, ts in last.items() if ts >= now - MEMBER_S}

    def top_answerers(self, user: str, count: int) -> list[str]:
        got = self.answerers.get(user, {})
        return heapq.nlargest(count, got, key=got.__getitem__)

    def top_in_channel(self, channel: str, count: int, now: float) -> list[str]:
        """The channel's most active members (decayed), at most `count`."""
        counts = self.channel_counts.get(channel, {})
        last = self.channel_last.get(channel, {})
        since = now - MEMBER_S
        # the most active are nearly always members still: look at a few more than asked, and
        # only when too many of them have gone quiet, at everyone
        for wanted in (2 * count, len(counts)):
            ranked = heapq.nlargest(wanted, counts.items(), key=itemgetter(1))
            chosen = [user for user, _ in ranked if last.get(user, -math.inf) >= since][:count]
            if len(chosen) == count or wanted >= len(counts):
                return chosen
        return chosen

    def authors_of(self, conversation_id: str) -> Sequence[str]:
        return self._conversations.get(conversation_id, ())

    # --- files --------------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        """`activity.json` (counts) and `profiles.npz` (vectors): plain data, no pickle."""
        users = sorted(self.people)
        own = {u: self.people[u].profile for u in users}
        joined = {u: self.people[u].joined_profile for u in users}
        np.savez(
            directory / PROFILES_FILE,
            **_profile_arrays("", own),
            **_profile_arrays("joined_", joined),
        )
        raw = {
            "origin": self.origin,
            "people": {
                u: {
                    "messages": p.messages,
                    "first_ts": p.first_ts,
                    "last_ts": p.last_ts,
                    "hours": p.hours,
                    "joins": p.joins,
                    "profiled": p.profiled,
                    "joined_profiled": p.joined_profiled,
                }
                for u, p in self.people.items()
            },
            "channel_counts": self.channel_counts,
            "channel_last": self.channel_last,
            "answered": self.answered,
            "recent": {c: list(w.events) for c, w in self._recent.items() if w.events},
            "recent_joins": {c: list(w.events) for c, w in self._recent_joins.items() if w.events},
        }
        (directory / ACTIVITY_FILE).write_text(json.dumps(raw, separators=(",", ":")))

    @classmethod
    def load(cls, directory: Path) -> Activity:
        raw: Mapping[str, Any] = json.loads((directory / ACTIVITY_FILE).read_text())
        out = cls(float(raw["origin"]))
        for user, p in raw["people"].items():
            out.people[user] = Person(
                messages=int(p["messages"]),
                first_ts=float(p["first_ts"]),
                last_ts=float(p["last_ts"]),
                hours=[int(h) for h in p["hours"]],
                joins=float(p["joins"]),
                profiled=int(p["profiled"]),
                joined_profiled=int(p.get("joined_profiled", 0)),
            )
        out.channel_counts = {c: dict(v) for c, v in raw["channel_counts"].items()}
        out._channel_totals = {c: sum(v.values()) for c, v in out.channel_counts.items()}
        out.channel_last = {c: dict(v) for c, v in raw["channel_last"].items()}
        out.answered = {u: dict(v) for u, v in raw["answered"].items()}
        for user, given in out.answered.items():
            for other, value in given.items():
                out.answerers.setdefault(other, {})[user] = value
        for key, windows in (("recent", out._recent), ("recent_joins", out._recent_joins)):
            for channel, events in raw.get(key, {}).items():
                window = windows[channel] = Window()
                for ts, user in events:
                    window.add(float(ts), str(user))
        with np.load(directory / PROFILES_FILE, allow_pickle=False) as arrays:
            for user, vector in zip(arrays["users"].tolist(), arrays["profiles"], strict=True):
                if user in out.people:
                    out.people[user].profile = vector.astype(np.float32)
            if "joined_users" in arrays:  # models of format 3 before joined profiles lack them
                for user, vector in zip(
                    arrays["joined_users"].tolist(), arrays["joined_profiles"], strict=True
                ):
                    if user in out.people:
                        out.people[user].joined_profile = vector.astype(np.float32)
        return out


def _profile_arrays(prefix: str, profiles: Mapping[str, Vector | None]) -> dict[str, Any]:
    """`{prefix}users` and `{prefix}profiles` arrays of the people who have a profile."""
    users = [u for u, v in profiles.items() if v is not None]
    vectors = [profiles[u] for u in users]
    dimension = len(vectors[0]) if vectors else 0  # type: ignore[arg-type]
    matrix = np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, dimension), np.float32)  # type: ignore[arg-type]
    return {f"{prefix}users": np.array(users, dtype=str), f"{prefix}profiles": matrix}


def _moving(mean: Vector | None, vector: Vector, count: int) -> Vector:
    """The running mean of the first `PROFILE_WINDOW` vectors, then a moving average."""
    if mean is None:
        return vector.astype(np.float32).copy()
    mean += (vector - mean) / min(count, PROFILE_WINDOW)
    return mean


ACTIVITY_FILE = "activity.json"
PROFILES_FILE = "profiles.npz"


_MENTION = re.compile(r"<@([A-Z0-9]+)(?:\|[^>]*)?>")


def mentioned(texts: Iterable[str]) -> set[str]:
    """People mentioned as `<@U…>` in these texts."""
    return {user for text in texts for user in _MENTION.findall(text)}
