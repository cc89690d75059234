"""Producing contracts with the durability settings the product relies on."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata
from pydantic import BaseModel

from beepgpt.kafka.clients import new_producer
from beepgpt.kafka.headers import Headers, make_headers
from beepgpt.observability.metrics import PRODUCED
from beepgpt.settings import KafkaSettings
from beepgpt.topics import Topic, encode


def make_producer(settings: KafkaSettings, source: str, **overrides: Any) -> AIOKafkaProducer:
    """A producer with the durability every BeepGPT record needs: acks from all in-sync replicas,
    idempotence where the broker supports it (a setting: Tansu refuses it)."""
    options: dict[str, Any] = {
        "client_id": f"beepgpt-{source}",
        "acks": "all",
        "enable_idempotence": settings.idempotence,
        "linger_ms": settings.linger_ms,
        "max_request_size": settings.max_request_size,
        "request_timeout_ms": settings.request_timeout_ms,
    }
    options.update(overrides)
    return new_producer(settings, **options)


class EventProducer:
    """An aiokafka producer with acks=all, idempotence where the broker allows it, and headers.

    `send` returns once the broker has the record; `send_soon` returns a future so a caller can
    keep many records in flight (batched by linger) and await them together.
    """

    def __init__(self, settings: KafkaSettings, source: str) -> None:
        self.source = source
        self._producer = make_producer(settings, source)

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        """Flush what is in flight, then close."""
        await self._producer.stop()

    async def __aenter__(self) -> EventProducer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def send_soon(
        self,
        topic: Topic | str,
        key: str,
        event: BaseModel | bytes,
        *,
        trace_id: str | None = None,
        headers: Headers | None = None,
    ) -> asyncio.Future[RecordMetadata]:
        """Queue a record; the returned future resolves when the broker acknowledged it."""
        name = topic if isinstance(topic, str) else topic.name
        value = event if isinstance(event, bytes) else encode(event)
        future: asyncio.Future[RecordMetadata] = await self._producer.send(
            name,
            value=value,
            key=key.encode(),
            headers=headers if headers is not None else make_headers(self.source, trace_id),
        )
        future.add_done_callback(lambda f: _count_delivery(f, name))
        return future

    async def send(
        self,
        topic: Topic | str,
        key: str,
        event: BaseModel | bytes,
        *,
        trace_id: str | None = None,
        headers: Headers | None = None,
    ) -> RecordMetadata:
        """Send one record and wait for the broker's acknowledgement."""
        return await (await self.send_soon(topic, key, event, trace_id=trace_id, headers=headers))

    async def flush(self) -> None:
        await self._producer.flush()


def _count_delivery(future: asyncio.Future[RecordMetadata], topic: str) -> None:
    if not future.cancelled() and future.exception() is None:
        PRODUCED.labels(topic).inc()
