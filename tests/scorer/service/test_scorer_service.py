"""The scorer service against the real broker, with the deterministic keyword scorer."""

from __future__ import annotations

from keyword_scorer import FAIL_MARKER, FLAKY_MARKER
from prometheus_client import REGISTRY
from scorer_service_helpers import ServiceStarter, candidates, conversation, preferences, publish

from beepgpt.kafka import EventProducer, header
from beepgpt.kafka.headers import TRACE_ID
from beepgpt.settings import KafkaSettings
from beepgpt.topics import CANDIDATES, CONVERSATIONS
from devstack.topic_reader import read_topic


async def test_conversations_in_explained_candidates_out_and_none_for_participants(
    kafka_topics: KafkaSettings, start_service: ServiceStarter
) -> None:
    await publish(
        kafka_topics,
        preferences("UANA", "kafka streaming decisions"),
        preferences("UBEN", "kafka streaming decisions"),  # takes part: never a candidate
        preferences("UCAT"),  # opted in, follows nothing, mentioned below
        preferences("UDAN", "kafka streaming decisions", opted_in=False),
        preferences("B0BOT", "kafka streaming decisions"),
    )
    talk = conversation(
        "C1:1700000000.000000",
        [("UBEN", "Kafka or Pulsar for the streaming layer?"), ("UEVE", "we need decisions today, <@UCAT>")],
    )
    quiet = conversation("C1:1700000100.000000", [("UEVE", "lunch anyone?")])
    async with start_service() as running:
        await publish(kafka_topics, talk, quiet)
        await running.service.caught_up(30)
    found = await candidates(kafka_topics)

    assert {(c.user, c.reason) for c in found} == {("UANA", "topic"), ("UCAT", "interest")}
    by_user = {c.user: c for c in found}
    topic = by_user["UANA"]
    assert topic.conversation_id == talk.conversation_id
    assert topic.version == talk.version
    assert topic.channel == "C1"
    assert topic.latest_ts == talk.last_ts
    assert topic.topic_id == "UANA-t0"
    assert '"kafka streaming decisions"' in topic.explanation
    assert [line.user for line in topic.preview] == ["UBEN", "UEVE"]
    assert "(90% likely you join" in by_user["UCAT"].explanation
    assert all(c.model_version == "keywords-1" for c in found)


async def test_candidates_keep_the_conversation_trace_id(
    kafka_topics: KafkaSettings, start_service: ServiceStarter
) -> None:
    await publish(kafka_topics, preferences("UANA", "deploy"))
    talk = conversation("C1:1700000000.000000", [("UBEN", "deploy at noon")])
    async with start_service() as running:
        async with EventProducer(kafka_topics, "sessionizer") as producer:
            await producer.send(CONVERSATIONS, talk.conversation_id, talk, trace_id="trace-42")
        await running.service.caught_up(30)
    [record] = await read_topic(kafka_topics, CANDIDATES.name, count=1)
    assert record.key == b"UANA"
    assert header(record.headers, TRACE_ID) == "trace-42"
    assert header(record.headers, "beepgpt.source") == "scorer"


async def test_a_preferences_update_changes_the_next_decisions_without_restart(
    kafka_topics: KafkaSettings, start_service: ServiceStarter
) -> None:
    await publish(kafka_topics, preferences("UANA", "billing"))
    async with start_service() as running:
        await publish(kafka_topics, conversation("C1:1700000000.000000", [("UBEN", "the billing outage")]))
        await running.service.caught_up(30)
        [first] = await candidates(kafka_topics, count=1)
        assert first.user == "UANA"

        # UANA now follows something else and UCAT opts in for billing: both take effect at once.
        await publish(kafka_topics, preferences("UANA", "hiring"), preferences("UCAT", "billing"))
        table = running.service.preferences
        await table.wait_for("UANA", lambda p: [t.text for t in p.topics] == ["hiring"], 30)
        await table.wait_for("UCAT", lambda p: p.opted_in, 30)
        await publish(kafka_topics, conversation("C1:1700000200.000000", [("UBEN", "billing again")]))
        await running.service.caught_up(30)
    second = [c for c in await candidates(kafka_topics) if c.conversation_id == "C1:1700000200.000000"]
    assert [c.user for c in second] == ["UCAT"]


async def test_only_the_configured_kinds_are_scored_and_closed_conversations_are_forgotten(
    kafka_topics: KafkaSettings, start_service: ServiceStarter
) -> None:
    await publish(kafka_topics, preferences("UANA", "release"))
    lines = [("UBEN", "release train"), ("UEVE", "release notes")]
    updated = conversation("C1:1700000000.000000", lines[:1], version=1)
    closed = conversation("C1:1700000000.000000", lines, kind="closed", version=2)
    async with start_service(score_on="closed") as running:
        await publish(kafka_topics, updated, closed)
        await running.service.caught_up(30)
        assert running.scorer.forgotten == ["C1:1700000000.000000"]
    [candidate] = await candidates(kafka_topics)
    assert (candidate.user, candidate.version) == ("UANA", 2)


async def test_a_failing_conversation_is_retried_then_dead_lettered_while_the_rest_flows(
    kafka_topics: KafkaSettings, start_service: ServiceStarter
) -> None:
    await publish(kafka_topics, preferences("UANA", "roadmap"))
    poison = conversation("C1:1700000000.000000", [("UBEN", f"roadmap {FAIL_MARKER}")])
    flaky = conversation("C2:1700000000.000000", [("UBEN", f"roadmap {FLAKY_MARKER}")], channel="C2")
    fine = conversation("C3:1700000000.000000", [("UBEN", "roadmap review")], channel="C3")
    before = {stage: _errors(stage) for stage in ("score", "score_retry", "decode")}
    async with start_service(max_attempts=3) as running:
        await publish(kafka_topics, poison, b"{not json", key="garbage")
        await publish(kafka_topics, flaky, fine)
        await running.service.caught_up(30)
    found = await candidates(kafka_topics)
    assert sorted(c.conversation_id for c in found) == [flaky.conversation_id, fine.conversation_id]

    dead = await read_topic(kafka_topics, CONVERSATIONS.dlq, count=2)
    reasons = {(r.key or b"").decode(): header(r.headers, "dlq.error.message") or "" for r in dead}
    assert set(reasons) == {poison.conversation_id, "garbage"}
    assert "scoring failed: ScoringFailed: model refused" in reasons[poison.conversation_id]
    assert header(dead[0].headers, "dlq.service") == "scorer"
    assert _errors("decode") - before["decode"] == 1
    assert _errors("score") - before["score"] >= 1
    assert _errors("score_retry") - before["score_retry"] >= 2  # the poison's batch, then the flaky one


def _errors(stage: str) -> float:
    return REGISTRY.get_sample_value("beepgpt_scorer_errors_total", {"stage": stage}) or 0.0
