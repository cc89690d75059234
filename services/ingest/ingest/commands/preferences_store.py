"""People's preferences as ingest sees them: read from, and written to, `user.preferences`.

The compacted topic is the only store: every instance reads it whole at start-up (no consumer
group), follows it, and a command writes the person's complete new record, keyed by user id, so
compaction keeps exactly the latest one. A command reads its own write at once (the local table
is updated when the broker acknowledges); other instances see it a few milliseconds later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from beepgpt.contracts import Preferences
from beepgpt.kafka import EventProducer
from beepgpt.settings import KafkaSettings
from beepgpt.topics import PREFERENCES

log = logging.getLogger(__name__)


class NotReady(Exception):
    """The table is still being read: answering from it now could undo someone's settings."""


class PreferencesStore:
    """Read-modify-write of one person's `Preferences` through the compacted topic."""

    def __init__(
        self, kafka: KafkaSettings, producer: EventProducer, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._kafka = kafka
        self._producer = producer
        self._clock = clock
        self._table: dict[str, Preferences] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._loaded = asyncio.Event()
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def loaded(self) -> bool:
        return self._loaded.is_set()

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
        self._table[stamped.user] = stamped
        return stamped

    async def start(self, timeout: float = 60.0) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._kafka.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await self._consumer.start()
        async with asyncio.timeout(timeout):
            while not (found := self._consumer.partitions_for_topic(PREFERENCES.name)):
                await self._consumer._client.force_metadata_update()
                await asyncio.sleep(0.2)
        partitions = [TopicPartition(PREFERENCES.name, p) for p in sorted(found)]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        ends = await self._consumer.end_offsets(partitions)
        self._task = asyncio.create_task(self._follow(ends), name="preferences-store")
        async with asyncio.timeout(timeout):
            await self._loaded.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    async def _follow(self, ends: dict[TopicPartition, int]) -> None:
        assert self._consumer is not None
        pending = {tp: end for tp, end in ends.items() if end > 0}
        while True:
            if not pending:
                self._loaded.set()
            batch = await self._consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    self._apply(record.key, record.value)
            for tp in list(pending):
                if await self._consumer.position(tp) >= pending[tp]:
                    del pending[tp]

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if value is None:
            if key is not None:
                self._table.pop(key.decode(errors="replace"), None)
            return
        try:
            prefs: Preferences = PREFERENCES.decode(value)
        except ValidationError as error:
            log.warning("unreadable preferences record", extra={"error": str(error)[:200]})
            return
        current = self._table.get(prefs.user)
        # Our own write may already be in the table; never let an older record replace it.
        if current is None or prefs.updated_at >= current.updated_at:
            self._table[prefs.user] = prefs
