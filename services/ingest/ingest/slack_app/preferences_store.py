"""People's preferences as ingest sees them: read from, and written to, `user.preferences`.

The compacted topic is the only store: every instance reads it whole at start-up (no consumer
group), follows it, and a command writes the person's complete new record, keyed by user id, so
compaction keeps exactly the latest one. A command reads its own write at once (the local table
is updated when the broker acknowledges); other instances see it a few milliseconds later.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from beepgpt.contracts import Preferences
from beepgpt.kafka import EventProducer
from beepgpt.kafka.compacted import CompactedTable
from beepgpt.settings import KafkaSettings
from beepgpt.topics import PREFERENCES


class NotReady(Exception):
    """The table is still being read: answering from it now could undo someone's settings."""


def _newer(current: Preferences, candidate: Preferences) -> bool:
    """Our own write may already be in the table; never let an older record replace it."""
    return candidate.updated_at >= current.updated_at


class PreferencesStore:
    """Read-modify-write of one person's `Preferences` through the compacted topic."""

    def __init__(
        self, kafka: KafkaSettings, producer: EventProducer, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._producer = producer
        self._clock = clock
        self._table = CompactedTable[Preferences](kafka, PREFERENCES, newer=_newer)
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def loaded(self) -> bool:
        return self._table.loaded

    def get(self, user: str) -> Preferences:
        """The person's current record, or the default (not opted in, nothing followed)."""
        if not self.loaded:
            raise NotReady("preferences are still loading")
        return self._table.get(user) or Preferences(user=user, opted_in=False, updated_at=0.0)

    def lock(self, user: str) -> asyncio.Lock:
        """Serializes one person's read-modify-write inside this instance."""
        return self._locks.setdefault(user, asyncio.Lock())

    async def save(self, prefs: Preferences, timeout: float = 2.0) -> Preferences:
        """Publish the complete record and wait for the broker (bounded: Slack wants an answer)."""
        stamped = prefs.model_copy(update={"updated_at": self._clock()})
        await asyncio.wait_for(self._producer.send(PREFERENCES, stamped.user, stamped), timeout)
        await self._table.put_local(stamped.user, stamped)
        return stamped

    async def start(self, timeout: float = 60.0) -> None:
        await self._table.start(timeout)

    async def stop(self) -> None:
        await self._table.stop()
