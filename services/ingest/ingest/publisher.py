"""The bounded buffer between a Slack delivery and Kafka, and when Slack gets its ack.

Listeners `offer` a record (no I/O, microseconds) and then `wait` for it: one worker moves
records to Kafka in batches — check the batch's event ids against the dedup marks (one Redis
round trip), produce everything (pipelined, acks=all), wait for the broker, mark what it took,
and settle each record's waiters. Because many deliveries wait at once, the worker still sends
thousands of records per round, so acking after Kafka costs latency (one round), not throughput.

The ack normally goes out once Kafka has the record, so a process killed at any moment loses
nothing: Slack redelivers whatever it has no ack for, and dedup (marked only after Kafka's ack)
lets that redelivery through. Only when Kafka (or Redis) is slower than the ack budget does the
waiter give up and the ack go out with the record still here: Slack must hear from us within
3 seconds, and the buffer rides out the outage. Those records are counted (`buffered` acks, and
the `buffer_acked` gauge while they wait): they are the ones a SIGKILL would lose.

Retriable failures of Kafka or Redis are retried with capped exponential backoff and full jitter
(the project's one policy, `beepgpt.retry`), in order, forever: nothing accepted is dropped.
What bounds that is the buffer: when it is full `offer` says no, and the caller refuses the
Slack delivery explicitly (HTTP 503, or no Socket Mode ack) so Slack redelivers it later —
back-pressure instead of silent loss or unbounded memory.

Copies of one event_id that meet in this process (a redelivery of an event still waiting here)
become one record: the copy waits on the original's result. Records keep their order within a
channel while the broker behaves; a batch that partly fails is retried in its original order, so
a record can land after a later one of the same channel only when the broker failed some and
acknowledged others of one batch (rare; consumers order by `ts` anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

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
from beepgpt.retry import OnRetry, RetryOn, retrying
from ingest.dedup import Dedup
from ingest.metrics import (
    BUFFER_ACKED,
    BUFFER_CAPACITY,
    BUFFER_DEPTH,
    EVENTS,
    PUBLISH_LATENCY,
    PUBLISH_RETRIES,
)

if TYPE_CHECKING:
    from tenacity import AsyncRetrying

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

Settled = Literal["durable", "failed", "lost"]
"""What became of a record: in Kafka (or a duplicate of one that is), refused by Kafka for good,
or dropped by a shutdown that ran out of time before Kafka took it."""
Waited = Literal["durable", "failed", "lost", "buffered"]
"""`Settled`, or `buffered`: the ack budget ran out while the record was still in the buffer."""

BACKOFF_BASE_S = 0.1
"""The ceiling of the first retry's wait; it doubles per retry up to `backoff_max_s`."""


class _NotAllTaken(Exception):
    """Kafka did not take some records of the batch (retriable errors): try those again."""


