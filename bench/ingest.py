"""Ingest benchmarks: events/s through Bolt to broker acks, ack latency, import rows/s.

Everything real: a Tansu broker started here, the machine's Redis (or one started here) for
dedup, the real Bolt app, intake, publisher and aiokafka producer (acks=all).

- `events_per_s`: Slack `event_callback` payloads dispatched through the Bolt app (as the Socket
  Mode adapter does, minus the WebSocket: one task per envelope, up to `WINDOW` unacked at a
  time, as Slack keeps sending while acks are outstanding) until every one was acked; an ack
  comes once the broker acknowledged the record (or after the ack budget), so this includes
  normalization, the Redis dedup check and mark, and Kafka. `ack_latency_p50/p99_ms` are how
  long each dispatch took to produce its ack under that load; `acks_before_durable` counts the
  acks that went out before Kafka had the record (the ack budget ran out).
- `socket_mode_*`: the same app behind the real Socket Mode adapter, driven by the Slack stand-in
  in this process (so the stand-in's own CPU cost is included): events/s and the ack latency the
  stand-in measured, as Slack would see it, with `SOCKET_CONCURRENCY` envelopes unacked at once.
- `import_rows_per_s`: `beepgpt import` of a Parquet table (the example table repeated to 100k
  rows) into the message table; `import_publish_rows_per_s`: publishing those rows to Kafka.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY
from slack_bolt.request.async_request import AsyncBoltRequest

from beepgpt.kafka import EventProducer, ensure_topics
from beepgpt.settings import KafkaSettings, RedisSettings
from beepgpt.topics import SLACK_MESSAGES
from devstack.local_stack import Broker, RedisServer, forget_keys, redis_answers
from ingest.bolt_app import BotIdentity, build_app
from ingest.dedup import RedisDedup
from ingest.importer.publish import publish
from ingest.importer.sources import read_source
from ingest.intake import Intake
from ingest.normalize import Rules
from ingest.publisher import Publisher
from ingest.service import tune_garbage_collector

DATA = Path(__file__).resolve().parents[1] / "data"
EVENTS = 30_000
WINDOW = 1_000
SOCKET_EVENTS = 3_000
SOCKET_CONCURRENCY = 50
IMPORT_ROWS = 100_000
CHANNELS = [f"C0CHAN{i:04d}" for i in range(50)]
USERS = [f"U0USER{i:04d}" for i in range(200)]


def record(metric: str, value: float, unit: str) -> dict[str, Any]:
    return {"benchmark": "ingest", "metric": metric, "value": round(value, 3), "unit": unit}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def callback(i: int, base: float) -> dict[str, Any]:
    ts = f"{base + i / 1000:.6f}"
    return {
        "token": "x",
        "team_id": "T0BENCH",
        "api_app_id": "A0BENCH",
        "type": "event_callback",
        "event_id": f"Ev{int(base)}{i:08d}",
        "event_time": int(base),
        "event": {
            "type": "message",
            "channel": CHANNELS[i % len(CHANNELS)],
            "user": USERS[i % len(USERS)],
            "text": f"message {i}: should we move the ingest service to Kafka streams this sprint?",
            "ts": ts,
            "event_ts": ts,
            "channel_type": "channel",
        },
    }


async def _pipeline(
    kafka: KafkaSettings, redis: RedisSettings
) -> tuple[EventProducer, RedisDedup, Publisher, Intake]:
    producer = EventProducer(kafka, "ingest")
    await producer.start()
    dedup = RedisDedup(redis, ttl_s=120)
    publisher = Publisher(producer, dedup, capacity=EVENTS + 1, batch_size=2_000)
    await publisher.start()
    tune_garbage_collector()  # as `python -m ingest` does once started
    return producer, dedup, publisher, Intake(publisher, Rules())


IDENTITY = BotIdentity(team_id="T0BENCH", bot_user_id="U0BENCHBOT", bot_id="B0BENCH", bot_token="xoxb-bench")


async def bench_events(kafka: KafkaSettings, redis: RedisSettings) -> list[dict[str, Any]]:
    producer, dedup, publisher, intake = await _pipeline(kafka, redis)
    app = build_app(intake, IDENTITY, signing_secret="bench", api_url="http://127.0.0.1:9/api/")
    base = time.time()
    latencies: list[float] = []
    window = asyncio.Semaphore(WINDOW)
    buffered = _acks_before_durable()

    refused: list[int] = []

    async def dispatch(body: dict[str, Any]) -> None:
        t0 = time.perf_counter()
        try:
            response = await app.async_dispatch(AsyncBoltRequest(mode="socket_mode", body=body, headers={}))
            latencies.append(time.perf_counter() - t0)
            if response.status != 200:
                refused.append(response.status)
        finally:
            window.release()

    try:
        started = time.perf_counter()
        running: set[asyncio.Task[None]] = set()  # only the unacked ones stay referenced
        for i in range(EVENTS):  # payloads made as they are sent, as if they came off the wire
            await window.acquire()
            task = asyncio.create_task(dispatch(callback(i, base)))
            running.add(task)
            task.add_done_callback(running.discard)
        await asyncio.gather(*running)
        assert not refused, f"{len(refused)} deliveries refused: {refused[:5]}"
        await publisher.wait_idle(timeout=120)
        elapsed = time.perf_counter() - started
    finally:
        await publisher.stop(30)
        await producer.stop()
        await dedup.close()
    return [
        record("events_per_s", EVENTS / elapsed, "events/s"),
        record("ack_latency_p50_ms", percentile(latencies, 0.50) * 1000, "ms"),
        record("ack_latency_p99_ms", percentile(latencies, 0.99) * 1000, "ms"),
        record("acks_before_durable", _acks_before_durable() - buffered, "events"),
    ]


def _acks_before_durable() -> float:
    return REGISTRY.get_sample_value("beepgpt_ingest_acks_total", {"durability": "buffered"}) or 0.0


async def bench_socket_mode(kafka: KafkaSettings, redis: RedisSettings) -> list[dict[str, Any]]:
    from devstack.slack_standin import SlackStandin
    from ingest.socket_mode import SocketModeAdapter

    producer, dedup, publisher, intake = await _pipeline(kafka, redis)
    async with SlackStandin() as slack:
        identity = BotIdentity(
            team_id=slack.workspace.identity.team_id,
            bot_user_id="U0BENCHBOT",
            bot_id="B0BENCH",
            bot_token=slack.bot_token,
        )
        app = build_app(intake, identity, signing_secret=slack.signing_secret, api_url=slack.api_url)
        adapter = SocketModeAdapter(app, intake, slack.app_token, slack.api_url)
        await adapter.start()
        await slack.wait_for_socket(1)
        base = time.time() + 10_000
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for i in range(SOCKET_EVENTS):
            queue.put_nowait(callback(i, base))
        latencies: list[float] = []

        async def worker() -> None:
            while not queue.empty():
                ack = await slack.push_event(queue.get_nowait(), timeout=30)
                latencies.append(ack.latency)

        try:
            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(SOCKET_CONCURRENCY)))
            await publisher.wait_idle(timeout=120)
            elapsed = time.perf_counter() - started
        finally:
            await adapter.stop()
            await publisher.stop(30)
            await producer.stop()
            await dedup.close()
    return [
        record("socket_mode_events_per_s", SOCKET_EVENTS / elapsed, "events/s"),
        record("socket_mode_ack_latency_p50_ms", percentile(latencies, 0.50) * 1000, "ms"),
        record("socket_mode_ack_latency_p99_ms", percentile(latencies, 0.99) * 1000, "ms"),
    ]


async def bench_import(kafka: KafkaSettings) -> list[dict[str, Any]]:
    import pandas as pd

    seed = pd.read_parquet(DATA / "slack-generation.parquet")
    span = float(seed["ts"].max() - seed["ts"].min()) + 1.0
    copies = -(-IMPORT_ROWS // len(seed))
    parts = []
    for k in range(copies):
        part = seed.copy()
        part["ts"] = part["ts"] + k * span
        part["thread_ts"] = part["thread_ts"] + k * span
        parts.append(part)
    table = pd.concat(parts, ignore_index=True).head(IMPORT_ROWS)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.parquet"
        table.to_parquet(path, index=False)
        started = time.perf_counter()
        imported = read_source(path)
        rows = len(imported.history.table())
        read_s = time.perf_counter() - started
    published = await publish(imported.history.messages(), kafka)
    return [
        record("import_rows_per_s", rows / read_s, "rows/s"),
        record("import_publish_rows_per_s", published.per_second, "rows/s"),
    ]


async def run() -> list[dict[str, Any]]:
    logging.getLogger("ingest").setLevel(logging.WARNING)
    broker = await asyncio.to_thread(Broker.start)
    own_redis: RedisServer | None = None
    prefix = f"bench:ingest:{int(time.time())}:"
    redis_url = RedisSettings().url
    try:
        if not await asyncio.to_thread(redis_answers, redis_url):
            own_redis = await asyncio.to_thread(RedisServer.start)
            redis_url = own_redis.url
        kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers, idempotence=False, partitions=6)
        redis = RedisSettings(url=redis_url, key_prefix=prefix)
        await ensure_topics(kafka, [SLACK_MESSAGES])
        results = await bench_events(kafka, redis)
        results += await bench_socket_mode(kafka, redis)
        results += await bench_import(kafka)
        return results
    finally:
        if own_redis is None:
            await asyncio.to_thread(forget_keys, redis_url, prefix)
        await asyncio.to_thread(broker.stop)
        if own_redis is not None:
            await asyncio.to_thread(own_redis.stop)


if __name__ == "__main__":
    for item in asyncio.run(run()):
        print(f"{item['metric']:<34} {item['value']:>12,.1f} {item['unit']}")
