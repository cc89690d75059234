"""Publishing history to `slack.messages` in timestamp order, pipelined.

Records are handed to the producer without waiting for each acknowledgement (up to `window` in
flight, batched by linger), so throughput is bounded by the broker, not by round trips. The
first failure stops the import with an error: a re-run publishes everything again, and
consumers treat (channel, ts) as the message identity, so a repeat replaces rather than adds.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka.structs import RecordMetadata

from beepgpt.contracts import SlackMessage
from beepgpt.kafka import EventProducer, ensure_topics
from beepgpt.settings import KafkaSettings
from beepgpt.topics import SLACK_MESSAGES

SOURCE = "import"


@dataclass(frozen=True)
class Published:
    records: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else float("inf")


async def publish(
    messages: Iterable[SlackMessage], settings: KafkaSettings, *, window: int = 20_000
) -> Published:
    """Send every message under its topic key (the channel), in the given (time) order; waits for
    every ack."""
    await ensure_topics(settings, [SLACK_MESSAGES])
    started = time.perf_counter()
    count = 0
    async with EventProducer(settings, SOURCE) as producer:
        in_flight: deque[asyncio.Future[RecordMetadata]] = deque()
        for message in messages:
            in_flight.append(
                await producer.send_soon(SLACK_MESSAGES, SLACK_MESSAGES.key_of(message), message)
            )
            count += 1
            if len(in_flight) >= window:
                await in_flight.popleft()
        for future in in_flight:
            await future
    return Published(count, time.perf_counter() - started)
