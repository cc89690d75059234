"""Every scorer instance's own copy of the whole `user.preferences` table (docs/topics-and-contracts.md).

The shared `CompactedTable` does the reading (why a plain aiokafka reader of the compacted topic
and not faust's GlobalTable is said there): every partition assigned, read from the beginning
on each start — which is how the table is rebuilt after a restart — then followed. The service
waits for it to have caught up before it consumes a single conversation: scoring with a
half-read table would treat opted-in people as strangers.

What the scorer adds: a snapshot per batch (a batch is decided against one state of the table,
not one that changes between its conversations) and gauges of who is in it.
"""

from __future__ import annotations

from beepgpt.contracts import Preferences
from beepgpt.kafka.compacted import CompactedTable
from beepgpt.settings import KafkaSettings
from beepgpt.topics import PREFERENCES
from scorer.metrics import PREFERENCE_RECORDS, PREFERENCE_USERS


class PreferencesTable(CompactedTable[Preferences]):
    """user id → latest `Preferences`, kept current from the compacted topic."""

    def __init__(self, settings: KafkaSettings) -> None:
        super().__init__(settings, PREFERENCES, on_change=self._count)
        self._opted_in = 0

    @property
    def ready(self) -> bool:
        return self.loaded

    def snapshot(self) -> dict[str, Preferences]:
        """A copy a batch is scored against, unaffected by updates arriving meanwhile."""
        return dict(self.items())

    async def _count(self, user: str, before: Preferences | None, after: Preferences | None) -> None:
        PREFERENCE_RECORDS.labels("deleted" if after is None else "applied").inc()
        self._opted_in += int(after is not None and after.opted_in) - int(
            before is not None and before.opted_in
        )
        PREFERENCE_USERS.labels("true").set(self._opted_in)
        PREFERENCE_USERS.labels("false").set(len(self) - self._opted_in)
