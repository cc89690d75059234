"""At most one DM per (user, conversation): a Redis key taken with an atomic set-if-absent.

A thread and the channel conversation its parent opened count as one here (`alert_subject`):
live, the parent arrives before anyone replies, so it opens a channel conversation and then
also starts its thread (the sessionizer gives the thread its parent, as in history). Both are
about the same opening message, and a DM for one already points the person at the other.

The key is taken *before* the send and says who took it and how far they got, so that a batch
redone after a Redis outage, a crash or a rebalance can tell "my own unfinished work" from "a
duplicate" (docs/notifications.md):

    claim|<record>|<owner>                  taken by <owner> while deciding/sending <record>
    done|<record>|<outcome>|<channel>|<ts>  decided: sent (with the DM's ts), held or queued

`<record>` names the Kafka record (group, partition, offset): the same candidate redelivered is
the same record; a duplicate candidate is another record. `<owner>` is one notifier process,
alive while its `owner:<id>` key is. The key is released only when a send failed for good.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import redis.asyncio as aioredis

from beepgpt.contracts import alert_subject as alert_subject  # the contract's rule; the key uses it

StateKind = Literal["claim", "done"]

_SEP = "|"


@dataclass(frozen=True)
class ClaimState:
    """What a dedup key holds."""

    kind: StateKind
    record: str
    owner: str = ""
    outcome: str = ""
    dm_channel: str = ""
    dm_ts: str = ""

    def encode(self) -> str:
        if self.kind == "claim":
            return _SEP.join(("claim", self.record, self.owner))
        return _SEP.join(("done", self.record, self.outcome, self.dm_channel, self.dm_ts))

    @classmethod
    def parse(cls, raw: str) -> ClaimState:
        """Read a stored value; anything unreadable counts as a foreign, finished claim."""
        parts = raw.split(_SEP)
        if parts[0] == "claim" and len(parts) == 3:
            return cls("claim", parts[1], owner=parts[2])
        if parts[0] == "done" and len(parts) == 5:
            return cls("done", parts[1], outcome=parts[2], dm_channel=parts[3], dm_ts=parts[4])
        return cls("done", record="?", outcome="unknown")


def record_id(group: str, topic: str, partition: int, offset: int) -> str:
    """The identity of one Kafka record for one consumer group (no separator characters)."""
    return f"{group}:{topic}:{partition}:{offset}".replace(_SEP, "/")


def conversation_marker(user: str, conversation_id: str) -> str:
    """A short id of (user, conversation) that a posted DM carries, so it can be found again."""
    return hashlib.sha1(f"{user}\x00{conversation_id}".encode()).hexdigest()[:20]


# Compare-and-set helpers: only the holder named in the value may move or drop the key.
_FINISH = """
local current = redis.call('GET', KEYS[1])
if current and string.sub(current, 1, string.len(ARGV[1])) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
  return 1
end
if not current then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""

_RELEASE = """
local current = redis.call('GET', KEYS[1])
if current and string.sub(current, 1, string.len(ARGV[1])) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True)
class Finish:
    """Move a claim of `record` on (user, conversation) to its final state."""

    user: str
    conversation_id: str
    state: ClaimState


class DedupStore:
    """The dedup keys and the liveness keys of the owners that hold claims."""

    def __init__(self, client: aioredis.Redis, prefix: str, ttl_s: int) -> None:
        self._redis = client
        self._prefix = prefix
        self._ttl_s = ttl_s
        self._finish = client.register_script(_FINISH)
        self._release = client.register_script(_RELEASE)

    def key(self, user: str, conversation_id: str) -> str:
        return f"{self._prefix}dedup:{{{user}}}:{alert_subject(conversation_id)}"

    def owner_key(self, owner: str) -> str:
        return f"{self._prefix}owner:{owner}"

    async def claim_many(self, claims: Sequence[tuple[str, str, ClaimState]]) -> list[ClaimState | None]:
        """Set-if-absent every (user, conversation) key; None where this call took it.

        `SET NX GET` answers atomically "was it free?" and "who holds it?" in one round trip,
        and all claims of a batch travel in one pipeline (Redis runs them in order, so two
        copies of one candidate inside a batch still resolve to one winner).
        """
        if not claims:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for user, conversation_id, state in claims:
                pipe.set(self.key(user, conversation_id), state.encode(), nx=True, get=True, ex=self._ttl_s)
            raw = await pipe.execute()
        return [None if value is None else ClaimState.parse(_text(value)) for value in raw]

    async def finish_many(self, finishes: Sequence[Finish]) -> None:
        """Record final states for claims this process holds (or re-creates after a Redis loss)."""
        if not finishes:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for finish in finishes:
                prefix = ClaimState("claim", finish.state.record, owner="").encode()
                await self._finish(
                    keys=[self.key(finish.user, finish.conversation_id)],
                    args=[prefix, finish.state.encode(), self._ttl_s],
                    client=pipe,
                )
            await pipe.execute()

    async def release(self, user: str, conversation_id: str, record: str) -> bool:
        """Drop a claim after a definite failure, so a later candidate may try again."""
        prefix = ClaimState("claim", record, owner="").encode()
        return bool(await self._release(keys=[self.key(user, conversation_id)], args=[prefix]))

    async def heartbeat(self, owner: str, ttl_s: int) -> None:
        """Say this owner is alive: its claims are unfinished work, not orphans."""
        await self._redis.set(self.owner_key(owner), b"1", ex=ttl_s)

    async def retire(self, owner: str) -> None:
        await self._redis.delete(self.owner_key(owner))

    async def alive(self, owners: Sequence[str]) -> dict[str, bool]:
        if not owners:
            return {}
        unique = sorted(set(owners))
        found = await self._redis.mget([self.owner_key(o) for o in unique])
        return {owner: value is not None for owner, value in zip(unique, found, strict=True)}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
