"""The scorer service: `conversations` in, `Candidate`s keyed by user out (DESIGN.md §1, §4).

A thin adapter around a `Scorer`. Each instance is a member of one consumer group on
`conversations` (keyed by conversation id, so every update of a conversation reaches the same
instance and its embedding cache), and keeps its own whole copy of `user.preferences`.

Delivery is at least once and nothing is lost: offsets are committed only after every candidate
of the batch is acknowledged by Kafka (acks=all). A crash between the two re-scores that batch on
restart; the repeated candidates have the same (user, conversation), which the notifier's
set-if-absent dedup absorbs. A rebalance waits for the batch in hand to be committed (the
revocation listener takes the same lock as the batch), so an ordinary scale-up or shutdown does
not even produce those repeats.

A conversation that cannot be scored is retried with backoff, then dead-lettered to
`conversations.dlq` with the reason, and the service moves on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord, RecordMetadata

from beepgpt.contracts import Candidate, Preferences
from beepgpt.kafka import DeadLetters, EventProducer, ensure_topics, header, make_consumer, report_lag
from beepgpt.kafka.headers import TRACE_ID
from beepgpt.observability.metrics import CONSUMED
from beepgpt.settings import KafkaSettings
from beepgpt.topics import CANDIDATES, CONVERSATIONS, PREFERENCES
from scorer.batching import Batch, Work, plan
from scorer.eligibility import is_eligible
from scorer.metrics import (
    BATCH_SECONDS,
    BATCH_SIZE,
    CANDIDATES_DROPPED,
    CONVERSATIONS_SCORED,
    ERRORS,
    EVENTS_SKIPPED,
    SCORES,
)
from scorer.metrics import CANDIDATES as CANDIDATES_PUBLISHED
from scorer.pipeline import Scorer
from scorer.preferences import PreferencesTable
from scorer.retry import retrying
from scorer.settings import ScorerSettings

log = logging.getLogger(__name__)

SERVICE = "scorer"


class _Rebalances(ConsumerRebalanceListener):  # type: ignore[misc]
    """A rebalance waits for the batch in hand, so its offsets are committed first; the first
    assignment is signalled (start-up is over).

    The wait is bounded: the batch's commit may itself be waiting for the group, which is
    waiting here. Past `wait_s` the rebalance goes on; the batch's commit then fails and its
    candidates are repeated by the next owner, which the notifier's dedup absorbs.
    """

    def __init__(self, lock: asyncio.Lock, assigned: asyncio.Event, wait_s: float) -> None:
        self._lock = lock
        self._assigned = assigned
        self._wait_s = wait_s

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        try:
            async with asyncio.timeout(self._wait_s), self._lock:
                pass
        except TimeoutError:
            ERRORS.labels("rebalance_wait").inc()
            log.warning("rebalance went on without the batch in hand", extra={"waited_s": self._wait_s})

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("partitions assigned", extra={"partitions": sorted(tp.partition for tp in assigned)})
        if assigned:
            self._assigned.set()


class ScorerService:
    """Consumes conversations in a group, scores them in batches, publishes candidates."""

    def __init__(
        self,
        kafka: KafkaSettings,
        settings: ScorerSettings,
        scorer: Scorer,
        *,
        preferences: PreferencesTable | None = None,
    ) -> None:
        self.kafka = kafka
        self.settings = settings
        self.scorer = scorer
        self.preferences = preferences or PreferencesTable(kafka)
        self._producer = EventProducer(kafka, SERVICE)
        self._dead_letters = DeadLetters(self._producer, SERVICE)
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._running = False
        self._started = asyncio.Event()
        self._assigned = asyncio.Event()
        self._committed: dict[TopicPartition, int] = {}
        self._progress = asyncio.Event()

    @property
    def ready(self) -> bool:
        return self._running and self.preferences.ready

    def stop(self) -> None:
        """Ask the loop to finish the batch in hand, commit and return (SIGTERM does this)."""
        self._stopping.set()

    async def run(self) -> None:
        """Run until `stop()`: start everything, loop over batches, then shut down cleanly."""
        await ensure_topics(self.kafka, [CONVERSATIONS, CANDIDATES, PREFERENCES])
        await self._producer.start()
        try:
            # No decision before the table knows who opted in: otherwise a restart would
            # silently skip everyone until the table caught up.
            await self.preferences.start(timeout=self.settings.preferences_ready_timeout_s)
            self._consumer = make_consumer(self.kafka, self.settings.group_id)
            self._consumer.subscribe(
                [CONVERSATIONS.name],
                listener=_Rebalances(self._lock, self._assigned, self.settings.rebalance_wait_s),
            )
            await self._consumer.start()
            self._running = True
            self._started.set()
            log.info("scorer consuming", extra={"group": self.settings.group_id})
            await self._loop(self._consumer)
        finally:
            self._running = False
            if self._consumer is not None:
                with contextlib.suppress(Exception):
                    await self._consumer.stop()  # leaves the group: partitions move on at once
            await self.preferences.stop()
            await self._producer.stop()
            log.info("scorer stopped")

    async def wait_started(self, timeout: float = 60.0) -> None:
        """Until the table is loaded and the consumer started (it joins its group on its first poll)."""
        await asyncio.wait_for(self._started.wait(), timeout)

    async def wait_assigned(self, timeout: float = 60.0) -> None:
        """Until the group gave this instance partitions (what a benchmark's clock starts on)."""
        await asyncio.wait_for(self._assigned.wait(), timeout)

    async def caught_up(self, timeout: float = 60.0) -> None:
        """Until everything on `conversations` *now* is handled and committed by this instance.

        A barrier for tests, the benchmark and tools; assumes this instance owns every partition.
        """
        assert self._consumer is not None, "service not started"
        partitions = [
            TopicPartition(CONVERSATIONS.name, p)
            for p in sorted(self._consumer.partitions_for_topic(CONVERSATIONS.name) or ())
        ]
        ends: dict[TopicPartition, int] = await self._consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout
        while any(self._committed.get(tp, 0) < end for tp, end in ends.items() if end > 0):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("scorer did not catch up with conversations")
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), min(remaining, 1.0))

    async def _loop(self, consumer: AIOKafkaConsumer) -> None:
        while not self._stopping.is_set():
            records = await self._poll(consumer)
            if records:
                async with self._lock:
                    batch = await self.handle(records)
                    await self._commit(consumer, batch.offsets)
            await report_lag(consumer, SERVICE)

    async def _poll(self, consumer: AIOKafkaConsumer) -> list[ConsumerRecord[bytes, bytes]]:
        """Up to `batch_size` records: what one poll returns, topped up for `batch_linger_ms`."""
        size = self.settings.batch_size
        fetched = await consumer.getmany(timeout_ms=self.settings.poll_ms, max_records=size)
        records = [record for part in fetched.values() for record in part]
        deadline = time.monotonic() + self.settings.batch_linger_ms / 1000
        while records and len(records) < size and not self._stopping.is_set():
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                break
            more = await consumer.getmany(timeout_ms=remaining_ms, max_records=size - len(records))
            records.extend(record for part in more.values() for record in part)
        return records

    async def handle(self, records: list[ConsumerRecord[bytes, bytes]]) -> Batch:
        """Score one batch of records and publish its candidates; returns once Kafka has them."""
        for record in records:
            CONSUMED.labels(record.topic, SERVICE).inc()
        batch = plan(records, CONVERSATIONS.decode, self.settings.scores, coalesce=self.settings.coalesce)
        EVENTS_SKIPPED.labels("superseded").inc(batch.superseded)
        EVENTS_SKIPPED.labels("not_scored").inc(batch.not_scored)
        for record, error in batch.poison:
            ERRORS.labels("decode").inc()
            await self._dead_letters.send(record, error)
        if batch.work:
            started = time.monotonic()
            preferences = self.preferences.snapshot()
            decided, failed = await self._score(batch.work, preferences)
            BATCH_SECONDS.observe(time.monotonic() - started)
            for work, error in failed:
                await self._dead_letters.send(work.record, f"scoring failed: {type(error).__name__}: {error}")
            await self._publish(decided, preferences)
        for conversation_id in batch.closed:
            self.scorer.forget(conversation_id)
        return batch

    async def _score(
        self, work: list[Work], preferences: Mapping[str, Preferences]
    ) -> tuple[list[tuple[Work, list[Candidate]]], list[tuple[Work, Exception]]]:
        """The whole batch in one call, retried; if it keeps failing, each conversation alone.

        Scoring alone (with the same retries) isolates a conversation that breaks the model from
        the others of its batch; those that still fail are returned for the dead-letter topic.
        During an outage this is slow on purpose: back-pressure, rather than a flood of dead
        letters that someone must replay.
        """
        BATCH_SIZE.observe(len(work))
        try:
            candidates = await self._score_retrying(work, preferences)
            return _by_conversation(work, candidates), []
        except Exception as error:
            ERRORS.labels("score").inc()
            if len(work) == 1:
                return [], [(work[0], error)]
            log.error(
                "batch scoring failed, isolating", extra={"conversations": len(work), "error": str(error)}
            )
        decided: list[tuple[Work, list[Candidate]]] = []
        failed: list[tuple[Work, Exception]] = []
        for one in work:
            try:
                candidates = await self._score_retrying([one], preferences)
            except Exception as error:
                ERRORS.labels("score").inc()
                failed.append((one, error))
                continue
            decided.extend(_by_conversation([one], candidates))
        return decided, failed

    async def _score_retrying(
        self, work: list[Work], preferences: Mapping[str, Preferences]
    ) -> list[Candidate]:
        candidates = await retrying(
            lambda: self.scorer.score([w.event for w in work], preferences),
            attempts=self.settings.max_attempts,
            base=self.settings.retry_backoff_s,
            cap=self.settings.retry_backoff_max_s,
            what="scoring",
        )
        for one in work:
            CONVERSATIONS_SCORED.labels(one.event.kind).inc()
        return candidates

    async def _publish(
        self, decided: list[tuple[Work, list[Candidate]]], preferences: Mapping[str, Preferences]
    ) -> None:
        pending: list[asyncio.Future[RecordMetadata]] = []
        for work, candidates in decided:
            trace_id = header(work.record.headers, TRACE_ID)
            for candidate in candidates:
                # Whatever a scorer proposes, participants, bots and the not-opted-in never go out.
                if not is_eligible(candidate.user, work.event, preferences, self.settings.bot_users):
                    CANDIDATES_DROPPED.inc()
                    continue
                pending.append(
                    await self._producer.send_soon(CANDIDATES, candidate.user, candidate, trace_id=trace_id)
                )
                CANDIDATES_PUBLISHED.labels(candidate.reason).inc()
                SCORES.labels(candidate.reason).observe(candidate.score)
        try:
            await asyncio.gather(*pending)
        except KafkaError:
            ERRORS.labels("publish").inc()
            raise  # nothing is committed: the batch comes back after a restart

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        try:
            async with asyncio.timeout(self.settings.commit_timeout_s):
                await consumer.commit(offsets)
            self._committed.update(offsets)
            self._progress.set()
        except (CommitFailedError, IllegalStateError, KafkaError, TimeoutError) as error:
            # The partitions moved to another instance meanwhile (or the group is mid-rebalance
            # and aiokafka would retry the commit forever); the owner re-scores from the last
            # commit and the notifier's dedup absorbs the repeats.
            ERRORS.labels("commit").inc()
            log.warning("commit failed", extra={"error": repr(error)})


def _by_conversation(work: list[Work], candidates: list[Candidate]) -> list[tuple[Work, list[Candidate]]]:
    grouped: dict[tuple[str, int], list[Candidate]] = defaultdict(list)
    for candidate in candidates:
        grouped[(candidate.conversation_id, candidate.version)].append(candidate)
    return [(w, grouped.get((w.event.conversation_id, w.event.version), [])) for w in work]
