"""`python -m ingest` as a real process: env settings, /healthz /readyz /metrics, SIGTERM drains then exits."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

import aiohttp
from ingest_helpers import decoded, process_env, read_values, start_process, stop_process, wait_ready

from beepgpt.settings import KafkaSettings, RedisSettings
from devstack.local_stack import Broker, free_port
from devstack.slack_standin import SlackStandin


async def log_lines_until(stream: asyncio.StreamReader, message: str) -> dict[str, Any]:
    """Read the service's JSON log lines until one with `message`; returns it."""
    while line := await asyncio.wait_for(stream.readline(), 30):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("message") == message:
            return dict(entry)
    raise AssertionError(f"ingest never logged {message!r}")


async def test_sigterm_drains_the_buffer_then_exits(
    slack: SlackStandin, kafka_topics: KafkaSettings, redis_settings: RedisSettings, broker: Broker
) -> None:
    events_port, ops_port = free_port(), free_port()
    env = process_env(
        slack,
        kafka_topics,
        redis_settings,
        ops_port,
        mode="http",
        http_host="127.0.0.1",
        http_port=str(events_port),
        ack_budget_s="0.2",  # the broker is paused: ack from the buffer soon
    )
    process = await start_process(env)
    assert process.stdout is not None
    ops = f"http://127.0.0.1:{ops_port}"
    ev = slack.events
    try:
        async with (
            aiohttp.ClientSession() as session,
            slack.http_sender(f"http://127.0.0.1:{events_port}/slack/events") as sender,
        ):
            await wait_ready(session, ops, process)
            async with session.get(f"{ops}/healthz") as reply:
                assert reply.status == 200
            broker.pause()
            try:
                for i in range(5):
                    reply_ = await sender.send_event(ev.callback(ev.message("C0GENERAL", "U0ALICE", f"m{i}")))
                    assert reply_.status == 200
                async with session.get(f"{ops}/metrics") as reply:
                    metrics = await reply.text()
                assert "beepgpt_ingest_buffer_depth 5.0" in metrics
                assert "beepgpt_ingest_buffer_acked 5.0" in metrics
                assert 'beepgpt_ingest_acks_total{durability="buffered"} 5.0' in metrics
                assert 'beepgpt_ingest_ack_latency_seconds_count{mode="http"} 5.0' in metrics
                process.send_signal(signal.SIGTERM)
                draining = await log_lines_until(process.stdout, "draining buffer")
                assert draining["depth"] == 5
            finally:
                broker.resume()
            stopped = await log_lines_until(process.stdout, "ingest stopped")
            assert stopped["lost"] == 0
            assert await asyncio.wait_for(process.wait(), 30) == 0
        records = await read_values(kafka_topics, 5)
        assert [m.text for m in decoded(records)] == [f"m{i}" for i in range(5)]
    finally:
        await stop_process(process)
