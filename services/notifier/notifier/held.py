"""Alerts waiting for a digest: held by quiet hours or a pause, over the rate limit, over the
person's daily budget, or parked after Slack stayed unavailable. They live in Redis so any
instance can deliver them.

    held:{user}              hash  conversation id -> HeldAlert JSON
    digest:due               zset  user -> when the sweep should look at them
    digest:inflight:{user}   the digest being sent (its id, owner and alerts), until it is sent
    digest:lock:{user}       which instance is sweeping this user right now

A digest is taken atomically (held -> inflight) before it is sent, and the inflight record is
dropped only after the send; an instance that dies in between leaves it for the next sweep,
which first asks Slack whether the digest was posted (docs/notifications.md: never lost or duplicated).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, ValidationError

from beepgpt.contracts import Candidate

log = logging.getLogger(__name__)

HoldReason = Literal["held", "rate_limited", "over_budget", "retry"]
"""Why an alert waits. `over_budget` alerts wait for the person's next digest time; the others go
with the first digest the person may get (and take any over-budget ones along: that digest is
a DM anyway, so they add no interruption)."""


class HeldAlert(BaseModel):
    """A candidate waiting for the digest, with why it waits and when it may go."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    candidate: Candidate
    record: str
    reason: HoldReason
    why: str
    due: float
    held_at: float


class Inflight(BaseModel):
    """A digest taken for sending: the sweep that finds it resumes it instead of building another."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    owner: str
    started_at: float
    alerts: list[HeldAlert]


# KEYS: held, inflight, due; ARGV: user, id, owner, now
_BEGIN = """
local current = redis.call('GET', KEYS[2])
if current then
  return current
end
local held = redis.call('HVALS', KEYS[1])
if #held == 0 then
  redis.call('ZREM', KEYS[3], ARGV[1])
  return false
end
-- Spliced as text: a cjson round trip would turn empty lists into objects and round floats.
local inflight = '{"id":' .. cjson.encode(ARGV[2]) .. ',"owner":' .. cjson.encode(ARGV[3])
  .. ',"started_at":' .. ARGV[4] .. ',"alerts":[' .. table.concat(held, ',') .. ']}'
redis.call('SET', KEYS[2], inflight)
redis.call('DEL', KEYS[1])
return inflight
"""

# KEYS: held, inflight, due; ARGV: user, id
_FINISH = """
local current = redis.call('GET', KEYS[2])
if current and cjson.decode(current)['id'] == ARGV[2] then
  redis.call('DEL', KEYS[2])
end
local held = redis.call('HVALS', KEYS[1])
if #held == 0 then
  redis.call('ZREM', KEYS[3], ARGV[1])
  return 0
end
local due = nil
for _, raw in ipairs(held) do
  local d = tonumber(cjson.decode(raw)['due'])
  if due == nil or d < due then
    due = d
  end
end
redis.call('ZADD', KEYS[3], due, ARGV[1])
return #held
"""

_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


# Set aside everything held for one person that could not be read (KEYS: held, inflight,
# quarantine, due; ARGV: user, reason, now, ttl_s): their entries move into one quarantine hash
# (`held:<conversation id>` and `inflight` fields, with the reason and time), so an operator can
# read what went wrong while everyone else's digests go on; returns how many entries moved.
_QUARANTINE = """
local held = redis.call('HGETALL', KEYS[1])
local moved = 0
for i = 1, #held, 2 do
  redis.call('HSET', KEYS[3], 'held:' .. held[i], held[i + 1])
  moved = moved + 1
end
local inflight = redis.call('GET', KEYS[2])
if inflight then
  redis.call('HSET', KEYS[3], 'inflight', inflight)
  moved = moved + 1
