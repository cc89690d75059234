"""Whole-pipeline load benchmark: Slack messages in over Socket Mode, DMs out, at rising rates.

Everything real and as in production, on one machine: a Tansu broker and Redis (`LocalStack`),
the Slack stand-in (in this process: it plays Slack's side of Socket Mode and the Web API the
notifier posts DMs to), the four services as separate `python -m <service>` processes, the
interest model of `models/demo` (trained here if missing) and the topic matcher, with the
scorer in its default early-alert mode (it scores every `updated` event). Everyone in the
example workspace has opted in and three people follow topics, as in the demo; the per-person
rate limit and daily budget are lifted so that a DM is never held back for a digest (the limits
are not what is measured here).

Two loads, one after the other, through the same services:

- the generated workspace: the example workspace's own chat (`data/`, median about 38 words a
  message), records as they always were (`step_<rate>_...`, `max_sustained_msgs_per_s`, ...);
- real chat: the messages of elmlang #general (`REAL_CHAT`: `../shared/data/real-chat/
  elmlang-general` beside the checkout, read at run time with the project's own reader and never
  copied into the repository; median about 13 words), records prefixed `real_chat_`. Its speakers
  are played by the example workspace's people (in each conversation, the k-th person to speak
  or be mentioned becomes the k-th of the people, rotated from one conversation to the next), so
  the same people are opted in, follow the same topics and get the DMs; only the chat differs.
  Without the folder the run fails naming the path (no figures are made up for it).

Why both: the scorer embeds every message and the embedding model is the pipeline's limit
(bench/NOTES.md), and its cost grows with a message's length; the generated workspace's
messages are about three times as long as a real workspace's, so its saturation point alone
understates what a real workspace would see. `median_words_per_message` and
`real_chat_median_words_per_message` measure the two loads' lengths (whitespace-separated words
of the messages replayed); `messages_per_conversation` and `real_chat_messages_per_conversation`
their conversations' mean size.

Each load is its chat re-timed: its conversations (cut the same way for both: per channel by the
10-minute gap, at most 12 messages, threads flattened into their channel, conversations of one
message left out) are played in many fresh channels ("lanes") at once, one message about every
second inside a conversation and a silence longer than the sessionizer's gap (5 s here,
compressed like the demo's) between two conversations of a lane. The number of lanes sets the
rate. Each message gets a fresh `ts` when it is pushed, so the ts is the moment Slack hands it to
ingest. A 10 s warm-up (not reported) lets the services load what they load lazily; then each
step offers one rate for `STEP_S` seconds (BEEPGPT_BENCH_PIPELINE_STEP_S, default 20; the rates
from BEEPGPT_BENCH_PIPELINE_RATES) and waits (at most `DRAIN_CAP_S`) until every service has
caught up, so that the next step starts from an empty pipeline. Between the two loads the run
waits (at most `SETTLE_CAP_S`) until nothing is left anywhere, so the real chat starts from an
empty pipeline too (and fails rather than measure on top of a backlog).

Per step (`step_<rate>_...` records; `real_chat_step_<rate>_...` for real chat):

- `offered_msgs_per_s`: messages pushed ÷ step duration (the planned rate, Poisson-like around
  the target); `push_ack_p99_ms`: ingest's Socket Mode ack as Slack sees it.
- `sustained_msgs_per_s`: messages of the step through the pipeline ÷ the time from the first
  of them out of the sessionizer to the last one out or the last DM, whichever is later, once
  nothing is left anywhere (every message on `conversations`, the scorer's and notifier's groups
  committed to the end, ingest's buffer empty). Equals the offered rate while the pipeline keeps
  up; below it, the backlog stretched the step. Without a drain within the cap: the share the
  sessionizer and the scorer got through ÷ the time until the cap.
- `e2e_latency_p50_ms` / `_p99_ms`: for every DM of the step, from the message that triggered it
  (its ts: the push to ingest) to the DM's ts at the stand-in (when Slack took chat.postMessage).
  When the step did not drain within the cap these are lower bounds (`drained` = 0).
- `dms`: DMs sent for the step's conversations.
- `max_lag_<service>`: the largest backlog seen during the step: ingest's buffer (events acked or
  taken, not yet in Kafka, from its /metrics), the sessionizer's position lag (its /metrics: its
  committed offsets trail open conversations on purpose, so they would mislead), and records the
  scorer's and notifier's groups have not committed (group offsets against the records this
  benchmark has read from those topics: Tansu's ListOffsets answers were seen to trail batched
  writes, which gave negative lags).
- `peak_rss_mib_<service>`: the largest resident set sampled during the step (/proc VmRSS);
  `peak_rss_mib_<service>` without a step is the process's lifetime peak (VmHWM).

For each load, steps go up until one saturates (sustained below 90 % of offered, p99 over 5 s,
or no drain within the cap); if that happens below `TARGET_RATE` one more step runs at the
target so that its figures are on record too. Summary records (`real_chat_` prefixed for real
chat): `max_sustained_msgs_per_s`, `saturation_offered_msgs_per_s` (0 when no step saturated)
and the latency at the target rate; the lifetime peaks (VmHWM) are read after the generated
load for its records, and at the end (both loads) for real chat's. A plot of latency and
sustained rate against offered rate, both loads, goes to bench/pipeline.png.

The load generator, the stand-in and the topic watcher share the machine (2 cores) with the
pipeline, as Slack would not; figures are therefore conservative.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pandas as pd
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

from beepgpt import topics
from beepgpt.kafka import EventProducer, ensure_topics
from beepgpt.message_table import slack_ts
from beepgpt.settings import KafkaSettings
from devstack.demo import ensure_model
from devstack.example_workspace import ExampleWorkspace
from devstack.local_stack import LocalStack
from devstack.processes import SERVICES, Services
from devstack.slack_standin import SlackStandin
from devstack.slack_standin.workspace import Channel, Workspace
from offline.tables import load_table

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / "models" / "demo"
# Real chat, beside the checkout; it has no data licence, so it is read from there, never copied.
REAL_CHAT = ROOT.parent / "shared" / "data" / "real-chat" / "elmlang-general"
PLOT = Path(__file__).parent / "pipeline.png"
RATES = tuple(
    float(r) for r in os.environ.get("BEEPGPT_BENCH_PIPELINE_RATES", "25,50,100,200,400,800").split(",")
)
TARGET_RATE = 200.0
STEP_S = float(os.environ.get("BEEPGPT_BENCH_PIPELINE_STEP_S", "20"))
DRAIN_CAP_S = 30.0
SETTLE_CAP_S = 300.0  # between the loads: a saturated last step can leave minutes of backlog
WARMUP_S = 10.0
WARMUP_STEP = 99
POLL_S = 0.5
GAP_S = 5.0  # the sessionizer's gap: the demo's 10 minutes compressed ×120
SPACING_S = 1.0  # mean time between two messages of one conversation
SILENCE_S = GAP_S + 2.0  # between two conversations of a lane: the first one closes
MAX_CONVERSATION = 12
MAX_IN_FLIGHT = 1_000  # Socket Mode envelopes unacked at once (Slack keeps sending meanwhile)
SATURATED_SHARE = 0.9
SATURATED_P99_S = 5.0
SCORER_GROUP = "scorer"
NOTIFIER_GROUP = "notifier"


def record(metric: str, value: float, unit: str) -> dict[str, Any]:
    return {"benchmark": "pipeline", "metric": metric, "value": round(value, 3), "unit": unit}


Conversation = list[tuple[str, str]]  # (user, text) of each message, in order


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# --- the load -------------------------------------------------------------------------------------


def source_conversations(table: pd.DataFrame) -> list[Conversation]:
    """(user, text) runs of a message table, cut by the 10-minute gap and at MAX_CONVERSATION,
    so that replayed conversations have the sizes and wording the chat's own had."""
    out: list[Conversation] = []
    for _, rows in table.groupby("channel", sort=True):
        current: Conversation = []
        previous: float | None = None
        for row in rows.sort_values("ts", kind="stable").itertuples(index=False):
            t = float(row.ts)
            if current and (
                (previous is not None and t - previous > 600) or len(current) >= MAX_CONVERSATION
            ):
                out.append(current)
                current = []
            previous = t
            if str(row.text).strip():
                current.append((str(row.user), str(row.text)))
        if current:
            out.append(current)
    return [c for c in out if len(c) >= 2]


