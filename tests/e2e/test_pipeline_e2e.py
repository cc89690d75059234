"""End to end: Slack events in through Socket Mode, DMs out through the Web API, all four services
running as processes on the real broker and Redis.

The script has three conversations: a Kafka-vs-Pulsar decision (Dave follows streaming
decisions), a data-quality discussion (Bob follows data governance) and lunch chit-chat (nobody
follows it). Exactly two DMs must result, whatever crashes or outages happen on the way.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from beepgpt import topics
from beepgpt.contracts import FollowedTopic, Notification, Preferences
from beepgpt.kafka import EventProducer
from beepgpt.kafka.headers import header
from beepgpt.message_table import slack_ts
from beepgpt.settings import KafkaSettings
from devstack.local_stack import Broker
from devstack.processes import Services
from devstack.slack_standin import SlackStandin
from devstack.topic_reader import read_topic


@dataclass(frozen=True)
class Line:
    channel: str
    user: str
    text: str


STREAMING = [
    Line(
        "C0GENERAL",
        "U0ALICE",
        "We need to pick the event streaming platform for the inventory tracker this week.",
    ),
    Line(
        "C0GENERAL",
        "U0CAROL",
        "I'd go with Apache Kafka: mature ecosystem, Kafka Streams and Connect, and we know how to run it.",
    ),
    Line(
        "C0GENERAL",
        "U0ALICE",
        "Pulsar has tiered storage and geo-replication built in though. Worth comparing before we commit.",
    ),
    Line(
        "C0GENERAL",
        "U0CAROL",
        "Let's decide Kafka versus Pulsar on Thursday; I'll write up throughput and operating costs.",
    ),
]
QUALITY = [
    Line(
        "C0PROJECT",
        "U0ALICE",
        "The nightly load had 3% null customer ids again, and duplicates in the orders table.",
    ),
    Line(
        "C0PROJECT", "U0DAVE", "We need data validation rules and a data quality dashboard before the audit."
    ),
    Line(
        "C0PROJECT",
        "U0ALICE",
        "Agreed. And data governance: who is the data steward owning the customer table?",
    ),
]
LUNCH = [
    Line("C0RANDOM", "U0CAROL", "Anyone up for tacos at noon?"),
    Line("C0RANDOM", "U0DAVE", "Sure! The place on 5th street?"),
    Line("C0RANDOM", "U0CAROL", "Yes, meet in the lobby at 12."),
]


def script(start: float) -> list[tuple[str, Line]]:
    """The three conversations interleaved, with fixed timestamps half a second apart."""
    lines = [line for trio in zip(STREAMING, QUALITY, LUNCH, strict=False) for line in trio]
    lines += STREAMING[len(QUALITY) :]
    return [(slack_ts(start + i * 0.5), line) for i, line in enumerate(lines)]


def expected(events: list[tuple[str, Line]]) -> set[tuple[str, str]]:
    first = {}
    for ts, line in events:
        first.setdefault(line.channel, ts)
    return {("U0DAVE", f"C0GENERAL:{first['C0GENERAL']}"), ("U0BOB", f"C0PROJECT:{first['C0PROJECT']}")}


PREFERENCES = [
    Preferences(
        user="U0DAVE",
        opted_in=True,
        topics=[
            FollowedTopic(
                id="t1", text="Let me know when we make streaming technology decisions like Kafka or Pulsar"
            )
        ],
    ),
    Preferences(
        user="U0BOB", opted_in=True, topics=[FollowedTopic(id="t1", text="data quality and data governance")]
    ),
    Preferences(user="U0CAROL", opted_in=True),
    Preferences(
        user="U0ALICE", opted_in=False, topics=[FollowedTopic(id="t1", text="lunch plans and restaurants")]
    ),
]


async def follow(kafka: KafkaSettings) -> None:
    async with EventProducer(kafka, "test") as producer:
        for prefs in PREFERENCES:
            await producer.send(topics.PREFERENCES, prefs.user, prefs)


async def push(slack: SlackStandin, events: list[tuple[str, Line]]) -> None:
    for ts, line in events:
        await slack.push_event(slack.events.message(line.channel, line.user, line.text, ts=ts), timeout=10)


async def sent_dms(kafka: KafkaSettings, count: int, idle: float = 3.0) -> list[Notification]:
    """All `sent` decisions once `count` arrived and nothing more came for `idle` seconds."""
    deadline = time.monotonic() + 120
    while True:
        records = await read_topic(kafka, topics.SENT.name, timeout=5)
        notes: list[Notification] = [topics.SENT.decode(r.value) for r in records]
        sent = [n for n in notes if n.outcome == "sent"]
        if len(sent) >= count:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(sent)} of {count} DMs after 120s: {notes}")
        await asyncio.sleep(0.5)
    later = await read_topic(kafka, topics.SENT.name, count=len(records), idle=idle, timeout=30)
    return [n for n in (topics.SENT.decode(r.value) for r in later) if n.outcome == "sent"]


def dm_posts(slack: SlackStandin) -> list[str]:
    return [
        p.channel for p in slack.posts if p.method == "chat.postMessage" and p.channel.startswith(("D", "U"))
    ]


@pytest.fixture
async def followed(kafka_topics: KafkaSettings) -> KafkaSettings:
    await follow(kafka_topics)
    return kafka_topics


async def test_a_known_script_produces_exactly_the_expected_dms(
    followed: KafkaSettings, pipeline: Services, slack_standin: SlackStandin
) -> None:
    events = script(time.time() - 60)
    await push(slack_standin, events)
    sent = await sent_dms(followed, 2)
    assert {(n.user, n.conversation_id) for n in sent} == expected(events)
    assert len(sent) == 2
    assert len(dm_posts(slack_standin)) == 2


@pytest.mark.parametrize("service", ["ingest", "sessionizer", "scorer", "notifier"])
async def test_a_service_killed_mid_stream_loses_and_doubles_nothing(
    service: str, followed: KafkaSettings, pipeline: Services, slack_standin: SlackStandin
) -> None:
    events = script(time.time() - 60)
    half = len(events) // 2
    await push(slack_standin, events[:half])
    await pipeline.restart(service, kill=True)
    await push(slack_standin, events[half:])
    sent = await sent_dms(followed, 2)
    assert {(n.user, n.conversation_id) for n in sent} == expected(events)
    assert len(sent) == 2, sent
    assert len(dm_posts(slack_standin)) == 2


async def test_the_pipeline_catches_up_after_a_broker_outage(
    broker: Broker, followed: KafkaSettings, pipeline: Services, slack_standin: SlackStandin
) -> None:
    events = script(time.time() - 60)
    half = len(events) // 2
    await push(slack_standin, events[:half])
    broker.pause()
    try:
        # Ingest acks within Slack's limit from its buffer while the broker is away.
        await asyncio.gather(
            *(
                slack_standin.push_event(
                    slack_standin.events.message(line.channel, line.user, line.text, ts=ts), timeout=10
                )
                for ts, line in events[half:]
            )
        )
    finally:
        broker.resume()
    sent = await sent_dms(followed, 2)
    assert {(n.user, n.conversation_id) for n in sent} == expected(events)
    assert len(dm_posts(slack_standin)) == 2


def request_url(services: Services) -> str:
    """ingest's Request URL, where Slack posts signed events (ingest in HTTP mode)."""
    return f"http://127.0.0.1:{services['ingest'].env['BEEPGPT_INGEST_HTTP_PORT']}/slack/events"


