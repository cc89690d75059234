"""The scorer service: `conversations` in, `Candidate`s keyed by user out (docs/architecture.md, docs/scoring.md).

A thin adapter around a `Scorer`. Each instance is a member of one consumer group on
`conversations` (keyed by conversation id, so every update of a conversation reaches the same
instance and its embedding cache), and keeps its own whole copy of `user.preferences`.

Delivery is at least once and nothing is lost: offsets are committed only after every candidate
of the batch is acknowledged by Kafka (acks=all). A crash between the two re-scores that batch on
restart; the repeated candidates have the same (user, conversation), which the notifier's
set-if-absent dedup absorbs. A rebalance waits (up to `rebalance_wait_s`) for the batch in hand
to be committed (`beepgpt.runtime.ConsumerLoop`), so an ordinary scale-up or shutdown does not
even produce those repeats.

A conversation that cannot be scored is retried with backoff, then dead-lettered to
`conversations.dlq` with the reason, and the service moves on.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Mapping

from aiokafka.errors import KafkaError

from beepgpt.contracts import Candidate, ConversationEvent, Preferences
from beepgpt.kafka import EventProducer, ensure_topics, header
from beepgpt.kafka.headers import TRACE_ID
from beepgpt.runtime import ConsumerLoop, Poll, RecordBatch, Runtime
from beepgpt.settings import KafkaSettings
from beepgpt.topics import CANDIDATES, CONVERSATIONS, PREFERENCES
from scorer.batching import Batch, Work, conversation_decoder, plan_decoded
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


def rebalance_gave_up() -> None:
    """Counted when a rebalance stopped waiting for the batch in hand (its candidates repeat)."""
    ERRORS.labels("rebalance_wait").inc()


def _commit_failed() -> None:
    # The partitions moved to another instance meanwhile (or the group is mid-rebalance and
    # aiokafka would retry the commit forever); the owner re-scores from the last commit and the
    # notifier's dedup absorbs the repeats.
    ERRORS.labels("commit").inc()


class ScorerService:
    """Consumes conversations in a group, scores them in batches, publishes candidates.

    Its step is `handle`; the runtime owns the rest (start-up order, the consume loop, commits,
    the wait for the batch in hand on rebalance, shutdown).
    """

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
        self.runtime = Runtime(SERVICE, ready=lambda: self.preferences.ready)
        self.runtime.step("topics", lambda: ensure_topics(kafka, [CONVERSATIONS, CANDIDATES, PREFERENCES]))
        self.runtime.add(self._producer, "producer")
        # No decision before the table knows who opted in: otherwise a restart would silently
        # skip everyone until the table caught up.
        self.runtime.step(
            "preferences",
            lambda: self.preferences.start(timeout=settings.preferences_ready_timeout_s),
            self.preferences.stop,
        )
        self.loop: ConsumerLoop[ConversationEvent] = ConsumerLoop(
            self.runtime,
            kafka,
            group_id=settings.group_id,
            topic=CONVERSATIONS,
            producer=self._producer,
            step=self.handle,
            decode=conversation_decoder(CONVERSATIONS.decode),
            poll=Poll(
                timeout_ms=settings.poll_ms,
                max_records=settings.batch_size,
                linger_ms=settings.batch_linger_ms,
            ),
            commit_timeout_s=settings.commit_timeout_s,
            on_commit_failed=_commit_failed,
            rebalance_wait_s=settings.rebalance_wait_s,
            on_rebalance_wait_timeout=rebalance_gave_up,
        )

    @property
    def ready(self) -> bool:
        return self.runtime.ready

    def stop(self) -> None:
        """Ask the loop to finish the batch in hand, commit and return (SIGTERM does this)."""
        self.runtime.request_stop()

    async def run(self) -> None:
        """Run until `stop()`: start everything, loop over batches, then shut down cleanly."""
        await self.runtime.run()

    async def wait_started(self, timeout: float = 60.0) -> None:
        """Until the table is loaded and the consumer started (it joins its group on its first poll)."""
        await self.runtime.wait_started(timeout)

    async def wait_assigned(self, timeout: float = 60.0) -> None:
        """Until the group gave this instance partitions (what a benchmark's clock starts on)."""
        await self.loop.wait_assigned(timeout)

    async def caught_up(self, timeout: float = 60.0) -> None:
        """Until everything on `conversations` *now* is handled and committed by this instance.

        A barrier for tests, the benchmark and tools; assumes this instance owns every partition.
        """
        await self.loop.caught_up(timeout)

    async def handle(self, records: RecordBatch[ConversationEvent]) -> Batch:
        """Score one batch and publish its candidates; returns once Kafka has them."""
        batch = plan_decoded(records.values(), self.settings.scores, coalesce=self.settings.coalesce)
        EVENTS_SKIPPED.labels("superseded").inc(batch.superseded)
        EVENTS_SKIPPED.labels("not_scored").inc(batch.not_scored)
        for _ in records.poison:  # dead-lettered by the loop
            ERRORS.labels("decode").inc()
        if batch.work:
            started = time.monotonic()
            preferences = self.preferences.snapshot()
            decided, failed = await self._score(batch.work, preferences)
            BATCH_SECONDS.observe(time.monotonic() - started)
            for work, error in failed:
                await self.loop.dead_letters.send(
                    work.record, f"scoring failed: {type(error).__name__}: {error}"
                )
            await self._publish(records, decided, preferences)
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
        self,
        records: RecordBatch[ConversationEvent],
        decided: list[tuple[Work, list[Candidate]]],
        preferences: Mapping[str, Preferences],
    ) -> None:
        for work, candidates in decided:
            trace_id = header(work.record.headers, TRACE_ID)
            for candidate in candidates:
                # Whatever a scorer proposes, participants, bots and the not-opted-in never go out.
                if not is_eligible(candidate.user, work.event, preferences, self.settings.bot_users):
                    CANDIDATES_DROPPED.inc()
                    continue
                await records.send(CANDIDATES, candidate.user, candidate, trace_id=trace_id)
                CANDIDATES_PUBLISHED.labels(candidate.reason).inc()
                SCORES.labels(candidate.reason).observe(candidate.score)
        try:
            await records.flush()
        except KafkaError:
            ERRORS.labels("publish").inc()
            raise  # nothing is committed: the batch comes back after a restart


def _by_conversation(work: list[Work], candidates: list[Candidate]) -> list[tuple[Work, list[Candidate]]]:
    grouped: dict[tuple[str, int], list[Candidate]] = defaultdict(list)
    for candidate in candidates:
        grouped[(candidate.conversation_id, candidate.version)].append(candidate)
    return [(w, grouped.get((w.event.conversation_id, w.event.version), [])) for w in work]
