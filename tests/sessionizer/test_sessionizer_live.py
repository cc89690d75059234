"""The live query with time driven by the test: edits, duplicates, late rows, wake-ups, failures, replays."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from beepgpt.contracts import ConversationEvent, SlackMessage, SlackReaction
from sessionizer.conversation import Emitted, Span
from sessionizer.feeder import SlackEvent
from sessionizer.offsets import CleanCut, ReplayMarks
from sessionizer.partition import PartitionSessionizer
from sessionizer.query import message_row
from sessionizer.settings import SessionizerSettings

T0 = 1_700_000_000.0
SETTINGS = SessionizerSettings(gap_s=60, thread_idle_s=120, thread_resume_s=600)


def say(
    ts: float, text: str, user: str = "U1", channel: str = "C1", thread: float | None = None
) -> SlackMessage:
    return SlackMessage(
        channel=channel,
        ts=f"{ts:.6f}",
        thread_ts=None if thread is None else f"{thread:.6f}",
        user=user,
        text=text,
        event_time=ts,
    )


class Run:
    """A partition fed by the test, one offset per event, with time moved by hand."""

    def __init__(self, partition: PartitionSessionizer, events: list[ConversationEvent]) -> None:
        self.partition = partition
        self.events = events
        self.offset = 0

    async def feed(self, *events: SlackEvent | None) -> None:
        await self.partition.feed([(self.offset + i, e, None) for i, e in enumerate(events)])
        self.offset += len(events)

    async def at(self, seconds: float) -> None:
        """Move event time to `seconds` and wait until everything up to it came out."""
        await self.partition.heartbeat(seconds)
        await self.partition.drain(10)

    def of(self, conversation: str) -> list[ConversationEvent]:
        return [e for e in self.events if e.conversation_id == conversation]


@contextlib.asynccontextmanager
async def running(
    settings: SessionizerSettings = SETTINGS, *, start: int = 0, marks: ReplayMarks | None = None
) -> AsyncIterator[Run]:
    events: list[ConversationEvent] = []

    def publish(emitted: Emitted, trace: bytes | None) -> None:
        events.append(emitted.event)

    partition = PartitionSessionizer(0, settings, start=start, marks=marks or ReplayMarks(), publish=publish)
    await partition.start()
    try:
        yield Run(partition, events)
    finally:
        await partition.stop()


async def test_every_message_updates_and_silence_closes_at_the_gap() -> None:
    async with running() as run:
        await run.feed(say(T0, "hi"), say(T0 + 30, "hello", user="U2"))
        await run.at(T0 + 30 + 59)
        assert [e.kind for e in run.of("C1:1700000000.000000")] == ["updated", "updated"]
        await run.at(T0 + 30 + 61)
        updated, _, closed = run.of("C1:1700000000.000000")
    assert closed.kind == "closed"
    assert closed.participants == ["U1", "U2"]
    assert closed.version == int((T0 + 90) * 1_000_000) > updated.version


async def test_edits_deletions_and_reactions_change_the_conversation() -> None:
    async with running() as run:
        await run.feed(say(T0, "lunch?"), say(T0 + 1, "typo", user="U2"), say(T0 + 2, "oops", user="U3"))
        await run.feed(
            say(T0, "lunch at noon?").model_copy(update={"action": "edited", "event_time": T0 + 3}),
            say(T0 + 2, "").model_copy(update={"action": "deleted", "event_time": T0 + 4}),
            SlackReaction(channel="C1", item_ts=f"{T0 + 1:.6f}", user="U1", reaction="+1", event_time=T0 + 5),
        )
        await run.at(T0 + 200)
        *_, closed = run.of("C1:1700000000.000000")
    assert [m.text for m in closed.messages] == ["lunch at noon?", "typo"]
    assert closed.message_count == 2
    assert closed.reaction_count == 1
    assert closed.messages[1].reactions == 1


async def test_a_duplicate_message_is_never_doubled() -> None:
    async with running() as run:
        await run.feed(say(T0, "hi"), say(T0 + 1, "there"), say(T0, "hi"), say(T0 + 1, "there"))
        await run.at(T0 + 200)
        events = run.of("C1:1700000000.000000")
    assert [e.kind for e in events] == ["updated", "updated", "closed"]
    assert [m.text for m in events[-1].messages] == ["hi", "there"]


async def test_late_messages_are_clamped_and_too_old_ones_dropped() -> None:
    async with running() as run:
        await run.feed(
            say(T0 + 10, "first"), say(T0 + 20, "second"), say(T0 + 15, "late"), say(T0 + 5, "before all")
        )
        await run.at(T0 + 200)
        (closed,) = [e for e in run.events if e.kind == "closed"]
    assert [m.text for m in closed.messages] == ["first", "second", "late"]


async def test_a_message_older_than_the_last_heartbeat_joins_without_breaking_the_query() -> None:
    # Live, heartbeats run ahead of messages: a message whose ts is already past (Slack delivered
    # it late, or its clock is behind ours) is clamped behind the last heartbeat. Landing at that
    # heartbeat's very time, in a later `add`, failed Kaskada's query ("invalid batch input
    # bounds … In shift_to"); the real-Slack demo lost its first conversation to the rebuild.
    async with running() as run:
        await run.at(T0 + 30)
        await run.feed(say(T0, "a question asked half a minute ago"))
        await run.at(T0 + 31)
        await run.feed(say(T0 + 1, "and its answer"), None)  # None: a record that could not be read
        await run.at(T0 + 200)
        assert run.partition.failed is None
        events = run.of("C1:1700000000.000000")
    assert [e.kind for e in events] == ["updated", "updated", "closed"]
    assert [m.text for m in events[-1].messages] == ["a question asked half a minute ago", "and its answer"]


async def test_a_thread_that_wakes_up_continues_whole_with_a_higher_version() -> None:
    async with running() as run:
        await run.feed(say(T0, "question", thread=T0), say(T0 + 10, "answer", user="U2", thread=T0))
        await run.at(T0 + 10 + 121)  # closed after the thread idle time
        await run.feed(say(T0 + 300, "one more thing", user="U3", thread=T0))
        await run.at(T0 + 300 + 121)
        events = run.of("C1:1700000000.000000/thread")
    assert [e.kind for e in events] == ["updated", "updated", "closed", "updated", "closed"]
    assert [m.text for m in events[-1].messages] == ["question", "answer", "one more thing"]
    assert events[-1].thread_ts == f"{T0:.6f}"
    versions = [e.version for e in events]
    assert versions == sorted(versions)
    assert len(set(versions)) == len(versions)


async def test_a_thread_reply_does_not_break_the_channel_conversation() -> None:
    async with running() as run:
        await run.feed(say(T0, "a"), say(T0 + 50, "reply", thread=T0 - 500), say(T0 + 100, "b"))
        await run.at(T0 + 1000)
    closed = {e.conversation_id: e for e in run.events if e.kind == "closed"}
    assert sorted(closed) == ["C1:1699999500.000000/thread", "C1:1700000000.000000", "C1:1700000100.000000"]


async def test_a_thread_and_the_channel_conversation_its_parent_started_are_two() -> None:
    """Live, a parent arrives before any reply (no thread_ts yet) and starts a channel conversation;
    its replies form the thread `(channel, parent ts)`. They must not share an id, or the scorer's
    cache and the notifier's one alert per conversation would merge them."""
    async with running() as run:
        await run.feed(say(T0, "who owns the deploy?"), say(T0 + 20, "me", user="U2", thread=T0))
        await run.feed(say(T0 + 30, "lunch?", user="U3"))
        await run.at(T0 + 1000)
    closed = {e.conversation_id: e for e in run.events if e.kind == "closed"}
    assert sorted(closed) == ["C1:1700000000.000000", "C1:1700000000.000000/thread"]
    assert [m.text for m in closed["C1:1700000000.000000"].messages] == ["who owns the deploy?", "lunch?"]
    thread = closed["C1:1700000000.000000/thread"]
    assert [(m.text, m.thread_ts) for m in thread.messages] == [
        ("who owns the deploy?", f"{T0:.6f}"),  # the parent heads its thread, as in history
        ("me", f"{T0:.6f}"),
    ]
    assert thread.participants == ["U1", "U2"]
    assert thread.message_count == 2


