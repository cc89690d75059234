"""`beepgpt forget <user>`: remove a person's stored data and say what was removed.

What is removed (docs/operations.md, "What lives where"):

- preferences: a tombstone (a null value) for their key on the compacted `user.preferences`;
  every reader drops the key (`CompactedTable`) and compaction deletes the older records.
- feedback: a tombstone for their key on `feedback` (keyed by user): the scorers forget their
  clicks at once and on every replay. The topic is not compacted, so the records themselves go
  with its retention (90 days).
- Redis (the notifier's): held alerts, the digest in flight, the digest queue entry and lock,
  dedup marks, daily budgets and the rate-limit bucket (`forget_redis`; the key layout is the
  one the notifier's stores define).
- model directories given with `--model-dir`: their activity and profiles (`Activity.forget`).
  Running scorers keep their in-memory copy until the next model swap or restart.

Not removed here: their records in the delete-retention topics (`slack.messages`,
`conversations`, `notifications.candidates`, `notifications.sent`) expire with those topics'
retention.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from pydantic import BaseModel

from beepgpt.contracts import conversation_id
from beepgpt.kafka import ensure_topics, make_headers
from beepgpt.kafka.compacted import CompactedTable
from beepgpt.kafka.producer import make_producer
from beepgpt.redis_client import redis_client
from beepgpt.settings import KafkaSettings, RedisSettings
from beepgpt.topics import ALL_TOPICS, FEEDBACK, PREFERENCES, Topic
from notifier.budget_counter import BudgetCounter
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
    """a digest in flight, a queue entry or a sweep lock"""
    dedup_keys: int = 0
    budget_keys: int = 0
    rate_limit_keys: int = 0


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
    out.digests += int(await client.delete(held.inflight_key(user), held.lock_key(user)))
    out.digests += int(await client.zrem(held.due_key, user))
    # Patterns: the stores' keys with the person (escaped) and a wildcard for the rest.
    safe_prefix, safe_user = _glob_escape(prefix), _glob_escape(user)
    out.budget_keys = await _scan_delete(client, BudgetCounter(client, safe_prefix).key(safe_user, "*"))
    any_conversation = conversation_id("C0", "0.0")
    dedup = DedupStore(client, safe_prefix, ttl_s=60).key(safe_user, any_conversation)
    dedup_pattern = dedup.removesuffix(alert_subject(any_conversation)) + "*"
    out.dedup_keys = await _scan_delete(client, dedup_pattern)
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


@dataclass
class Forgotten:
    user: str
    preferences: TopicForgotten | None = None
    feedback: TopicForgotten | None = None
    redis: RedisForgotten | None = None
    models: dict[str, bool] = field(default_factory=dict)
    """model directory → whether it held anything about the person"""
    notes: list[str] = field(default_factory=list)


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
    """Tombstones for `user` on `user.preferences` and `feedback` (both keyed by user id)."""
    await ensure_topics(kafka, [PREFERENCES, FEEDBACK])
    found = {t.name: await _records_of(kafka, t, user, timeout) for t in (PREFERENCES, FEEDBACK)}
    producer = make_producer(kafka, SOURCE)
    await producer.start()
    try:
        for topic in (PREFERENCES, FEEDBACK):
            await producer.send_and_wait(
                topic.name, value=None, key=user.encode(), headers=make_headers(SOURCE)
            )
    finally:
        await producer.stop()
    days = FEEDBACK.retention.days if FEEDBACK.retention is not None else None
    feedback_note = f"not compacted: the records themselves expire with its retention ({days} days)"
    return (
        TopicForgotten(PREFERENCES.name, found[PREFERENCES.name], True, "compacted: older records go"),
        TopicForgotten(FEEDBACK.name, found[FEEDBACK.name], True, feedback_note),
    )


def _activity() -> Any:
    try:
        from scorer.interest import activity
    except ModuleNotFoundError as error:
        raise SystemExit(
            f"beepgpt forget --model-dir needs the 'services/scorer' package ({error.name} is missing)"
        ) from error
    return activity


def model_versions(paths: Sequence[Path]) -> list[Path]:
    """The model versions under `paths` (a version, or a directory of versions), each once.

    Checked before anything is removed, so a mistyped directory stops the command early."""
    activity_file = _activity().ACTIVITY_FILE
    out: list[Path] = []
    for path in paths:
        if (path / activity_file).exists():
            found = [path]
        elif path.is_dir():
            found = sorted(p for p in path.iterdir() if (p / activity_file).exists())
        else:
            found = []
        if not found:
            raise SystemExit(f"beepgpt forget: {path} holds no model activity ({activity_file})")
        # a `current` symlink to a version already listed is the same version
        out.extend(real for real in (p.resolve() for p in found) if real not in out)
    return out


def forget_model_versions(versions: Sequence[Path], user: str) -> dict[str, bool]:
    """Remove `user` from each version's activity and profiles; version → whether it held any.

    The files are written next to the old ones and moved over them, so a scorer loading the
    version meanwhile reads either the old files or the new ones, never half of one."""
    activity = _activity()
    out: dict[str, bool] = {}
    for version in versions:
        loaded = activity.Activity.load(version)
        found = bool(loaded.forget(user))
        if found:
            with tempfile.TemporaryDirectory(dir=version, prefix=".forget-") as staging:
                loaded.save(Path(staging))
                for name in (activity.PROFILES_FILE, activity.ACTIVITY_FILE):
                    os.replace(Path(staging) / name, version / name)
        out[str(version)] = found
    return out


async def forget(
    user: str,
    kafka: KafkaSettings,
    redis: RedisSettings,
    model_dirs: Sequence[Path] = (),
    timeout: float = 60.0,
) -> Forgotten:
    versions = model_versions(model_dirs)
    out = Forgotten(user)
    out.preferences, out.feedback = await forget_topics(kafka, user, timeout)
    client = redis_client(redis)
    try:
        out.redis = await forget_redis(client, redis.key_prefix, user)
    finally:
        await client.aclose()
    out.models = forget_model_versions(versions, user)
    out.notes.append(
        "running scorers keep their in-memory copy of the model's activity until the next model swap or restart"
    )
    if not model_dirs:
        out.notes.append("no --model-dir given: model directories were not changed")
    expiring = ", ".join(
        f"{t.name} ({t.retention.days} days)"
        for t in ALL_TOPICS
        if t.retention is not None and t is not FEEDBACK
    )
    out.notes.append(f"their records in {expiring} expire with those topics' retention")
    return out


def summary(done: Forgotten) -> str:
    lines = [f"forgot {done.user}:"]
    for topic in (done.preferences, done.feedback):
        if topic is not None:
            lines.append(f"  {topic.topic:<18} {topic.records} record(s), tombstone written ({topic.note})")
    if done.redis is not None:
        for name, count in asdict(done.redis).items():
            lines.append(f"  redis {name:<12} {count} removed")
    for directory, found in done.models.items():
        lines.append(f"  model {directory}: {'removed' if found else 'nothing about them'}")
    lines.extend(f"note: {note}" for note in done.notes)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="beepgpt forget",
        description="Remove a person's preferences, feedback, held alerts and Redis state, and their"
        " profile in the model directories given; print what was removed.",
    )
    parser.add_argument("user", help="their Slack user id (U…)")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "--model-dir",
        type=Path,
        action="append",
        default=[],
        help="a model directory, or a directory of model versions (repeatable)",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to read each topic")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not args.yes:
        if not sys.stdin.isatty():
            print("beepgpt forget: not a terminal; pass --yes to confirm", file=sys.stderr)
            return 2
        answer = input(f"Forget everything stored about {args.user}? This cannot be undone [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing removed", file=sys.stderr)
            return 1
    done = asyncio.run(forget(args.user, KafkaSettings(), RedisSettings(), args.model_dir, args.timeout))
    print(json.dumps(asdict(done), indent=2) if args.json else summary(done))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
