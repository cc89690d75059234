"""The service runtime against the real broker: the consume loop, commits, stopping, pausing,
rebalances, and the lifecycle (start-up undone on failure, watched tasks, signals, grace period).

Synchronization is by events the code under test sets, records read back and offsets the broker
reports as committed — never by sleeping.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from beepgpt import topics
from beepgpt.contracts import SlackMessage
from beepgpt.kafka import EventProducer, committed_with_metadata, header
from beepgpt.runtime import ConsumerLoop, LeaveUncommitted, Poll, RecordBatch, Runtime, serve
from beepgpt.settings import KafkaSettings, ServiceSettings
from devstack.topic_reader import read_topic

IN = topics.SLACK_MESSAGES
OUT = topics.SENT.name  # raw copies: nothing decodes this topic in these tests
CHANNEL = "C-RUNTIME"

Step = Callable[[RecordBatch[SlackMessage]], Awaitable[object]]


def message(i: int) -> SlackMessage:
    return SlackMessage(channel=CHANNEL, ts=f"{1_700_000_000 + i}.000000", user="U1", text=f"m{i}")


async def publish(kafka: KafkaSettings, *values: SlackMessage | bytes) -> None:
    """Every value on one key, hence one partition, in this order."""
    async with EventProducer(kafka, "test") as producer:
        for value in values:
            await producer.send(IN, CHANNEL, value)


def consuming(
    kafka: KafkaSettings, group: str, step: Step, **options: Any
) -> tuple[Runtime, ConsumerLoop[SlackMessage]]:
    """A runtime with a producer and a consume loop on `IN` running `step`."""
    runtime = Runtime("runtime-test")
    producer = EventProducer(kafka, "runtime-test")
    runtime.add(producer, "producer")
    loop: ConsumerLoop[SlackMessage] = ConsumerLoop(
        runtime,
        kafka,
        group_id=group,
        topic=IN,
        producer=producer,
        step=step,
        poll=Poll(timeout_ms=100),
        **options,
    )
    return runtime, loop


async def committed(kafka: KafkaSettings, group: str) -> dict[int, int]:
    """What the broker holds as the group's committed offsets on `IN`, per partition."""
    reader = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    await reader.start()
    try:
        partitions = [TopicPartition(IN.name, p) for p in range(kafka.partitions)]
        found = await committed_with_metadata(reader, partitions)
        return {tp.partition: meta.offset for tp, meta in found.items() if meta.offset >= 0}
    finally:
        await reader.stop()


async def test_the_loop_decodes_dead_letters_produces_and_commits_after_the_broker_has_the_output(
    kafka_topics: KafkaSettings,
) -> None:
    poison = b'{"kind": "message", "channel": 7'
    await publish(kafka_topics, message(0), message(1), poison, message(2))
    seen: list[tuple[int, str | None, bool]] = []

    async def copy(batch: RecordBatch[SlackMessage]) -> None:
        for entry in batch.entries:
            seen.append(
                (entry.record.offset, entry.value.text if entry.value else None, entry.error is not None)
            )
        for record, value in batch.values():
            await batch.send(OUT, CHANNEL, value.text.encode(), trace_id=f"t{record.offset}")

    runtime, loop = consuming(kafka_topics, "runtime-pipeline", copy)
    await runtime.start()
    try:
        await loop.caught_up(timeout=60)
    finally:
        await runtime.stop()

    assert seen == [(0, "m0", False), (1, "m1", False), (2, None, True), (3, "m2", False)]
    copies = await read_topic(kafka_topics, OUT, count=3)
    assert [c.value for c in copies] == [b"m0", b"m1", b"m2"]
    assert [header(c.headers, "beepgpt.trace_id") for c in copies] == ["t0", "t1", "t3"]
    [dead] = await read_topic(kafka_topics, IN.dlq, count=1)
    assert dead.value == poison
    assert header(dead.headers, "dlq.original.offset") == "2"
    assert header(dead.headers, "dlq.service") == "runtime-test"
    [partition] = {tp.partition for tp in loop.committed}
    assert await committed(kafka_topics, "runtime-pipeline") == {partition: 4}


