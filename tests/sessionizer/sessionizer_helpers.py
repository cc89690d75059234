"""Shared by the sessionizer tests: feeding slack.messages, reading conversations, running services."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from aiokafka import AIOKafkaConsumer, TopicPartition

from beepgpt.contracts import ConversationEvent, SlackMessage, SlackReaction
from beepgpt.kafka import EventProducer
from beepgpt.message_table import to_messages
from beepgpt.settings import KafkaSettings
from beepgpt.topics import CONVERSATIONS, SLACK_MESSAGES
from offline.tables import load_table
from sessionizer.clock import Clock
from sessionizer.linker import Link, Linker
from sessionizer.service import SessionizerService
from sessionizer.settings import SessionizerSettings

DATA = Path(__file__).resolve().parents[2] / "data"
GENERATED = DATA / "slack-generation.parquet"


def generated_table() -> pd.DataFrame:
    return load_table(GENERATED)


def generated_messages() -> list[SlackMessage]:
    return list(to_messages(generated_table()))


async def publish(
    kafka: KafkaSettings, events: Iterable[SlackMessage | SlackReaction | bytes], key: str | None = None
) -> None:
    """Events to slack.messages keyed by channel (raw bytes need `key`), as ingest would."""
    async with EventProducer(kafka, "test") as producer:
        futures = []
        for event in events:
            if isinstance(event, bytes):
                assert key is not None
                futures.append(await producer.send_soon(SLACK_MESSAGES, key, event))
            else:
                futures.append(await producer.send_soon(SLACK_MESSAGES, event.channel, event))
        await asyncio.gather(*futures)


class Conversations:
    """Reads the conversations topic from the start, as a consumer without a group."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, enable_auto_commit=False)
        self.events: list[ConversationEvent] = []

    async def __aenter__(self) -> Conversations:
        await self._consumer.start()
        partitions = None
        deadline = time.monotonic() + 30
        while not partitions:
            partitions = self._consumer.partitions_for_topic(CONVERSATIONS.name)
            if not partitions:
                if time.monotonic() > deadline:
                    raise TimeoutError("no conversations topic")
                await self._consumer._client.force_metadata_update()
                await asyncio.sleep(0.05)
        tps = [TopicPartition(CONVERSATIONS.name, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def until(self, done: Callable[[list[ConversationEvent]], bool], timeout: float = 60) -> None:
        """Read until `done(events)` holds; TimeoutError (with what was read) otherwise."""
        deadline = time.monotonic() + timeout
        while not done(self.events):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"condition not met after {len(self.events)} conversation events")
            batch = await self._consumer.getmany(timeout_ms=int(min(remaining, 0.5) * 1000))
            for records in batch.values():
                self.events.extend(CONVERSATIONS.decode(r.value) for r in records)

    def closed(self) -> dict[str, ConversationEvent]:
        """The newest closed event of each conversation."""
        latest: dict[str, ConversationEvent] = {}
        for event in self.events:
            if event.kind == "closed" and (
                event.conversation_id not in latest or latest[event.conversation_id].version < event.version
            ):
                latest[event.conversation_id] = event
        return latest

    def updated(self) -> list[ConversationEvent]:
        return [e for e in self.events if e.kind == "updated"]


def closed_count(n: int) -> Callable[[list[ConversationEvent]], bool]:
    return lambda events: len({e.conversation_id for e in events if e.kind == "closed"}) >= n


def same_conversation(a: ConversationEvent, b: ConversationEvent) -> bool:
    return (
        a.conversation_id == b.conversation_id
        and [(m.ts, m.user, m.text) for m in a.messages] == [(m.ts, m.user, m.text) for m in b.messages]
        and a.participants == b.participants
        and a.message_count == b.message_count
    )


def fast_settings(**overrides: object) -> SessionizerSettings:
    values: dict[str, object] = {"heartbeat_s": 0.05, "commit_interval_s": 0.2, "heartbeat_delay_s": 0.0}
    values.update(overrides)
    return SessionizerSettings(**values)  # type: ignore[arg-type]


@dataclass
class Running:
    service: SessionizerService
    task: asyncio.Task[None]


@contextlib.asynccontextmanager
async def running_service(
    kafka: KafkaSettings, settings: SessionizerSettings, clock: Clock | None = None
) -> AsyncIterator[Running]:
    """A sessionizer in this event loop; stopped cleanly (drained, committed) afterwards."""
    service = SessionizerService(kafka, settings, clock=clock)
    task = asyncio.create_task(service.run())
    try:
        yield Running(service, task)
    finally:
        service.stop()
        await asyncio.wait_for(task, 30)


def synthetic_messages(channels: int, start: float, gap: float = 60.0) -> list[SlackMessage]:
    """Per channel: two channel conversations (three messages each, a gap apart) and a thread,
    interleaved across channels in time order."""
    messages: list[SlackMessage] = []
    for c in range(channels):
        channel = f"C{c:03d}"
        base = start + c * 0.001
        times = [base, base + 5, base + 10, base + 10 + gap + 1, base + 15 + gap + 1, base + 20 + gap + 1]
        for i, t in enumerate(times):
            messages.append(
                SlackMessage(
                    channel=channel,
                    ts=f"{t:.6f}",
                    user=f"U{(c + i) % 4}",
                    text=f"{channel} #{i}",
                    event_time=t,
                )
            )
        parent = f"{base + 2:.6f}"
        for i in range(3):
            t = base + 2 + i * 7
            messages.append(
                SlackMessage(
                    channel=channel,
                    ts=f"{t:.6f}",
                    thread_ts=parent,
                    user=f"U{i}",
                    text=f"reply {i}",
                    event_time=t,
                )
            )
    return sorted(messages, key=lambda m: (float(m.ts), m.channel))


def table_of(messages: list[SlackMessage]) -> pd.DataFrame:
    from beepgpt.message_table import from_messages

    return from_messages(messages)


def links_by_rows(linker: Linker, messages: Iterable[tuple[str, str, float, str, str]]) -> list[Link]:
    """Each flow message's link decided from its feature rows (`Linker.candidates`, what training
    reads) times the model's weights, then `add`: the plain definition `Linker.link` must match."""
    roots: dict[tuple[str, str], str] = {}
    out: list[Link] = []
    for channel, ts, sent_s, user, text in messages:
        found = linker.candidates(channel, sent_s, user, text)
        parent: str | None = None
        root = ts
        if len(found.ts):
            scores = linker.model.score(np.vstack([found.pair, found.self_row]))
            best = int(np.argmax(scores[:-1]))
            if scores[best] > scores[-1] + linker.self_offset:
                parent = found.ts[best]
                root = roots[(channel, parent)]
        roots[(channel, ts)] = root
        linker.add(channel, ts, sent_s, user, text, root)
        out.append(Link(parent, root))
    return out
