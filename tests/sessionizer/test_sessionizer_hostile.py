"""Records with values the sessionizer cannot compute with (`ts="abc"`, an infinite `event_time`),
through the real service and broker: the contract refuses each, naming the field, so it is
dead-lettered; the records around it form their conversation, and the partition's query keeps
running (it crashed in a loop before the contract constrained these fields)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from sessionizer_helpers import Conversations, closed_count, fast_settings, publish, running_service

from beepgpt import topics
from beepgpt.contracts import SlackMessage, SlackReaction
from beepgpt.kafka import header
from beepgpt.settings import KafkaSettings
from devstack.topic_reader import read_topic
from sessionizer.clock import FakeClock

START = 1_700_000_000.0


def _raw(event: SlackMessage | SlackReaction, **fields: object) -> bytes:
    """The event's JSON with `fields` replaced as they are (no validation on the way)."""
    value = json.loads(topics.encode(event))
    value.update(fields)
    return json.dumps(value).encode()


def test_the_contract_names_the_field_a_record_cannot_be_used_for() -> None:
    good = SlackMessage(channel="C1", ts=f"{START:.6f}", user="U1", text="hi", event_time=START)
    decode = topics.SLACK_MESSAGES.decode
    assert decode(topics.encode(good)) == good
    for raw, field in [
        (_raw(good, ts="abc"), "ts"),
        (_raw(good, ts="١٧٠٠٠٠٠٠٠٠.000100"), "ts"),  # digits, but not ASCII ones
        (_raw(good, ts="99999999999.000000"), "ts"),  # past what int64 nanoseconds hold
        (_raw(good, thread_ts="1700000000.x"), "thread_ts"),
        (
            _raw(good, action="edited").replace(b'"event_time": 1700000000.0', b'"event_time": 1e400'),
            "event_time",
        ),
        (
            _raw(SlackReaction(channel="C1", item_ts="1.0", user="U1", reaction="+1"), item_ts="nope"),
            "item_ts",
        ),
    ]:
        with pytest.raises(ValidationError) as refused:
            decode(raw)
        assert [e["loc"][-1] for e in refused.value.errors()] == [field]


async def test_a_record_with_ts_abc_is_dead_lettered_and_the_partition_goes_on(
    kafka_topics: KafkaSettings,
) -> None:
    first = SlackMessage(channel="C1", ts=f"{START:.6f}", user="U1", text="first", event_time=START)
    second = SlackMessage(
        channel="C1", ts=f"{START + 10:.6f}", user="U2", text="second", event_time=START + 10
    )
    bad_ts = _raw(SlackMessage(channel="C1", ts=f"{START + 5:.6f}", user="U1", text="bad"), ts="abc")
    infinite_edit = _raw(first, action="edited", text="edit").replace(
        b'"event_time": 1700000000.0', b'"event_time": 1e400'
    )
    bad_reaction = _raw(
        SlackReaction(channel="C1", item_ts=first.ts, user="U2", reaction="eyes"), item_ts="x"
    )
    await publish(kafka_topics, [first])
    await publish(kafka_topics, [bad_ts, infinite_edit, bad_reaction], key="C1")
    await publish(kafka_topics, [second])

    clock = FakeClock(START)
    settings = fast_settings(group_id="sessionizer-hostile")
    async with Conversations(kafka_topics) as out, running_service(kafka_topics, settings, clock) as running:
        await out.until(lambda events: len(events) >= 2)
        clock.set(START + 7_200)
        await out.until(closed_count(1))
        service = running.service
        assert not running.task.done()
        assert service.ready
        assert all(p.failed is None for p in service.partitions.values())

    closed = out.closed()[f"C1:{first.ts}"]
    assert [m.text for m in closed.messages] == ["first", "second"]
    assert [e.messages[-1].text for e in out.updated()] == ["first", "second"]
    dead = await read_topic(kafka_topics, "slack.messages.dlq", count=3, timeout=10)
    assert [r.value for r in dead] == [bad_ts, infinite_edit, bad_reaction]  # the original bytes
    reasons = [header(r.headers, "dlq.error.message") for r in dead]
    assert [header(r.headers, "dlq.error.type") for r in dead] == ["ValidationError"] * 3
    assert "ts\n" in (reasons[0] or "")
    assert "'abc' is not a Slack timestamp" in (reasons[0] or "")
    assert "event_time\n" in (reasons[1] or "")
    assert "finite number" in (reasons[1] or "")
    assert "item_ts\n" in (reasons[2] or "")
    assert "'x' is not a Slack timestamp" in (reasons[2] or "")
    assert {header(r.headers, "dlq.service") for r in dead} == {"sessionizer"}
    assert [int(header(r.headers, "dlq.original.offset") or -1) for r in dead] == [1, 2, 3]
