"""Replaying a message table through Slack's Socket Mode as if it were happening now.

History is re-timed: each message gets a fresh Slack ts at `start + (t - t0) / speed`, with long
silences (nights, weekends) shortened to `max_silence` seconds of replay, and is pushed at that
wall-clock moment. Thread replies point at their parent's new ts. So the live services see
ordinary live traffic, only faster; the sessionizer's gaps are scaled by the same speed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from beepgpt.message_table import slack_ts


@dataclass(frozen=True)
class Planned:
    """One message to push: when (wall clock), and as what Slack event."""

    at: float
    channel: str
    user: str
    text: str
    ts: str
    thread_ts: str | None


def plan(table: pd.DataFrame, *, start: float, speed: float, max_silence: float) -> list[Planned]:
    """New times for every message of a (completed) message table, in order."""
    planned: list[Planned] = []
    new_ts: dict[str, str] = {}
    used: set[str] = set()
    previous_t: float | None = None
    at = start
    for row in table.sort_values("ts", kind="stable").itertuples(index=False):
        t = float(row.ts)
        if previous_t is not None:
            at += min((t - previous_t) / speed, max_silence)
        previous_t = t
        ts = slack_ts(at)
        while ts in used:  # two messages in one microsecond: keep ts unique
            at += 1e-6
            ts = slack_ts(at)
        used.add(ts)
        new_ts[str(row.slack_ts)] = ts
        thread = None if row.slack_thread_ts is None else new_ts.get(str(row.slack_thread_ts))
        planned.append(Planned(at, str(row.channel), str(row.user), str(row.text), ts, thread))
    return planned


async def paced(planned: list[Planned], clock: Callable[[], float] = time.time) -> AsyncIterator[Planned]:
    """Yield each message at its planned wall-clock time (never early)."""
    for message in planned:
        delay = message.at - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        yield message


def message_event(message: Planned, team_id: str) -> dict[str, Any]:
    """The Slack `message` event a person's client would cause."""
    event: dict[str, Any] = {
        "type": "message",
        "channel": message.channel,
        "channel_type": "channel",
        "user": message.user,
        "text": message.text,
        "ts": message.ts,
        "event_ts": message.ts,
        "team": team_id,
    }
    if message.thread_ts is not None and message.thread_ts != message.ts:
        event["thread_ts"] = message.thread_ts
    return event