_MENTION = re.compile(r"<@([A-Z0-9]+)(\|[^>]*)?>")


def cast(conversations: list[Conversation], members: Sequence[str]) -> list[Conversation]:
    """The conversations with their people played by `members`: in each conversation the k-th
    person to speak or be mentioned becomes members[(start + k) % n], `start` moving on by one
    each conversation, so turns and mentions keep their shape (up to n people)."""
    return [_cast_one(conversation, members, start) for start, conversation in enumerate(conversations)]


def _cast_one(conversation: Conversation, members: Sequence[str], start: int) -> Conversation:
    roles: dict[str, str] = {}

    def role(user: str) -> str:
        if user not in roles:
            roles[user] = members[(start + len(roles)) % len(members)]
        return roles[user]

    return [
        (role(user), _MENTION.sub(lambda m: f"<@{role(m.group(1))}>", text)) for user, text in conversation
    ]


@dataclass(frozen=True)
class Load:
    """One chat to replay: its conversations and the prefix of its records."""

    name: str
    prefix: str
    conversations: list[Conversation]

    @property
    def median_words(self) -> float:
        return float(statistics.median(len(text.split()) for c in self.conversations for _, text in c))

    @property
    def mean_conversation(self) -> float:
        return statistics.mean(len(c) for c in self.conversations)


