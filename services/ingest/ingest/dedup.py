"""Which Slack deliveries are repeats: Slack retries an event (same `event_id`) when it did not
see an ack in time, over HTTP (`X-Slack-Retry-Num`) and over Socket Mode (`retry_attempt`).

The rule is "mark after publish": an event_id is marked only once Kafka has acknowledged its
record, and a delivery is dropped as a duplicate only when its event_id is already marked. The
publisher checks a whole batch with one MGET just before producing it and marks what Kafka took
with one script call right after, before Slack gets its ack. So:

- The normal retry (Slack did not see our ack, or gave up waiting, and redelivers after the
  original was published) finds the mark and publishes nothing.
- An event whose process died anywhere before Kafka acknowledged it left no mark, so its
  redelivery is published. (A "claim before produce" would drop that redelivery as a duplicate
  of a record that never reached Kafka: a silent loss.)
- A refused delivery (buffer full) never reaches the check, so its retry goes through.

What this gives up, deliberately: a redelivery that races its original while the original is
still in flight *on another instance* (or a process that dies between Kafka's ack and the mark)
passes the check too and publishes a second, identical record. Within one instance the
publisher folds concurrent copies of an event_id into one record, so this needs two instances or
a crash. Duplicates are acceptable where losses are not: downstream consumers are idempotent on
(channel, ts), and the notifier's DMs are deduplicated on their own (docs/notifications.md).

Marks live in Redis, so they hold across instances and restarts — an in-process set would let a
retry that lands on another pod, or arrives after a deploy, through. When Redis is unreachable
the check raises and the publisher retries the batch, exactly as when Kafka is down: events wait
in the bounded buffer and, once it is full, new deliveries are refused explicitly so Slack
redelivers them. Keys are `<prefix>ingest:published:<event_id>`; the earlier "claim" keys
(`ingest:event:`) are deliberately not read: a claim did not mean the record was published.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

import redis.asyncio as aioredis
from cachetools import TTLCache

from beepgpt.redis_client import redis_client
from beepgpt.settings import RedisSettings


class Dedup(Protocol):
    async def published(self, event_ids: Sequence[str]) -> list[bool]:
        """For each event_id, True if a record of it was already published (drop the delivery)."""
        ...

    async def mark_published(self, event_ids: Sequence[str]) -> None:
        """Remember that Kafka acknowledged a record of each event_id (idempotent)."""
        ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


# One round trip and one command for a whole batch (building thousands of pipelined SETs costs
# more client CPU than the rest of the publish path). The keys of a batch may live in different
# hash slots: with Redis Cluster, mark per key instead.
_MARK_BATCH = """
for _, key in ipairs(KEYS) do
  redis.call('SET', key, '1', 'EX', ARGV[1])
end
return #KEYS
"""


class RedisDedup:
    """Marks shared by every ingest instance, expiring after Slack's retry window."""

    def __init__(self, settings: RedisSettings, ttl_s: int) -> None:
        self._redis = redis_client(settings, socket_timeout=5, socket_connect_timeout=5)
        self._prefix = f"{settings.key_prefix}ingest:published:"
        self._ttl_s = ttl_s
        self._mark_script = self._redis.register_script(_MARK_BATCH)

    async def published(self, event_ids: Sequence[str]) -> list[bool]:
        if not event_ids:
            return []
        values = await self._redis.mget([self._prefix + event_id for event_id in event_ids])
        return [value is not None for value in values]

    async def mark_published(self, event_ids: Sequence[str]) -> None:
        if event_ids:
            await self._mark_script(
                keys=[self._prefix + event_id for event_id in event_ids], args=[self._ttl_s]
            )

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (aioredis.RedisError, OSError):
            return False

    async def close(self) -> None:
        await self._redis.aclose()


class MemoryDedup:
    """Marks in this process only (bounded, expiring): for one local process without Redis."""

    def __init__(self, ttl_s: float, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        # Membership tests never reorder a TTLCache, so a full one evicts the oldest mark.
        self._marks: TTLCache[str, bool, float] = TTLCache(max_entries, ttl_s, timer=clock)

    async def published(self, event_ids: Sequence[str]) -> list[bool]:
        return [event_id in self._marks for event_id in event_ids]  # False once expired

    async def mark_published(self, event_ids: Sequence[str]) -> None:
        for event_id in event_ids:
            self._marks[event_id] = True  # a re-mark restarts its TTL and moves it to the back

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._marks.clear()
