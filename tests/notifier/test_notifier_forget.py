"""`beepgpt forget`: one person's preferences, feedback, suggestions, Redis state and model profile go; the
other person's stay. Through the real broker and Redis, read back the way the services read."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from notifier_helpers import candidate, opted_in
from pydantic import BaseModel

from beepgpt.cli import main as beepgpt
from beepgpt.contracts import Feedback, Preferences, SuggestedTopic, Suggestions
from beepgpt.kafka import EventProducer
from beepgpt.kafka.compacted import CompactedTable
from beepgpt.redis_client import redis_client
from beepgpt.settings import KafkaSettings, RedisSettings
from beepgpt.topics import FEEDBACK, PREFERENCES, SUGGESTIONS, Topic
from ingest.slack_app.preferences_store import PreferencesStore
from notifier.budget_counter import BudgetAsk, BudgetCounter
from notifier.corrections import Corrections
from notifier.dedup import ClaimState, DedupStore
from notifier.delivery import Posted, SentDM
from notifier.held import HeldAlert, HeldAlerts
from notifier.preferences import PreferencesTable as NotifierPreferences
from notifier.rate_limit import TokenBucket
from scorer.interest.activity import Activity
from scorer.preferences import PreferencesTable as ScorerPreferences

ANA, BO = "U0ANA", "U0BO"
NOW = 1_700_000_000.0
CONVERSATION = "C0PROJECT:1700000000.000100"


def feedback(user: str, useful: bool) -> Feedback:
    return Feedback(user=user, conversation_id=CONVERSATION, useful=useful, reason="topic", topic_id="t-1")


def suggestions(user: str) -> Suggestions:
    topic = SuggestedTopic(name="kafka consumer lag", conversations=4)
    return Suggestions(user=user, topics=[topic], conversations=12, computed_at=NOW)


async def table_of(kafka: KafkaSettings, topic: Topic) -> dict[str, BaseModel]:
    """The topic as a reader that starts now sees it (read to its end, tombstones applied)."""
    table: CompactedTable[BaseModel] = CompactedTable(kafka, topic)
    await table.start(30)
    await table.stop()
    return dict(table)


async def keys_of(redis: RedisSettings, user: str) -> set[str]:
    client = redis_client(redis)
    try:
        found = {k.decode() async for k in client.scan_iter(match=f"{redis.key_prefix}*{{{user}}}*")}
        due = await client.zrange(f"{redis.key_prefix}digest:due", 0, -1)
    finally:
        await client.aclose()
    queued = {u.decode() if isinstance(u, bytes) else str(u) for u in due}
    return found | ({f"due:{user}"} if user in queued else set())


async def store(kafka: KafkaSettings, redis: RedisSettings) -> None:
    """Preferences, feedback, a held alert, a budget, a dedup mark and a bucket for each of them."""
    async with EventProducer(kafka, "test") as producer:
        for user in (ANA, BO):
            await producer.send(PREFERENCES, user, opted_in(user, updated_at=NOW))
            await producer.send(FEEDBACK, user, feedback(user, True))
            await producer.send(FEEDBACK, user, feedback(user, False))
            await producer.send(SUGGESTIONS, user, suggestions(user))
    client = redis_client(redis)
    try:
        held = HeldAlerts(client, redis.key_prefix)
        await held.hold_many(
            [
                HeldAlert(
                    candidate=candidate(u),
                    record=f"r-{u}",
                    reason="held",
                    why="quiet hours",
                    due=NOW,
                    held_at=NOW,
                )
                for u in (ANA, BO)
            ]
        )
        budget = BudgetCounter(client, redis.key_prefix)
        await budget.take_many([BudgetAsk(u, "2023-11-14", f"r-{u}", limit=3) for u in (ANA, BO)], NOW)
        dedup = DedupStore(client, redis.key_prefix, ttl_s=3600)
        await dedup.claim_many(
            [(u, CONVERSATION, ClaimState("claim", f"r-{u}", owner="o")) for u in (ANA, BO)]
        )
        await TokenBucket(client, redis.key_prefix, rate_per_s=0.01, burst=3).take_many([ANA, BO], NOW)
        corrections = Corrections(client, redis.key_prefix, change_ttl_s=3600, sent_ttl_s=3600)
        for u in (ANA, BO):
            await corrections.remember([(Posted(f"D{u}", "1700000200.000100"), SentDM(user=u, entries=[(candidate(u), "m")]))])
    finally:
        await client.aclose()


def model_dir(root: Path) -> Path:
    """A directory of versions with a `current` link, both people in the activity."""
    version = root / "pairs@1"
    version.mkdir(parents=True)
    activity = Activity(NOW)
    vector = np.ones(4, dtype=np.float32)
    activity.observe("c1", "C0PROJECT", ANA, NOW, vector)
    activity.observe("c1", "C0PROJECT", BO, NOW + 60, vector)
    activity.save(version)
    (root / "current").symlink_to(version.name)
    return root


@pytest.fixture
def environment(
    kafka_topics: KafkaSettings, redis_settings: RedisSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `beepgpt forget` reads its settings from, pointed at the test's broker and Redis."""
    monkeypatch.setenv("BEEPGPT_KAFKA_BOOTSTRAP_SERVERS", kafka_topics.bootstrap_servers)
    monkeypatch.setenv("BEEPGPT_KAFKA_IDEMPOTENCE", "false")
    monkeypatch.setenv("BEEPGPT_KAFKA_PARTITIONS", str(kafka_topics.partitions))
    monkeypatch.setenv("BEEPGPT_REDIS_URL", redis_settings.url)
    monkeypatch.setenv("BEEPGPT_REDIS_KEY_PREFIX", redis_settings.key_prefix)