def real_chat_load(members: Sequence[str], path: Path = REAL_CHAT) -> Load:
    """elmlang #general read where it lies (never copied), cut like the generated load and
    played by the example workspace's people; fails naming the path when it is not there."""
    if not path.is_dir():
        raise FileNotFoundError(
            f"the pipeline benchmark's real-chat load needs the Slack export at {path} "
            "(../shared/data/real-chat/elmlang-general beside the checkout; it is read there, "
            "never copied into the repository)"
        )
    conversations = source_conversations(load_table(path))
    if not conversations:
        raise ValueError(f"no conversation of two messages or more in {path}")
    return Load("real chat (elmlang #general)", "real_chat_", cast(conversations, members))


@dataclass(frozen=True)
class Planned:
    """One message to push, `at` seconds after its step starts."""

    at: float
    channel: str
    user: str
    text: str


def channel_id(step: int, lane: int) -> str:
    """Fresh channels per step (`C0B<step><lane>`), so steps never share a conversation."""
    return f"C0B{step:02d}{lane:05d}"


def step_of(channel: str) -> int | None:
    return int(channel[3:5]) if channel.startswith("C0B") and channel[3:5].isdigit() else None


def plan_step(
    step: int, rate: float, duration: float, conversations: list[Conversation], rng: random.Random
) -> tuple[list[Planned], list[str]]:
    """Messages of one step at about `rate` per second, and the channels (lanes) they use.

    Each lane plays conversations back to back with a silence between them; lanes start at a
    random point of their cycle, so the rate is steady from the first second.
    """
    mean_len = statistics.mean(len(c) for c in conversations)
    period = mean_len * SPACING_S + SILENCE_S
    lanes = max(1, round(rate * period / mean_len))
    planned: list[Planned] = []
    channels: list[str] = []
    cursor = rng.randrange(len(conversations))
    for lane in range(lanes):
        channel = channel_id(step, lane)
        channels.append(channel)
        t = -rng.uniform(0, period)
        while t < duration:
            conversation = conversations[cursor % len(conversations)]
            cursor += 1
            for user, text in conversation:
                if 0 <= t < duration:
                    planned.append(Planned(t, channel, user, text))
                t += rng.uniform(0.5, 1.5) * SPACING_S
            t += SILENCE_S
    planned.sort(key=lambda p: p.at)
    return planned, channels


# --- what the pipeline did ------------------------------------------------------------------------


