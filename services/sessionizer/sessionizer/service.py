"""The sessionizer service: `slack.messages` in a consumer group → live queries → `conversations`.

Kafka I/O only; the rules are in the query, the feeder and the fold. Per assigned partition a
`PartitionSessionizer` runs its own live query. The shared consume loop (`beepgpt.runtime`)
reads records and dead-letters the ones it cannot read (the contract's validation, then
`feeder.check`: a `ts="abc"` passes the contract but not the feeder); this service feeds them all
(poison as a skip), sends heartbeats to partitions that have caught up (so quiet conversations close by the
clock, while a backlog is replayed by its own times), rebuilds queries that failed or grew, and
commits what is safe, through the loop's commit hook:

- a commit happens only after every event published so far is acknowledged, and only up to the
  partition's clean cut (offsets.py), so a restart or the next owner replays what it needs to
  rebuild every conversation that may still change, and nothing else;
- the commit's metadata says what was already published, so that replay does not publish it again
  (a crash between a publish and the next commit still repeats those events, at the same versions).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

from beepgpt.contracts import SlackMessage
from beepgpt.kafka import EventProducer, committed_with_metadata, ensure_topics
from beepgpt.kafka.headers import SOURCE, TRACE_ID, new_trace_id
from beepgpt.observability.metrics import CONSUMER_LAG
from beepgpt.runtime import ConsumerLoop, Entry, Poll, RecordBatch, Runtime
from beepgpt.settings import KafkaSettings
from beepgpt.topics import CONVERSATIONS, SLACK_MESSAGES
from sessionizer import metrics
from sessionizer.clock import Clock, EventClock, WallClock
from sessionizer.conversation import Emitted
from sessionizer.feeder import SlackEvent
from sessionizer.linker import compile_kernels
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
    """One instance of the sessionizer; run several and they split the partitions.

    Its own parts are the feed (`_feed`), the clock's heartbeats and query rebuilds (`_tick`),
    taking partitions over and handing them on, and its commit (`_commit_due`: clean cuts with
    replay marks, never the batch's offsets); the runtime owns start-up, the loop and shutdown.
    """

    def __init__(
        self, kafka: KafkaSettings, settings: SessionizerSettings, *, clock: Clock | None = None
    ) -> None:
        self.kafka = kafka
        self.settings = settings
        self.clock: Clock = clock or (EventClock() if settings.clock == "events" else WallClock())
        self.partitions: dict[int, PartitionSessionizer] = {}
        self._committed: dict[int, CommitPoint] = {}
        self._producer = EventProducer(kafka, SERVICE)  # dead letters
        self._publisher = BatchPublisher(kafka, CONVERSATIONS, SERVICE)
        self._next_beat = 0.0
        self._next_commit = 0.0
        self.runtime = Runtime(SERVICE, ready=lambda: not any(p.failed for p in self.partitions.values()))
        self.runtime.step("topics", lambda: ensure_topics(kafka, [SLACK_MESSAGES, CONVERSATIONS]))
        if settings.conversations == "linked":
            self.runtime.step("linker", self._compile_linker)
        self.runtime.add(self._producer, "producer")
        self.runtime.add(self._publisher, "publisher")
        self.loop: ConsumerLoop[SlackEvent] = ConsumerLoop(
            self.runtime,
            kafka,
            group_id=settings.group_id,
            topic=SLACK_MESSAGES,
            producer=self._producer,
            step=self._feed_batch,
            poll=Poll(timeout_ms=int(settings.heartbeat_s * 1000), max_records=settings.max_batch),
            commit=self._commit_due,
            tick=self._tick,
            # The lag that matters is behind the live queries, not behind the fetcher: `_heartbeat`.
            report_lag=False,
            on_assigned=self._acquire,
            on_revoked=self._revoked,
        )
        # Last to start, first to stop: partitions are handed over (drained, committed) before
        # the consumer leaves the group.
        self.runtime.step("partitions", self._start_clocks, lambda: self._release(list(self.partitions)))

    @property
    def ready(self) -> bool:
        return self.runtime.ready

    def stop(self) -> None:
        """Finish the batch in hand, publish and commit what it produced, leave the group."""
        self.runtime.request_stop()

    async def run(self) -> None:
        await self.runtime.run()

    # --- the loop's steps -------------------------------------------------------------------------

    async def _compile_linker(self) -> None:
        """The reply linker's compiled code, before the first message (`linker.compile_kernels`),
        in a thread so that the health endpoints answer meanwhile."""
        seconds = await asyncio.to_thread(compile_kernels)
        log.info("reply linker compiled (or loaded from the cache) in %.1f s", seconds)

    async def _start_clocks(self) -> None:
        self._next_beat = time.monotonic()
        self._next_commit = time.monotonic() + self.settings.commit_interval_s

    async def _feed_batch(self, batch: RecordBatch[SlackEvent]) -> None:
        for tp, entries in batch.by_partition().items():
            partition = self.partitions.get(tp.partition)
            if partition is not None:
                await self._feed(partition, entries)

    async def _feed(self, partition: PartitionSessionizer, entries: list[Entry[SlackEvent]]) -> None:
        """Poison (dead-lettered by the loop) is still fed, as a skip: the partition's progress
        passes it."""
        events: list[Record] = []
        newest = 0.0
        for entry in entries:
            event = entry.value
            if isinstance(event, SlackMessage) and event.action == "new":
                newest = max(newest, float(event.ts))
            events.append((entry.record.offset, event, _trace_id(entry.record)))
        self.clock.observe(newest)
        await partition.feed(events)

    async def _tick(self) -> None:
        now = time.monotonic()
        if now >= self._next_beat:
            await self._heartbeat()
            self._next_beat = now + self.settings.heartbeat_s
        await self._recover()

    async def _commit_due(self, _: RecordBatch[SlackEvent]) -> None:
        """Every `commit_interval_s`, each partition's clean cut (never the batch's offsets)."""
        now = time.monotonic()
        if now >= self._next_commit:
            await self._commit()
            self._next_commit = now + self.settings.commit_interval_s

    async def _heartbeat(self) -> None:
        """Partitions that have caught up get the clock's time; a backlog keeps its own times."""
        consumer = self.loop.consumer
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
        consumer = self.loop.consumer
        committed = await committed_with_metadata(consumer, mine)
        beginnings = await consumer.beginning_offsets(mine)
        for tp in mine:
            found = committed.get(tp)
            if found is not None and found.offset >= 0:
                point = CommitPoint(found.offset, ReplayMarks.decode(found.metadata))
            else:
                point = CommitPoint(beginnings[tp], ReplayMarks())
            self._committed[tp.partition] = point
            await self._start_partition(tp.partition, point)

    async def _start_partition(self, number: int, point: CommitPoint) -> None:
        partition = PartitionSessionizer(
            number, self.settings, start=point.offset, marks=point.marks, publish=self._publish
        )
        await partition.start()
        self.partitions[number] = partition
        self.loop.consumer.seek(TopicPartition(TOPIC, number), partition.position)  # linker_from first

    async def _revoked(self, revoked: list[TopicPartition]) -> None:
        await self._release([tp.partition for tp in revoked if tp.topic == TOPIC])

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
        if not await self.loop.commit_offsets(offsets):
            return  # retried with the next one
        for n, (partition, point) in points.items():
            partition.committed(point.offset)
            self._committed[n] = point


def _trace_id(record: ConsumerRecord[bytes, bytes]) -> bytes | None:
    for name, value in record.headers or ():  # a plain loop: this runs for every record
        if name == TRACE_ID:
            return bytes(value)
    return None
