"""What one poll hands a service: its records, decoded, with a place to put what the batch produces.

Pure where it can be: decoding records and computing the offsets that committing them means are
plain functions, so a service's planning (the scorer's `plan`) and the consume loop share them
instead of each keeping its own copy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeAlias, TypeVar

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord, RecordMetadata
from pydantic import BaseModel

from beepgpt.kafka.headers import Headers
from beepgpt.kafka.producer import EventProducer
from beepgpt.topics import Topic

T = TypeVar("T")

Record: TypeAlias = "ConsumerRecord[bytes, bytes]"


@dataclass(slots=True)
class Entry(Generic[T]):
    """One record of a batch: its value when it decoded, the reason when it did not.

    Poison stays in the batch (with `value` None) rather than vanishing: a service that tracks
    its progress record by record (the sessionizer) must still step over it.
    """

    record: Record
    value: T | None = None
    error: Exception | None = None


def decode_records(records: Iterable[Record], decode: Callable[[bytes], T]) -> list[Entry[T]]:
    """Decode every record; one that does not decode (or has no value) becomes poison, never an error."""
    entries: list[Entry[T]] = []
    for record in records:
        try:
            if record.value is None:
                raise ValueError("record has no value")
            entries.append(Entry(record, decode(record.value)))
        except Exception as error:
            entries.append(Entry(record, None, error))
    return entries


def next_offsets(records: Iterable[Record]) -> dict[TopicPartition, int]:
    """Per partition, the offset after the last of `records`: what committing them means.

    Kafka's committed offset is the next record to read, so a batch that handled offsets 3..7 of
    a partition commits 8, whatever order the records came in.
    """
    offsets: dict[TopicPartition, int] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
    return offsets


@dataclass
class RecordBatch(Generic[T]):
    """The records of one poll, decoded, and the records the service produces while handling them.

    `send` queues a record on the service's producer and keeps its future; the loop awaits them
    all (`flush`) before it commits, so offsets are committed only for work whose output the
    broker acknowledged. A step that must know the outcome itself (to count a failure, or to
    redo the batch) calls `flush` on its own; the loop's flush is then a no-op.
    """

    entries: list[Entry[T]]
    producer: EventProducer
    _pending: list[asyncio.Future[RecordMetadata]] = field(default_factory=list)

    @property
    def records(self) -> list[Record]:
        return [entry.record for entry in self.entries]

    def values(self) -> list[tuple[Record, T]]:
        """The records that decoded, with their values, in order."""
        return [(e.record, e.value) for e in self.entries if e.value is not None]

    @property
    def poison(self) -> list[tuple[Record, Exception]]:
        return [(e.record, e.error) for e in self.entries if e.error is not None]

    def by_partition(self) -> dict[TopicPartition, list[Entry[T]]]:
        """The entries grouped by partition, each group in offset order (as Kafka delivered them)."""
        groups: dict[tuple[str, int], list[Entry[T]]] = {}
        for entry in self.entries:  # plain tuples as keys: this runs for every record
            record = entry.record
            key = (record.topic, record.partition)
            group = groups.get(key)
            if group is None:
                groups[key] = group = []
            group.append(entry)
        return {TopicPartition(topic, partition): group for (topic, partition), group in groups.items()}

    def only(self, partitions: Iterable[TopicPartition]) -> RecordBatch[T]:
        """The same batch without the records of other partitions (those a rebalance took away)."""
        keep = set(partitions)
        entries = [e for e in self.entries if TopicPartition(e.record.topic, e.record.partition) in keep]
        return RecordBatch(entries, self.producer, self._pending)

    def offsets(self) -> dict[TopicPartition, int]:
        return next_offsets(self.records)

    async def send(
        self,
        topic: Topic | str,
        key: str,
        event: BaseModel | bytes,
        *,
        trace_id: str | None = None,
        headers: Headers | None = None,
    ) -> None:
        """Queue one output record; the broker's acknowledgement is awaited by `flush`."""
        self._pending.append(
            await self.producer.send_soon(topic, key, event, trace_id=trace_id, headers=headers)
        )

    async def flush(self) -> None:
        """Until the broker has every record sent so far; raises the first failure (KafkaError)."""
        pending, self._pending[:] = list(self._pending), []
        if pending:
            await asyncio.gather(*pending)