@pytest.mark.usefixtures("environment")
async def test_forget_removes_one_person_and_leaves_the_other(
    kafka_topics: KafkaSettings,
    redis_settings: RedisSettings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await store(kafka_topics, redis_settings)
    models = model_dir(tmp_path / "models")
    assert len(await keys_of(redis_settings, ANA)) == 5  # held, budget, dedup, bucket, due entry

    code = await asyncio.to_thread(beepgpt, ["forget", ANA, "--yes", "--json", "--model-dir", str(models)])

    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["preferences"]["records"] == 1
    assert report["feedback"]["records"] == 2
    assert report["suggestions"]["records"] == 1
    assert report["redis"] == {
        "held_alerts": 1,
        "digests": 1,
        "dedup_keys": 1,
        "budget_keys": 1,
        "rate_limit_keys": 1,
        "sent_dms": 1,
    }
    assert report["models"] == {str((models / "pairs@1").resolve()): True}  # `current` is the same
    assert any("until the next model swap or restart" in note for note in report["notes"])

    preferences = await table_of(kafka_topics, PREFERENCES)
    assert ANA not in preferences
    assert preferences[BO] == opted_in(BO, updated_at=NOW)
    clicks = await table_of(kafka_topics, FEEDBACK)
    assert ANA not in clicks
    assert BO in clicks
    suggested = await table_of(kafka_topics, SUGGESTIONS)
    assert ANA not in suggested
    assert suggested[BO] == suggestions(BO)
    assert await keys_of(redis_settings, ANA) == set()
    assert len(await keys_of(redis_settings, BO)) == 5
    client = redis_client(redis_settings)
    try:
        kept = Corrections(client, redis_settings.key_prefix, change_ttl_s=60, sent_ttl_s=60)
        assert await kept.sent(Posted(f"D{BO}", "1700000200.000100")) is not None
        assert await kept.sent(Posted(f"D{ANA}", "1700000200.000100")) is None
    finally:
        await client.aclose()
    activity = Activity.load(models / "current")
    assert set(activity.people) == {BO}


@pytest.mark.usefixtures("environment")
async def test_every_preferences_reader_takes_a_tombstone_as_no_preferences(
    kafka_topics: KafkaSettings, redis_settings: RedisSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    await store(kafka_topics, redis_settings)
    assert await asyncio.to_thread(beepgpt, ["forget", ANA, "--yes"]) == 0
    assert f"forgot {ANA}" in capsys.readouterr().out

    async with EventProducer(kafka_topics, "test") as producer:
        ingest = PreferencesStore(kafka_topics, producer)
        await ingest.start(30)
        try:
            assert ingest.get(ANA) == Preferences(user=ANA, opted_in=False, updated_at=0.0)
            assert ingest.get(BO).opted_in
        finally:
            await ingest.stop()
    for reader in (ScorerPreferences(kafka_topics), NotifierPreferences(kafka_topics)):
        await reader.start(30)
        try:
            assert reader.get(ANA) is None
            assert reader[BO].opted_in
        finally:
            await reader.stop()


def test_without_yes_and_without_a_terminal_nothing_is_removed(capsys: pytest.CaptureFixture[str]) -> None:
    assert beepgpt(["forget", ANA]) == 2
    assert "--yes" in capsys.readouterr().err
