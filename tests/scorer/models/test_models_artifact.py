"""The model directory: written whole, loaded with its format version checked, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from models_fixtures import VOCAB, conversation, synthetic_examples, vectors_of

from offline.training.local import train_interest
from scorer.artifact import (
    FORMAT_VERSION,
    MANIFEST,
    READABLE_VERSIONS,
    ModelFormatError,
    fingerprint_rows,
    read_manifest,
    staged_directory,
)
from scorer.embeddings import LocalEmbedder
from scorer.interest.model import InterestModel
from scorer.model_dir import load_models


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, embedder: LocalEmbedder) -> Path:
    from scorer.artifact import LABELS, Manifest, new_version, utc_now, write_json, write_manifest
    from scorer.topics.lexical import Lexicon
    from scorer.topics.matcher import EmbeddingSpace

    examples, store = synthetic_examples(embedder, repeats=2)
    model, metrics = train_interest(examples, vectors_of(store), VOCAB, 384)
    data = fingerprint_rows([(e.channel, str(e.ts), e.author, e.prompt.texts[0]) for e in examples])
    out = tmp_path_factory.mktemp("models") / "synthetic"
    with staged_directory(out) as stage:
        model.save(stage)
        write_json(stage / LABELS, VOCAB.to_json())
        write_json(stage / "metrics.json", metrics)
        EmbeddingSpace.of(embedder.name, embedder.embed(["a", "b"])).save(stage)
        Lexicon.of(["the Kafka brokers are down", "lunch at noon?"]).save(stage)
        write_manifest(
            stage, Manifest(new_version("synthetic", data), "local", embedder.name, data, utc_now())
        )
    return out


def test_a_written_model_loads_and_scores(model_dir: Path, embedder: LocalEmbedder) -> None:
    models = load_models(model_dir, embedder=embedder)
    assert models.version.startswith("synthetic@")
    assert models.manifest.format_version == FORMAT_VERSION
    assert isinstance(models.interest, InterestModel)
    assert set(read_manifest(model_dir).files) >= {
        "interest.npz",
        "labels.json",
        "metrics.json",
        "space.npz",
        "lexicon.json",
    }
    assert models.topics.lexicon is not None
    assert models.topics.lexicon.messages == 2
    event = conversation([("UDEE", "the Kafka brokers are down again")])
    probabilities = models.interest.probabilities(event, embedder.embed([event.messages[0].text]))
    assert max(probabilities, key=probabilities.__getitem__) == "UANA"


def test_another_format_version_is_refused_with_a_clear_message(
    model_dir: Path, tmp_path: Path, embedder: LocalEmbedder
) -> None:
    copy = tmp_path / "future"
    copy.mkdir()
    for item in model_dir.iterdir():
        (copy / item.name).write_bytes(item.read_bytes())
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(
        ModelFormatError,
        match=rf"format version {FORMAT_VERSION + 1}.*reads version 1, 2, 3 or 4.*retrain",
    ):
        load_models(copy, embedder=embedder)


def test_a_format_1_directory_scores_topics_by_embeddings_alone(
    model_dir: Path, tmp_path: Path, embedder: LocalEmbedder
) -> None:
    """Format 1 had no lexicon.json: it keeps its measured embedding-only scoring and threshold."""
    from beepgpt.contracts import FollowedTopic
    from scorer.topics.matcher import default_threshold

    assert READABLE_VERSIONS == (1, 2, 3, 4)
    old = tmp_path / "old"
    old.mkdir()
    for item in model_dir.iterdir():
        if item.name != "lexicon.json":
            (old / item.name).write_bytes(item.read_bytes())
    manifest = json.loads((old / MANIFEST).read_text())
    manifest["format_version"] = 1
    manifest["files"] = [f for f in manifest["files"] if f != "lexicon.json"]
    (old / MANIFEST).write_text(json.dumps(manifest))
    models = load_models(old, embedder=embedder)
    assert models.topics.lexicon is None
    assert models.topics.threshold == default_threshold(embedder.name)
    [found] = models.topics.match(embedder.embed(["brokers down"]), [FollowedTopic(id="k", text="Kafka")])
    assert -1.0 <= found.score <= 1.0


def test_unfinished_and_missing_directories_say_so(tmp_path: Path, embedder: LocalEmbedder) -> None:
    with pytest.raises(ModelFormatError, match="no model directory"):
        load_models(tmp_path / "nothing", embedder=embedder)
    (tmp_path / "half").mkdir()
    with pytest.raises(ModelFormatError, match=r"has no manifest\.json.*resumes"):
        load_models(tmp_path / "half", embedder=embedder)


def test_a_failed_write_leaves_the_previous_model(model_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "current"
    with staged_directory(target) as stage:
        (stage / "marker").write_text("v1")

    def crash_while_writing() -> None:
        with staged_directory(target) as stage:
            (stage / "marker").write_text("v2")
            raise RuntimeError("training crashed")

    with pytest.raises(RuntimeError, match="training crashed"):
        crash_while_writing()
    assert (target / "marker").read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["current"]


def test_fingerprints_ignore_row_order_but_not_content() -> None:
    rows = [("C", "1.000001", "U1", "hi"), ("C", "2.000001", "U2", "yo")]
    assert fingerprint_rows(rows).sha256 == fingerprint_rows(rows[::-1]).sha256
    assert fingerprint_rows(rows).sha256 != fingerprint_rows([rows[0], ("C", "2.000001", "U2", "yo!")]).sha256
    assert fingerprint_rows(rows).messages == 2
    assert np.isclose(fingerprint_rows(rows).first_ts or 0, 1.000001)