@dataclass
class Step:
    """One rate: what was pushed, what came out of the sessionizer, the DMs, the samples."""

    number: int
    rate: float
    duration: float = STEP_S
    planned: int = 0
    pushed: int = 0
    push_failures: int = 0
    ack_latencies: list[float] = field(default_factory=list)
    started: float = 0.0
    seen: dict[tuple[str, str], float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    max_lag: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    peak_rss: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    drained_at: float | None = None
    last_dm: float = 0.0
    progress: float = 1.0
    ended: float = 0.0
    sustained: float = 0.0

    @property
    def offered(self) -> float:
        return self.planned / self.duration

    @property
    def saturated(self) -> bool:
        return (
            self.drained_at is None
            or self.sustained < SATURATED_SHARE * self.offered
            or percentile(self.latencies, 0.99) > SATURATED_P99_S
        )


class Watcher:
    """Tails `conversations` and `notifications.sent` from the start and files what it reads
    under the step whose channel it concerns."""

    def __init__(self, kafka: KafkaSettings, steps: dict[int, Step]) -> None:
        self.kafka = kafka
        self.steps = steps
        # The next offset of every partition read so far: Tansu's ListOffsets answers can lag
        # behind batched writes, so the group lags below are taken against what was read.
        self.ends: dict[TopicPartition, int] = {}
        self.consumer = AIOKafkaConsumer(
            topics.CONVERSATIONS.name,
            topics.CANDIDATES.name,
            topics.SENT.name,
            bootstrap_servers=kafka.bootstrap_servers,
            group_id=None,
            auto_offset_reset="earliest",
        )
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.consumer.stop()

    async def _run(self) -> None:
        async for message in self.consumer:
            self.ends[TopicPartition(message.topic, message.partition)] = message.offset + 1
            if message.value is None or message.topic == topics.CANDIDATES.name:
                continue
            value = json.loads(message.value)
            if message.topic == topics.SENT.name:
                self._decision(value)
            elif value.get("kind") == "updated":
                self._conversation(value, message.timestamp / 1000)

    def _conversation(self, value: dict[str, Any], emitted: float) -> None:
        step = self.steps.get(step_of(value["channel"]) or -1)
        if step is None:
            return
        for item in value["messages"]:  # every message the event carries is through the sessionizer
            step.seen.setdefault((value["channel"], item["ts"]), emitted)

    def _decision(self, value: dict[str, Any]) -> None:
        step = self.steps.get(step_of(value["conversation_id"]) or -1)
        if step is None:
            return
        step.outcomes[value["outcome"]] += 1
        if value["outcome"] == "sent" and value.get("dm_ts") and value.get("latest_ts"):
            step.latencies.append(float(value["dm_ts"]) - float(value["latest_ts"]))
            step.last_dm = max(step.last_dm, float(value["dm_ts"]))

    async def caught_up(self, timeout: float = 10.0) -> None:
        """Wait until every decision published so far has been read."""
        partitions = [tp for tp in self.consumer.assignment() if tp.topic == topics.SENT.name]
        ends = await self.consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all([await self.consumer.position(tp) >= end for tp, end in ends.items()]):
                return
            await asyncio.sleep(0.1)


class Probe:
    """Backlog and memory of each service, sampled while a step runs."""

    def __init__(
        self, kafka: KafkaSettings, services: Services, watcher: Watcher, http: aiohttp.ClientSession
    ) -> None:
        self.services = services
        self.watcher = watcher
        self.http = http
        self.admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)

    async def start(self) -> None:
        await self.admin.start()

    async def stop(self) -> None:
        await self.admin.close()

    async def _scrape(self, service: str, name: str) -> float:
        """Sum of one metric's samples in a service's /metrics (0 when absent)."""
        async with self.http.get(f"{self.services[service].ops_url}/metrics") as response:
            text = await response.text()
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name
        )

    async def committed(self, group: str, topic: str) -> tuple[int, int]:
        """(records the group committed, records written) summed over the topic's partitions;
        a partition counts as far as the watcher has read it."""
        ends = {tp: end for tp, end in self.watcher.ends.items() if tp.topic == topic}
        if not ends:
            return 0, 0
        done = await self.admin.list_consumer_group_offsets(group, partitions=list(ends))
        committed = sum(min(end, max(0, done[tp].offset)) if tp in done else 0 for tp, end in ends.items())
        return committed, sum(ends.values())

    async def lags(self) -> dict[str, float]:
        scorer, conversations = await self.committed(SCORER_GROUP, topics.CONVERSATIONS.name)
        notifier, candidates = await self.committed(NOTIFIER_GROUP, topics.CANDIDATES.name)
        return {
            "ingest": await self._scrape("ingest", "beepgpt_ingest_buffer_depth"),
            "sessionizer": await self._scrape("sessionizer", "beepgpt_kafka_consumer_lag"),
            "scorer": float(conversations - scorer),
            "notifier": float(candidates - notifier),
        }

    def rss_mib(self, field_name: str = "VmRSS") -> dict[str, float]:
        out: dict[str, float] = {}
        for name in SERVICES:
            process = self.services[name].process
            if process is None or process.returncode is not None:
                continue
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                    if line.startswith(f"{field_name}:"):
                        out[name] = int(line.split()[1]) / 1024
        return out

    async def sample(self, step: Step) -> dict[str, float]:
        lags = await self.lags()
        for name, lag in lags.items():
            step.max_lag[name] = max(step.max_lag[name], lag)
        for name, rss in self.rss_mib().items():
            step.peak_rss[name] = max(step.peak_rss[name], rss)
        return lags