async def test_a_thread_adopts_its_parent_as_it_is_now_and_survives_a_replay() -> None:
    """The parent is adopted with its edits and reactions; after a restart from the commit point,
    the replay still holds the parent's row, so the rebuilt thread has it too."""
    said: list[SlackEvent] = [
        say(T0, "who owns the deploy?"),
        say(T0, "who owns the deploy pipeline?").model_copy(
            update={"action": "edited", "event_time": T0 + 5}
        ),
        SlackReaction(channel="C1", item_ts=f"{T0:.6f}", user="U3", reaction="eyes", event_time=T0 + 6),
        say(T0 + 300, "me", user="U2", thread=T0),  # the flow closed at T0 + 60
    ]
    async with running() as first:
        await first.feed(*said)
        await first.at(T0 + 310)
        point = first.partition.commit_point()
    adopted = first.of("C1:1700000000.000000/thread")[-1]
    assert [(m.text, m.reactions) for m in adopted.messages] == [
        ("who owns the deploy pipeline?", 1),
        ("me", 0),
    ]
    assert point.offset == 0  # the parent's row is part of the open thread
    async with running(start=point.offset, marks=point.marks) as replay:
        await replay.feed(*said)
        await replay.feed(say(T0 + 320, "thanks", thread=T0))
        await replay.at(T0 + 1000)
    closed = [e for e in replay.events if e.kind == "closed"]
    assert [(e.conversation_id, [m.text for m in e.messages]) for e in closed] == [
        ("C1:1700000000.000000/thread", ["who owns the deploy pipeline?", "me", "thanks"])
    ]


