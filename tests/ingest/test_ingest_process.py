"""`python -m ingest` as a real process: env settings, /healthz /readyz /metrics, SIGTERM drains then exits."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from typing import Any

import aiohttp
from ingest_helpers import decoded, read_values

from beepgpt.settings import KafkaSettings, RedisSettings
from devstack.local_stack import Broker, free_port
from devstack.slack_standin import SlackStandin

READY_TIMEOUT_S = 60.0


async def wait_ready(session: aiohttp.ClientSession, ops: str, process: asyncio.subprocess.Process) -> None:
    """Poll /readyz until the service says it is ready (or the process dies)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    delay = 0.05
    while True:
        assert process.returncode is None, "ingest exited while starting"
        try:
            async with session.get(f"{ops}/readyz") as reply:
                if reply.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        assert time.monotonic() < deadline, "ingest did not become ready"
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)


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
    env = {
        **os.environ,
        "BEEPGPT_INGEST_MODE": "http",
        "BEEPGPT_INGEST_HTTP_HOST": "127.0.0.1",
        "BEEPGPT_INGEST_HTTP_PORT": str(events_port),
        "BEEPGPT_HTTP_HOST": "127.0.0.1",
        "BEEPGPT_HTTP_PORT": str(ops_port),
        "BEEPGPT_KAFKA_BOOTSTRAP_SERVERS": kafka_topics.bootstrap_servers,
        "BEEPGPT_KAFKA_IDEMPOTENCE": "false",
        "BEEPGPT_KAFKA_PARTITIONS": "3",
        "BEEPGPT_REDIS_URL": redis_settings.url,
        "BEEPGPT_REDIS_KEY_PREFIX": redis_settings.key_prefix,
        "BEEPGPT_SLACK_API_URL": slack.api_url,
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_SIGNING_SECRET": slack.signing_secret,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ingest", env=env, stdout=asyncio.subprocess.PIPE
    )
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
        if process.returncode is None:
            process.kill()
            await process.wait()
