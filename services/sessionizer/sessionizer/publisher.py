"""Conversation events to Kafka in batches, with the durability `EventProducer` has.

The sessionizer publishes an event per message it reads, so its producer is on the hot path:
aiokafka's per-record `send` (a future, a partitioner hash and an accumulator wait per record)
cost more than the conversation rules themselves. Events are queued synchronously as the fold
emits them and a flusher sends what has accumulated as one batch per partition; `flush()` is the
barrier a commit waits on. Same settings as `EventProducer`: acks=all, idempotence from
settings (on for Apache Kafka), the shared `beepgpt_kafka_records_produced_total` metric.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import RecordMetadata

from beepgpt.kafka import Headers
from beepgpt.kafka.producer import make_producer
from beepgpt.observability.metrics import PRODUCED
from beepgpt.settings import KafkaSettings
from beepgpt.topics import Topic

_PARTITION_CACHE = 200_000


class BatchPublisher:
    """Queue with `publish`, make durable with `flush`; one topic, keyed records."""

    def __init__(self, settings: KafkaSettings, topic: Topic, source: str) -> None:
        self.topic = topic
        self._producer = make_producer(settings, source, max_batch_size=settings.max_request_size)
        self._queue: list[tuple[bytes, bytes, Headers]] = []
        self._in_flight: list[asyncio.Future[RecordMetadata]] = []
        self._sent = 0
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._partitions: list[int] = []
        self._partition_of: dict[bytes, int] = {}
        self._flusher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._producer.start()
        found = await self._producer.partitions_for(self.topic.name)
        self._partitions = sorted(found)
        self._flusher = asyncio.create_task(self._flush_forever(), name=f"publish-{self.topic.name}")

    async def stop(self) -> None:
        """Send what is queued, then close (in-flight records are flushed by aiokafka)."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        with contextlib.suppress(Exception):
            await self.flush()
        await self._producer.stop()

    def publish(self, key: str, value: bytes, headers: Headers) -> None:
        """Queue a record; it leaves with the next batch (records keep their order per key)."""
        self._queue.append((key.encode(), value, headers))
        self._wake.set()

    async def flush(self) -> BaseException | None:
        """Wait until everything published so far is acknowledged; the first failure, if any."""
        async with self._lock:
            await self._send_queued()
            in_flight, self._in_flight = self._in_flight, []
            sent, self._sent = self._sent, 0
        results = await asyncio.gather(*in_flight, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if not failures:
            PRODUCED.labels(self.topic.name).inc(sent)
        return failures[0] if failures else None

    async def _flush_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            async with self._lock:
                await self._send_queued()

    async def _send_queued(self) -> None:
        queued, self._queue = self._queue, []
        if not queued:
            return
        by_partition: dict[int, list[tuple[bytes, bytes, Headers]]] = defaultdict(list)
        for record in queued:
            by_partition[self._partition(record[0])].append(record)
        for partition, records in by_partition.items():
            batch, count = self._producer.create_batch(), 0
            for key, value, headers in records:
                if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                    if count == 0:
                        raise ValueError(f"a {len(value)}-byte record does not fit in a Kafka batch")
                    await self._send(batch, partition)
                    batch, count = self._producer.create_batch(), 0
                    batch.append(key=key, value=value, timestamp=None, headers=headers)
                count += 1
            await self._send(batch, partition)
        self._sent += len(queued)

    async def _send(self, batch: object, partition: int) -> None:
        future = await self._producer.send_batch(batch, self.topic.name, partition=partition)
        self._in_flight.append(future)

    def _partition(self, key: bytes) -> int:
        """The partition the default partitioner picks for `key` (murmur2), remembered: every
        event of a conversation has the same key, and hashing in Python is not free."""
        found = self._partition_of.get(key)
        if found is None:
            if len(self._partition_of) >= _PARTITION_CACHE:
                self._partition_of.clear()
            found = DefaultPartitioner()(key, self._partitions, self._partitions)
            self._partition_of[key] = found
        return found
