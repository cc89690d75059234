"""Dead-letter routing: a record a service cannot process is parked, with why, never dropped."""

from __future__ import annotations

import logging

from aiokafka.structs import ConsumerRecord

from beepgpt.kafka.headers import Headers
from beepgpt.kafka.producer import EventProducer
from beepgpt.observability.metrics import DEAD_LETTERS

log = logging.getLogger(__name__)

_MAX_ERROR_CHARS = 1_000


class DeadLetters:
    """Sends the original bytes of a poison record to `<topic>.dlq` with error headers.

    The key and the original headers are kept, so a fixed consumer can replay the DLQ into the
    original topic unchanged.
    """

    def __init__(self, producer: EventProducer, service: str) -> None:
        self._producer = producer
        self._service = service

    async def send(self, record: ConsumerRecord[bytes, bytes], error: BaseException | str) -> None:
        reason = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        error_type = "rejected" if isinstance(error, str) else type(error).__name__
        headers: Headers = list(record.headers or ())
        headers += [
            ("dlq.error.type", error_type.encode()),
            ("dlq.error.message", reason[:_MAX_ERROR_CHARS].encode(errors="replace")),
            ("dlq.service", self._service.encode()),
            ("dlq.original.topic", record.topic.encode()),
            ("dlq.original.partition", str(record.partition).encode()),
            ("dlq.original.offset", str(record.offset).encode()),
        ]
        key = (record.key or b"").decode(errors="replace")
        await self._producer.send(f"{record.topic}.dlq", key, record.value or b"", headers=headers)
        DEAD_LETTERS.labels(record.topic, self._service, error_type).inc()
        log.warning(
            "record dead-lettered",
            extra={
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "error": reason[:200],
            },
        )

    async def send_raw(
        self, topic: str, key: str, value: bytes, error: str, headers: Headers | None = None
    ) -> None:
        """Dead-letter input that never was a Kafka record (a malformed Slack event, say)."""
        all_headers: Headers = list(headers or ())
        all_headers += [
            ("dlq.error.type", b"rejected"),
            ("dlq.error.message", error[:_MAX_ERROR_CHARS].encode(errors="replace")),
            ("dlq.service", self._service.encode()),
        ]
        await self._producer.send(f"{topic}.dlq", key, value, headers=all_headers)
        DEAD_LETTERS.labels(topic, self._service, "rejected").inc()