async def test_stop_finishes_the_batch_in_hand_commits_it_and_undoes_start_up_in_reverse(
    kafka_topics: KafkaSettings,
) -> None:
    await publish(kafka_topics, message(0), message(1), message(2))
    in_hand, release = asyncio.Event(), asyncio.Event()
    undone: list[tuple[str, bool]] = []
    handled: list[int] = []

    async def slow(batch: RecordBatch[SlackMessage]) -> None:
        in_hand.set()
        await release.wait()
        handled.extend(r.offset for r in batch.records)

    runtime = Runtime("runtime-test")
    producer = EventProducer(kafka_topics, "runtime-test")

    async def note(what: str) -> None:
        undone.append((what, loop.consuming))

    runtime.step("before", stop=lambda: note("before"))
    runtime.add(producer)
    loop: ConsumerLoop[SlackMessage] = ConsumerLoop(
        runtime,
        kafka_topics,
        group_id="runtime-stop",
        topic=IN,
        producer=producer,
        step=slow,
        poll=Poll(timeout_ms=100),
    )
    runtime.step("after", stop=lambda: note("after"))
    await runtime.start()
    await asyncio.wait_for(in_hand.wait(), 60)
    assert runtime.ready
    runtime.request_stop()
    assert runtime.stopping
    assert not runtime.ready  # out of rotation at once, while the batch is still in hand
    stopping = asyncio.create_task(runtime.stop())
    release.set()
    await asyncio.wait_for(stopping, 30)

    assert handled == [0, 1, 2]
    [partition] = {tp.partition for tp in loop.committed}
    assert await committed(kafka_topics, "runtime-stop") == {partition: 3}
    assert undone == [("after", True), ("before", False)]  # the consumer left between the two


async def test_a_batch_left_uncommitted_is_redone_by_the_next_member_of_the_group(
    kafka_topics: KafkaSettings,
) -> None:
    await publish(kafka_topics, message(0), message(1))

    async def give_up(batch: RecordBatch[SlackMessage]) -> None:
        raise LeaveUncommitted

    first, _ = consuming(kafka_topics, "runtime-redo", give_up)
    await first.start()
    await asyncio.wait_for(first.wait(), 60)  # the loop ended by itself, without a stop
    assert not first.stopping
    await first.stop()
    assert await committed(kafka_topics, "runtime-redo") == {}

    redone: list[str] = []

    async def keep(batch: RecordBatch[SlackMessage]) -> None:
        redone.extend(value.text for _, value in batch.values())

    second, loop = consuming(kafka_topics, "runtime-redo", keep)
    await second.start()
    try:
        await loop.caught_up(timeout=60)
    finally:
        await second.stop()
    assert redone == ["m0", "m1"]


async def test_idle_stays_in_the_group_without_taking_records(kafka_topics: KafkaSettings) -> None:
    """Records arriving while a step idles are delivered afterwards: a poll that was not paused
    would have fetched them and dropped them."""
    await publish(kafka_topics, message(0))
    batches: list[list[str]] = []

    async def step(batch: RecordBatch[SlackMessage]) -> None:
        batches.append([value.text for _, value in batch.values()])
        if len(batches) == 1:
            await publish(kafka_topics, message(1), message(2))
            await loop.idle(1.5)
            assert loop.assignment()  # still a member with its partitions

    runtime, loop = consuming(kafka_topics, "runtime-idle", step)
    await runtime.start()
    try:
        await loop.caught_up(timeout=60)
    finally:
        await runtime.stop()
    assert batches[0] == ["m0"]
    assert [text for batch in batches[1:] for text in batch] == ["m1", "m2"]


async def test_a_rebalance_waits_for_the_batch_in_hand_then_runs_the_service_hook(
    kafka_topics: KafkaSettings,
) -> None:
    """A second member joins while the first holds a batch: the first's revocation waits on it
    (here until `rebalance_wait_s` gives up) and only then hands the partitions over."""
    await publish(kafka_topics, message(0))
    events: list[str] = []
    gave_up, holding = asyncio.Event(), asyncio.Event()

    def note_gave_up() -> None:
        events.append("gave up waiting")
        gave_up.set()

    async def revoked(partitions: list[TopicPartition]) -> None:
        if partitions:  # the first join revokes nothing, and says so
            events.append("revoked")

    async def hold(batch: RecordBatch[SlackMessage]) -> None:
        events.append("batch in hand")
        holding.set()
        await asyncio.wait_for(gave_up.wait(), 60)
        events.append("batch done")

    first, _ = consuming(
        kafka_topics,
        "runtime-rebalance",
        hold,
        rebalance_wait_s=1.0,
        on_rebalance_wait_timeout=note_gave_up,
        on_revoked=revoked,
    )

    async def nothing(batch: RecordBatch[SlackMessage]) -> None:
        return None

    second, second_loop = consuming(kafka_topics, "runtime-rebalance", nothing)
    await first.start()
    try:
        await asyncio.wait_for(holding.wait(), 60)
        await second.start()
        try:
            await asyncio.wait_for(gave_up.wait(), 60)
            await second_loop.wait_assigned(60)
        finally:
            await second.stop()
    finally:
        await first.stop()
    assert events[:3] == ["batch in hand", "gave up waiting", "revoked"]


