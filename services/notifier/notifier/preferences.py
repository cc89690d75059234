"""Everyone's preferences, as a table read from the compacted `user.preferences` topic.

Every instance reads every partition from the beginning (no consumer group: each needs the
whole table), so the latest record per user wins. The notifier does not decide anything until
the table has caught up with the end of the topic as it was at start-up: deciding with a
half-read table would treat opted-in people as strangers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from beepgpt.contracts import Preferences
from beepgpt.settings import KafkaSettings
from beepgpt.topics import PREFERENCES

log = logging.getLogger(__name__)

OnChange = Callable[[Preferences | None, Preferences], Awaitable[None]]


class PreferencesTable:
    """user id -> latest `Preferences`, kept current by a background reader."""

    def __init__(self, settings: KafkaSettings, on_change: OnChange | None = None) -> None:
        self._settings = settings
        self._on_change = on_change
        self._table: dict[str, Preferences] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._loaded = asyncio.Event()
        self._changed = asyncio.Condition()
        self.invalid = 0

    @property
    def loaded(self) -> bool:
        return self._loaded.is_set()

    def get(self, user: str) -> Preferences | None:
        return self._table.get(user)

    def __len__(self) -> int:
        return len(self._table)

    async def start(self, timeout: float = 60.0) -> None:
        """Read the topic up to its current end, then keep following it in the background."""
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            request_timeout_ms=self._settings.request_timeout_ms,
        )
        await self._consumer.start()
        partitions = await self._partitions(timeout)
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        ends: dict[TopicPartition, int] = await self._consumer.end_offsets(partitions)
        self._task = asyncio.create_task(self._follow(ends), name="preferences-table")
        loaded = asyncio.create_task(self._loaded.wait())
        done, _ = await asyncio.wait(
            {loaded, self._task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if loaded not in done:
            loaded.cancel()
            if self._task in done:
                self._task.result()  # raises what stopped the reader
            raise TimeoutError(f"{PREFERENCES.name} not read to its end within {timeout:.0f}s")
        log.info("preferences loaded", extra={"users": len(self._table)})

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    async def wait_for(
        self, user: str, predicate: Callable[[Preferences], bool], timeout: float = 10.0
    ) -> Preferences:
        """Until the table holds a record for `user` that satisfies `predicate`."""
        async with asyncio.timeout(timeout), self._changed:
            while True:
                prefs = self._table.get(user)
                if prefs is not None and predicate(prefs):
                    return prefs
                await self._changed.wait()

    async def _partitions(self, timeout: float) -> list[TopicPartition]:
        assert self._consumer is not None
        async with asyncio.timeout(timeout):
            while True:
                found = self._consumer.partitions_for_topic(PREFERENCES.name)
                if found:
                    return [TopicPartition(PREFERENCES.name, p) for p in sorted(found)]
                await self._consumer._client.force_metadata_update()
                await asyncio.sleep(0.2)

    async def _follow(self, ends: dict[TopicPartition, int]) -> None:
        assert self._consumer is not None
        pending = {tp: end for tp, end in ends.items() if end > 0}
        if not pending:
            self._loaded.set()
        while True:
            batch = await self._consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    await self._apply(record.key, record.value)
            for tp in list(pending):
                if await self._consumer.position(tp) >= pending[tp]:
                    del pending[tp]
            if not self._loaded.is_set() and not pending:
                self._loaded.set()
            if batch:
                async with self._changed:
                    self._changed.notify_all()

    async def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if value is None:  # tombstone: the person asked to be forgotten
            if key is not None:
                self._table.pop(key.decode(errors="replace"), None)
            return
        try:
            prefs: Preferences = PREFERENCES.decode(value)
        except ValidationError as error:
            self.invalid += 1
            log.warning("unreadable preferences record", extra={"error": str(error)[:200]})
            return
        before = self._table.get(prefs.user)
        self._table[prefs.user] = prefs
        if self._on_change is not None and before != prefs:
            try:
                await self._on_change(before, prefs)
            except Exception:
                log.exception("preferences change hook failed", extra={"user": prefs.user})
