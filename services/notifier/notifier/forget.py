"""Forgetting a person in what the notifier keeps: Redis state and the per-person topics.

`beepgpt forget <user>` (`offline/offline/forget.py`) runs these beside the scorer's part
(`scorer.forget`), and docs/operations.md ("What lives where") lists every stored item:

- preferences: a tombstone (a null value) for their key on the compacted `user.preferences`;
  every reader drops the key (`CompactedTable`) and compaction deletes the older records.
- feedback: a tombstone for their key on `feedback` (keyed by user): the scorers forget their
  clicks at once and on every replay. The topic is not compacted, so the records themselves go
  with its retention (90 days).
- suggestions: a tombstone for their key on the compacted `user.suggestions` (topics drawn from
  their conversations, `beepgpt suggest --publish`): the Slack app stops showing them at once.
- Redis (the notifier's): held alerts, the digest in flight, the digest queue entry and lock,
  dedup marks, daily budgets and the rate-limit bucket (`forget_redis`; the key layout is the
  one the notifier's stores define).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from pydantic import BaseModel

from beepgpt.contracts import conversation_id
from beepgpt.kafka import ensure_topics, make_headers
from beepgpt.kafka.compacted import CompactedTable
from beepgpt.kafka.producer import make_producer
from beepgpt.settings import KafkaSettings
from beepgpt.topics import FEEDBACK, PREFERENCES, SUGGESTIONS, Topic
from notifier.budget_counter import BudgetCounter
from notifier.corrections import Corrections
from notifier.dedup import DedupStore, alert_subject
from notifier.held import HeldAlerts
from notifier.rate_limit import TokenBucket

SOURCE = "forget"
_GLOB = re.compile(r"([*?\[\]\\])")


def _glob_escape(text: str) -> str:
    return _GLOB.sub(r"\\\1", text)


@dataclass
class RedisForgotten:
    """How many of each kind of the notifier's Redis entries were removed for one person."""

    held_alerts: int = 0
    """alerts waiting for a digest, the ones of a digest being sent included"""
    digests: int = 0
    """a digest in flight, a queue entry, a sweep lock or entries set aside as unreadable"""
    dedup_keys: int = 0
    budget_keys: int = 0
    rate_limit_keys: int = 0
    sent_dms: int = 0
    """what was kept to correct their sent DMs (notifier/corrections.py)"""


async def _scan_delete(client: aioredis.Redis, pattern: str) -> int:
    """Delete every key matching `pattern`, found with SCAN (never KEYS)."""
    deleted = 0
    batch: list[Any] = []
    async for key in client.scan_iter(match=pattern, count=500):
        batch.append(key)
        if len(batch) >= 500:
            deleted += int(await client.delete(*batch))
            batch = []
    if batch:
        deleted += int(await client.delete(*batch))
    return deleted


async def forget_redis(client: aioredis.Redis, prefix: str, user: str) -> RedisForgotten:
    """Remove everything the notifier keeps in Redis about `user`.

    The keys are the notifier stores' own (`HeldAlerts`, `DedupStore`, `BudgetCounter`,
    `TokenBucket`), built by their key methods; the per-day budget and per-conversation dedup
    keys are found with SCAN on a pattern built the same way."""
    held = HeldAlerts(client, prefix)
    out = RedisForgotten()
    inflight = await client.get(held.inflight_key(user))
    if inflight is not None:
        out.held_alerts += len(json.loads(inflight).get("alerts", []))
    out.held_alerts += int(await client.hlen(held.held_key(user)))
    await client.delete(held.held_key(user))
    out.digests += int(await client.delete(held.inflight_key(user), held.lock_key(user), held.quarantine_key(user)))
    out.digests += int(await client.zrem(held.due_key, user))
    # Patterns: the stores' keys with the person (escaped) and a wildcard for the rest.
    safe_prefix, safe_user = _glob_escape(prefix), _glob_escape(user)
    out.budget_keys = await _scan_delete(client, BudgetCounter(client, safe_prefix).key(safe_user, "*"))
    any_conversation = conversation_id("C0", "0.0")
    dedup = DedupStore(client, safe_prefix, ttl_s=60).key(safe_user, any_conversation)
    dedup_pattern = dedup.removesuffix(alert_subject(any_conversation)) + "*"
    out.dedup_keys = await _scan_delete(client, dedup_pattern)
    out.sent_dms = await Corrections(client, prefix, change_ttl_s=60, sent_ttl_s=60).forget_user(user)
    out.rate_limit_keys = int(
        await client.delete(TokenBucket(client, prefix, rate_per_s=1.0, burst=1).key(user))
    )
    return out


@dataclass
class TopicForgotten:
    topic: str
    records: int
    """the person's records read back from the topic (before the tombstone)"""
    tombstone: bool
    note: str = ""


async def _records_of(kafka: KafkaSettings, topic: Topic, user: str, timeout: float) -> int:
    """How many live records `user` has on `topic`, read from the beginning."""
    seen = 0

    async def count(key: str, before: BaseModel | None, after: BaseModel | None) -> None:
        nonlocal seen
        if key == user:
            seen = seen + 1 if after is not None else 0  # a tombstone already forgot the earlier ones

    table: CompactedTable[BaseModel] = CompactedTable(kafka, topic, on_change=count)
    await table.start(timeout)
    await table.stop()
    return seen


async def forget_topics(kafka: KafkaSettings, user: str, timeout: float = 60.0) -> tuple[TopicForgotten, ...]:
    """Tombstones for `user` on `user.preferences`, `feedback` and `user.suggestions` (all keyed
    by user id), in that order."""
    topics = (PREFERENCES, FEEDBACK, SUGGESTIONS)
    await ensure_topics(kafka, list(topics))
    found = {t.name: await _records_of(kafka, t, user, timeout) for t in topics}
    producer = make_producer(kafka, SOURCE)
    await producer.start()
    try:
        for topic in topics:
            await producer.send_and_wait(
                topic.name, value=None, key=user.encode(), headers=make_headers(SOURCE)
            )
    finally:
        await producer.stop()
    days = FEEDBACK.retention.days if FEEDBACK.retention is not None else None
    feedback_note = f"not compacted: the records themselves expire with its retention ({days} days)"
    compacted = "compacted: older records go"
    return (
        TopicForgotten(PREFERENCES.name, found[PREFERENCES.name], True, compacted),
        TopicForgotten(FEEDBACK.name, found[FEEDBACK.name], True, feedback_note),
        TopicForgotten(SUGGESTIONS.name, found[SUGGESTIONS.name], True, compacted),
    )
