"""The sessionizer service against the real broker: history through Kafka, clock-driven closes, poison."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition
from sessionizer_helpers import (
    Conversations,
    closed_count,
    fast_settings,
    generated_messages,
    generated_table,
    publish,
    running_service,
    same_conversation,
    synthetic_messages,
    table_of,
)

from beepgpt import topics
from beepgpt.contracts import SlackMessage
from beepgpt.kafka import header
from beepgpt.settings import KafkaSettings
from devstack.topic_reader import read_topic
from sessionizer import metrics
from sessionizer.clock import FakeClock
from sessionizer.conversation import Emitted
from sessionizer.history import conversations
from sessionizer.partition import Publish
from sessionizer.query import message_row


async def test_the_example_workspace_through_kafka_closes_the_same_187_conversations(
    kafka_topics: KafkaSettings,
) -> None:
    """Also when the query is rebuilt on the way (here after 40 closed conversations, to release
    their state): a rebuild replays from the clean cut and publishes nothing twice."""
    messages = generated_messages()
    clock = FakeClock(float(messages[0].ts))
    await publish(kafka_topics, messages)
    expected = {c.conversation_id: c for c in conversations(generated_table(), window=20)}
    restarts = metrics.QUERY_RESTARTS.labels("rebuild")._value.get()
    settings = fast_settings(rebuild_after_closed=40, max_batch=200)
    async with Conversations(kafka_topics) as out, running_service(kafka_topics, settings, clock):
        await out.until(lambda events: sum(e.kind == "updated" for e in events) >= len(messages))
        clock.set(float(messages[-1].ts) + 7_200)  # everyone went home: the last ones close too
        await out.until(closed_count(187))
    closed = out.closed()
    assert set(closed) == set(expected)
    assert all(same_conversation(closed[cid], expected[cid]) for cid in expected)
    assert len(out.updated()) == len(messages)  # one per message, none repeated
    assert len({(e.conversation_id, e.version) for e in out.events}) == len(out.events)
    assert metrics.QUERY_RESTARTS.labels("rebuild")._value.get() - restarts >= 1


class CountingClock(FakeClock):
    """A fake clock that says how often the service has read it (once per heartbeat round)."""

    def __init__(self, start: float) -> None:
        super().__init__(start)
        self.reads = 0

    def now(self) -> float:
        self.reads += 1
        return super().now()

    async def rounds(self, count: int, timeout: float = 10) -> None:
        target = self.reads + count
        async with asyncio.timeout(timeout):
            while self.reads < target:
                await asyncio.sleep(0.01)


async def test_a_silent_channel_closes_when_the_clock_passes_its_gap(kafka_topics: KafkaSettings) -> None:
    start = 1_700_000_000.0
    clock = CountingClock(start)
    said = [
        SlackMessage(channel="C1", ts=f"{start:.6f}", user="U1", text="anyone around?", event_time=start),
        SlackMessage(channel="C1", ts=f"{start + 10:.6f}", user="U2", text="yes", event_time=start + 10),
    ]
    async with (
        Conversations(kafka_topics) as out,
        running_service(kafka_topics, fast_settings(gap_s=60), clock),
    ):
        await publish(kafka_topics, said)
        await out.until(lambda events: len(events) >= 2)
        clock.set(start + 10 + 59)  # a second before the gap is over
        await clock.rounds(3)
        await out.until(lambda events: True)
        assert not out.closed()
        clock.set(start + 10 + 61)
        await out.until(closed_count(1), timeout=10)
    closed = out.closed()["C1:1700000000.000000"]
    assert [m.text for m in closed.messages] == ["anyone around?", "yes"]
    assert closed.version == int((start + 10 + 60) * 1_000_000)  # closed at the deadline's event time
    assert closed.version > max(e.version for e in out.updated())


async def test_poison_records_go_to_the_dead_letter_topic_and_are_committed_past(
    kafka_topics: KafkaSettings,
) -> None:
    start = 1_700_000_000.0
    newer = SlackMessage(channel="C1", ts=f"{start:.6f}", user="U1", text="from the future").model_copy(
        update={"schema_version": 99}
    )
    good = SlackMessage(channel="C1", ts=f"{start + 1:.6f}", user="U1", text="fine", event_time=start + 1)
    settings = fast_settings(group_id="sessionizer-poison")
    await publish(kafka_topics, [b"not json at all", topics.encode(newer)], key="C1")
    await publish(kafka_topics, [good])
    async with Conversations(kafka_topics) as out, running_service(kafka_topics, settings, FakeClock(start)):
        await out.until(lambda events: len(events) >= 1)
    assert [e.messages[0].text for e in out.updated()] == ["fine"]
    dead = await read_topic(kafka_topics, "slack.messages.dlq", count=2, timeout=10)
    assert sorted(r.value for r in dead) == sorted([b"not json at all", topics.encode(newer)])
    for record in dead:
        assert header(record.headers, "dlq.service") == "sessionizer"
        assert header(record.headers, "dlq.original.topic") == "slack.messages"
    partition = dead[0].partition
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_topics.bootstrap_servers, group_id=settings.group_id)
    await consumer.start()
    try:
        committed = await consumer.committed(TopicPartition("slack.messages", partition))
    finally:
        await consumer.stop()
    assert committed == 2  # past both poison records, at the open conversation's first message


async def test_two_instances_split_the_channels_and_close_every_conversation_once(
    kafka_topics: KafkaSettings,
) -> None:
    start = 1_700_000_000.0
    messages = synthetic_messages(channels=12, start=start)
    # Event time is each instance's own newest record: a message per channel the next day
    # moves every partition's time past every deadline.
    tomorrow = [
        SlackMessage(channel=channel, ts=f"{start + 86_400:.6f}", user="U9", text="tomorrow")
        for channel in sorted({m.channel for m in messages})
    ]
    settings = fast_settings(gap_s=60, thread_idle_s=120, clock="events", group_id="sessionizer-pair")
    published: dict[str, set[str]] = {"a": set(), "b": set()}
    async with (
        Conversations(kafka_topics) as out,
        running_service(kafka_topics, settings) as a,
        running_service(kafka_topics, settings) as b,
    ):
        for name, running in (("a", a), ("b", b)):
            publish_event = running.service._publish

            def counted(
                emitted: Emitted,
                trace: bytes | None,
                name: str = name,
                publish_event: Publish = publish_event,
            ) -> None:
                published[name].add(emitted.event.channel)
                publish_event(emitted, trace)

            running.service._publish = counted  # type: ignore[method-assign]
        async with asyncio.timeout(30):
            while not (a.service.partitions and b.service.partitions):
                await asyncio.sleep(0.05)
            # settled: three partitions between the two, none twice
            while len(a.service.partitions) + len(b.service.partitions) != 3:
                await asyncio.sleep(0.05)
        assert not set(a.service.partitions) & set(b.service.partitions)
        await publish(kafka_topics, [*messages, *tomorrow])
        expected = {
            c.conversation_id: c
            for c in conversations(table_of(messages), fast_settings(gap_s=60), window=20)
        }
        await out.until(closed_count(len(expected)), timeout=30)
    closed = out.closed()
    assert set(closed) == set(expected)
    assert all(same_conversation(closed[cid], expected[cid]) for cid in expected)
    assert published["a"]
    assert published["b"]
    assert not published["a"] & published["b"]


async def test_a_query_that_breaks_is_rebuilt_and_its_conversation_still_comes_out_whole(
    kafka_topics: KafkaSettings,
) -> None:
    """Kaskada can fail a live query (its iterator ends, or it raises); the partition restarts
    from its last commit and replays, so the conversation in flight loses no message."""
    start = 1_700_000_000.0
    clock = CountingClock(start)
    said = [
        SlackMessage(channel="C1", ts=f"{start + i:.6f}", user=f"U{i}", text=f"#{i}", event_time=start + i)
        for i in range(3)
    ]

    def failures() -> float:
        return sum(metrics.QUERY_RESTARTS.labels(reason)._value.get() for reason in ("ended", "failed"))

    before = failures()
    async with (
        Conversations(kafka_topics) as out,
        running_service(
            kafka_topics, fast_settings(gap_s=60, group_id="sessionizer-broken"), clock
        ) as running,
    ):
        await publish(kafka_topics, said[:2])
        await out.until(lambda events: len(events) >= 2)
        (number,) = {n for n, p in running.service.partitions.items() if p.position > 0}
        broken = running.service.partitions[number]
        # A row older than the query's time breaks Kaskada's live query.
        await broken._query.add([message_row(said[0], 0, 0)])
        async with asyncio.timeout(10):
            while running.service.partitions[number] is broken:
                await clock.rounds(1)
        await publish(kafka_topics, said[2:])
        clock.set(start + 2 + 61)
        await out.until(closed_count(1))
    closed = out.closed()["C1:1700000000.000000"]
    assert [m.text for m in closed.messages] == ["#0", "#1", "#2"]
    assert {e.messages[-1].text for e in out.updated()} == {"#0", "#1", "#2"}
    assert failures() == before + 1
