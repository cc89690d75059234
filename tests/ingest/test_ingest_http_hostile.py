"""Hostile HTTP input, through ingest's real HTTP adapter and Bolt app over a real Intake and
Publisher producing to the test's broker.

Unsigned (or badly signed, or stale) requests get 401 before anything is decoded, parsed or kept,
and the log says so in one short line whatever the body; signed bodies that would break Bolt
(not an object, nested too deep, a routing id of the wrong type) get 400 without a retry and are
dead-lettered; a signed event whose envelope `event_time` is a 400-digit number is taken with its
own ts (or dead-lettered when it has no time of its own), and acked either way. Requests are
signed, or not, with slack_sdk's `SignatureVerifier`. "Nothing else reached Kafka" is shown by a
marker sent last: once it is read back, the topic is read to its end offsets.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from ingest_helpers import Counters, decoded, read_values
from prometheus_client import REGISTRY
from slack_sdk.signature import SignatureVerifier

from beepgpt.kafka import header
from beepgpt.settings import KafkaSettings
from beepgpt.topics import SLACK_MESSAGES
from devstack.slack_standin.events import EventBuilder
from devstack.topic_reader import read_topic
from ingest.bolt_app import BotIdentity, build_app
from ingest.http_events import HttpEventsAdapter
from ingest.intake import Intake
from ingest.normalize import Rules
from ingest.publisher import Publisher

SECRET = "test-signing-secret"
GENERAL = "C0GENERAL"
ALICE = "U0ALICE"
FILLER = "z" * 64  # what a big body is made of: must never appear in a log
HUGE = int("9" * 400)  # a 400-digit `event_time`: float() of it raises OverflowError
LOG_LINE_LIMIT = 2_048  # bytes per log record, message and extras together


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    text: str


@dataclass
class Client:
    session: aiohttp.ClientSession
    url: str

    async def post(
        self,
        body: bytes,
        *,
        secret: str | None = SECRET,
        age_s: float = 0,
        timestamp: str | None = None,
        content_type: str = "application/json",
        chunked: bool = False,
    ) -> Reply:
        """POST `body`, signed with `secret` by slack_sdk (None: no signature headers at all)."""
        headers = {"Content-Type": content_type}
        if secret is not None:
            stamp = timestamp or str(int(time.time() - age_s))
            # slack_sdk signs text: bytes that are not UTF-8 get a signature of something else
            text = body.decode("utf-8", errors="replace")
            signature = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=text)
            headers |= {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature or ""}
        data: Any = body
        if chunked:

            async def chunks() -> AsyncIterator[bytes]:
                for start in range(0, len(body), 65_536):
                    yield body[start : start + 65_536]

            data = chunks()
        async with self.session.post(self.url, data=data, headers=headers) as response:
            return Reply(response.status, dict(response.headers), await response.text())

    async def event(self, payload: dict[str, Any]) -> Reply:
        return await self.post(json.dumps(payload).encode())


Serve = Callable[..., contextlib.AbstractAsyncContextManager[Client]]


@pytest.fixture
def serve(publisher: Publisher) -> Serve:
    """`async with serve(max_body_bytes=...) as client:` ingest's HTTP adapter on a free port."""

    @contextlib.asynccontextmanager
    async def start(**options: Any) -> AsyncIterator[Client]:
        identity = BotIdentity(
            team_id="T0TEAM", bot_user_id="U0BEEPGPT", bot_id="B0BEEPGPT", bot_token="xoxb-t"
        )
        intake = Intake(publisher, Rules())
        app = build_app(intake, identity, signing_secret=SECRET, api_url="http://127.0.0.1:9/")
        adapter = HttpEventsAdapter(app, intake, signing_secret=SECRET, host="127.0.0.1", port=0, **options)
        await adapter.start()
        try:
            async with aiohttp.ClientSession() as session:
                yield Client(session, f"http://127.0.0.1:{adapter.port}/slack/events")
        finally:
            await adapter.stop()

    return start


def record_size(record: logging.LogRecord) -> int:
    """What a log line of this record can hold: its message and every extra field."""
    return len(record.getMessage()) + len(repr(vars(record)))


def assert_bounded_logs(records: list[logging.LogRecord]) -> None:
    for record in records:
        assert record.exc_info is None, record.getMessage()  # no traceback
        assert record.levelno < logging.ERROR, record.getMessage()
        assert record_size(record) < LOG_LINE_LIMIT, (record.getMessage(), record_size(record))
        assert FILLER not in repr(vars(record))