Deliver = Callable[[dict[str, Any]], Awaitable[None]]


@contextlib.asynccontextmanager
async def delivery(mode: str, slack: SlackStandin, services: Services) -> AsyncIterator[Deliver]:
    """Hand events to ingest the way its mode takes them: Socket Mode envelopes, or signed
    `event_callback` posts that must be answered 200 (anything else makes Slack retry)."""
    if mode == "socket":

        async def push_one(event: dict[str, Any]) -> None:
            await slack.push_event(event, timeout=30)

        yield push_one
        return
    async with slack.http_sender(request_url(services)) as sender:

        async def post_one(event: dict[str, Any]) -> None:
            reply = await sender.send_event(slack.events.callback(event))
            assert reply.status == 200, (reply.status, reply.text)

        yield post_one


async def unsigned_requests_are_refused(slack: SlackStandin, services: Services, now: float) -> None:
    """What did not come from Slack never gets in: a conversation Dave would be alerted about,
    forged (wrong secret, no signature, a replayed timestamp), is refused with 401. A body that is
    not JSON cannot be retried into shape: signed, it is parked in the DLQ and answered 200;
    forged, it is a 401 like any other forgery."""
    forged = [
        slack.events.callback(
            slack.events.message("C0RANDOM", line.user, line.text, ts=slack_ts(now - 700 + i))
        )
        for i, line in enumerate(STREAMING)
    ]
    not_json = b'{"type": "event_callback", "event": {"type": "message", '
    async with slack.http_sender(request_url(services)) as sender:
        for payload in forged:
            assert (await sender.send_event(payload, bad_signature=True)).status == 401
            assert (await sender.send_event(payload, signed=False)).status == 401
            assert (await sender.send_event(payload, stale_timestamp=True)).status == 401
        assert (await sender.send_raw(not_json, "application/json", bad_signature=True)).status == 401
        assert (await sender.send_raw(not_json, "application/json")).status == 200
    metrics = await services["ingest"].metrics()
    refused = 'beepgpt_ingest_events_total{outcome="unauthorized",reason="bad_signature"}'
    assert f"{refused} {3 * len(forged) + 1}.0" in metrics


