"""Helpers the ingest tests share: settings for the stand-in, metric deltas, reading topics back,
and `python -m ingest` as a real process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from aiokafka.structs import ConsumerRecord
from prometheus_client import REGISTRY

from beepgpt.settings import KafkaSettings, RedisSettings, SlackSettings
from beepgpt.topics import SLACK_MESSAGES
from devstack.slack_standin import SlackStandin
from devstack.topic_reader import read_topic
from ingest.service import IngestService

StartIngest = Callable[..., contextlib.AbstractAsyncContextManager[IngestService]]
"""The `start_ingest` fixture: `async with start_ingest(mode="http") as service: ...`."""


def slack_settings(slack: SlackStandin) -> SlackSettings:
    return SlackSettings(
        slack_bot_token=slack.bot_token,
        slack_app_token=slack.app_token,
        slack_signing_secret=slack.signing_secret,
        api_url=slack.api_url,
    )


def events_url(service: IngestService) -> str:
    return f"http://127.0.0.1:{service.http_port}/slack/events"


def counter(outcome: str, reason: str) -> float:
    """Current value of beepgpt_ingest_events_total{outcome, reason} (metrics are process-wide)."""
    return (
        REGISTRY.get_sample_value("beepgpt_ingest_events_total", {"outcome": outcome, "reason": reason})
        or 0.0
    )


def acks(durability: str) -> float:
    """Current value of beepgpt_ingest_acks_total{durability}."""
    return REGISTRY.get_sample_value("beepgpt_ingest_acks_total", {"durability": durability}) or 0.0


class Counters:
    """Deltas of the ingest event counter since construction."""

    def __init__(self) -> None:
        self._start = self._snapshot()

    @staticmethod
    def _snapshot() -> dict[tuple[str, str], float]:
        values: dict[tuple[str, str], float] = {}
        for metric in REGISTRY.collect():
            if metric.name == "beepgpt_ingest_events":
                for sample in metric.samples:
                    if sample.name == "beepgpt_ingest_events_total":
                        values[(sample.labels["outcome"], sample.labels["reason"])] = sample.value
        return values

    def delta(self) -> dict[tuple[str, str], float]:
        now = self._snapshot()
        return {
            key: value - self._start.get(key, 0.0)
            for key, value in now.items()
            if value != self._start.get(key, 0.0)
        }


async def read_values(
    settings: KafkaSettings, count: int, topic: str = SLACK_MESSAGES.name, timeout: float = 30.0
) -> list[ConsumerRecord[bytes, bytes]]:
    return await read_topic(settings, topic, count=count, timeout=timeout)


def decoded(records: list[ConsumerRecord[bytes, bytes]]) -> list[Any]:
    return [SLACK_MESSAGES.decode(r.value) for r in records]


def raw_json(records: list[ConsumerRecord[bytes, bytes]]) -> list[Any]:
    return [json.loads(r.value) for r in records]


# --- `python -m ingest` as a process -----------------------------------------------------------

READY_TIMEOUT_S = 60.0


def process_env(
    slack: SlackStandin, kafka: KafkaSettings, redis: RedisSettings, ops_port: int, **ingest: str
) -> dict[str, str]:
    """The environment `python -m ingest` runs with against the test's stack; `ingest` adds
    BEEPGPT_INGEST_* settings (`mode="http"` → BEEPGPT_INGEST_MODE=http)."""
    return {
        **os.environ,
        "BEEPGPT_HTTP_HOST": "127.0.0.1",
        "BEEPGPT_HTTP_PORT": str(ops_port),
        "BEEPGPT_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "BEEPGPT_KAFKA_IDEMPOTENCE": "false",
        "BEEPGPT_KAFKA_PARTITIONS": str(kafka.partitions),
        "BEEPGPT_REDIS_URL": redis.url,
        "BEEPGPT_REDIS_KEY_PREFIX": redis.key_prefix,
        "BEEPGPT_SLACK_API_URL": slack.api_url,
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_APP_TOKEN": slack.app_token,
        "SLACK_SIGNING_SECRET": slack.signing_secret,
        **{f"BEEPGPT_INGEST_{name.upper()}": value for name, value in ingest.items()},
    }


async def start_process(
    env: dict[str, str], stdout: Any = asyncio.subprocess.PIPE
) -> asyncio.subprocess.Process:
    """`python -m ingest`; its JSON log lines go to `stdout` (a pipe the caller reads, or a file)."""
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "ingest", env=env, stdout=stdout)


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


async def metric(session: aiohttp.ClientSession, ops: str, sample: str) -> float:
    """One sample's value from the process's /metrics (`name{labels}` as exposed); 0 if absent."""
    async with session.get(f"{ops}/metrics") as reply:
        text = await reply.text()
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == sample:
            return float(value)
    return 0.0


async def stop_process(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
        await process.wait()
