"""How many real-time DMs each person had today: a Redis counter shared by every notifier instance.

    budget:{user}:<local day>   hash  Kafka record id -> when its DM was allowed

One Lua script checks and takes in one atomic step, so two instances deciding for the same person
at the same moment cannot both spend the last DM of the day. The count is a hash of the records
that spent it rather than a bare INCR so that the same record asking again (a batch redone after a
Redis or Kafka error) is answered "yes, already counted" instead of being counted twice, and so
that an alert Slack did not take can give its DM back. The day is the person's local date
(`budget.budget_day`); the key expires a few days later.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

# Long enough for any local day to be over everywhere (UTC-12 to UTC+14) plus clock skew.
KEY_TTL_S = 3 * 86_400

# KEYS: the person's day; ARGV: record, limit, take (1: spend one, 0: only ask), ttl, now
_TAKE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  return {1, redis.call('HLEN', KEYS[1])}
end
local used = redis.call('HLEN', KEYS[1])
if used >= tonumber(ARGV[2]) then
  return {0, used}
end
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[5])
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  used = used + 1
end
return {1, used}
"""


@dataclass(frozen=True)
class BudgetAsk:
    """One record asking for one of `limit` DMs on the person's `day`; `take=False` only looks."""

    user: str
    day: str
    record: str
    limit: int
    take: bool = True


@dataclass(frozen=True)
class BudgetAnswer:
    """Whether the DM fits in the day (and was counted, for a take), and how many the day has."""

    allowed: bool
    used: int


class BudgetCounter:
    """The per-person, per-local-day count of real-time DMs."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._redis = client
        self._prefix = prefix
        self._take = client.register_script(_TAKE)

    def key(self, user: str, day: str) -> str:
        return f"{self._prefix}budget:{{{user}}}:{day}"

    async def take_many(self, asks: Sequence[BudgetAsk], now: float) -> list[BudgetAnswer]:
        """Answer every ask in order (a person asking twice spends twice), in one round trip."""
        if not asks:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for ask in asks:
                await self._take(
                    keys=[self.key(ask.user, ask.day)],
                    args=[ask.record, ask.limit, 1 if ask.take else 0, KEY_TTL_S, repr(now)],
                    client=pipe,
                )
            raw = await pipe.execute()
        return [BudgetAnswer(bool(int(allowed)), int(used)) for allowed, used in raw]

    async def refund_many(self, spent: Sequence[tuple[str, str, str]]) -> None:
        """Give back the DMs of (user, day, record) that did not go out in real time after all."""
        if not spent:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for user, day, record in spent:
                pipe.hdel(self.key(user, day), record)
            await pipe.execute()

    async def used(self, user: str, day: str) -> int:
        """How many real-time DMs the person had on `day`."""
        return int(await self._redis.hlen(self.key(user, day)))