# --- one step ------------------------------------------------------------------------------------


async def push(slack: SlackStandin, planned: list[Planned], step: Step) -> None:
    """Push each message at its planned moment over Socket Mode, not waiting for acks in line
    (Slack does not either), with a fresh ts taken at the push."""
    window = asyncio.Semaphore(MAX_IN_FLIGHT)
    running: set[asyncio.Task[None]] = set()

    async def one(message: Planned) -> None:
        try:
            event = slack.events.message(
                message.channel, message.user, message.text, ts=slack_ts(time.time())
            )
            ack = await slack.push_event(event, timeout=10)
            step.ack_latencies.append(ack.latency)
            step.pushed += 1
        except Exception:  # an envelope ingest did not ack: Slack would retry it later
            step.push_failures += 1
        finally:
            window.release()

    for message in planned:
        delay = step.started + message.at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await window.acquire()
        task = asyncio.create_task(one(message))
        running.add(task)
        task.add_done_callback(running.discard)
    await asyncio.gather(*running)


async def sample_until(probe: Probe, step: Step, done: asyncio.Task[None]) -> None:
    """Sample backlogs and memory while the step pushes, so its peaks are on record."""
    while not done.done():
        await probe.sample(step)
        await asyncio.wait({done}, timeout=POLL_S)


async def run_step(
    number: int,
    rate: float,
    slack: SlackStandin,
    probe: Probe,
    conversations: list[Conversation],
    members: list[str],
    steps: dict[int, Step],
    duration: float = STEP_S,
) -> Step:
    planned, channels = plan_step(number, rate, duration, conversations, random.Random(number))
    for channel in channels:
        slack.workspace.add_channel(Channel(id=channel, name=channel.lower(), members=list(members)))
    step = Step(number, rate, duration, planned=len(planned))
    steps[number] = step
    scorer_before = await probe.committed(SCORER_GROUP, topics.CONVERSATIONS.name)
    step.started = time.time() + 0.5
    pushing = asyncio.create_task(push(slack, planned, step))
    await sample_until(probe, step, pushing)
    await pushing
    await drain(probe, step, scorer_before)
    return step


async def drain(probe: Probe, step: Step, scorer_before: tuple[int, int]) -> None:
    """Wait until every service caught up with the step (at most DRAIN_CAP_S), then work out
    the sustained rate; without a drain, from how far the sessionizer and the scorer got
    (the scorer's committed records since `scorer_before`, its position when the step began)."""
    deadline = time.time() + DRAIN_CAP_S
    idle_polls = 0
    while time.time() < deadline:
        lags = await probe.sample(step)
        quiet = all(lag == 0 for lag in lags.values())
        idle_polls = idle_polls + 1 if quiet else 0
        # every pushed message out of the sessionizer and nothing left anywhere; or nothing left
        # for a while (a message that never comes out would otherwise hold the step forever)
        if quiet and (len(step.seen) >= step.pushed or idle_polls >= 3):
            step.drained_at = time.time()
            break
        await asyncio.sleep(POLL_S)
    await probe.watcher.caught_up()
    first_out = min(step.seen.values(), default=step.started)
    if step.drained_at is not None:
        # The polls only confirm that nothing is left; the work ended with the last message out
        # of the sessionizer or the last DM, whichever came later.
        step.ended = max(max(step.seen.values(), default=first_out), step.last_dm) or step.drained_at
    else:
        step.ended = time.time()
        committed, end = await probe.committed(SCORER_GROUP, topics.CONVERSATIONS.name)
        scorer_share = (committed - scorer_before[0]) / max(1, end - scorer_before[0])
        step.progress = min(len(step.seen) / max(1, step.pushed), scorer_share)
    step.sustained = step.progress * step.pushed / max(1e-9, step.ended - first_out)


