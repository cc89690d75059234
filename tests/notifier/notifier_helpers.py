"""Building candidates and preferences, publishing them, and reading decisions back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from beepgpt.contracts import Candidate, Notification, Preferences, PreviewLine
from beepgpt.kafka import EventProducer
from beepgpt.settings import KafkaSettings
from beepgpt.topics import CANDIDATES, PREFERENCES, SENT
from devstack.topic_reader import read_topic


def candidate(user: str, conversation: str = "C0PROJECT:1700000000.000100", **overrides: object) -> Candidate:
    channel = conversation.split(":")[0]
    fields: dict[str, object] = {
        "user": user,
        "conversation_id": conversation,
        "version": 1,
        "channel": channel,
        "latest_ts": "1700000100.000200",
        "score": 0.87,
        "score_space": "all-MiniLM-L6-v2",
        "reason": "topic",
        "explanation": "matches your topic “streaming decisions”",
        "topic_id": "t-1",
        "preview": [
            PreviewLine(
                user="U0ALICE", text="shall we pick <#C0PROJECT> Kafka or Pulsar?", ts="1700000000.000100"
            ),
            PreviewLine(
                user="U0CAROL",
                text="<@U0ALICE> Kafka, ADR: <https://example.com/adr|here>",
                ts="1700000100.000200",
            ),
        ],
    }
    fields.update(overrides)
    return Candidate.model_validate(fields)


async def publish(settings: KafkaSettings, items: Iterable[Candidate | Preferences]) -> None:
    async with EventProducer(settings, "test") as producer:
        futures = []
        for item in items:
            topic = CANDIDATES if isinstance(item, Candidate) else PREFERENCES
            futures.append(await producer.send_soon(topic, item.user, item))
        for future in futures:
            await future


async def decisions(
    settings: KafkaSettings, count: int, *, idle: float = 0.0, timeout: float = 60.0
) -> list[Notification]:
    records = await read_topic(settings, SENT.name, count=count, idle=idle, timeout=timeout)
    return [SENT.decode(r.value) for r in records]


def opted_in(user: str, **fields: object) -> Preferences:
    return Preferences.model_validate({"user": user, "opted_in": True, **fields})


class FakeClock:
    """Wall-clock seconds that only move when a test moves them."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def wait_until(condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    """Re-check a condition the code under test exposes (no event to await) until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout}s")
        await asyncio.sleep(0.02)


def posted_alerts(standin: object) -> list[tuple[str, str]]:
    """(DM channel, conversation id) of every alert the stand-in received, digests included."""
    import json

    from devstack.slack_standin import SlackStandin
    from notifier import dm

    assert isinstance(standin, SlackStandin)
    found: list[tuple[str, str]] = []
    for post in standin.recorder.find_posts(method="chat.postMessage"):
        for block in post.blocks or []:
            for element in block.get("elements", []) if block.get("type") == "actions" else []:
                if element.get("action_id") == dm.USEFUL_ACTION:
                    found.append((post.channel or "", json.loads(element["value"])["conversation_id"]))
    return found
