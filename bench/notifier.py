"""Notifier benchmark: candidates decided per second with Redis, and the decision latency.

Everything real: a Tansu broker started here, the machine's Redis (or one started here), the
Slack stand-in in its own process (so its CPU is not counted against the notifier's event loop,
though it shares the machine), and one notifier instance with its default limits.

The workload is shaped like the scorer's output: every conversation update re-proposes the same
people, so most candidates are repeats. 1,000 people (10% not opted in) each get 6 conversations
x 5 updates = 30 candidates; with the default bucket (3 at once) each opted-in person gets 3
DMs, 3 alerts queued for a digest and 24 duplicates.

- `decisions_per_s`: candidates decided (read, deduplicated/rate-limited/sent, decision
  acknowledged on `notifications.sent`, offsets committed), from the first decision to the last.
- `dms_per_s`: DMs posted to the stand-in in that time (each one also pays conversations.open
  once per person and chat.getPermalink).
- `decision_latency_p50_ms` / `_p99_ms`: from reading a candidate to its decision being
  acknowledged by the broker, Slack send included, interpolated from the service's histogram as
  Prometheus' `histogram_quantile` would.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from beepgpt.contracts import Candidate, Preferences, PreviewLine
from beepgpt.kafka import EventProducer, ensure_topics
from beepgpt.settings import KafkaSettings, RedisSettings, SlackSettings
from beepgpt.topics import ALL_TOPICS, CANDIDATES, PREFERENCES
from devstack.local_stack import Broker, RedisServer, forget_keys, redis_answers
from devstack.slack_standin.identity import DEFAULT_BOT_TOKEN
from notifier.service import Notifier
from notifier.settings import NotifierSettings

USERS = 1_000
NOT_OPTED_IN = 0.10
CONVERSATIONS = 6
UPDATES = 5
TOTAL = USERS * CONVERSATIONS * UPDATES
AUTHORS = ["U0ALICE", "U0BOB", "U0CAROL", "U0DAVE"]
LATENCY = "beepgpt_notifier_decision_latency_seconds"


def record(metric: str, value: float, unit: str) -> dict[str, Any]:
    return {"benchmark": "notifier", "metric": metric, "value": round(value, 3), "unit": unit}


def user_id(i: int) -> str:
    return f"U0BENCH{i:05d}"


def candidates() -> list[Candidate]:
    """Updates arrive round-robin over conversations, as a live workspace would produce them."""
    out: list[Candidate] = []
    for update in range(1, UPDATES + 1):
        for conversation in range(CONVERSATIONS):
            channel = f"C0CHAN{conversation:03d}"
            first_ts = f"1700000{conversation:03d}.000100"
            for i in range(USERS):
                out.append(
                    Candidate(
                        user=user_id(i),
                        conversation_id=f"{channel}:{first_ts}",
                        version=update,
                        channel=channel,
                        latest_ts=f"1700001{update:03d}.000200",
                        score=0.8,
                        reason="interest",
                        explanation="you reply in threads like this one (p=0.80)",
                        preview=[
                            PreviewLine(
                                user=AUTHORS[(conversation + n) % len(AUTHORS)],
                                text=f"<@{AUTHORS[n % len(AUTHORS)]}> update {update}: shall we move to Kafka?",
                                ts=f"1700001{update:03d}.00020{n}",
                            )
                            for n in range(2)
                        ],
                    )
                )
    return out


def workspace_files(directory: Path) -> tuple[Path, Path]:
    users = [{"id": a, "name": a[3:].lower(), "real_name": a[3:].title()} for a in AUTHORS]
    users += [{"id": user_id(i), "name": f"bench{i}", "real_name": f"Bench {i}"} for i in range(USERS)]
    channels = [{"id": f"C0CHAN{c:03d}", "name": f"chan-{c}"} for c in range(CONVERSATIONS)]
    users_path, channels_path = directory / "users.json", directory / "channels.json"
    users_path.write_text(json.dumps(users))
    channels_path.write_text(json.dumps(channels))
    return users_path, channels_path


def start_standin(directory: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    users_path, channels_path = workspace_files(directory)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devstack.slack_standin",
            "--port",
            "0",
            "--users",
            str(users_path),
            "--channels",
            str(channels_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.kill()
        raise RuntimeError("the Slack stand-in did not start")
    return process, json.loads(line)


def histogram() -> dict[float, float]:
    """Cumulative bucket counts of the decision latency histogram (le -> count)."""
    buckets: dict[float, float] = {}
    for metric in REGISTRY.collect():
        if metric.name == LATENCY:
            for sample in metric.samples:
                if sample.name == f"{LATENCY}_bucket":
                    buckets[float(sample.labels["le"])] = sample.value
    return buckets


def quantile(buckets: dict[float, float], q: float) -> float:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket holding rank q."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 0.0)
        lower, below = bound, count
    return lower


async def publish_workload(kafka: KafkaSettings) -> None:
    async with EventProducer(kafka, "bench") as producer:
        futures = []
        for i in range(USERS):
            prefs = Preferences(user=user_id(i), opted_in=i >= USERS * NOT_OPTED_IN)
            futures.append(await producer.send_soon(PREFERENCES, prefs.user, prefs))
        for candidate in candidates():
            futures.append(await producer.send_soon(CANDIDATES, candidate.user, candidate))
        await asyncio.gather(*futures)


async def measure(kafka: KafkaSettings, redis: RedisSettings, slack: SlackSettings) -> list[dict[str, Any]]:
    settings = NotifierSettings(group_id=f"bench-{uuid.uuid4().hex[:6]}")  # the defaults
    notifier = Notifier(kafka, redis, slack, settings)
    before = histogram()
    await notifier.start()
    try:
        while notifier.decided == 0:
            await asyncio.sleep(0.01)
        started, first = time.perf_counter(), notifier.decided
        deadline = started + 600
        while notifier.decided < TOTAL:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"decided {notifier.decided} of {TOTAL} candidates")
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
    finally:
        await notifier.stop()
    after = histogram()
    window = {le: after[le] - before.get(le, 0.0) for le in after}
    sent = int(REGISTRY.get_sample_value("beepgpt_notifier_decisions_total", {"outcome": "sent"}) or 0)
    return [
        record("decisions_per_s", (TOTAL - first) / elapsed, "candidates/s"),
        record("dms_per_s", sent / elapsed, "DMs/s"),
        record("decision_latency_p50_ms", quantile(window, 0.50) * 1000, "ms"),
        record("decision_latency_p99_ms", quantile(window, 0.99) * 1000, "ms"),
        record("candidates", TOTAL, "candidates"),
        record("dms_sent", sent, "DMs"),
    ]


async def run() -> list[dict[str, Any]]:
    broker = await asyncio.to_thread(Broker.start)  # it probes the broker with its own loop
    own_redis: RedisServer | None = None
    url = os.environ.get("BEEPGPT_REDIS_URL", "redis://127.0.0.1:6379/0")
    if not redis_answers(url):
        own_redis = RedisServer.start()
        url = own_redis.url
    # A benchmark's Redis holds nothing worth keeping: the notifier may run on one without disk.
    redis = RedisSettings(url=url, key_prefix=f"bench:{uuid.uuid4().hex[:8]}:", allow_ephemeral=True)
    directory = Path(tempfile.mkdtemp(prefix="beepgpt-bench-notifier-"))
    standin, info = start_standin(directory)
    try:
        kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers, idempotence=False, partitions=6)
        await ensure_topics(kafka, ALL_TOPICS)
        await publish_workload(kafka)
        slack = SlackSettings(slack_bot_token=DEFAULT_BOT_TOKEN, api_url=info["api_url"])
        return await measure(kafka, redis, slack)
    finally:
        standin.terminate()
        standin.wait(timeout=10)
        await asyncio.to_thread(forget_keys, url, redis.key_prefix)
        if own_redis is not None:
            own_redis.stop()
        broker.stop()


if __name__ == "__main__":
    for row in asyncio.run(run()):
        print(row)
