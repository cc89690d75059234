"""The service with the trained local models against the real broker: the production path.

The model directory is what `beepgpt train` writes for the start of the example workspace
(trained once per module). A version swap is simulated by repointing a symlink to a
copy whose manifest carries a new version, as a deployment would after retraining.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from scorer_service_helpers import ServiceStarter, candidates, conversation, preferences, publish

from beepgpt.settings import KafkaSettings
from scorer.artifact import read_manifest
from scorer.model_watch import ModelWatcher
from scorer.scoring import ModelScorer, build
from scorer.settings import ScorerSettings

REPO = Path(__file__).resolve().parents[3]
DATA = REPO / "data"
BEEPGPT = str(Path(sys.executable).with_name("beepgpt"))
USERS = ["U03CC4325", "U3E44CFA1", "U605AEB3E", "UBB9D2B01", "UEA27BBFF", "UFB3DA5BF"]
STREAMING = "Alert me when people are making streaming technology decisions"


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`beepgpt train` on the example workspace's first 400 messages (the whole history takes a
    minute more and tests nothing more here); BEEPGPT_TEST_MODEL_DIR reuses a trained model."""
    if os.environ.get("BEEPGPT_TEST_MODEL_DIR"):
        return Path(os.environ["BEEPGPT_TEST_MODEL_DIR"])
    history = tmp_path_factory.mktemp("history")
    table = pd.read_parquet(DATA / "slack-generation.parquet").sort_values("ts").head(400)
    table.to_parquet(history / "workspace.parquet")
    shutil.copy(DATA / "slack-generation.users.json", history / "workspace.users.json")
    out = tmp_path_factory.mktemp("models") / "demo"
    done = subprocess.run(
        [BEEPGPT, "train", str(history / "workspace.parquet"), "--out", str(out), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _talk() -> list[tuple[str, str]]:
    return [
        (USERS[0], "We have to decide this week: Kafka or Pulsar for the event streaming platform?"),
        (
            USERS[1],
            "Kafka's consumer groups and the ecosystem tip it for me; Pulsar's tiered storage is nice.",
        ),
        (USERS[0], "Let's benchmark throughput and latency of both streaming brokers and choose on Friday."),
    ]


async def test_trained_models_explain_topic_and_interest_candidates_and_skip_participants(
    kafka_topics: KafkaSettings, start_service: ServiceStarter, trained_model: Path
) -> None:
    settings = ScorerSettings(model_dir=trained_model, model_poll_s=3600, learn_from_feedback=False)
    scorer = await build(settings)
    version = read_manifest(trained_model).version
    assert scorer.model_version == version
    await publish(
        kafka_topics,
        preferences(USERS[2], STREAMING),
        preferences(USERS[0], STREAMING),  # the author: never a candidate
        *[preferences(user) for user in USERS[3:]],
    )
    talk = conversation("Project:1690790000.000000", _talk(), channel="Project")
    async with start_service(scorer) as running:
        await publish(kafka_topics, talk)
        await running.service.caught_up(120)
    found = await candidates(kafka_topics)

    assert {c.user for c in found} <= set(USERS[2:])
    topic = [c for c in found if c.reason == "topic"]
    assert [c.user for c in topic] == [USERS[2]]
    assert topic[0].explanation.startswith(f'Matches a topic you follow: "{STREAMING}"')
    assert topic[0].model_version == version
    assert topic[0].score_space == scorer.models.current.embedder.name
    for candidate in found:
        assert candidate.conversation_id == talk.conversation_id
        if candidate.reason == "interest":
            assert candidate.explanation.startswith("You may want to join")
            assert "likely you join" in candidate.explanation
    assert scorer.cache.stats.misses == len(talk.messages)


async def test_a_new_model_version_is_used_without_a_restart(trained_model: Path, tmp_path: Path) -> None:
    second = tmp_path / "v2"
    shutil.copytree(trained_model, second)
    manifest = json.loads((second / "manifest.json").read_text())
    manifest["version"] = manifest["version"] + "-retrained"
    (second / "manifest.json").write_text(json.dumps(manifest))
    current = tmp_path / "current"
    current.symlink_to(trained_model)

    scorer = await build(ScorerSettings(model_dir=current, model_poll_s=3600, learn_from_feedback=False))
    try:
        assert isinstance(scorer, ModelScorer)
        assert isinstance(scorer.models, ModelWatcher)
        talk = conversation("Project:1690790000.000000", _talk(), channel="Project")
        prefs = {USERS[2]: preferences(USERS[2], STREAMING)}
        [before] = await scorer.score([talk], prefs)
        current.unlink()
        current.symlink_to(second)
        await scorer.models.check()
        [after] = await scorer.score([talk], prefs)
        assert (before.model_version, after.model_version) == (
            manifest["version"].removesuffix("-retrained"),
            manifest["version"],
        )
        assert scorer.cache.stats.misses == len(talk.messages)  # same embedder: the cache survived the swap
    finally:
        await scorer.aclose()
