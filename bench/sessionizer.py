"""Sessionizer throughput and memory: Kafka in → live Kaskada query → conversations out.

Everything real: a Tansu broker started here, and the service as its own process
(`python -m sessionizer`, so its memory is measured alone), consuming `slack.messages` in a
group and publishing `ConversationEvent`s with acks=all.

The workload (`BEEPGPT_BENCH_SESSIONIZER_MESSAGES`, default 200,000 messages over 2,000
channels) is bursts of conversation: per channel, conversations of 4-12 messages 10-90 s apart,
a fifth of them with a short thread, separated by 15 minutes to 3 hours of silence; then one
message per channel a day later, so every conversation closes. It is published before the
services start, and they go by the records' own times (events clock), as in a replay after an
outage; the clock starts once their group is stable. It runs twice on fresh
brokers: one service process (the per-replica figure), then two in one group (the `_2_instances`
figures: partitions split between them, as in production; this machine has two cores, shared
with the broker and the reader counting the output).

- `messages_per_s`: messages through the service per second, from the moment its group is stable
  to the `updated` event of the last message, counting the messages done in that span (every
  message gives one `updated` event; closes are published as well).
- `conversation_events_per_s`: `updated` + `closed` events published per second over the same span.
- `closed_conversations`: distinct conversations closed; more than `conversations` (the bursts),
  because the next-day messages, spread over half an hour per partition, close each other's
  conversations by event time too (all but the last few). `closed_events_repeated` must be 0.
- `cpu_us_per_message`: the service processes' CPU time (start-up included) per message; it
  holds when other work shares the machine, when messages per second do not.
- `linked_*`: the same figures of one service process in linked mode (`BEEPGPT_CONVERSATIONS=linked`:
  the reply linker decides each flow message's conversation in the feeder, before the query);
  `linked_messages_per_s` is the one to hold against the 10,000 messages/s target. Its
  conversations are the linker's, so the run ends once every conversation it announced, but the
  next day's, has closed (`linked_closed_conversations`), rather than at the bursts' count.
  `BEEPGPT_BENCH_SESSIONIZER_MODES` (default `gap,linked`) chooses which modes run.
- `peak_rss_mb`: the service process's peak resident memory (VmHWM); `rss_growth_mb_second_half`:
  its resident memory at the end minus at half way, while about 15,000 conversations close. It
  stays flat if memory follows open conversations rather than closed ones. The queries are
  rebuilt after `BEEPGPT_BENCH_SESSIONIZER_REBUILD_AFTER_CLOSED` closes per partition when set
  (measured at 5,000: 9,200 messages/s, the same flat memory; each rebuild replays up to
  `thread_resume_s` of the partition), else at the service's default.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from beepgpt.contracts import SlackMessage
from beepgpt.kafka import EventProducer, ensure_topics
from beepgpt.settings import KafkaSettings
from beepgpt.topics import CONVERSATIONS, SLACK_MESSAGES
from devstack.local_stack import Broker

REPO = Path(__file__).resolve().parents[1]
MESSAGES = int(os.environ.get("BEEPGPT_BENCH_SESSIONIZER_MESSAGES", "200000"))
CHANNELS = int(os.environ.get("BEEPGPT_BENCH_SESSIONIZER_CHANNELS", "2000"))
PARTITIONS = 4
MODES = os.environ.get("BEEPGPT_BENCH_SESSIONIZER_MODES", "gap,linked").split(",")
REBUILD_AFTER_CLOSED = os.environ.get("BEEPGPT_BENCH_SESSIONIZER_REBUILD_AFTER_CLOSED")
"""Unset: the service's default (50,000 per partition, so none in this replay)."""
START = 1_700_000_000.0
NEXT_DAY = "next day"
WORDS = [
    "the",
    "deploy",
    "queue",
    "kafka",
    "latency",
    "schema",
    "review",
    "lunch",
    "retro",
    "incident",
    "dashboard",
    "budget",
]


