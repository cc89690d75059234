"""The local stack: a real broker that pauses and resumes without losing data, Redis state that
stays with the stack that wrote it, and nothing left behind."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
import sys

import pytest
import redis

from beepgpt import topics
from beepgpt.contracts import SlackMessage
from beepgpt.kafka import EventProducer
from beepgpt.settings import KafkaSettings
from devstack.local_stack import Broker, LocalStack, kafka_answers, redis_answers
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


STARTER = """
from devstack.local_stack import Broker, RedisServer
broker, server = Broker.start(), RedisServer.start()
print(broker.process.pid, broker.bootstrap_servers, server.process.pid, server.url, flush=True)
input()
"""


def _wait_gone(pid: int, timeout: float) -> bool:
    """True once `pid` has exited (a pidfd turns readable then), False after `timeout`."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], timeout)
        return bool(readable)
    finally:
        os.close(fd)


def test_a_killed_starter_leaves_no_broker_or_redis_behind() -> None:
    starter = subprocess.Popen([sys.executable, "-c", STARTER], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert starter.stdout is not None
    broker_pid, bootstrap, redis_pid, redis_url = starter.stdout.readline().decode().split()
    assert kafka_answers(bootstrap)
    assert redis_answers(redis_url)
    starter.send_signal(signal.SIGKILL)
    starter.wait()
    assert _wait_gone(int(broker_pid), 10), "the broker outlived the process that started it"
    assert _wait_gone(int(redis_pid), 10), "Redis outlived the process that started it"
    assert not kafka_answers(bootstrap)


def test_each_stack_keeps_its_redis_keys_apart_and_removes_them_when_it_stops(redis_url: str) -> None:
    # The broker is new and empty for every stack; Redis state of an earlier stack on the same
    # server (a person's rate-limit bucket, say) must not reach the next demo.
    with LocalStack(redis_url=redis_url) as first, LocalStack(redis_url=redis_url) as second:
        assert first.env()["BEEPGPT_REDIS_KEY_PREFIX"] != second.env()["BEEPGPT_REDIS_KEY_PREFIX"]
        client = redis.Redis.from_url(redis_url)
        try:
            client.set(f"{first.redis_key_prefix}bucket:{{U1}}", "0")
            client.set(f"{second.redis_key_prefix}bucket:{{U1}}", "3")
            first.stop()
            assert client.get(f"{first.redis_key_prefix}bucket:{{U1}}") is None
            assert client.get(f"{second.redis_key_prefix}bucket:{{U1}}") == b"3"
        finally:
            client.close()
