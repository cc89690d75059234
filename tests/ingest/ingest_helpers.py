"""Helpers the ingest tests share: settings for the stand-in, metric deltas, reading topics back."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

from aiokafka.structs import ConsumerRecord
from prometheus_client import REGISTRY

from beepgpt.settings import KafkaSettings, SlackSettings
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
