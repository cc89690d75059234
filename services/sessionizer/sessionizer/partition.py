"""One partition of `slack.messages` turned into conversation events: the live query and its fold.

A channel lives in one partition, so partitions are independent: each gets its own live query,
timeline, open conversations and commit tracking, and can be started (replaying from its
committed offset), rebuilt or dropped without touching the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from beepgpt.contracts import SlackMessage
from sessionizer import metrics
from sessionizer.conversation import ConversationBook, Emitted
from sessionizer.feeder import Fed, Feeder, SlackEvent
from sessionizer.live import LiveQuery
from sessionizer.offsets import CleanCut, CommitPoint, ReplayMarks
from sessionizer.query import Change, Output, Passed, Row, tick_row
from sessionizer.rules import NS, to_ns
from sessionizer.settings import SessionizerSettings

log = logging.getLogger(__name__)

Publish = Callable[[Emitted], Awaitable[None]]


class PartitionSessionizer:
    """Feeds one partition's records to a live query and publishes what its fold emits.

    `start` is the offset the partition (re)starts from: rows from there are replayed, and
    `marks` says which of their events were published before (they are not published again).
    Outputs are read by a task of its own; `failed` is set when the query breaks.
    """

    def __init__(
        self,
        partition: int,
        settings: SessionizerSettings,
        *,
        start: int,
        marks: ReplayMarks,
        publish: Publish,
    ) -> None:
        self.partition = partition
        self.position = start
        """The offset of the next record to feed."""
        self.failed: BaseException | None = None
        self._settings = settings
        self._marks = marks
        self._publish = publish
        self._feeder = Feeder()
        self._book = ConversationBook(
            settings.max_messages,
            resume_threads_ns=int(settings.thread_resume_s * NS),
            replay_until=marks.processed,
            closed_until_ns=marks.closed_until_ns,
        )
        self._cut = CleanCut(start)
        self._processed = start
        self._last_output_ns = -1
        self._query = LiveQuery(settings)
        self._lock = asyncio.Lock()
        self._ticks = 0
        self._tick_waiters: dict[int, asyncio.Future[None]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def open_conversations(self) -> int:
        return len(self._book.open) + len(self._book.resumable)

    @property
    def wants_rebuild(self) -> bool:
        """Enough conversations closed that the query's state for them is worth releasing."""
        return self._book.closed_count >= self._settings.rebuild_after_closed

    @property
    def replaying(self) -> bool:
        return self.position < self._marks.processed

    async def start(self) -> None:
        await self._query.start()
        self._reader = asyncio.create_task(self._read(), name=f"sessionizer-partition-{self.partition}")

    async def feed(self, records: Sequence[tuple[int, SlackEvent | None]]) -> None:
        """Records in offset order; None stands for a record that could not be read (it was
        dead-lettered), so the partition's progress still passes it."""
        rows = []
        for offset, event in records:
            if offset < self.position:
                continue  # redelivered after a seek: already fed
            if offset < self._marks.processed:
                metrics.REPLAYED.inc()
            rows.append(self._row(offset, event))
            self.position = offset + 1
        await self._query.add(rows)

    async def heartbeat(self, now_s: float) -> None:
        """Move event time to `now_s` (never backwards), closing what has been quiet long enough."""
        self._ticks += 1
        await self._query.add([self._feeder.tick(to_ns(now_s), self._ticks)])

    async def drain(self, timeout: float) -> None:
        """Wait until everything fed so far has come out of the query and been published.

        Two heartbeats, added separately: a live query releases a row's output only once a
        row with a later time arrives in a later `add`. Use before a final commit, a rebuild or
        stopping.
        """
        timeline = self._feeder.timeline
        at = timeline.tick(timeline.current())
        self._ticks += 2
        done = asyncio.get_running_loop().create_future()
        self._tick_waiters[self._ticks - 1] = done
        await self._query.add([tick_row(at, self._ticks - 1)])
        await self._query.add([tick_row(timeline.tick(at), self._ticks)])
        assert self._reader is not None
        finished, _ = await asyncio.wait(
            {done, self._reader}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if done not in finished:
            raise TimeoutError(f"partition {self.partition}: the query did not drain within {timeout}s")

    async def commit_point(self) -> CommitPoint:
        """The offset to commit once what was published so far is acknowledged."""
        async with self._lock:
            self._cut.add(self._book.closed_spans)
            self._book.closed_spans.clear()
            offset = self._cut.cut(self._processed, self._book.min_open_offset())
            marks = ReplayMarks(
                processed=max(self._processed, self._marks.processed),
                closed_until_ns=max(self._last_output_ns - 1, self._marks.closed_until_ns),
            )
            return CommitPoint(offset, marks)

    def committed(self, offset: int) -> None:
        self._cut.committed_to(offset)

    async def stop(self) -> None:
        self._stopping = True
        self._query.stop()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        metrics.OPEN_CONVERSATIONS.labels(str(self.partition)).set(0)

    # --- feeding ----------------------------------------------------------------------------------

    def _row(self, offset: int, event: SlackEvent | None) -> Row:
        if event is not None:
            metrics.MESSAGES_IN.labels(event.action if isinstance(event, SlackMessage) else "reaction").inc()
        row, fed = self._feeder.event(offset, event)
        if fed is Fed.CLAMPED:
            metrics.LATE.labels("clamped").inc()
        elif fed is Fed.TOO_LATE:
            metrics.LATE.labels("dropped").inc()
            log.warning(
                "message older than the query remembers, dropped",
                extra={"partition": self.partition, "offset": offset},
            )
        elif fed is Fed.DUPLICATE:
            metrics.DUPLICATES.inc()
        return row

    # --- reading ----------------------------------------------------------------------------------

    async def _read(self) -> None:
        try:
            async for outputs in self._query.outputs():
                async with self._lock:
                    for output in outputs:
                        await self._handle(output)
                metrics.OPEN_CONVERSATIONS.labels(str(self.partition)).set(self.open_conversations)
        except asyncio.CancelledError:
            raise
        except BaseException as error:
            if not self._stopping:
                self.failed = error
                log.error("live query failed", extra={"partition": self.partition, "error": repr(error)})
        finally:
            for waiter in self._tick_waiters.values():
                if not waiter.done():
                    waiter.cancel()

    async def _handle(self, output: Output) -> None:
        emitted = self._book.apply(output)
        if emitted is not None:
            await self._publish(emitted)
            metrics.CONVERSATION_EVENTS.labels(emitted.event.kind).inc()
        if isinstance(output, Passed) and output.kind == "tick":
            waiter = self._tick_waiters.pop(output.offset, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        elif isinstance(output, Passed | Change):
            self._processed = max(self._processed, output.offset + 1)
        self._last_output_ns = max(self._last_output_ns, output.time_ns)
