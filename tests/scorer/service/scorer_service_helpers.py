"""Builders for conversations and preferences, and readers of what the scorer published."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from beepgpt.contracts import (
    Candidate,
    ConversationEvent,
    ConversationMessage,
    FollowedTopic,
    Preferences,
)
from beepgpt.kafka import EventProducer
from beepgpt.settings import KafkaSettings
from beepgpt.topics import CANDIDATES, CONVERSATIONS, PREFERENCES
from devstack.topic_reader import read_topic
from scorer.service import ScorerService


def conversation(
    conversation_id: str,
    lines: Sequence[tuple[str, str]],
    *,
    kind: str = "updated",
    version: int | None = None,
    channel: str = "C1",
    participants: Sequence[str] | None = None,
) -> ConversationEvent:
    """A conversation whose messages are `(user, text)` lines, one second apart."""
    first = float(conversation_id.rsplit(":", 1)[-1]) if ":" in conversation_id else 1_700_000_000.0
    messages = [
        ConversationMessage(ts=f"{first + i:.6f}", user=user, text=text)
        for i, (user, text) in enumerate(lines)
    ]
    return ConversationEvent(
        kind=kind,  # type: ignore[arg-type]
        conversation_id=conversation_id,
        channel=channel,
        first_ts=messages[0].ts,
        last_ts=messages[-1].ts,
        version=version if version is not None else len(messages),
        messages=messages,
        participants=list(participants) if participants is not None else sorted({u for u, _ in lines}),
        message_count=len(messages),
    )


def preferences(user: str, *topics: str, opted_in: bool = True) -> Preferences:
    return Preferences(
        user=user,
        opted_in=opted_in,
        topics=[FollowedTopic(id=f"{user}-t{i}", text=text) for i, text in enumerate(topics)],
    )


async def publish(
    settings: KafkaSettings, *events: ConversationEvent | Preferences | bytes, key: str = ""
) -> None:
    """Send conversations (keyed by id), preferences (keyed by user) or raw bytes (keyed by `key`)."""
    async with EventProducer(settings, "test") as producer:
        futures = []
        for event in events:
            if isinstance(event, ConversationEvent):
                futures.append(await producer.send_soon(CONVERSATIONS, event.conversation_id, event))
            elif isinstance(event, Preferences):
                futures.append(await producer.send_soon(PREFERENCES, event.user, event))
            else:
                futures.append(await producer.send_soon(CONVERSATIONS, key, event))
        await asyncio.gather(*futures)


async def candidates(
    settings: KafkaSettings, count: int | None = None, timeout: float = 30.0
) -> list[Candidate]:
    records = await read_topic(settings, CANDIDATES.name, count=count, timeout=timeout)
    found: list[Candidate] = []
    for record in records:
        assert record.value is not None
        candidate = CANDIDATES.decode(record.value)
        assert record.key == candidate.user.encode(), "candidates are keyed by user"
        found.append(candidate)
    return found


@dataclass
class Running:
    service: ScorerService
    scorer: Any
    task: asyncio.Task[None]


ServiceStarter = Callable[..., contextlib.AbstractAsyncContextManager[Running]]