@pytest.mark.parametrize("ingest_mode", ["socket", "http"])
async def test_hostile_input_is_rejected_and_good_traffic_still_gets_through(
    ingest_mode: str, followed: KafkaSettings, pipeline: Services, slack_standin: SlackStandin
) -> None:
    """Malformed events, a 400,000-character message and a flood, over Socket Mode and over signed HTTP;
    over HTTP also forged requests and a body that is not JSON. Exactly the script's two DMs
    result, and what could not be understood is in the dead-letter topic with its reason."""
    now = time.time()
    hostile = [
        {"type": "message", "user": "U0CAROL", "text": "no channel", "ts": slack_ts(now - 900)},
        {"type": "made_up_event", "channel": "C0RANDOM"},
        # 400,000 characters: ten times what Slack sends, inside the 1 MiB HTTP body limit with its blocks
        slack_standin.events.message("C0RANDOM", "U0CAROL", "x" * 400_000, ts=slack_ts(now - 890)),
    ]
    flood = [
        slack_standin.events.message("C0RANDOM", "U0DAVE", f"spam {i}", ts=slack_ts(now - 800 + i * 0.01))
        for i in range(300)
    ]
    events = script(now - 60)
    reasons = ["missing_field", "unknown_event_type"]
    async with delivery(ingest_mode, slack_standin, pipeline) as deliver:
        for payload in hostile:
            await deliver(payload)
        await asyncio.gather(*(deliver(p) for p in flood))
        if ingest_mode == "http":
            await unsigned_requests_are_refused(slack_standin, pipeline, now)
            reasons.append("invalid_json")
        for ts, line in events:
            await deliver(slack_standin.events.message(line.channel, line.user, line.text, ts=ts))
    sent = await sent_dms(followed, 2)
    assert {(n.user, n.conversation_id) for n in sent} == expected(events)
    assert len(dm_posts(slack_standin)) == 2
    dead = await read_topic(followed, topics.SLACK_MESSAGES.dlq, count=len(reasons), timeout=10)
    assert sorted(header(r.headers, "dlq.error.reason") or "" for r in dead) == sorted(reasons)
