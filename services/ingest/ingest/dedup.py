"""Which Slack deliveries are repeats: Slack retries an event (same `event_id`) when it did not
see an ack in time, over HTTP (`X-Slack-Retry-Num`) and over Socket Mode (`retry_attempt`).

The decision is "first claim wins": the first delivery of an event_id to claim it is published,
every later one is a duplicate. A claim stores the claimant's token, so a claim retried after a
lost reply (Redis applied it, the answer timed out) is recognised as our own and not mistaken
for a duplicate — which would silently lose the event. Claims live in Redis (`SET key 1 NX EX ttl`), so they hold across
instances and restarts — an in-process set would let a retry that lands on another pod, or
arrives after a deploy, through. The publisher claims a whole batch in one pipelined round trip
just before producing it, which keeps Redis off the ack path (acks stay fast when Redis is slow)
and means a delivery refused for a full buffer never holds a claim that would block its retry.

When Redis is unreachable the claim raises and the publisher retries the batch, exactly as when
Kafka is down: events wait in the bounded buffer and, once it is full, new deliveries are
refused explicitly so Slack redelivers them. Publishing without the shared check would trade
duplicates for availability; BeepGPT's promise is "never twice".
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Protocol

import redis.asyncio as aioredis

from beepgpt.settings import RedisSettings

Claim = tuple[str, str]
"""(event_id, token): the token is unique per delivery and stable across retries of its claim."""


class Dedup(Protocol):
    async def claim(self, claims: Sequence[Claim]) -> list[bool]:
        """For each claim, True if this delivery owns the event_id (publish it), False if another does."""
        ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


# One round trip and one command for a whole batch (building thousands of pipelined SETs costs
# more client CPU than the rest of the publish path). SET NX GET (Redis >= 7) answers the previous
# holder: none, or our own token on a retried claim, means ours. In key order, so two copies of
# one event inside the same batch are told apart too. The keys of a batch may live in different
# hash slots: with Redis Cluster, claim per key instead.
_CLAIM_BATCH = """
local owned = {}
for i, key in ipairs(KEYS) do
  local token = ARGV[i + 1]
  local previous = redis.call('SET', key, token, 'NX', 'GET', 'EX', ARGV[1])
  if (not previous) or previous == token then owned[i] = 1 else owned[i] = 0 end
end
return owned
"""


class RedisDedup:
    """Claims shared by every ingest instance, expiring after Slack's retry window."""

    def __init__(self, settings: RedisSettings, ttl_s: int) -> None:
        self._redis = aioredis.Redis.from_url(settings.url, socket_timeout=5, socket_connect_timeout=5)
        self._prefix = f"{settings.key_prefix}ingest:event:"
        self._ttl_s = ttl_s
        self._claim_script = self._redis.register_script(_CLAIM_BATCH)

    async def claim(self, claims: Sequence[Claim]) -> list[bool]:
        if not claims:
            return []
        keys = [self._prefix + event_id for event_id, _ in claims]
        owned = await self._claim_script(keys=keys, args=[self._ttl_s, *(token for _, token in claims)])
        return [bool(flag) for flag in owned]

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (aioredis.RedisError, OSError):
            return False

    async def close(self) -> None:
        await self._redis.aclose()


class MemoryDedup:
    """Claims in this process only (bounded, expiring): for one local process without Redis."""

    def __init__(self, ttl_s: float, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._expiry: OrderedDict[str, tuple[float, str]] = OrderedDict()

    async def claim(self, claims: Sequence[Claim]) -> list[bool]:
        return [self.claim_one(event_id, token) for event_id, token in claims]

    def claim_one(self, event_id: str, token: str) -> bool:
        now = self._clock()
        while self._expiry and (
            next(iter(self._expiry.values()))[0] <= now or len(self._expiry) >= self._max_entries
        ):
            self._expiry.popitem(last=False)
        held = self._expiry.get(event_id)
        if held is not None:
            return held[1] == token
        self._expiry[event_id] = (now + self._ttl_s, token)
        return True

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._expiry.clear()
