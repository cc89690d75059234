"""One partition of `slack.messages` turned into conversation events: the live query and its fold.

A channel lives in one partition, so partitions are independent: each gets its own live query,
feeder, open conversations and commit tracking, and can be started (replaying from its
committed offset), rebuilt or dropped without touching the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from sessionizer import metrics
from sessionizer.conversation import ConversationBook, Emitted
from sessionizer.feeder import Fed, Feeder, SlackEvent
from sessionizer.live import LiveQuery
from sessionizer.offsets import CleanCut, CommitPoint, ReplayMarks
from sessionizer.query import Change, Closed, Output, Passed, Row
from sessionizer.rules import NS, to_ns
from sessionizer.settings import SessionizerSettings

log = logging.getLogger(__name__)

Publish = Callable[[Emitted, bytes | None], None]
"""Queue an event for publishing (synchronously) with the trace id of the record behind it."""

DRAIN_NUDGE_S = 0.2
"""How long a drain waits for its marker before adding another heartbeat behind it."""

Record = tuple[int, SlackEvent | None, bytes | None]
"""(offset, event or None when unreadable, trace id)."""


class PartitionSessionizer:
    """Feeds one partition's records to a live query and publishes what its fold emits.

    `start` is the offset the partition (re)starts from: rows from there are replayed, and
    `marks` says which of their events were published before (they are not published again).
    Outputs are read by a task of its own; `failed` is set when the query breaks.

    Handling an output is synchronous, publishing included (events are queued), so whenever
    another task looks (`commit_point`), every output read so far is fully accounted for.
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
        self._start = start
        self.position = start if marks.linker_from < 0 else min(start, marks.linker_from)
        """The offset of the next record to read: before `start`, records that only refill the
        reply linker's window (linked mode: `ReplayMarks.linker_from`, `feeder.LinkedFlow`)."""
        self.failed: BaseException | None = None
        self._settings = settings
        self._marks = marks
        self._publish = publish
        self._feeder = Feeder(settings)
        self._book = ConversationBook(
            settings.max_messages,
            resume_threads_ns=int(settings.thread_resume_s * NS),
            replay_until=marks.processed,
            closed_until_ns=marks.closed_until_ns,
            parents=settings.remembered_parents,
        )
        self._cut = CleanCut(start)
        self._processed = start
        self._last_output_ns = -1
        self._query = LiveQuery(settings)
        self._traces: dict[int, bytes] = {}  # offset → trace id of records still in the query
        self._conversation_traces: dict[str, bytes] = {}  # a close carries its last message's
        self._ticks = 0
        self._tick_waiters: dict[int, asyncio.Future[None]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._stopping = False
        self._open_gauge = metrics.OPEN_CONVERSATIONS.labels(str(partition))

    @property
    def open_conversations(self) -> int:
        return len(self._book.open) + len(self._book.resumable)

    @property
    def wants_rebuild(self) -> bool:
        """Enough conversations closed that the query's state for them is worth releasing."""
        return self._book.closed_count >= self._settings.rebuild_after_closed

    async def start(self) -> None:
        await self._query.start()
        self._reader = asyncio.create_task(self._read(), name=f"sessionizer-partition-{self.partition}")

    async def feed(self, records: Sequence[Record]) -> None:
        """Records in offset order; an event of None stands for a record that could not be read
        (it was dead-lettered), so the partition's progress still passes it."""
        rows = []
        replayed = new = 0
        for offset, event, trace in records:
            if offset < self.position:
                continue  # redelivered after a seek: already fed
            if offset < self._start:
                self._feeder.warm(offset, event)
                self.position = offset + 1
                continue
            if offset < self._marks.processed:
                replayed += 1
            if trace is not None:
                self._traces[offset] = trace
            if event is not None:
                if event.kind == "message" and event.action == "new":
                    new += 1
                else:
                    metrics.MESSAGES_IN.labels(event.action if event.kind == "message" else "reaction").inc()
            rows.append(self._row(offset, event))
            self.position = offset + 1
        metrics.NEW_MESSAGES.inc(new)
        if replayed:
            metrics.REPLAYED.inc(replayed)
        await self._query.add(rows)

    async def heartbeat(self, now_s: float) -> None:
        """Move event time to `now_s` (never backwards), closing what has been quiet long enough."""
        self._ticks += 1
        await self._query.add([self._feeder.tick(to_ns(now_s), self._ticks)])

    async def drain(self, timeout: float) -> None:
        """Wait until everything fed so far has come out of the query and been queued for
        publishing; raises what broke the query if it broke.

        A heartbeat marks the end, and further heartbeats, each in an `add` of its own, push it
        out: a live query releases a row's output only once a row with a later time arrives in a
        later `add`, and with several live queries in one process Kaskada 0.6.1 sometimes holds
        a row back until more rows arrive (measured: a drain with a single follow-up heartbeat
        hung in about one run of two with four partitions). Use before a final commit, a
        rebuild or stopping.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        done = loop.create_future()
        self._ticks += 1
        self._tick_waiters[self._ticks] = done
        await self._query.add([self._feeder.tick(0, self._ticks)])  # just after the newest row
        assert self._reader is not None
        while not done.done() and self.failed is None and not self._reader.done():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"partition {self.partition}: the query did not drain within {timeout}s")
            await self.heartbeat(0.0)  # never moves time back: lands 1 ns after the newest row
            await asyncio.wait(
                {done, self._reader},
                timeout=min(remaining, DRAIN_NUDGE_S),
                return_when=asyncio.FIRST_COMPLETED,
            )
        if self.failed is not None:
            raise self.failed

    def commit_point(self) -> CommitPoint:
        """The offset to commit once what was published so far is acknowledged."""
        self._cut.add(self._book.closed_spans)
        self._book.closed_spans.clear()
        offset = self._cut.cut(self._processed, self._book.min_open_offset())
        marks = ReplayMarks(
            processed=max(self._processed, self._marks.processed),
            closed_until_ns=max(self._last_output_ns - 1, self._marks.closed_until_ns),
            linker_from=self._feeder.linker_from(offset),
        )
        return CommitPoint(offset, marks)

    def committed(self, offset: int) -> None:
        self._cut.committed_to(offset)
        self._feeder.committed(offset)

    async def stop(self) -> None:
        self._stopping = True
        # The reader goes first: Kaskada's stop() blocks forever while a read is pending on it.
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if not await self._query.stop():
            log.warning(
                "the live query did not stop in time and was abandoned", extra={"partition": self.partition}
            )
        self._open_gauge.set(0)

    # --- feeding ----------------------------------------------------------------------------------

    def _row(self, offset: int, event: SlackEvent | None) -> Row:
        row, fed = self._feeder.event(offset, event)
        if fed is Fed.CLAMPED:
            metrics.CLAMPED.inc()
        elif fed is Fed.TOO_LATE:
            metrics.DROPPED.inc()
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
                emitted = [e for e in map(self._handle, outputs) if e is not None]
                closed = sum(e.kind == "closed" for e in emitted)
                metrics.CLOSED.inc(closed)  # once per batch: this is the hot path
                metrics.UPDATED.inc(len(emitted) - closed)
                self._open_gauge.set(self.open_conversations)
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

    def _handle(self, output: Output) -> Emitted | None:
        """Fold one output and publish what it emits (returned, for the metrics)."""
        emitted = self._book.apply(output)
        trace: bytes | None = None
        if isinstance(output, Passed) and output.kind == "tick":
            # Outputs come in time order: this tick's passing means every earlier one passed.
            for number in [n for n in self._tick_waiters if n <= output.offset]:
                waiter = self._tick_waiters.pop(number)
                if not waiter.done():
                    waiter.set_result(None)
        elif isinstance(output, Passed):
            self._processed = max(self._processed, output.offset + 1)
            self._traces.pop(output.offset, None)
        elif isinstance(output, Change):
            self._processed = max(self._processed, output.offset + 1)
            trace = self._traces.pop(output.offset, None)
            if trace is not None and output.key in self._book.open:
                self._conversation_traces[output.key] = trace
        elif isinstance(output, Closed):
            trace = self._conversation_traces.pop(output.key, None)
        self._last_output_ns = max(self._last_output_ns, output.time_ns)
        if emitted is not None:
            self._publish(emitted, trace)
        return emitted
