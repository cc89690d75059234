"""The bounded buffer between "Slack got its ack" and "Kafka has the record".

Slack wants an answer within 3 seconds; Kafka (or Redis) may be slow or away for longer. So the
ack path only `offer`s a record to this buffer — no I/O, microseconds — and a single worker
moves records to Kafka in batches: claim the batch's event ids for dedup (one Redis round trip),
produce everything (pipelined, acks=all), wait for the broker, repeat. Retriable failures of
Kafka or Redis are retried with capped exponential backoff, in order, forever: nothing accepted
is dropped. What bounds that is the buffer: when it is full `offer` says no, and the caller
refuses the Slack delivery explicitly (HTTP 503, or no Socket Mode ack) so Slack redelivers it
later — back-pressure instead of silent loss or unbounded memory.

Records keep their order within a channel while the broker behaves; a batch that partly fails
is retried in its original order, so a record can land after a later one of the same channel
only when the broker failed some and acknowledged others of one batch (rare; consumers order by
`ts` anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import random
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field

from aiokafka.errors import (
    InvalidTopicError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from aiokafka.structs import RecordMetadata
from pydantic import BaseModel

from beepgpt.kafka import EventProducer, Headers
from beepgpt.observability.metrics import DEAD_LETTERS
from ingest.dedup import Dedup
from ingest.metrics import BUFFER_CAPACITY, BUFFER_DEPTH, EVENTS, PUBLISH_LATENCY, PUBLISH_RETRIES

log = logging.getLogger(__name__)

# Errors that no retry can fix: the record is parked as failed (counted, logged with its event id).
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    RecordListTooLargeError,
    InvalidTopicError,
    TypeError,
    ValueError,
)

_INSTANCE = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
_SEQUENCE = itertools.count()


@dataclass(slots=True)
class Outgoing:
    """One record waiting for Kafka, with what the metrics say about it once it is there."""

    topic: str
    key: str
    value: BaseModel | bytes
    headers: Headers
    event_id: str | None = None
    outcome: str = "published"  # the final outcome once Kafka has it: published | rejected
    reason: str = ""
    source_topic: str | None = None  # for dead letters: the topic they were meant for
    accepted_at: float = field(default_factory=time.monotonic)
    claim_token: str = field(default_factory=lambda: f"{_INSTANCE}:{next(_SEQUENCE)}")


class Publisher:
    """A bounded buffer drained to Kafka by one worker task; see the module docstring."""

    def __init__(
        self,
        producer: EventProducer,
        dedup: Dedup,
        *,
        capacity: int,
        batch_size: int = 1_000,
        backoff_max_s: float = 2.0,
    ) -> None:
        self._producer = producer
        self._dedup = dedup
        self.capacity = capacity
        self._batch_size = batch_size
        self._backoff_max_s = backoff_max_s
        self._queue: deque[Outgoing] = deque()
        self._pending: list[Outgoing] = []
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._worker: asyncio.Task[None] | None = None
        self.healthy = True
        BUFFER_CAPACITY.set(capacity)
        # Read at scrape time: no per-event cost (one publisher per process; in tests, the latest).
        BUFFER_DEPTH.set_function(lambda: self.depth)

    @property
    def depth(self) -> int:
        """Records accepted and not yet acknowledged by Kafka (queued plus in flight)."""
        return len(self._queue) + len(self._pending)

    @property
    def accepting(self) -> bool:
        return not self._closing and self.depth < self.capacity

    def offer(self, item: Outgoing) -> bool:
        """Take the record if there is room; False means "refuse the delivery, Slack will retry"."""
        if not self.accepting:
            return False
        self._queue.append(item)
        self._idle.clear()
        self._wakeup.set()
        return True

    async def start(self) -> None:
        self._worker = asyncio.create_task(self._run(), name="ingest-publisher")

    async def wait_idle(self, timeout: float | None = None) -> None:
        """Until everything accepted so far is in Kafka (for drains, tests and benchmarks)."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    async def stop(self, timeout: float) -> int:
        """Refuse new records, publish what is buffered within `timeout`; returns how many were lost."""
        self._closing = True
        self._wakeup.set()
        if self._worker is None:
            return 0
        try:
            await asyncio.wait_for(asyncio.shield(self._worker), timeout)
            return 0
        except TimeoutError:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            lost = [*self._pending, *self._queue]
            self._queue.clear()
            self._pending = []
            EVENTS.labels("failed", "shutdown").inc(len(lost))
            if lost:
                log.error(
                    "shutdown before Kafka took every acknowledged event",
                    extra={"lost": len(lost), "event_ids": [i.event_id for i in lost[:100]]},
                )
            return len(lost)

    # --- the worker ---------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            # Records stay counted (as `_pending`) until Kafka acknowledged them, so the depth the
            # ack path sees is everything not yet safe, and a cancelled drain knows what it lost.
            self._pending = [self._queue.popleft() for _ in range(min(len(self._queue), self._batch_size))]
            await self._deliver()

    async def _deliver(self) -> None:
        self._pending = await self._deduplicate(self._pending)
        attempt = 0
        while self._pending:
            self._pending = await self._produce(self._pending)
            if self._pending:
                attempt += 1
                self.healthy = False
                PUBLISH_RETRIES.labels("kafka").inc()
                await self._backoff(attempt)
        self.healthy = True

    async def _deduplicate(self, batch: list[Outgoing]) -> list[Outgoing]:
        claimed = [item for item in batch if item.event_id is not None]
        if not claimed:
            return batch
        attempt = 0
        while True:
            try:
                owned = await self._dedup.claim([(i.event_id or "", i.claim_token) for i in claimed])
                break
            except Exception as error:  # Redis down or slow: wait like for Kafka, never skip the check
                attempt += 1
                self.healthy = False
                PUBLISH_RETRIES.labels("redis").inc()
                if attempt == 1 or attempt % 20 == 0:
                    log.warning(
                        "dedup claim failed; retrying", extra={"error": repr(error), "attempt": attempt}
                    )
                await self._backoff(attempt)
        duplicates = {id(item) for item, mine in zip(claimed, owned, strict=True) if not mine}
        for item in claimed:
            if id(item) in duplicates:
                EVENTS.labels("duplicate", item.reason).inc()
                log.info("duplicate delivery dropped", extra={"event_id": item.event_id})
        return [item for item in batch if id(item) not in duplicates]

    async def _produce(self, items: list[Outgoing]) -> list[Outgoing]:
        """Send all, await all; returns the ones to retry."""
        futures: list[asyncio.Future[RecordMetadata] | BaseException] = []
        for index, item in enumerate(items):
            try:
                futures.append(
                    await self._producer.send_soon(item.topic, item.key, item.value, headers=item.headers)
                )
            except Exception as error:
                futures.append(error)
                if not isinstance(error, PERMANENT_ERRORS):
                    # The broker is unreachable; the rest would wait out the same timeout one by one.
                    futures.extend([error] * (len(items) - index - 1))
                    break
        retry: list[Outgoing] = []
        done: Counter[tuple[str, str, str | None]] = Counter()
        first_error: BaseException | None = None
        for item, sent in zip(items, futures, strict=True):
            # In order, one by one: aiokafka settles a whole batch at once, so after the first
            # await most futures are already done (cheaper than gather's per-future callbacks).
            result: RecordMetadata | BaseException
            if isinstance(sent, asyncio.Future):
                try:
                    result = await sent
                except Exception as error:
                    result = error
            else:
                result = sent
            if isinstance(result, BaseException):
                first_error = first_error or result
                if isinstance(result, PERMANENT_ERRORS):
                    EVENTS.labels("failed", type(result).__name__).inc()
                    log.error(
                        "Kafka refused a record for good",
                        extra={"event_id": item.event_id, "topic": item.topic, "error": repr(result)},
                    )
                else:
                    retry.append(item)
                continue
            done[(item.outcome, item.reason, item.source_topic)] += 1
            PUBLISH_LATENCY.observe(time.monotonic() - item.accepted_at)
        for (outcome, reason, source_topic), n in done.items():  # per batch: cheap label lookups
            EVENTS.labels(outcome, reason).inc(n)
            if source_topic is not None:
                DEAD_LETTERS.labels(source_topic, "ingest", "rejected").inc(n)
        if retry:
            log.warning(
                "Kafka did not take records; retrying",
                extra={"records": len(retry), "error": repr(first_error)},
            )
        return retry

    async def _backoff(self, attempt: int) -> None:
        delay = min(self._backoff_max_s, 0.05 * 2 ** min(attempt, 10))
        await asyncio.sleep(delay * (0.5 + random.random() / 2))
