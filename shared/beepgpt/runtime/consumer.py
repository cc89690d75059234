"""The consume loop every consuming service runs: poll → decode → dead-letter → handle → produce →
flush → commit, with rebalances and pausing handled in one place.

A service registers its *step* (what it does with one batch) and, where it needs them, hooks:

- `commit` — how it commits. The default commits, for every partition still assigned, the
  offset after the last record of the batch, once everything the batch produced is acknowledged
  (at-least-once: a crash in between redoes the batch). The sessionizer commits clean cuts with
  replay marks of its own instead, on its own clock, through `commit_offsets`.
- `tick` — work after every poll, records or not (the sessionizer's heartbeats).
- `on_assigned` / `on_revoked` — what partitions coming and going mean to the service.

Rebalances: aiokafka runs the revocation callback in its coordinator task, concurrently with the
loop. With `rebalance_wait_s` set, the revocation first waits for the batch in hand (the loop
holds `in_hand` from handling to commit), so partitions change hands after their batch is
committed and a claim never moves while it is being worked on. The wait is bounded: the batch's
commit may itself be waiting for the group, which is waiting here; past the bound the rebalance
goes on, the batch's commit fails and the next owner redoes it.

Pausing: `idle` waits while staying in the group (a poll with every partition paused), for a
service that cannot work now (its Redis is down) but must not be taken for dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from beepgpt.kafka.consumer import make_consumer, report_lag
from beepgpt.kafka.dlq import DeadLetters
from beepgpt.kafka.producer import EventProducer
from beepgpt.observability.metrics import CONSUMED
from beepgpt.runtime.batch import Record, RecordBatch, decode_records
from beepgpt.runtime.lifecycle import Runtime
from beepgpt.settings import KafkaSettings
from beepgpt.topics import Topic

log = logging.getLogger(__name__)

T = TypeVar("T")

Step = Callable[[RecordBatch[T]], Awaitable[object]]
Commit = Callable[[RecordBatch[T]], Awaitable[None]]
PartitionsHook = Callable[[list[TopicPartition]], Awaitable[None]]


class LeaveUncommitted(Exception):
    """Raised by a step that must give up its batch (the service is stopping while the batch
    waits for something): nothing of the batch is committed, and the loop ends."""


@dataclass(frozen=True)
class Poll:
    """How records are fetched.

    `max_records` caps a batch; `linger_ms` tops up a batch that came back short for that long,
    so a loaded service gets full batches while an idle one handles each record at once.
    """

    timeout_ms: int = 500
    max_records: int | None = None
    linger_ms: int = 0


class RebalanceListener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Partitions change hands after the batch in hand (bounded), then the service's hooks run."""

    def __init__(
        self,
        in_hand: asyncio.Lock,
        *,
        wait_s: float | None,
        gave_up: Callable[[], None] | None = None,
        on_revoked: PartitionsHook | None = None,
        on_assigned: PartitionsHook | None = None,
        assigned: asyncio.Event | None = None,
    ) -> None:
        """`wait_s` None: revocation does not wait for the batch in hand. `gave_up` is called when
        the wait ran out (for a service's own error counter); `assigned` is set by the first
        assignment that brings partitions."""
        self._in_hand = in_hand
        self._wait_s = wait_s
        self._gave_up = gave_up
        self._on_revoked = on_revoked
        self._on_assigned = on_assigned
        self._assigned = assigned

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        if self._wait_s is not None:
            try:
                async with asyncio.timeout(self._wait_s), self._in_hand:
                    pass
            except TimeoutError:
                if self._gave_up is not None:
                    self._gave_up()
                log.warning("rebalance went on without the batch in hand", extra={"waited_s": self._wait_s})
        if self._on_revoked is not None:
            await self._on_revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("partitions assigned", extra={"partitions": sorted(tp.partition for tp in assigned)})
        if self._on_assigned is not None:
            await self._on_assigned(list(assigned))
        if assigned and self._assigned is not None:
            self._assigned.set()