async def settle(probe: Probe, cap: float = SETTLE_CAP_S) -> float:
    """Wait until nothing is left anywhere for three polls in a row; seconds waited. Raises
    after `cap`: the next load would be measured on top of this one's backlog."""
    started = time.monotonic()
    idle_polls = 0
    while time.monotonic() - started < cap:
        lags = await probe.lags()
        idle_polls = idle_polls + 1 if all(lag == 0 for lag in lags.values()) else 0
        if idle_polls >= 3:
            return time.monotonic() - started
        await asyncio.sleep(POLL_S)
    raise RuntimeError(f"the pipeline did not empty within {cap:g}s between the loads (lags {lags})")


# --- the run --------------------------------------------------------------------------------------


def service_env(stack: LocalStack, slack: SlackStandin) -> dict[str, str]:
    """The demo's settings with the gap compressed and the per-person limits out of the way."""
    return {
        **stack.env(),
        "BEEPGPT_KAFKA_PARTITIONS": "3",
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_APP_TOKEN": slack.app_token,
        "SLACK_SIGNING_SECRET": slack.signing_secret,
        "BEEPGPT_SLACK_API_URL": slack.api_url,
        "BEEPGPT_SCORER_MODEL_DIR": str(MODEL_DIR),
        "BEEPGPT_SCORER_SCORE_ON": "updated",
        "BEEPGPT_SESSIONIZER_GAP_S": str(GAP_S),
        "BEEPGPT_SESSIONIZER_THREAD_IDLE_S": str(3 * GAP_S),
        "BEEPGPT_NOTIFIER_RATE_PER_HOUR": "1000000",
        "BEEPGPT_NOTIFIER_BURST": "100000",
        "BEEPGPT_NOTIFIER_DAILY_BUDGET": "1000000",  # and the daily budget: latency needs DMs
        "BEEPGPT_LOG_LEVEL": "WARNING",
    }


def step_records(step: Step, load_prefix: str = "") -> list[dict[str, Any]]:
    prefix = f"{load_prefix}step_{step.rate:g}_"
    out = [
        record(prefix + "offered_msgs_per_s", step.offered, "msg/s"),
        record(prefix + "sustained_msgs_per_s", step.sustained, "msg/s"),
    ]
    if step.latencies:
        out += [
            record(prefix + "e2e_latency_p50_ms", percentile(step.latencies, 0.50) * 1000, "ms"),
            record(prefix + "e2e_latency_p99_ms", percentile(step.latencies, 0.99) * 1000, "ms"),
        ]
    out += [
        record(prefix + "dms", step.outcomes["sent"], "DMs"),
        record(
            prefix + "drained", 1.0 if step.drained_at is not None else 0.0, "1 = caught up within the cap"
        ),
        record(prefix + "push_ack_p99_ms", percentile(step.ack_latencies, 0.99) * 1000, "ms"),
        record(prefix + "push_failures", step.push_failures, "messages"),
        *(record(prefix + f"max_lag_{name}", step.max_lag[name], "records") for name in SERVICES),
        *(record(prefix + f"peak_rss_mib_{name}", step.peak_rss[name], "MiB") for name in SERVICES),
    ]
    return out


