"""Conversation metrics from their definitions, on cases small enough to check by hand, and
`beepgpt eval conversations` end to end on a tiny export."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from beepgpt.cli import main as beepgpt
from offline.evaluation.conversations.data import split_of
from offline.evaluation.conversations.metrics import exact_match, one_to_one, score


def test_identical_clusterings_score_one_everywhere() -> None:
    truth = {"a": 1, "b": 1, "c": 2, "d": 2, "e": 3}
    got = score(truth, {"a": "x", "b": "x", "c": "y", "d": "y", "e": "z"})
    assert (got.ari, got.scaled_vi, got.one_to_one, got.exact_f1) == (1.0, 1.0, 1.0, 1.0)


def test_one_conversation_for_everything_has_the_vi_of_its_entropy() -> None:
    truth = {"a": 1, "b": 1, "c": 2, "d": 2}
    got = score(truth, dict.fromkeys(truth, "all"))
    # VI = H(truth | all) = log 2; scaled by log 4
    assert got.scaled_vi == pytest.approx(1 - math.log(2) / math.log(4))
    assert got.one_to_one == pytest.approx(0.5)
    assert got.exact_precision == 0.0
    assert got.exact_recall == 0.0


def test_exact_match_leaves_single_messages_out_on_both_sides() -> None:
    # truth {0,1} {2} ; predicted {0,1} {2} -> one pair matched of one each side
    assert exact_match([1, 1, 2], ["x", "x", "y"]) == (1.0, 1.0, 1.0)
    # predicted splits everything: no multi-message conversation predicted
    assert exact_match([1, 1, 2], ["x", "y", "z"]) == (0.0, 0.0, 0.0)


def test_one_to_one_pairs_each_conversation_once() -> None:
    # true A = {1,2,3}, B = {4}; predicted X = {1,2,3,4}: X pairs with A only
    table = {("A", "X"): 3, ("B", "X"): 1}
    assert one_to_one(table) == 3


def test_link_accuracy_counts_a_start_as_a_link_to_itself() -> None:
    truth = {"a": 1, "b": 1}
    got = score(
        truth,
        {"a": "x", "b": "x"},
        true_parents={"a": frozenset({"a"}), "b": frozenset({"a"})},
        chosen_parents={"a": None, "b": "b"},
    )
    assert got.link_accuracy == 0.5


def test_the_split_is_fixed_by_chunk_name() -> None:
    assert split_of("ubuntu-2004-12-25-train-c") == split_of("ubuntu-2004-12-25-train-c")
    names = [f"chunk-{i}" for i in range(500)]
    shares = {part: sum(split_of(n) == part for n in names) / 500 for part in ("train", "dev", "test")}
    assert 0.5 < shares["train"] < 0.7
    assert 0.1 < shares["dev"] < 0.3
    assert 0.1 < shares["test"] < 0.3


def _export(root: Path) -> None:
    """Two interleaved conversations in one busy channel, minutes apart, never 10 minutes quiet."""
    channel = root / "general"
    channel.mkdir(parents=True)
    (root / "channels.json").write_text(json.dumps([{"id": "C1", "name": "general"}]))
    (root / "users.json").write_text(json.dumps([{"id": u, "name": u} for u in ("UA", "UB", "UC", "UD")]))
    messages = [
        ("1700000000.000100", "UA", "how do I mount a usb disk in ubuntu?"),
        ("1700000030.000100", "UC", "anyone know a good irc client for gnome?"),
        ("1700000060.000100", "UB", "<@UA> try sudo mount /dev/sdb1 /mnt for the usb disk"),
        ("1700000090.000100", "UD", "<@UC> xchat is a good irc client"),
        ("1700000120.000100", "UA", "<@UB> thanks, the usb disk is mounted"),
        ("1700000150.000100", "UC", "<@UD> thanks, xchat works"),
    ]
    (channel / "2023-11-14.json").write_text(
        json.dumps([{"type": "message", "user": u, "text": t, "ts": ts} for ts, u, t in messages])
    )
    truth = {ts: ("usb" if u in ("UA", "UB") else "irc") for ts, u, _ in messages}
    (root / "conversations.json").write_text(json.dumps(truth))
    # the first two start conversations; each later message answers the one two lines up
    links = [[ts, ts] for ts, u, _ in messages[:2]] + [
        [ts, messages[i - 2][0]] for i, (ts, u, _) in enumerate(messages) if i >= 2
    ]
    (root / "links.json").write_text(json.dumps(links))


def test_the_command_measures_every_mode_and_writes_a_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "export"
    _export(data)
    out = tmp_path / "report"
    code = beepgpt(
        ["eval", "conversations", "--data", str(data), "--truth", str(data / "conversations.json"),
         "--links", str(data / "links.json"), "--out", str(out)]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "gap" in printed
    assert "linked" in printed
    report = json.loads((out / "report.json").read_text())
    gap, linked = report["modes"]["gap"], report["modes"]["linked"]
    assert gap["predicted_conversations"] == 1  # never 10 minutes quiet: one conversation
    assert gap["exact_f1"] == 0.0
    # mentions and shared words untangle the two conversations
    assert linked["exact_f1"] == 1.0
    assert linked["link_accuracy"] == 1.0


def test_the_command_refuses_truth_that_does_not_fit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "export"
    _export(data)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"1.000000": "x"}))
    code = beepgpt(["eval", "conversations", "--data", str(data), "--truth", str(wrong), "--out", str(tmp_path)])
    assert code == 2
    assert "no message" in capsys.readouterr().err