end
redis.call('HSET', KEYS[3], 'reason', ARGV[2], 'at', ARGV[3])
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[4]))
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[4], ARGV[1])
return moved
"""

QUARANTINE_TTL_S = 30 * 24 * 3600
"""How long a set-aside entry is kept for an operator to read (then Redis drops it)."""


class HeldAlerts:
    """The Redis side of holding alerts and handing them to the digest sweep."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._redis = client
        self._prefix = prefix
        self._begin = client.register_script(_BEGIN)
        self._finish = client.register_script(_FINISH)
        self._unlock = client.register_script(_UNLOCK)
        self._quarantine = client.register_script(_QUARANTINE)

    def held_key(self, user: str) -> str:
        return f"{self._prefix}held:{{{user}}}"

    def inflight_key(self, user: str) -> str:
        return f"{self._prefix}digest:inflight:{{{user}}}"

    def lock_key(self, user: str) -> str:
        return f"{self._prefix}digest:lock:{{{user}}}"

    def quarantine_key(self, user: str) -> str:
        return f"{self._prefix}digest:quarantine:{{{user}}}"

    @property
    def due_key(self) -> str:
        return f"{self._prefix}digest:due"

    def hold(self, pipe: aioredis.client.Pipeline, alert: HeldAlert) -> None:
        """Queue an alert on a pipeline (idempotent: one entry per conversation)."""
        user = alert.candidate.user
        pipe.hset(self.held_key(user), alert.candidate.conversation_id, alert.model_dump_json())
        # LT: an earlier due time wins; a new member is added either way.
        pipe.zadd(self.due_key, {user: alert.due}, lt=True)

    async def hold_many(self, alerts: Sequence[HeldAlert]) -> None:
        if not alerts:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for alert in alerts:
                self.hold(pipe, alert)
            await pipe.execute()

    async def due_users(self, now: float, limit: int = 100) -> list[str]:
        raw = await self._redis.zrangebyscore(self.due_key, "-inf", now, start=0, num=limit)
        return [user.decode() if isinstance(user, bytes) else str(user) for user in raw]

    async def pending_users(self) -> int:
        return int(await self._redis.zcard(self.due_key))

    async def expedite(self, user: str, now: float) -> None:
        """Look at a user's held alerts on the next sweep (their preferences just changed)."""
        await self._redis.zadd(self.due_key, {user: now}, xx=True, lt=True)

    async def reschedule(self, user: str, due: float) -> None:
        await self._redis.zadd(self.due_key, {user: due})

    async def lock(self, user: str, owner: str, lease_s: float) -> bool:
        return bool(await self._redis.set(self.lock_key(user), owner, nx=True, px=int(lease_s * 1000)))

    async def unlock(self, user: str, owner: str) -> None:
        await self._unlock(keys=[self.lock_key(user)], args=[owner])

    async def begin(self, user: str, digest_id: str, owner: str, now: float) -> Inflight | None:
        """Move the user's held alerts into an inflight digest, or return the one already there."""
        raw = await self._begin(
            keys=[self.held_key(user), self.inflight_key(user), self.due_key],
            args=[user, digest_id, owner, repr(now)],
        )
        if raw is None:
            return None
        return Inflight.model_validate_json(raw)

    async def finish(self, user: str, digest_id: str) -> int:
        """Forget a sent (or undeliverable) digest; returns how many alerts still wait."""
        left = await self._finish(
            keys=[self.held_key(user), self.inflight_key(user), self.due_key], args=[user, digest_id]
        )
        return int(left)

    async def find_many(self, pairs: Sequence[tuple[str, str]]) -> list[HeldAlert | None]:
        """The held alert of each (user, conversation), if one waits."""
        if not pairs:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for user, conversation_id in pairs:
                pipe.hget(self.held_key(user), conversation_id)
            raw = await pipe.execute()
        return [None if value is None else _readable(user, value) for (user, _), value in zip(pairs, raw, strict=True)]

    async def quarantine(self, user: str, reason: str, now: float) -> int:
        """Set aside what is held for `user` (an entry no code can read: written by a newer
        version, or damaged), so the sweep goes on for everyone else; returns entries moved."""
        moved = await self._quarantine(
            keys=[self.held_key(user), self.inflight_key(user), self.quarantine_key(user), self.due_key],
            args=[user, reason[:500], repr(now), QUARANTINE_TTL_S],
        )
        return int(moved)

    async def held(self, user: str) -> list[HeldAlert]:
        raw = await self._redis.hvals(self.held_key(user))
        return [HeldAlert.model_validate_json(value) for value in raw]


def _readable(user: str, value: bytes | str) -> HeldAlert | None:
    """A held entry, or None when no code here can read it: deciding a new candidate goes on as
    if nothing were held (holding it again overwrites the entry); the digest sweep, which must
    read them all, sets the person's entries aside instead (`quarantine`)."""
    try:
        return HeldAlert.model_validate_json(value)
    except ValidationError as error:
        log.warning("held alert unreadable; decided as if none were held", extra={"user": user, "error": error.title})
        return None
