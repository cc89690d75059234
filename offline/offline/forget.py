"""`beepgpt forget <user>`: remove a person's stored data from every service and say what went.

Each service forgets what it keeps with its own code: the notifier its Redis state and the
per-person topics (`notifier.forget`), the scorer the saved model versions given with
`--model-dir` (`scorer.forget`); this command runs them in turn and prints one summary.
docs/operations.md ("What lives where") lists every stored item and its retention.

Not removed here: their records in the delete-retention topics (`slack.messages`,
`conversations`, `notifications.candidates`, `notifications.sent`) expire with those topics'
retention.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from beepgpt.redis_client import redis_client
from beepgpt.settings import KafkaSettings, RedisSettings
from beepgpt.topics import ALL_TOPICS, FEEDBACK
from notifier.forget import RedisForgotten, TopicForgotten, forget_redis, forget_topics
from scorer.forget import NoModel, forget_model_versions, model_versions


@dataclass
class Forgotten:
    user: str
    preferences: TopicForgotten | None = None
    feedback: TopicForgotten | None = None
    suggestions: TopicForgotten | None = None
    redis: RedisForgotten | None = None
    models: dict[str, bool] = field(default_factory=dict)
    """model directory → whether it held anything about the person"""
    notes: list[str] = field(default_factory=list)



async def forget(
    user: str,
    kafka: KafkaSettings,
    redis: RedisSettings,
    model_dirs: Sequence[Path] = (),
    timeout: float = 60.0,
) -> Forgotten:
    try:
        versions = model_versions(model_dirs)
    except NoModel as error:
        raise SystemExit(f"beepgpt forget: {error}") from None
    out = Forgotten(user)
    out.preferences, out.feedback, out.suggestions = await forget_topics(kafka, user, timeout)
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
    for topic in (done.preferences, done.feedback, done.suggestions):
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