async def test_start_up_that_fails_undoes_only_what_it_started() -> None:
    runtime = Runtime("runtime-test")
    done: list[str] = []

    async def record(what: str) -> None:
        done.append(what)

    async def broken() -> None:
        raise ConnectionError("no broker")

    runtime.step("a", lambda: record("start a"), lambda: record("stop a"))
    runtime.step("b", broken, lambda: record("stop b"))
    runtime.step("c", lambda: record("start c"), lambda: record("stop c"))
    with pytest.raises(ConnectionError):
        await runtime.start()
    assert done == ["start a", "stop a"]
    assert not runtime.ready


async def test_a_failing_task_stops_the_service_and_run_raises_it() -> None:
    runtime = Runtime("runtime-test")
    undone: list[str] = []
    beat_cancelled = asyncio.Event()

    async def heartbeat() -> None:
        try:
            while True:
                await runtime.sleep(60)
        except asyncio.CancelledError:
            beat_cancelled.set()
            raise

    async def broken() -> None:
        raise RuntimeError("task broke")

    async def note() -> None:
        undone.append("stopped")

    runtime.step("resource", stop=note)
    runtime.task("heartbeat", heartbeat)
    runtime.task("broken", broken)
    with pytest.raises(RuntimeError, match="task broke"):
        await asyncio.wait_for(runtime.run(), 30)
    assert undone == ["stopped"]
    assert beat_cancelled.is_set()  # background tasks are cancelled, not left running


async def test_sigterm_finishes_the_work_in_hand_and_the_grace_period_bounds_it() -> None:
    settings = ServiceSettings(http_host="127.0.0.1", http_port=0, shutdown_timeout_s=1.0)

    # A service that finishes its work in hand when asked to stop.
    polite = Runtime("runtime-test")
    finished, started = asyncio.Event(), asyncio.Event()

    async def work() -> None:
        started.set()
        while not polite.stopping:
            await polite.sleep(60)
        finished.set()

    polite.task("work", work, drain=True)
    serving = asyncio.create_task(serve(polite, settings))
    await asyncio.wait_for(started.wait(), 30)
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(serving, 30)
    assert finished.is_set()

    # One that does not: past the grace period it is cancelled, and its start-up still undone.
    stuck = Runtime("runtime-test")
    undone, cancelled, begun = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def hang() -> None:
        begun.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def undo() -> None:
        undone.set()

    stuck.step("resource", stop=undo)
    stuck.task("hang", hang, drain=True)
    serving = asyncio.create_task(serve(stuck, settings))
    await asyncio.wait_for(begun.wait(), 30)
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(serving, 30)  # returns: the expiry is logged, not raised
    assert cancelled.is_set()
    assert undone.is_set()


def test_committing_records_means_the_offset_after_the_last_one_of_each_partition() -> None:
    from aiokafka.structs import ConsumerRecord

    from beepgpt.runtime import decode_records, next_offsets

    def record(partition: int, offset: int, value: bytes | None) -> ConsumerRecord[bytes, bytes]:
        return ConsumerRecord(IN.name, partition, offset, 0, 0, b"k", value, None, 1, 1, [])

    good = message(0).model_dump_json().encode()
    records = [record(0, 7, good), record(1, 2, b"nope"), record(0, 5, good), record(1, 3, None)]
    assert next_offsets(records) == {TopicPartition(IN.name, 0): 8, TopicPartition(IN.name, 1): 4}
    entries = decode_records(records, IN.decode)
    assert [e.value is not None for e in entries] == [True, False, True, False]
    assert isinstance(entries[3].error, ValueError)  # no value at all is poison too
    batch = RecordBatch(entries, cast(EventProducer, None))  # nothing is sent here
    groups = batch.by_partition()
    assert [[e.record.offset for e in group] for group in groups.values()] == [[7, 5], [2, 3]]
    assert [r.offset for r, _ in batch.only([TopicPartition(IN.name, 1)]).poison] == [2, 3]