@dataclass(slots=True, eq=False)
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
    # Set by `offer`: what to answer Slack, once the record is settled or the ack budget ran out.
    answer: asyncio.Future[Waited] | None = None
    joined: Outgoing | None = None  # the record in flight this copy was folded into
    copies: list[Outgoing] | None = None  # copies folded into this record, answered with it
    acked_early: bool = False  # Slack got its ack while this record was still buffered


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
        ack_budget_s: float = 2.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._producer = producer
        self._dedup = dedup
        self.capacity = capacity
        self._batch_size = batch_size
        self._backoff_max_s = backoff_max_s
        self._sleep = sleep
        self.ack_budget_s = ack_budget_s
        self._queue: deque[Outgoing] = deque()
        self._pending: list[Outgoing] = []
        self._marking: list[Outgoing] = []  # in Kafka, waiting for the dedup mark
        self._in_flight: dict[str, Outgoing] = {}  # event_id -> the record of it not yet settled
        self._acked_early = 0
        # Deliveries by ack deadline (offer order, as the budget is the same for all), and one
        # timer for the earliest: cheaper than a timeout per waiting delivery.
        self._deadlines: deque[tuple[float, asyncio.Future[Waited], Outgoing]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._worker: asyncio.Task[None] | None = None
        self.healthy = True
        BUFFER_CAPACITY.set(capacity)
        # Read at scrape time: no per-event cost (one publisher per process; in tests, the latest).
        BUFFER_DEPTH.set_function(lambda: self.depth)
        BUFFER_ACKED.set_function(lambda: self._acked_early)

    @property
    def depth(self) -> int:
        """Records accepted and not yet acknowledged by Kafka (queued plus in flight)."""
        return len(self._queue) + len(self._pending)

    @property
    def acked_early(self) -> int:
        """Records Slack already got an ack for that Kafka has not acknowledged yet."""
        return self._acked_early

    @property
    def accepting(self) -> bool:
        return not self._closing and self.depth < self.capacity

    def offer(self, item: Outgoing) -> bool:
        """Take the record if there is room; False means "refuse the delivery, Slack will retry".

        A copy of an event_id that is still in flight here takes no room: it joins the original
        (counted as a duplicate) and gets the original's answer.
        """
        if self._closing:
            return False
        if item.event_id is not None:
            original = self._in_flight.get(item.event_id)
            if original is not None:
                item.joined = original
                if original.copies is None:
                    original.copies = []
                original.copies.append(item)
                EVENTS.labels("duplicate", item.reason).inc()
                log.info("duplicate delivery joined the one in flight", extra={"event_id": item.event_id})
                self._watch(item)
                return True
        if self.depth >= self.capacity:
            return False
        if item.event_id is not None:
            self._in_flight[item.event_id] = item
        self._queue.append(item)
        self._idle.clear()
        self._wakeup.set()
        self._watch(item)
        return True

    async def wait(self, item: Outgoing) -> Waited:
        """What to tell Slack about an offered record, as soon as it is known: its fate once
        settled, or `buffered` once the ack budget ran out first (the caller acks anyway and the
        record stays in the buffer, counted in `acked_early` until Kafka has it)."""
        if item.answer is None:
            raise ValueError("wait() for a record that was never offered")
        return await item.answer

    def _watch(self, item: Outgoing) -> None:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Waited] = loop.create_future()
        item.answer = answer
        if self.ack_budget_s <= 0:
            self._lapse(item)
            return
        deadlines = self._deadlines
        while deadlines and deadlines[0][1].done():  # answered already: no need to watch
            deadlines.popleft()
        deadlines.append((loop.time() + self.ack_budget_s, answer, item))
        if self._timer is None:
            self._timer = loop.call_at(deadlines[0][0], self._on_deadline)

    def _on_deadline(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = None
        now = loop.time()
        deadlines = self._deadlines
        while deadlines:
            deadline, answer, item = deadlines[0]
            if not answer.done():
                if deadline > now:
                    self._timer = loop.call_at(deadline, self._on_deadline)
                    return
                self._lapse(item)
            deadlines.popleft()

    def _lapse(self, item: Outgoing) -> None:
        """The ack budget ran out before the record was settled: answer `buffered`."""
        if item.answer is not None and not item.answer.done():
            item.answer.set_result("buffered")
        original = item.joined or item
        if not original.acked_early:
            original.acked_early = True
            self._acked_early += 1

    async def start(self) -> None:
        self._worker = asyncio.create_task(self._run(), name="ingest-publisher")

    async def wait_idle(self, timeout: float | None = None) -> None:
        """Until everything accepted so far is in Kafka (for drains, tests and benchmarks)."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    async def stop(self, timeout: float) -> int:
        """Refuse new records, publish what is buffered within `timeout`; returns how many were lost."""
        self._closing = True
        self._wakeup.set()
        worker = self._worker
        try:
            if worker is not None:
                await asyncio.wait_for(asyncio.shield(worker), timeout)
            return 0
        except TimeoutError:
            assert worker is not None
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
            for item in self._marking:  # Kafka has these; only their dedup mark is missing
                self._settle(item, "durable")
            self._marking = []
            lost = [*self._pending, *self._queue]
            acked = sum(1 for item in lost if item.acked_early)
            for item in lost:  # whoever still waits refuses the delivery: Slack redelivers it
                self._settle(item, "lost")
            self._queue.clear()
            self._pending = []
            EVENTS.labels("failed", "shutdown").inc(len(lost))
            if lost:
                log.error(
                    "shutdown before Kafka took every buffered event",
                    extra={
                        "lost": len(lost),
                        "acked": acked,
                        "event_ids": [i.event_id for i in lost[:100]],
                    },
                )
            return len(lost)
        finally:  # every record is settled by now, and with it every answer
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._deadlines.clear()

    def _settle(self, item: Outgoing, state: Settled) -> None:
        if item.event_id is not None and self._in_flight.get(item.event_id) is item:
            del self._in_flight[item.event_id]
        if item.acked_early:
            item.acked_early = False
            self._acked_early -= 1
        if item.answer is not None and not item.answer.done():
            item.answer.set_result(state)
        for copy in item.copies or ():
            if copy.answer is not None and not copy.answer.done():
                copy.answer.set_result(state)

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

    def _forever(self, what: str, on_retry: OnRetry, retry_on: RetryOn = Exception) -> AsyncRetrying:
        """The policy for Kafka and Redis: retry forever (the buffer is what bounds it)."""
        return retrying(
            what,
            None,
            BACKOFF_BASE_S,
            self._backoff_max_s,
            retry_on=retry_on,
            on_retry=on_retry,
            sleep=self._sleep,
        )

    async def _deliver(self) -> None:
        self._pending = await self._drop_published(self._pending)

        def on_retry(attempt: int, delay: float, error: BaseException) -> None:
            self.healthy = False
            PUBLISH_RETRIES.labels("kafka").inc()

        async for attempt in self._forever("kafka publish", on_retry, retry_on=_NotAllTaken):
            with attempt:
                if self._pending:
                    published, self._pending = await self._produce(self._pending)
                    if published:
                        await self._mark(published)
                    if self._pending:  # `_produce` logged why
                        raise _NotAllTaken(f"{len(self._pending)} records to send again")
        self.healthy = True

    async def _drop_published(self, batch: list[Outgoing]) -> list[Outgoing]:
        """Drop the records whose event_id was already published (Slack's retries of them)."""
        keyed = [item for item in batch if item.event_id is not None]
        if not keyed:
            return batch
        event_ids = [i.event_id or "" for i in keyed]

        def on_retry(attempt: int, delay: float, error: BaseException) -> None:
            # Redis down or slow: wait like for Kafka, never skip the check.
            self.healthy = False
            PUBLISH_RETRIES.labels("redis").inc()
            if attempt == 1 or attempt % 20 == 0:
                log.warning("dedup check failed; retrying", extra={"error": repr(error), "attempt": attempt})

        async for attempt in self._forever("dedup check", on_retry):
            with attempt:
                seen = await self._dedup.published(event_ids)
        if not any(seen):
            return batch
        duplicates = {id(item) for item, was in zip(keyed, seen, strict=True) if was}
        for item in keyed:
            if id(item) in duplicates:
                EVENTS.labels("duplicate", item.reason).inc()
                log.info("duplicate delivery dropped", extra={"event_id": item.event_id})
                self._settle(item, "durable")  # its record is in Kafka: the ack is safe
        return [item for item in batch if id(item) not in duplicates]

    async def _mark(self, published: list[Outgoing]) -> None:
        """Mark what Kafka took as published, then let its waiters ack. The mark comes first so
        that a redelivery can only arrive (Slack got no ack) when the mark is already there."""
        self._marking = published
        event_ids = [item.event_id for item in published if item.event_id is not None]

        def on_retry(attempt: int, delay: float, error: BaseException) -> None:
            if attempt == 1:
                # The records are durable: do not hold their acks hostage to Redis. Without
                # the mark, a redelivery of one of them would be published again.
                for item in published:
                    self._settle(item, "durable")
                log.warning("dedup mark failed; retrying", extra={"error": repr(error)})
            self.healthy = False
            PUBLISH_RETRIES.labels("redis").inc()

        if event_ids:
            async for attempt in self._forever("dedup mark", on_retry):
                with attempt:
                    await self._dedup.mark_published(event_ids)
        for item in published:
            self._settle(item, "durable")
        self._marking = []

    async def _produce(self, items: list[Outgoing]) -> tuple[list[Outgoing], list[Outgoing]]:
        """Send all, await all; returns (published, to retry)."""
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
        published: list[Outgoing] = []
        retry: list[Outgoing] = []
        done: Counter[tuple[str, str, str | None]] = Counter()
        first_error: BaseException | None = None
        now = time.monotonic()
        for item, sent in zip(items, futures, strict=True):
            # In order, one by one: aiokafka settles a whole batch at once, so after the first
            # await most futures are already done (cheaper than gather's per-future callbacks).
            result: RecordMetadata | BaseException
            if isinstance(sent, asyncio.Future):
                try:
                    result = await sent
                except Exception as error:
                    result = error
                now = time.monotonic()
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
                    self._settle(item, "failed")  # a redelivery could not fix it: ack
                else:
                    retry.append(item)
                continue
            published.append(item)
            done[(item.outcome, item.reason, item.source_topic)] += 1
            PUBLISH_LATENCY.observe(now - item.accepted_at)
        for (outcome, reason, source_topic), n in done.items():  # per batch: cheap label lookups
            EVENTS.labels(outcome, reason).inc(n)
            if source_topic is not None:
                DEAD_LETTERS.labels(source_topic, "ingest", "rejected").inc(n)
        if retry:
            log.warning(
                "Kafka did not take records; retrying",
                extra={"records": len(retry), "error": repr(first_error)},
            )
        return published, retry