def summary_records(
    steps: list[Step], lifetime_rss: dict[str, float], load_prefix: str = "", rss_unit: str = "MiB (VmHWM)"
) -> list[dict[str, Any]]:
    saturated = next((s for s in steps if s.saturated), None)
    out = [
        record(
            load_prefix + "max_sustained_msgs_per_s", max((s.sustained for s in steps), default=0.0), "msg/s"
        ),
        record(
            load_prefix + "saturation_offered_msgs_per_s",
            saturated.offered if saturated else 0.0,
            "msg/s offered at the first saturated step (0: none saturated)",
        ),
    ]
    target = next((s for s in steps if s.rate == TARGET_RATE), None)
    if target is not None and target.latencies:
        suffix = "" if target.drained_at is not None else " (lower bound: not drained)"
        out += [
            record(
                f"{load_prefix}e2e_latency_p50_ms_at_{TARGET_RATE:g}",
                percentile(target.latencies, 0.5) * 1000,
                "ms" + suffix,
            ),
            record(
                f"{load_prefix}e2e_latency_p99_ms_at_{TARGET_RATE:g}",
                percentile(target.latencies, 0.99) * 1000,
                "ms" + suffix,
            ),
        ]
    out += [record(f"{load_prefix}peak_rss_mib_{name}", mib, rss_unit) for name, mib in lifetime_rss.items()]
    return out


def load_records(load: Load) -> list[dict[str, Any]]:
    """What the load is made of: how long its messages and conversations are."""
    return [
        record(
            load.prefix + "median_words_per_message",
            load.median_words,
            "words (whitespace-separated) per replayed message, median",
        ),
        record(load.prefix + "messages_per_conversation", load.mean_conversation, "messages, mean"),
    ]


