"""A whole compacted topic as an in-memory table: every instance reads every partition.

Used for `user.preferences`, which ingest writes and every service reads. Why not a consumer
group: each instance needs the whole table, not a share of it. Why not faust's GlobalTable: it
would bring a second Kafka client, faust's worker lifecycle beside our consumer groups and its
own changelog topics, to get the same dictionary. This reader joins no group (so it never
rebalances), commits nothing (every start rebuilds the table from the beginning), and says when
it has caught up with the end of the topic as it was at start, so a service decides nothing
with a half-read table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Generic, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import BaseModel, ValidationError

from beepgpt.kafka.clients import new_consumer
from beepgpt.settings import KafkaSettings
from beepgpt.shims.aiokafka import force_metadata_update
from beepgpt.topics import Topic

log = logging.getLogger(__name__)

V = TypeVar("V", bound=BaseModel)

OnChange = Callable[[str, V | None, V | None], Awaitable[None]]
"""Called with (key, before, after) for each change; after is None for a tombstone."""


class CompactedTable(Mapping[str, V], Generic[V]):
    """key → latest value of a compacted topic, kept current by a background reader.

    `newer(current, candidate)` decides whether a record replaces the value held, so a writer's
    own update (applied locally on the broker's ack) is never undone by an older record read
    later. A value that does not parse is counted and skipped: it cannot be dead-lettered from
    here, since every instance reads it and each would send its own copy.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        topic: Topic,
        *,
        newer: Callable[[V, V], bool] | None = None,
        on_change: OnChange[V] | None = None,
    ) -> None:
        self._settings = settings
        self._topic = topic
        self._newer = newer or (lambda current, candidate: True)
        self._on_change = on_change
        self._table: dict[str, V] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._loaded = asyncio.Event()
        self._changed = asyncio.Condition()
        self.invalid = 0
        self.records = 0

    def __getitem__(self, key: str) -> V:
        return self._table[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)

    @property
    def loaded(self) -> bool:
        return self._loaded.is_set()

    async def start(self, timeout: float = 60.0) -> None:
        """Read the topic up to its current end, then keep following it in the background."""
        self._consumer = new_consumer(
            self._settings,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            request_timeout_ms=self._settings.request_timeout_ms,
            fetch_max_wait_ms=self._settings.fetch_max_wait_ms,
        )
        await self._consumer.start()
        try:
            async with asyncio.timeout(timeout):
                while not (found := self._consumer.partitions_for_topic(self._topic.name)):
                    await force_metadata_update(self._consumer)
                    await asyncio.sleep(0.2)
            partitions = [TopicPartition(self._topic.name, p) for p in sorted(found)]
            self._consumer.assign(partitions)
            await self._consumer.seek_to_beginning(*partitions)
            ends: dict[TopicPartition, int] = await self._consumer.end_offsets(partitions)
            self._task = asyncio.create_task(self._follow(ends), name=f"table-{self._topic.name}")
            loaded = asyncio.create_task(self._loaded.wait())
            done, _ = await asyncio.wait({loaded, self._task}, timeout=timeout, return_when="FIRST_COMPLETED")
            if loaded not in done:
                loaded.cancel()
                if self._task in done:
                    self._task.result()  # raises what stopped the reader
                raise TimeoutError(f"{self._topic.name} not read to its end within {timeout:.0f}s")
        except BaseException:
            await self.stop()
            raise
        log.info("table loaded", extra={"topic": self._topic.name, "keys": len(self._table)})

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def put_local(self, key: str, value: V) -> None:
        """Apply a value this process just wrote (after the broker acknowledged it)."""
        await self._apply(key, value)

    async def wait_for(self, key: str, predicate: Callable[[V], bool], timeout: float = 10.0) -> V:
        """Until the table holds a value for `key` that satisfies `predicate`."""
        async with asyncio.timeout(timeout), self._changed:
            while True:
                value = self._table.get(key)
                if value is not None and predicate(value):
                    return value
                await self._changed.wait()

    async def _follow(self, ends: dict[TopicPartition, int]) -> None:
        assert self._consumer is not None
        pending = {tp: end for tp, end in ends.items() if end > 0}
        if not pending:
            self._loaded.set()
        while True:
            batch = await self._consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    self.records += 1
                    await self._read(record.key, record.value)
            for tp in list(pending):
                if await self._consumer.position(tp) >= pending[tp]:
                    del pending[tp]
            if not pending and not self._loaded.is_set():
                self._loaded.set()

    async def _read(self, key: bytes | None, raw: bytes | None) -> None:
        if key is None:
            self.invalid += 1
            return
        name = key.decode(errors="replace")
        if raw is None:  # tombstone: the key was deleted (a person asked to be forgotten)
            await self._apply(name, None)
            return
        try:
            value: V = self._topic.decode(raw)
        except ValidationError as error:
            self.invalid += 1
            log.warning("unreadable record", extra={"topic": self._topic.name, "error": str(error)[:200]})
            return
        await self._apply(name, value)

    async def _apply(self, key: str, value: V | None) -> None:
        before = self._table.get(key)
        if value is None:
            self._table.pop(key, None)
        elif before is None or self._newer(before, value):
            self._table[key] = value
        else:
            return
        async with self._changed:
            self._changed.notify_all()
        if self._on_change is not None and before != value:
            try:
                await self._on_change(key, before, value)
            except Exception:
                log.exception("table change hook failed", extra={"topic": self._topic.name, "key": key})
