"""The alerts each person received lately, for App Home: a window of `notifications.sent`.

Read without a consumer group from `lookback_s` ago (offsets by timestamp), keeping the last few
delivered alerts per person in memory. Losing it on restart costs nothing: it is rebuilt from the
topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from beepgpt.contracts import Notification
from beepgpt.kafka.clients import new_consumer
from beepgpt.settings import KafkaSettings
from beepgpt.shims.aiokafka import force_metadata_update
from beepgpt.topics import SENT

log = logging.getLogger(__name__)

DELIVERED = ("sent", "digest")


class RecentAlerts:
    """user id -> their latest delivered alerts, newest first."""

    def __init__(self, kafka: KafkaSettings, *, per_user: int = 5, lookback_s: float = 7 * 86400) -> None:
        self._kafka = kafka
        self._per_user = per_user
        self._lookback_s = lookback_s
        self._alerts: dict[str, deque[Notification]] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    def of(self, user: str) -> list[Notification]:
        return list(reversed(self._alerts.get(user, ())))

    async def start(self, timeout: float = 60.0) -> None:
        self._consumer = new_consumer(
            self._kafka,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            fetch_max_wait_ms=self._kafka.fetch_max_wait_ms,
        )
        await self._consumer.start()
        async with asyncio.timeout(timeout):
            while not (found := self._consumer.partitions_for_topic(SENT.name)):
                await force_metadata_update(self._consumer)
                await asyncio.sleep(0.2)
        partitions = [TopicPartition(SENT.name, p) for p in sorted(found)]
        self._consumer.assign(partitions)
        since_ms = int((time.time() - self._lookback_s) * 1000)
        try:
            offsets = await self._consumer.offsets_for_times({tp: since_ms for tp in partitions})
        except Exception as error:  # a broker without timestamp lookups: read it all
            log.info("offsets by time unavailable; reading from the start", extra={"error": repr(error)})
            await self._consumer.seek_to_beginning(*partitions)
            self._task = asyncio.create_task(self._follow(), name="recent-alerts")
            return
        for tp in partitions:
            found_offset = offsets.get(tp)
            if found_offset is None:
                await self._consumer.seek_to_end(tp)
            else:
                self._consumer.seek(tp, found_offset.offset)
        self._task = asyncio.create_task(self._follow(), name="recent-alerts")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    async def _follow(self) -> None:
        assert self._consumer is not None
        while True:
            batch = await self._consumer.getmany(timeout_ms=1_000)
            for records in batch.values():
                for record in records:
                    self._apply(record.value)

    def _apply(self, value: bytes | None) -> None:
        try:
            notification: Notification = SENT.decode(value or b"")
        except ValidationError:
            return
        if notification.outcome not in DELIVERED:
            return
        alerts = self._alerts.setdefault(notification.user, deque(maxlen=self._per_user))
        alerts.append(notification)