class ConsumerLoop(Generic[T]):
    """A consumer group member on one topic, run by a `Runtime` (it registers itself there).

    The consumer joins at the point of start-up where the loop was created (after what the
    service registered before it: its producer, the tables it decides with) and leaves at the
    mirror point of shutdown; the loop is the runtime's drained task.
    """

    def __init__(
        self,
        runtime: Runtime,
        kafka: KafkaSettings,
        *,
        group_id: str,
        topic: Topic,
        producer: EventProducer,
        step: Step[T],
        decode: Callable[[bytes], T] | None = None,
        poll: Poll | None = None,
        commit: Commit[T] | None = None,
        commit_timeout_s: float | None = None,
        on_commit_failed: Callable[[], None] | None = None,
        rebalance_wait_s: float | None = None,
        on_rebalance_wait_timeout: Callable[[], None] | None = None,
        on_assigned: PartitionsHook | None = None,
        on_revoked: PartitionsHook | None = None,
        tick: Callable[[], Awaitable[None]] | None = None,
        report_lag: bool = True,
        consumer_options: Mapping[str, Any] | None = None,
        name: str = "consume",
    ) -> None:
        """`decode` defaults to the topic's contract; `commit` to committing the batch's offsets
        (with `commit_timeout_s`, since aiokafka may retry a commit forever mid-rebalance);
        `report_lag` False for a service that reports its own idea of lag; `name` names the task
        (a service with a second loop, such as the notifier's corrections, gives it its own)."""
        self._runtime = runtime
        self._kafka = kafka
        self.group_id = group_id
        self.topic = topic
        self._producer = producer
        self.dead_letters = DeadLetters(producer, runtime.name)
        self._step = step
        self._decode: Callable[[bytes], T] = decode or topic.decode
        self._poll_policy = poll or Poll()
        self._commit: Commit[T] = commit or self.commit_handled
        self._commit_timeout_s = commit_timeout_s
        self._on_commit_failed = on_commit_failed
        self._tick = tick
        self._report_lag = report_lag
        self._options = dict(consumer_options or {})
        self.in_hand = asyncio.Lock()
        """Held from handling a batch to its commit: what a rebalance waits for."""
        self._assigned = asyncio.Event()
        self._listener = RebalanceListener(
            self.in_hand,
            wait_s=rebalance_wait_s,
            gave_up=on_rebalance_wait_timeout,
            on_revoked=on_revoked,
            on_assigned=on_assigned,
            assigned=self._assigned,
        )
        self._consumer: AIOKafkaConsumer | None = None
        self._consuming = False
        self.committed: dict[TopicPartition, int] = {}
        """What this loop last committed per partition."""
        self._progress = asyncio.Event()
        runtime.step(f"consumer {group_id}", self._start, self._stop)
        runtime.task(name, self._run, drain=True)

    # --- what services use ------------------------------------------------------------------

    @property
    def consumer(self) -> AIOKafkaConsumer:
        assert self._consumer is not None, "consumer not started"
        return self._consumer

    @property
    def consuming(self) -> bool:
        """The consumer is started (and not yet stopped)."""
        return self._consuming

    def assignment(self) -> set[TopicPartition]:
        return set(self._consumer.assignment()) if self._consumer is not None else set()

    async def idle(self, seconds: float) -> None:
        """Wait while staying in the group: poll with every partition paused, then resume."""
        consumer = self._consumer
        if consumer is None:
            await self._runtime.sleep(seconds)
            return
        consumer.pause(*consumer.assignment())
        try:
            await consumer.getmany(timeout_ms=int(seconds * 1000))
        finally:
            consumer.resume(*consumer.assignment())

    async def commit_handled(self, batch: RecordBatch[T]) -> None:
        """The default commit: the offsets after the batch's records, on partitions still ours.

        A partition a rebalance took away meanwhile is left out: its new owner redoes those
        records from the last commit (and the services' dedup absorbs what repeats).
        """
        assigned = self.assignment()
        offsets = {tp: offset for tp, offset in batch.offsets().items() if tp in assigned}
        if offsets:
            await self.commit_offsets(offsets)

    async def commit_offsets(self, offsets: Mapping[TopicPartition, int | OffsetAndMetadata]) -> bool:
        """Commit exactly these offsets; False (logged, never raised) when the commit failed.

        A failed commit is not retried here: the partitions moved to another member, or the
        group is mid-rebalance, and either the next commit or the next owner covers it.
        """
        try:
            async with asyncio.timeout(self._commit_timeout_s):
                await self.consumer.commit(dict(offsets))
        except (KafkaError, TimeoutError) as error:
            if self._on_commit_failed is not None:
                self._on_commit_failed()
            log.warning(
                "commit failed; what follows the last commit is redone", extra={"error": repr(error)[:300]}
            )
            return False
        for tp, offset in offsets.items():
            self.committed[tp] = offset if isinstance(offset, int) else offset.offset
        self._progress.set()
        return True

    async def wait_assigned(self, timeout: float = 60.0) -> None:
        """Until the group gave this member partitions (what a benchmark's clock starts on)."""
        await asyncio.wait_for(self._assigned.wait(), timeout)

    async def caught_up(self, timeout: float = 60.0) -> None:
        """Until everything on the topic *now* is handled and committed by this member.

        A barrier for tests, benchmarks and tools; assumes this member owns every partition.
        """
        consumer = self.consumer
        partitions = [
            TopicPartition(self.topic.name, p)
            for p in sorted(consumer.partitions_for_topic(self.topic.name) or ())
        ]
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout
        while any(self.committed.get(tp, 0) < end for tp, end in ends.items() if end > 0):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self._runtime.name} did not catch up with {self.topic.name}")
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), min(remaining, 1.0))

    # --- lifecycle ----------------------------------------------------------------------------

    async def _start(self) -> None:
        consumer = make_consumer(self._kafka, self.group_id, **self._options)
        consumer.subscribe([self.topic.name], listener=self._listener)
        # Set before `start`: the group may assign partitions as soon as the consumer runs, and
        # the service's `on_assigned` uses the consumer (to seek, to read commit metadata).
        self._consumer = consumer
        try:
            await consumer.start()
        except BaseException:
            self._consumer = None
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise
        self._consuming = True
        log.info(
            "consuming",
            extra={"service": self._runtime.name, "group": self.group_id, "topic": self.topic.name},
        )

    async def _stop(self) -> None:
        """Leave the group: the partitions move on at once instead of after a session timeout."""
        consumer, self._consumer = self._consumer, None
        self._consuming = False
        if consumer is not None:
            await consumer.stop()

    # --- the loop -----------------------------------------------------------------------------

    async def _run(self) -> None:
        consumer = self.consumer
        service = self._runtime.name
        while not self._runtime.stopping:
            records = await self._fetch(consumer)
            if self._report_lag:
                await report_lag(consumer, service)
            async with self.in_hand:
                batch = RecordBatch(decode_records(records, self._decode), self._producer)
                if records:
                    CONSUMED.labels(self.topic.name, service).inc(len(records))
                    for record, error in batch.poison:
                        await self.dead_letters.send(record, error)
                    try:
                        await self._step(batch)
                    except LeaveUncommitted:
                        return
                    await batch.flush()
                if self._tick is not None:
                    await self._tick()
                await self._commit(batch)

    async def _fetch(self, consumer: AIOKafkaConsumer) -> list[Record]:
        """Up to `max_records`: what one poll returns, topped up for `linger_ms`."""
        policy = self._poll_policy
        fetched = await consumer.getmany(timeout_ms=policy.timeout_ms, max_records=policy.max_records)
        records = [record for part in fetched.values() for record in part]
        if not policy.linger_ms or policy.max_records is None:
            return records
        deadline = time.monotonic() + policy.linger_ms / 1000
        while records and len(records) < policy.max_records and not self._runtime.stopping:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                break
            more = await consumer.getmany(
                timeout_ms=remaining_ms, max_records=policy.max_records - len(records)
            )
            records.extend(record for part in more.values() for record in part)
        return records
