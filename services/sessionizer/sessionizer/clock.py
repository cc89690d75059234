"""The clocks heartbeats read: injectable, so tests drive time instead of waiting for it.

Event time only advances when rows reach the query, so heartbeats carry a clock's time to close
quiet conversations. Live, that is the wall clock. Replays and tests drive time with the
records' own times (`EventClock`) or by hand (`FakeClock`).
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    def observe(self, seconds: float) -> None:
        """A record with this time has arrived (only clocks driven by records care)."""
        ...


class WallClock:
    def now(self) -> float:
        return time.time()

    def observe(self, seconds: float) -> None:
        pass


class EventClock:
    """The newest record time seen: a replay of old records closes conversations by their own
    times, never by today's date."""

    def __init__(self) -> None:
        self._newest = 0.0

    def now(self) -> float:
        return self._newest

    def observe(self, seconds: float) -> None:
        self._newest = max(self._newest, seconds)


class FakeClock:
    """A clock a test sets and advances."""

    def __init__(self, start: float) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def observe(self, seconds: float) -> None:
        pass

    def set(self, seconds: float) -> None:
        self._now = seconds

    def advance(self, seconds: float) -> None:
        self._now += seconds