def workload(messages: int, channels: int, seed: int = 7) -> tuple[list[SlackMessage], int]:
    """(messages in time order, conversations they form); see the module docstring."""
    rnd = random.Random(seed)
    per_channel = messages // channels
    out: list[SlackMessage] = []
    conversations = 0
    for c in range(channels):
        channel = f"C{c:05d}"
        t = START + rnd.uniform(0, 3_600)
        left = per_channel
        while left > 0:
            size = min(left, rnd.randint(4, 12))
            conversations += 1
            parent: str | None = None
            replies = 0
            if size >= 6 and rnd.random() < 0.2:
                replies = 2
                conversations += 1
            for i in range(size):
                t += rnd.uniform(10, 90)
                ts = f"{t:.6f}"
                in_thread = replies > 0 and i >= size - replies
                text = " ".join(rnd.choices(WORDS, k=rnd.randint(5, 20)))
                out.append(
                    SlackMessage(
                        channel=channel,
                        ts=ts,
                        thread_ts=parent if in_thread else None,
                        user=f"U{rnd.randrange(40):03d}",
                        text=text,
                        event_time=t,
                    )
                )
                if replies and i == size - replies - 1:
                    parent = ts
            left -= size
            t += rnd.uniform(900, 10_800)
    last = max(float(m.ts) for m in out)
    out.extend(
        SlackMessage(channel=f"C{c:05d}", ts=f"{last + 86_400 + c:.6f}", user="U999", text=NEXT_DAY)
        for c in range(channels)
    )
    out.sort(key=lambda m: float(m.ts))
    return out, conversations


async def publish_all(kafka: KafkaSettings, messages: list[SlackMessage]) -> float:
    started = time.perf_counter()
    async with EventProducer(kafka, "bench") as producer:
        futures = [await producer.send_soon(SLACK_MESSAGES, m.channel, m) for m in messages]
        await asyncio.gather(*futures)
    return time.perf_counter() - started


def cpu_seconds(pid: int) -> float:
    """CPU time the process has used (user + system), start-up included: a figure that other
    work on the machine does not inflate, unlike messages per second."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


async def run() -> list[dict[str, Any]]:
    messages, conversations = workload(MESSAGES, CHANNELS)
    records = [
        _record("messages", len(messages), "messages"),
        _record("channels", CHANNELS, "channels"),
        _record("conversations", conversations, "conversations"),
    ]
    if "gap" in MODES:
        for instances in (1, 2):
            records.extend(await measure(messages, conversations, instances))
    if "linked" in MODES:
        records.extend(await measure(messages, conversations, 1, mode="linked"))
    return records


async def measure(
    messages: list[SlackMessage], conversations: int, instances: int, mode: str = "gap"
) -> list[dict[str, Any]]:
    """One replay through `instances` service processes in one consumer group, on a fresh broker.

    The workload is published first; the clock starts once the group is stable (every instance
    holds partitions) and counts only the messages done after that, so the figures are those of
    steady work, not of the group forming.
    """
    suffix = "" if instances == 1 else f"_{instances}_instances"
    prefix = "" if mode == "gap" else f"{mode}_"
    broker = Broker.start()
    processes: list[asyncio.subprocess.Process] = []
    try:
        kafka = KafkaSettings(
            bootstrap_servers=broker.bootstrap_servers, idempotence=False, partitions=PARTITIONS, linger_ms=20
        )
        await ensure_topics(kafka, [SLACK_MESSAGES, CONVERSATIONS])
        group = f"bench-{uuid.uuid4().hex[:8]}"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(str(REPO / p) for p in ("shared", "services/sessionizer")),
            "BEEPGPT_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "BEEPGPT_KAFKA_IDEMPOTENCE": "false",
            "BEEPGPT_KAFKA_PARTITIONS": str(PARTITIONS),
            "BEEPGPT_KAFKA_LINGER_MS": "20",
            "BEEPGPT_HTTP_PORT": "0",
            "BEEPGPT_LOG_LEVEL": "WARNING",
            "BEEPGPT_SESSIONIZER_CLOCK": "events",
            "BEEPGPT_SESSIONIZER_GROUP_ID": group,
            "BEEPGPT_CONVERSATIONS": mode,
        }
        if REBUILD_AFTER_CLOSED:
            env["BEEPGPT_SESSIONIZER_REBUILD_AFTER_CLOSED"] = REBUILD_AFTER_CLOSED
        counter = EventCounter(len(messages), conversations)
        if mode != "gap":  # the linker's conversations: wait for all but the next day's to close
            counter.all_closed_but = {f"{m.channel}:{m.ts}".encode() for m in messages if m.text == NEXT_DAY}
        publish_s = await publish_all(kafka, messages)
        reading = asyncio.create_task(counter.run(kafka))
        for _ in range(instances):
            processes.append(
                await asyncio.create_subprocess_exec(sys.executable, "-m", "sessionizer", env=env)
            )
        counter.pids = [p.pid for p in processes]
        await group_stable(kafka, group, instances)
        started_at, done_before = time.perf_counter(), counter.updated
        events_before = counter.updated + counter.closed
        await reading
        peaks = [rss_mb(p.pid, "VmHWM") for p in processes]
        cpu_s = sum(cpu_seconds(p.pid) for p in processes)
        for process in processes:
            process.terminate()
        for process in processes:
            await asyncio.wait_for(process.wait(), 60)
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
        broker.stop()

    span = counter.last_message_at - started_at
    records = [
        _record("messages_per_s", (len(messages) - done_before) / span, "messages/s"),
        _record(
            "conversation_events_per_s", (counter.events_at_last_message - events_before) / span, "events/s"
        ),
        _record("closed_conversations", len(counter.closed_ids), "conversations"),
        _record("closed_events_repeated", counter.closed - len(counter.closed_ids), "events"),
        _record("cpu_us_per_message", cpu_s / len(messages) * 1e6, "µs"),
        _record("peak_rss_mb", max(peaks), "MB"),
        _record("rss_half_way_mb", counter.rss_half, "MB"),
        _record("rss_growth_mb_second_half", counter.rss_end - counter.rss_half, "MB"),
    ]
    if instances == 1:
        records.insert(0, _record("publish_messages_per_s", len(messages) / publish_s, "messages/s"))
    for record in records:
        record["metric"] = prefix + record["metric"] + suffix
    return records


async def group_stable(kafka: KafkaSettings, group: str, members: int, timeout: float = 120) -> None:
    """Until the group has `members` members and is Stable."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        async with asyncio.timeout(timeout):
            while True:
                described = await admin.describe_consumer_groups([group])
                for response in described:
                    for (
                        found
                    ) in response.groups:  # (error, group, state, protocol type, protocol, members, ...)
                        if found[2] == "Stable" and len(found[5]) == members:
                            return
                await asyncio.sleep(0.2)  # polling the broker's view; nothing to wait on instead
    finally:
        await admin.close()


