"""`beepgpt train` and `beepgpt eval` as people run them, on a day and a half of the example data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from beepgpt.cli import main as beepgpt
from scorer.embeddings import LocalEmbedder
from scorer.interest.pairs import PairModel
from scorer.model_dir import load_models

DEVSET = Path(__file__).resolve().parents[2] / "offline" / "devset"


def test_train_writes_a_model_the_scorer_loads(
    small_history: Path, tmp_path: Path, embedder: LocalEmbedder, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "models" / "small"
    assert beepgpt(["train", str(small_history), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "version" in printed
    assert "alert threshold" in printed
    models = load_models(out, embedder=embedder)
    assert isinstance(models.interest, PairModel)
    assert models.version.startswith("small@")
    labels = json.loads((out / "labels.json").read_text())
    assert {u["name"] for u in labels["users"]} == {"UserA", "UserB", "UserC", "UserD", "UserE", "UserF"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["kind"] == "pairs"
    assert metrics["examples"]["fit"] > 200
    assert metrics["examples"]["calibration"] > 0
    assert 0 < metrics["threshold"]["value"] < 1
    assert json.loads((out / "manifest.json").read_text())["data"]["messages"] == 320


def test_train_reports_unreadable_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert beepgpt(["train", str(tmp_path / "missing.parquet"), "--out", str(tmp_path / "m")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_eval_interest_compares_with_both_baselines(
    small_history: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "interest"
    assert (
        beepgpt(
            [
                "eval",
                "interest",
                "--data",
                str(small_history),
                "--test-fraction",
                "0.3",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "most active overall" in printed
    assert "most active in channel" in printed
    assert "P(join)" in printed
    report = json.loads((out / "report.json").read_text())
    assert set(report["rankers"]) == {"model", "most active overall", "most active in channel"}
    for figures in report["rankers"].values():
        assert 0 < figures["all"]["mrr"] <= 1
        assert figures["all"]["top1"] <= figures["all"]["top3"]
    assert (out / "interest.png").stat().st_size > 1000


def test_eval_topics_runs_on_any_labels_file(
    small_history: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "topics"
    args = [
        "eval",
        "topics",
        "--data",
        str(small_history),
        "--topics",
        str(DEVSET / "topics.json"),
        "--labels",
        str(DEVSET / "labels.jsonl"),
        "--feedback-shots",
        "3",
        "--draws",
        "2",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert beepgpt(args) == 0
    printed = capsys.readouterr().out
    assert "macro" in printed
    assert "feedback shots" in printed
    report = json.loads((out / "report.json").read_text())
    assert set(report["topics"]) == {"ID1", "ID2", "ID3", "ID4", "ID5"}
    assert report["labelled_conversations_not_found"] > 0  # the devset covers two weeks, this data 1.5 days
    assert 0 <= report["macro_f1"]["default_threshold"] <= report["macro_f1"]["best_threshold_per_topic"] <= 1
    assert report["feedback"]["shots_per_topic"] == 3
    assert (out / "precision_recall.png").stat().st_size > 1000


def test_eval_topics_rejects_a_malformed_labels_file(
    small_history: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"id": {"channel": "General"}, "result": {}}\n')
    args = [
        "eval",
        "topics",
        "--data",
        str(small_history),
        "--topics",
        str(DEVSET / "topics.json"),
        "--labels",
        str(labels),
    ]
    assert beepgpt(args) == 2
    assert "labels.jsonl:1: not a label line" in capsys.readouterr().err


def test_eval_alerts_replays_the_test_period_against_the_baselines(
    small_history: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "alerts"
    args = ["eval", "alerts", "--data", str(small_history), "--test-fraction", "0.4", "--out", str(out)]
    assert beepgpt([*args, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "recently active in channel" in printed
    report = json.loads((out / "report.json").read_text())
    default = report["default"]
    assert 0 <= default["precision"] <= 1
    assert 0 <= default["join_recall"] <= 1
    assert default["most_in_one_day"] <= 3  # the default budget
    assert set(report["baselines"]) == {
        "most active in channel",
        "recently active in channel",
        "answers the first author",
    }
    for figures in report["baselines"].values():
        assert figures["dms"] <= max(default["dms"] * 2, 5)  # run at the model's volume
    assert "model, budget 3" in report["curve"]
    assert (out / "precision_volume.png").stat().st_size > 1000


def test_eval_alerts_refuses_a_negative_budget(
    small_history: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert beepgpt(["eval", "alerts", "--data", str(small_history), "--daily-budget", "-1"]) == 2
    assert "--daily-budget" in capsys.readouterr().err
