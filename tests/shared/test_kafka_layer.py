"""The Kafka layer against the real broker: topics, headers, consumer groups, dead letters."""

from __future__ import annotations

from beepgpt import topics
from beepgpt.contracts import SlackMessage
from beepgpt.kafka import (
    DeadLetters,
    EventProducer,
    ensure_topics,
    header,
    make_consumer,
    new_admin,
    report_lag,
)
from beepgpt.kafka.headers import SOURCE, TRACE_ID
from beepgpt.observability.metrics import CONSUMER_LAG
from beepgpt.settings import KafkaSettings
from devstack.topic_reader import read_topic


async def test_ensure_topics_creates_each_topic_once_with_the_configured_partitions(
    kafka_settings: KafkaSettings,
) -> None:
    created = await ensure_topics(kafka_settings, topics.ALL_TOPICS)
    assert set(created) == {t.name for t in topics.ALL_TOPICS} | {t.dlq for t in topics.ALL_TOPICS}
    assert await ensure_topics(kafka_settings, topics.ALL_TOPICS) == []
    admin = new_admin(kafka_settings)
    await admin.start()
    try:
        described = await admin.describe_topics([topics.SLACK_MESSAGES.name])
        assert len(described[0]["partitions"]) == kafka_settings.partitions
    finally:
        await admin.close()


async def test_records_carry_key_source_and_trace_headers(kafka_topics: KafkaSettings) -> None:
    message = SlackMessage(channel="C42", ts="1.000000", user="U1", text="hello")
    async with EventProducer(kafka_topics, "ingest") as producer:
        await producer.send(topics.SLACK_MESSAGES, "C42", message, trace_id="trace-1")
    [record] = await read_topic(kafka_topics, topics.SLACK_MESSAGES.name, count=1)
    assert record.key == b"C42"
    assert topics.SLACK_MESSAGES.decode(record.value) == message
    assert header(record.headers, SOURCE) == "ingest"
    assert header(record.headers, TRACE_ID) == "trace-1"


async def test_same_key_lands_on_one_partition_in_order(kafka_topics: KafkaSettings) -> None:
    async with EventProducer(kafka_topics, "test") as producer:
        futures = [
            await producer.send_soon(
                topics.SLACK_MESSAGES,
                "C1",
                SlackMessage(channel="C1", ts=f"{i}.000000", user="U", text=str(i)),
            )
            for i in range(50)
        ]
        metadata = [await f for f in futures]
    assert len({m.partition for m in metadata}) == 1
    records = await read_topic(kafka_topics, topics.SLACK_MESSAGES.name, count=50)
    assert [topics.SLACK_MESSAGES.decode(r.value).text for r in records] == [str(i) for i in range(50)]


async def test_poison_record_goes_to_the_dead_letter_topic_with_its_bytes_and_reason(
    kafka_topics: KafkaSettings,
) -> None:
    poison = b'{"kind": "message", "channel": 7'
    async with EventProducer(kafka_topics, "test") as producer:
        await producer.send(topics.SLACK_MESSAGES.name, "C1", poison)
        consumer = make_consumer(kafka_topics, "dlq-test", topics.SLACK_MESSAGES.name)
        await consumer.start()
        try:
            record = await consumer.getone()
            try:
                topics.SLACK_MESSAGES.decode(record.value)
                raise AssertionError("poison decoded")
            except ValueError as error:
                await DeadLetters(producer, "test").send(record, error)
            await consumer.commit()
        finally:
            await consumer.stop()
    [dead] = await read_topic(kafka_topics, topics.SLACK_MESSAGES.dlq, count=1)
    assert dead.value == poison
    assert dead.key == b"C1"
    assert header(dead.headers, "dlq.error.type") == "ValidationError"
    assert header(dead.headers, "dlq.original.topic") == topics.SLACK_MESSAGES.name
    assert header(dead.headers, "dlq.original.offset") == str(record.offset)


async def test_consumer_lag_is_reported_per_partition_and_drops_to_zero_when_caught_up(
    kafka_topics: KafkaSettings,
) -> None:
    async with EventProducer(kafka_topics, "test") as producer:
        for i in range(10):
            await producer.send(topics.SLACK_MESSAGES.name, "C-lag", f"record {i}".encode())
    consumer = make_consumer(kafka_topics, "lag-test", topics.SLACK_MESSAGES.name)
    await consumer.start()
    try:
        got = []
        while not got:
            batch = await consumer.getmany(timeout_ms=1_000, max_records=4)
            got = [r for records in batch.values() for r in records]
        await report_lag(consumer, "lag-test")
        partition = got[0].partition
        gauge = CONSUMER_LAG.labels(topics.SLACK_MESSAGES.name, str(partition), "lag-test")
        assert gauge._value.get() == 10 - len(got)
        while len(got) < 10:
            batch = await consumer.getmany(timeout_ms=1_000)
            got += [r for records in batch.values() for r in records]
        await consumer.getmany(timeout_ms=100)  # an empty poll: the gauge must still follow
        await report_lag(consumer, "lag-test")
        assert gauge._value.get() == 0
    finally:
        await consumer.stop()