async def test_a_thread_does_not_adopt_a_parent_older_than_threads_are_remembered() -> None:
    async with running() as run:
        await run.feed(say(T0, "old news"), say(T0 + 601, "late reply", user="U2", thread=T0))
        await run.at(T0 + 1000)
    (thread,) = [e for e in run.events if e.kind == "closed" and e.thread_ts is not None]
    assert [m.text for m in thread.messages] == ["late reply"]


async def test_an_ended_result_iterator_is_a_failure() -> None:
    """One row older than the last ends Kaskada's live iterator, silently (docs/conversations.md) or, as
    here, with an error from the next read; the feeder never lets that happen, so it is forced
    behind its back. Either way the partition is marked failed for the service to rebuild it."""
    async with running() as run:
        await run.feed(say(T0 + 10, "now"))
        await run.partition._query.add([message_row(say(T0, "earlier"), int(T0 * 1e9), 1)])
        with pytest.raises(RuntimeError):  # QueryEnded is one too
            await run.partition.drain(5)
        assert run.partition.failed is not None


async def test_a_replay_publishes_only_what_was_not_published() -> None:
    said = [say(T0, "a"), say(T0 + 10, "b"), say(T0 + 100, "c"), say(T0 + 110, "d")]
    async with running() as first:
        await first.feed(*said[:3])
        await first.at(T0 + 100 + 30)  # "a b" closed, "c" open
        point = first.partition.commit_point()
    assert point.offset == 2  # the open conversation's first message: the replay starts there
    async with running(start=point.offset, marks=point.marks) as replay:
        await replay.partition.feed([(i, m, None) for i, m in enumerate(said) if i >= point.offset])
        await replay.at(T0 + 500)
    assert [(e.kind, [m.text for m in e.messages]) for e in replay.events] == [
        ("updated", ["c", "d"]),
        ("closed", ["c", "d"]),
    ]


def test_the_commit_never_cuts_through_a_conversation() -> None:
    cut = CleanCut(start=0)
    cut.add([Span(0, 4), Span(2, 9), Span(10, 11)])
    assert cut.cut(processed=12, oldest_open=None) == 12
    cut = CleanCut(start=0)
    cut.add([Span(0, 4), Span(2, 9), Span(10, 11)])
    assert cut.cut(processed=12, oldest_open=7) == 0  # 7 is inside 2..9, which starts inside 0..4
    assert cut.cut(processed=12, oldest_open=10) == 10


def test_replay_marks_survive_the_commit_metadata_and_garbage_is_ignored() -> None:
    marks = ReplayMarks(processed=12, closed_until_ns=34, linker_from=5)
    assert ReplayMarks.decode(marks.encode()) == marks
    before_linked_mode = '{"processed": 12, "closed_until_ns": 34}'
    assert ReplayMarks.decode(before_linked_mode) == ReplayMarks(12, 34, linker_from=-1)
    assert ReplayMarks.decode("not json") == ReplayMarks()
    assert ReplayMarks.decode(None) == ReplayMarks()


async def test_a_stop_that_kaskada_blocks_is_abandoned_without_freezing_the_loop() -> None:
    """Kaskada's stop can block while a read is pending underneath; the event loop must go on
    (other partitions, the ops server, the shutdown) and the stop is given up after its bound."""
    import threading

    from sessionizer.live import LiveQuery

    release = threading.Event()

    class BlockingResults:
        def stop(self) -> None:
            release.wait(30)

    query = LiveQuery(SessionizerSettings())
    query._results = BlockingResults()  # type: ignore[assignment]
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    try:
        assert await query.stop(wait_s=0.3) is False
        assert ticks > 5  # the loop kept running while the stop was blocked
    finally:
        ticker.cancel()
        release.set()
    assert await query.stop() is True  # nothing left to stop