def plot(loads: list[tuple[Load, list[Step]]], path: Path = PLOT) -> None:
    """Latency p50/p99 and sustained rate against offered rate for each load, saturated steps
    marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    every = [s for _, steps in loads for s in steps]
    fig, (rate_ax, latency_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    top = max([*(s.offered for s in every), *(s.sustained for s in every)], default=1.0) * 1.1
    rate_ax.plot([0, top], [0, top], color="grey", linestyle=":", label="sustained = offered")
    for load, steps in loads:
        words = f"{load.name}, {load.median_words:g} words"
        rate_ax.plot([s.offered for s in steps], [s.sustained for s in steps], marker="o", label=words)
        for s in steps:
            if s.saturated:
                rate_ax.plot(s.offered, s.sustained, marker="x", color="red", markersize=10)
        with_dms = [s for s in steps if s.latencies]
        for q, label, style in ((0.5, "p50", "--"), (0.99, "p99", "-")):
            latency_ax.plot(
                [s.offered for s in with_dms],
                [percentile(s.latencies, q) for s in with_dms],
                marker="o",
                linestyle=style,
                label=f"{label}, {load.name}",
            )
        for s in with_dms:
            if s.drained_at is None:
                latency_ax.annotate(
                    "≥ (not drained)",
                    (s.offered, percentile(s.latencies, 0.99)),
                    xytext=(-80, 6),
                    textcoords="offset points",
                    fontsize=8,
                )
    rate_ax.set(xlabel="offered (msg/s)", ylabel="sustained (msg/s)", title="Throughput (x: saturated)")
    rate_ax.legend(fontsize=8)
    latency_ax.axhline(1.0, color="grey", linestyle=":", label="1 s target")
    latency_ax.set_yscale("log")
    latency_ax.set(xlabel="offered (msg/s)", ylabel="message → DM (s)", title="End-to-end latency")
    latency_ax.legend(fontsize=8)
    fig.suptitle("BeepGPT pipeline, 4 services on 2 cores (Tansu, Redis, Slack stand-in)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def ladder(
    load: Load, slack: SlackStandin, probe: Probe, members: list[str], steps: dict[int, Step]
) -> list[Step]:
    """The rising rates for one load, up to its first saturated step (and the target rate)."""
    done: list[Step] = []
    pending = list(RATES)
    while pending:
        rate = pending.pop(0)
        step = await run_step(len(steps), rate, slack, probe, load.conversations, members, steps)
        done.append(step)
        p50, p99 = percentile(step.latencies, 0.5), percentile(step.latencies, 0.99)
        log(
            f"  {rate:>5g} msg/s: offered {step.offered:.1f}, sustained {step.sustained:.1f}, "
            f"decisions {dict(step.outcomes)}, p50 {p50:.2f}s p99 {p99:.2f}s, lag {dict(step.max_lag)}"
            f"{'' if step.drained_at else ', NOT drained'}{', saturated' if step.saturated else ''}"
        )
        if step.saturated:
            # Record the target rate too, once, even when the pipeline gave up below it.
            pending = [TARGET_RATE] if rate < TARGET_RATE and TARGET_RATE in pending else []
    return done


@dataclass
class Measured:
    """Each load's steps, and the services' lifetime peaks after each load."""

    steps: list[tuple[Load, list[Step]]] = field(default_factory=list)
    lifetime_rss: list[dict[str, float]] = field(default_factory=list)


async def measure(
    kafka: KafkaSettings, stack: LocalStack, example: ExampleWorkspace, loads: list[Load], work: Path
) -> Measured:
    members = [str(u["id"]) for u in example.users]
    users_path, channels_path = example.write_standin_files(work)
    steps: dict[int, Step] = {}
    measured = Measured()
    async with (
        SlackStandin(Workspace.from_files(users_path, channels_path)) as slack,
        aiohttp.ClientSession() as http,
    ):
        services = Services(service_env(stack, slack), work / "logs")
        watcher = Watcher(kafka, steps)
        probe = Probe(kafka, services, watcher, http)
        try:
            started = time.monotonic()
            await services.start()
            log(f"  services ready in {time.monotonic() - started:.0f}s; logs in {work / 'logs'}")
            await watcher.start()
            await probe.start()
            # Not measured: the first batches load what the services load lazily (torch kernels,
            # tokenizer, connections), which would otherwise count against the first step.
            warmup = await run_step(
                WARMUP_STEP, RATES[0], slack, probe, loads[0].conversations, members, steps, WARMUP_S
            )
            log(f"  warm-up: {warmup.pushed} messages, {warmup.outcomes['sent']} DMs")
            for number, load in enumerate(loads):
                if number:
                    waited = await settle(probe)
                    log(f"  pipeline empty after {waited:.0f}s")
                log(
                    f"  load: {load.name}, {len(load.conversations)} conversations of "
                    f"{load.mean_conversation:.1f} messages, median {load.median_words:g} words a message"
                )
                measured.steps.append((load, await ladder(load, slack, probe, members, steps)))
                measured.lifetime_rss.append(probe.rss_mib("VmHWM"))
        finally:
            await probe.stop()
            await watcher.stop()
            await services.stop()
    return measured


async def run() -> list[dict[str, Any]]:
    example = ExampleWorkspace.load()
    members = [str(u["id"]) for u in example.users]
    # Read (or fail on) the real chat before anything starts, not after minutes of the first load.
    loads = [
        Load("generated workspace", "", source_conversations(example.messages)),
        real_chat_load(members),
    ]
    await asyncio.to_thread(ensure_model, MODEL_DIR)
    work = ROOT / "build" / "bench-pipeline"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    stack = await asyncio.to_thread(LocalStack(broker_log=work / "broker.log").start)
    try:
        kafka = KafkaSettings(bootstrap_servers=stack.bootstrap_servers, idempotence=False, partitions=3)
        await ensure_topics(kafka, topics.ALL_TOPICS)
        async with EventProducer(kafka, "bench") as producer:
            for prefs in example.preferences(time.time()):
                await producer.send(topics.PREFERENCES, prefs.user, prefs)
        measured = await measure(kafka, stack, example, loads, work)
    finally:
        await asyncio.to_thread(stack.stop)  # also deletes the stack's Redis keys
    plot(measured.steps)
    out: list[dict[str, Any]] = []
    for number, ((load, steps), lifetime) in enumerate(
        zip(measured.steps, measured.lifetime_rss, strict=True)
    ):
        rss_unit = "MiB (VmHWM)" if number == 0 else "MiB (VmHWM: process lifetime, both loads)"
        out += [
            *(r for step in steps for r in step_records(step, load.prefix)),
            *summary_records(steps, lifetime, load.prefix, rss_unit),
            *load_records(load),
        ]
    return out


if __name__ == "__main__":
    for row in asyncio.run(run()):
        print(f"{row['metric']:<44} {row['value']:>12,.1f} {row['unit']}")