@dataclass
class EventCounter:
    """Reads `conversations` as the services write it, without decoding: counts kinds, times it.

    `updated` is live, so the measurement can start at any moment (once the group is stable)
    and count only what was done after it.
    """

    messages: int
    conversations: int
    pids: list[int] = field(default_factory=list)
    updated: int = 0
    closed: int = 0
    closed_ids: set[bytes] = field(default_factory=set)
    last_message_at: float = 0.0
    events_at_last_message: int = 0
    rss_half: float = 0.0
    rss_end: float = 0.0
    all_closed_but: set[bytes] | None = None
    """Linked mode: done once every conversation announced has closed, but these (the next day's)."""
    announced: set[bytes] = field(default_factory=set)

    def done(self) -> bool:
        if self.updated < self.messages:
            return False
        if self.all_closed_but is None:
            return len(self.closed_ids) >= self.conversations
        return self.announced - self.all_closed_but <= self.closed_ids

    async def run(self, kafka: KafkaSettings) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=kafka.bootstrap_servers, enable_auto_commit=False, fetch_max_bytes=16 * 2**20
        )
        await consumer.start()
        try:
            tps = [TopicPartition(CONVERSATIONS.name, p) for p in range(PARTITIONS)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            quiet_since = time.monotonic()
            while not self.done():
                if time.monotonic() - quiet_since > 60:
                    raise TimeoutError(
                        f"nothing new for a minute: {self.updated}/{self.messages} updated, "
                        f"{len(self.closed_ids)}/{self.conversations} closed"
                    )
                batch = await consumer.getmany(timeout_ms=1_000, max_records=10_000)
                if batch:
                    quiet_since = time.monotonic()
                for records in batch.values():
                    for record in records:
                        if b'"kind":"closed"' in (record.value or b"")[:40]:
                            self.closed += 1
                            self.closed_ids.add(record.key or b"")
                        else:
                            self.updated += 1
                            if self.all_closed_but is not None:
                                self.announced.add(record.key or b"")
                if self.updated >= self.messages and not self.last_message_at:
                    self.last_message_at = time.perf_counter()
                    self.events_at_last_message = self.updated + self.closed
                if not self.rss_half and self.updated >= self.messages // 2:
                    self.rss_half = sum(rss_mb(pid) for pid in self.pids)
            self.rss_end = sum(rss_mb(pid) for pid in self.pids)
        finally:
            await consumer.stop()


def _record(metric: str, value: float, unit: str) -> dict[str, Any]:
    return {"benchmark": "sessionizer", "metric": metric, "value": round(value, 2), "unit": unit}


if __name__ == "__main__":
    for row in asyncio.run(run()):
        print(row)