def big_event(size: int) -> bytes:
    """A signed-looking message event of about `size` bytes (the stand-in repeats the text in
    `blocks`, so the text is half of it)."""
    body = EventBuilder().callback(EventBuilder().message(GENERAL, ALICE, FILLER * (size // 128)))
    return json.dumps(body).encode()


def dlq_reasons(records: list[Any]) -> list[str | None]:
    return [header(r.headers, "dlq.error.reason") for r in records]


async def test_unsigned_requests_get_401_before_anything_is_parsed_or_logged(
    serve: Serve, kafka_topics: KafkaSettings, caplog: pytest.LogCaptureFixture
) -> None:
    bodies = [
        b"[]",
        b'{"team":5}',
        b"[" * 100_000 + b"]" * 100_000,  # deeper than any parser's recursion limit
        b'{"type": "event_callback", "x": "\xff"}',  # not UTF-8
        big_event(900 * 1024),  # just under the 1 MiB limit
    ]
    ways: list[dict[str, Any]] = [
        {"secret": None},  # no signature at all
        {"secret": "someone-elses-secret"},
        {"secret": SECRET, "age_s": 600},  # a replay of a real request, outside Slack's 5 minutes
        {"secret": SECRET, "timestamp": "１２３"},  # not ASCII digits
    ]
    counters = Counters()
    async with serve() as client:
        with caplog.at_level(logging.DEBUG):
            for body in bodies:
                for way in ways:
                    reply = await client.post(body, **way)
                    assert reply.status == 401, (body[:40], way, reply)
                    assert json.loads(reply.text) == {"error": "invalid request"}
        assert_bounded_logs(caplog.records)
        refusals = [r for r in caplog.records if r.getMessage() == "request refused: not signed by Slack"]
        assert len(refusals) == len(bodies) * len(ways)
        assert {r.__dict__["reason"] for r in refusals} == {
            "missing_signature",
            "bad_signature",
            "stale_timestamp",
            "bad_timestamp",
        }
        assert max(r.__dict__["bytes"] for r in refusals) > 900_000  # read, measured, not kept
        assert not [r for r in caplog.records if r.name.startswith("ingest.bolt")]  # Bolt never saw them
        assert counters.delta() == {("unauthorized", "bad_signature"): len(bodies) * len(ways)}
        # nothing reached Kafka: a signed malformed marker is the only dead letter
        assert (await client.post(b"[]")).status == 400
    await read_values(kafka_topics, 1, topic=SLACK_MESSAGES.dlq)
    assert len(await read_topic(kafka_topics, SLACK_MESSAGES.dlq)) == 1
    assert await read_topic(kafka_topics, SLACK_MESSAGES.name) == []


async def test_signed_bodies_bolt_cannot_take_get_400_and_are_dead_lettered(
    serve: Serve, kafka_topics: KafkaSettings, caplog: pytest.LogCaptureFixture
) -> None:
    ev = EventBuilder()
    shared_event = ev.callback(ev.message(GENERAL, ALICE, "x"), is_ext_shared_channel=True) | {
        "event": "message"
    }
    bad_authorization = ev.callback(ev.message(GENERAL, ALICE, "x"))
    bad_authorization["authorizations"][0]["team_id"] = 7
    cases = [
        (b"[]", "invalid_body", "body is a JSON list, not an object"),
        (b'"just a string"', "invalid_body", "body is a JSON str, not an object"),
        (b'{"team":5}', "invalid_field", "team is int, not a string or an object"),
        (b'{"type":"event_callback","team_id":["T1"]}', "invalid_field", "team_id is list, not a string"),
        (
            json.dumps(bad_authorization).encode(),
            "invalid_field",
            "authorizations[0].team_id is int, not a string",
        ),
        (b'{"event":{"channel":{"id":5}}}', "invalid_field", "event.channel.id is int, not a string"),
        (
            json.dumps(shared_event).encode(),
            "invalid_field",
            "event is not an object in a shared channel's event",
        ),
        (b'{"a":' * 100 + b"1" + b"}" * 100, "too_deep", "body nests deeper than 64 levels"),
        (b"[" * 100_000 + b"]" * 100_000, "too_deep", "body nests too deep to parse"),
    ]
    counters = Counters()
    async with serve() as client:
        with caplog.at_level(logging.INFO):  # aiokafka's DEBUG lines show what it sends
            for body, reason, _ in cases:
                reply = await client.post(body)
                assert (reply.status, json.loads(reply.text)) == (400, {"error": reason}), body[:60]
                assert reply.headers.get("X-Slack-No-Retry") == "1"  # Slack resending it cannot help
        assert_bounded_logs(caplog.records)
        lines = [r for r in caplog.records if r.getMessage() == "signed request refused: malformed body"]
        assert [(r.__dict__["reason"], r.__dict__["detail"]) for r in lines] == [(r, d) for _, r, d in cases]
        marker = ev.callback(ev.message(GENERAL, ALICE, "still taking events"))
        assert (await client.event(marker)).status == 200
    await read_values(kafka_topics, 1)
    assert [m.text for m in decoded(await read_topic(kafka_topics, SLACK_MESSAGES.name))] == [
        "still taking events"
    ]
    dead = await read_values(kafka_topics, len(cases), topic=SLACK_MESSAGES.dlq)
    by_value = {r.value: r for r in dead}
    assert len(by_value) == len(cases)  # every one once, with its original bytes
    for body, reason, detail in cases:
        record = by_value[body]
        assert header(record.headers, "dlq.error.reason") == reason
        assert header(record.headers, "dlq.error.message") == f"{reason}: {detail}"
    assert counters.delta()[("rejected", "too_deep")] == 2


async def test_bodies_over_the_limit_get_413_unread(serve: Serve, caplog: pytest.LogCaptureFixture) -> None:
    body = big_event(100 * 1024)
    async with serve(max_body_bytes=64 * 1024) as client:
        with caplog.at_level(logging.INFO):
            assert (await client.post(body, secret=None)).status == 413
            assert (await client.post(body)).status == 413  # signed or not: the size comes first
            assert (await client.post(body, chunked=True)).status == 413  # no Content-Length to go by
            small = json.dumps(EventBuilder().callback(EventBuilder().message(GENERAL, ALICE, "ok"))).encode()
            assert (await client.post(small)).status == 200
    assert_bounded_logs(caplog.records)
    assert len([r for r in caplog.records if r.getMessage() == "request refused: body too large"]) == 3


async def test_the_default_limit_is_one_mib(serve: Serve) -> None:
    async with serve() as client:
        assert (await client.post(big_event(1024 * 1024 + 4096), secret=None)).status == 413
        assert (await client.post(big_event(1024 * 1024 + 4096))).status == 413
        assert (await client.post(big_event(900 * 1024))).status == 200


async def test_a_400_digit_event_time_is_ignored_for_the_events_own_time_and_acked(
    serve: Serve, kafka_topics: KafkaSettings, caplog: pytest.LogCaptureFixture
) -> None:
    ev = EventBuilder()
    message = ev.callback(ev.message(GENERAL, ALICE, "on time"), event_time=HUGE)
    reaction = ev.reaction_added(ALICE, "eyes", GENERAL, message["event"]["ts"])
    del reaction["event_ts"]  # no time of its own: the envelope's was the only one
    timeless = ev.callback(reaction, event_time=HUGE)
    infinite = json.dumps(ev.callback(ev.message(GENERAL, ALICE, "infinite"))).replace(
        '"event_time": ', '"event_time": 1e400, "_was": '
    )
    repairs = REGISTRY.get_sample_value("beepgpt_ingest_repairs_total", {"repair": "ignored_event_time"}) or 0
    async with serve() as client:
        with caplog.at_level(logging.INFO):
            for payload in (message, timeless):
                reply = await client.event(payload)
                assert reply.status == 200, reply  # acked: Slack must not retry it until it gives up
            assert (await client.post(infinite.encode())).status == 200
            marker = ev.callback(ev.message(GENERAL, ALICE, "marker"))
            assert (await client.event(marker)).status == 200
    assert_bounded_logs(caplog.records)
    await read_values(kafka_topics, 3)
    published = decoded(await read_topic(kafka_topics, SLACK_MESSAGES.name))
    assert [m.text for m in published] == ["on time", "infinite", "marker"]
    assert published[0].event_time == float(message["event"]["ts"])  # its own ts, not the envelope's
    assert published[0].event_id == message["event_id"]
    dead = await read_values(kafka_topics, 1, topic=SLACK_MESSAGES.dlq)
    assert dlq_reasons(dead) == ["missing_field"]
    assert json.loads(dead[0].value)["event_id"] == timeless["event_id"]  # the delivery, whole
    assert json.loads(dead[0].value)["event_time"] == HUGE
    assert REGISTRY.get_sample_value("beepgpt_ingest_repairs_total", {"repair": "ignored_event_time"}) == (
        repairs + 2
    )


class FailingBody(dict[str, Any]):
    """A delivery one of whose envelope fields cannot be read: stands for whatever the normalizer
    might still trip on."""

    def get(self, key: str, default: Any = None) -> Any:
        if key == "is_ext_shared_channel":
            raise RuntimeError("unreadable field")
        return super().get(key, default)


async def test_an_event_the_normalizer_fails_on_is_dead_lettered_not_lost(
    publisher: Publisher, kafka_topics: KafkaSettings
) -> None:
    body = FailingBody(EventBuilder().callback(EventBuilder().message(GENERAL, ALICE, "boom")))
    outcome = await Intake(publisher, Rules()).receive(body)
    assert outcome.reason == "normalize_failed"  # type: ignore[union-attr]
    dead = await read_values(kafka_topics, 1, topic=SLACK_MESSAGES.dlq)
    assert header(dead[0].headers, "dlq.error.message") == "normalize_failed: RuntimeError: unreadable field"
    assert json.loads(dead[0].value)["event_id"] == body["event_id"]
