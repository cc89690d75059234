"""A per-user token bucket in Redis, shared by every notifier instance.

A Lua script refills and takes in one atomic step, so two instances deciding for the same
person at the same moment cannot both spend the last token. Time comes from the caller's
clock (not Redis' `TIME`) so that tests and replays control it; an instance whose clock runs
behind simply does not refill.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

_TAKE = """
local now = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate)
  ts = now
end
local allowed = 0
local wait = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  wait = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'ts', string.format('%.6f', ts))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 60000)
return {allowed, string.format('%.6f', wait)}
"""


@dataclass(frozen=True)
class Take:
    """The bucket's answer: a token was spent, or how long until one is available."""

    allowed: bool
    wait_s: float


class TokenBucket:
    """`burst` DMs at once per user, refilled at `rate_per_s`."""

    def __init__(self, client: aioredis.Redis, prefix: str, rate_per_s: float, burst: int) -> None:
        self._redis = client
        self._prefix = prefix
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._take = client.register_script(_TAKE)

    def key(self, user: str) -> str:
        return f"{self._prefix}bucket:{{{user}}}"

    async def take(self, user: str, now: float) -> Take:
        return (await self.take_many([user], now))[0]

    async def take_many(self, users: Sequence[str], now: float) -> list[Take]:
        """One token per entry, in order (a user listed twice spends twice), one round trip."""
        if not users:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for user in users:
                await self._take(
                    keys=[self.key(user)], args=[repr(now), self.rate_per_s, self.burst, 1], client=pipe
                )
            raw = await pipe.execute()
        return [Take(bool(int(allowed)), float(wait)) for allowed, wait in raw]
