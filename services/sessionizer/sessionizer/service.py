"""The sessionizer service: `slack.messages` in a consumer group → live queries → `conversations`.

Kafka I/O only; the rules are in the query, the feeder and the fold. Per assigned partition a
`PartitionSessionizer` runs its own live query. The loop here reads records, dead-letters the
ones it cannot read, feeds the rest, sends heartbeats to partitions that have caught up (so
quiet conversations close by the clock, while a backlog is replayed by its own times), rebuilds
queries that failed or grew, and commits what is safe:

- a commit happens only after every event published so far is acknowledged, and only up to the
  partition's clean cut (offsets.py), so a restart or the next owner replays what it needs to
  rebuild every conversation that may still change, and nothing else;
- the commit's metadata says what was already published, so that replay does not publish it again
  (a crash between a publish and the next commit still repeats those events, at the same versions).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata
from pydantic import ValidationError

from beepgpt.contracts import SlackMessage
from beepgpt.kafka import DeadLetters, EventProducer, ensure_topics, make_consumer
from beepgpt.kafka.headers import SOURCE, TRACE_ID, new_trace_id
from beepgpt.observability.metrics import CONSUMED, CONSUMER_LAG
from beepgpt.settings import KafkaSettings
from beepgpt.topics import CONVERSATIONS, SLACK_MESSAGES
from sessionizer import metrics
from sessionizer.clock import Clock, EventClock, WallClock
from sessionizer.conversation import Emitted
from sessionizer.feeder import SlackEvent
from sessionizer.live import QueryEnded
from sessionizer.offsets import CommitPoint, ReplayMarks
from sessionizer.partition import PartitionSessionizer, Record
from sessionizer.publisher import BatchPublisher
from sessionizer.settings import SessionizerSettings

log = logging.getLogger(__name__)

SERVICE = "sessionizer"
_SOURCE = SERVICE.encode()
TOPIC = SLACK_MESSAGES.name
DRAIN_TIMEOUT_S = 30.0


class SessionizerService:
    """One instance of the sessionizer; run several and they split the partitions."""

    def __init__(
        self, kafka: KafkaSettings, settings: SessionizerSettings, *, clock: Clock | None = None
    ) -> None:
        self.kafka = kafka
        self.settings = settings
        self.clock: Clock = clock or (EventClock() if settings.clock == "events" else WallClock())
        self.partitions: dict[int, PartitionSessionizer] = {}
        self._committed: dict[int, CommitPoint] = {}
        self._stop = asyncio.Event()
        self._running = False
        self._producer: EventProducer | None = None  # dead letters
        self._publisher = BatchPublisher(kafka, CONVERSATIONS, SERVICE)
        self._consumer: AIOKafkaConsumer | None = None
        self._dead_letters: DeadLetters | None = None

    @property
    def ready(self) -> bool:
        return self._running and not any(p.failed for p in self.partitions.values())

    def stop(self) -> None:
        """Finish the batch in hand, publish and commit what it produced, leave the group."""
        self._stop.set()

    async def run(self) -> None:
        await ensure_topics(self.kafka, [SLACK_MESSAGES, CONVERSATIONS])
        self._producer = EventProducer(self.kafka, SERVICE)
        await self._producer.start()
        await self._publisher.start()
        self._dead_letters = DeadLetters(self._producer, SERVICE)
        self._consumer = consumer = make_consumer(self.kafka, self.settings.group_id)
        consumer.subscribe([TOPIC], listener=_Rebalance(self))
        try:
            await consumer.start()
            self._running = True
            await self._loop(consumer)
        finally:
            self._running = False
            with contextlib.suppress(Exception):
                await self._release(list(self.partitions))
            with contextlib.suppress(Exception):
                await consumer.stop()
            await self._publisher.stop()
            await self._producer.stop()

    # --- the loop ---------------------------------------------------------------------------------

    async def _loop(self, consumer: AIOKafkaConsumer) -> None:
        next_beat = time.monotonic()
        next_commit = time.monotonic() + self.settings.commit_interval_s
        while not self._stop.is_set():
            batch = await consumer.getmany(
                timeout_ms=int(self.settings.heartbeat_s * 1000), max_records=self.settings.max_batch
            )
            for tp, records in batch.items():
                partition = self.partitions.get(tp.partition)
                if partition is not None and records:
                    await self._feed(partition, records)
            now = time.monotonic()
            if now >= next_beat:
                await self._heartbeat(consumer)
                next_beat = now + self.settings.heartbeat_s
            await self._recover()
            if now >= next_commit:
                await self._commit()
                next_commit = now + self.settings.commit_interval_s

    async def _feed(
        self, partition: PartitionSessionizer, records: list[ConsumerRecord[bytes, bytes]]
    ) -> None:
        assert self._dead_letters is not None
        events: list[Record] = []
        newest = 0.0
        for record in records:
            event: SlackEvent | None
            try:
                event = SLACK_MESSAGES.decode(record.value or b"")
            except ValidationError as error:  # a newer schema_version included
                await self._dead_letters.send(record, error)
                event = None  # still fed, as a skip: the partition's progress passes it
            if isinstance(event, SlackMessage) and event.action == "new":
                newest = max(newest, float(event.ts))
            events.append((record.offset, event, _trace_id(record)))
        self.clock.observe(newest)
        CONSUMED.labels(TOPIC, SERVICE).inc(len(records))
        await partition.feed(events)

    async def _heartbeat(self, consumer: AIOKafkaConsumer) -> None:
        """Partitions that have caught up get the clock's time; a backlog keeps its own times."""
        delay = self.settings.heartbeat_delay_s if isinstance(self.clock, WallClock) else 0.0
        now = self.clock.now() - delay
        for number, partition in self.partitions.items():
            highwater = consumer.highwater(TopicPartition(TOPIC, number))
            if highwater is None:
                continue
            CONSUMER_LAG.labels(TOPIC, str(number), SERVICE).set(max(0, highwater - partition.position))
            if partition.position >= highwater and now > 0:
                await partition.heartbeat(now)

    async def _recover(self) -> None:
        """A query that failed restarts from the last commit; one that grew is rebuilt."""
        for number, partition in list(self.partitions.items()):
            if partition.failed is not None:
                reason = "ended" if isinstance(partition.failed, QueryEnded) else "failed"
                log.error(
                    "live query broke; rebuilding it from the last commit",
                    extra={"partition": number, "reason": reason, "error": repr(partition.failed)},
                )
                await self._restart(number, reason)
            elif partition.wants_rebuild:
                await self._restart(number, "rebuild")

    async def _restart(self, number: int, reason: str) -> None:
        partition = self.partitions[number]
        if reason == "rebuild":
            point = await self._drain_and_commit(number, partition)
        else:
            point = self._committed[number]
        await partition.stop()
        await self._start_partition(number, point)
        metrics.QUERY_RESTARTS.labels(reason).inc()

    # --- partitions come and go -------------------------------------------------------------------

    async def _acquire(self, assigned: Iterable[TopicPartition]) -> None:
        """Start a query per new partition, replaying from its committed offset."""
        mine = [tp for tp in assigned if tp.topic == TOPIC and tp.partition not in self.partitions]
        if not mine:
            return
        consumer = self._consumer
        assert consumer is not None
        # aiokafka's public `committed()` drops the commit metadata this needs (the replay marks).
        committed = await consumer._coordinator.fetch_committed_offsets(mine)
        beginnings = await consumer.beginning_offsets(mine)
        for tp in mine:
            found = committed.get(tp)
            if found is not None and found.offset >= 0:
                point = CommitPoint(found.offset, ReplayMarks.decode(found.metadata))
            else:
                point = CommitPoint(beginnings[tp], ReplayMarks())
            self._committed[tp.partition] = point
            await self._start_partition(tp.partition, point)
        log.info("partitions assigned", extra={"partitions": sorted(tp.partition for tp in mine)})

    async def _start_partition(self, number: int, point: CommitPoint) -> None:
        partition = PartitionSessionizer(
            number, self.settings, start=point.offset, marks=point.marks, publish=self._publish
        )
        await partition.start()
        self.partitions[number] = partition
        assert self._consumer is not None
        self._consumer.seek(TopicPartition(TOPIC, number), point.offset)

    async def _release(self, numbers: list[int]) -> None:
        """Hand partitions over: publish what they owe, commit, stop their queries."""
        for number in numbers:
            partition = self.partitions.pop(number, None)
            if partition is None:
                continue
            try:
                await self._drain_and_commit(number, partition)
            except Exception as error:  # the next owner replays from the previous commit
                log.warning(
                    "could not commit a released partition", extra={"partition": number, "error": repr(error)}
                )
            finally:
                await partition.stop()
                self._committed.pop(number, None)

    async def _drain_and_commit(self, number: int, partition: PartitionSessionizer) -> CommitPoint:
        if partition.failed is None:
            await partition.drain(DRAIN_TIMEOUT_S)
        point = partition.commit_point()
        await self._commit_points({number: (partition, point)})
        return point

    # --- publishing and committing ----------------------------------------------------------------

    def _publish(self, emitted: Emitted, trace: bytes | None) -> None:
        headers = [(SOURCE, _SOURCE), (TRACE_ID, trace or new_trace_id().encode())]
        self._publisher.publish(emitted.conversation_id, emitted.encoded(), headers)

    async def _commit(self) -> None:
        points = {number: (p, p.commit_point()) for number, p in self.partitions.items() if p.failed is None}
        changed = {n: v for n, v in points.items() if self._committed.get(n) != v[1]}
        if changed:
            await self._commit_points(changed)

    async def _commit_points(self, points: dict[int, tuple[PartitionSessionizer, CommitPoint]]) -> None:
        """Commit only once everything published so far is acknowledged by the broker."""
        failure = await self._publisher.flush()
        if failure is not None:
            # Not committing keeps those events' rows replayable; rebuilding every query from
            # its last commit publishes them again.
            log.error("publishing failed; replaying from the last commits", extra={"error": repr(failure)})
            for partition in self.partitions.values():
                partition.failed = failure
            return
        offsets = {
            TopicPartition(TOPIC, n): OffsetAndMetadata(point.offset, point.marks.encode())
            for n, (_, point) in points.items()
        }
        assert self._consumer is not None
        try:
            await self._consumer.commit(offsets)
        except KafkaError as error:
            log.warning("commit failed; it is retried with the next one", extra={"error": repr(error)})
            return
        for n, (partition, point) in points.items():
            partition.committed(point.offset)
            self._committed[n] = point


def _trace_id(record: ConsumerRecord[bytes, bytes]) -> bytes | None:
    for name, value in record.headers or ():  # a plain loop: this runs for every record
        if name == TRACE_ID:
            return bytes(value)
    return None


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Partitions are handed over drained and committed, and taken over by replaying."""

    def __init__(self, service: SessionizerService) -> None:
        self._service = service

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._service._release([tp.partition for tp in revoked if tp.topic == TOPIC])

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._service._acquire(assigned)
