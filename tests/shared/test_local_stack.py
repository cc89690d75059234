"""The local stack really pauses and resumes the broker without losing its data."""

from __future__ import annotations

import asyncio

import pytest

from beepgpt import topics
from beepgpt.contracts import SlackMessage
from beepgpt.kafka import EventProducer
from beepgpt.settings import KafkaSettings
from devstack.local_stack import Broker, kafka_answers
from devstack.topic_reader import read_topic


async def test_a_paused_broker_stops_answering_and_catches_up_after_resume(
    broker: Broker, kafka_topics: KafkaSettings
) -> None:
    message = SlackMessage(channel="C1", ts="1.000000", user="U1", text="before")
    async with EventProducer(kafka_topics, "test") as producer:
        await producer.send(topics.SLACK_MESSAGES, "C1", message)
        broker.pause()
        try:
            assert not await asyncio.to_thread(kafka_answers, broker.bootstrap_servers)
            pending = await producer.send_soon(
                topics.SLACK_MESSAGES, "C1", message.model_copy(update={"ts": "2.000000", "text": "during"})
            )
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(pending), timeout=1.0)
        finally:
            broker.resume()
        await pending
    records = await read_topic(kafka_topics, topics.SLACK_MESSAGES.name, count=2)
    assert [topics.SLACK_MESSAGES.decode(r.value).text for r in records] == ["before", "during"]
