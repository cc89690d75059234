"""`beepgpt suggest` and `beepgpt eval suggestions` as people run them, on a day and a half of the
example data; the evaluation's judging on a schedule made by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from beepgpt.cli import main as beepgpt
from offline.evaluation.suggestions import Hour, Schedule, judge, majority, project_name, topic_name
from scorer.suggestions import Example, Suggestion

USER = "U3E44CFA1"  # UserA


def test_suggest_prints_a_persons_topics_with_examples(
    small_history: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert beepgpt(["suggest", str(small_history), "--user", USER, "--json"]) == 0
    record = json.loads(capsys.readouterr().out.strip())
    assert record["user"] == USER
    assert record["conversations"] > 10
    topics = record["topics"]
    assert 1 <= len(topics) <= 5
    for topic in topics:
        assert 1 <= len(topic["name"].split(", ")) <= 3
        assert topic["conversations"] >= 3
        assert len(topic["examples"]) == 2
        assert all(e["channel"] in ("General", "Project") and e["first_line"] for e in topic["examples"])
    sizes = [t["conversations"] for t in topics]
    assert sizes == sorted(sizes, reverse=True)

    # A topic the person follows is left out; the text form says where each example was.
    first = topics[0]["name"]
    assert beepgpt(["suggest", str(small_history), "--user", USER, "--follow", first]) == 0
    printed = capsys.readouterr().out
    assert f"Suggested topics for {USER}" in printed
    assert f". {first}  (" not in printed
    assert "#General" in printed or "#Project" in printed


def test_suggest_leaves_out_excluded_channels_and_reports_bad_input(
    small_history: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert (
        beepgpt(["suggest", str(small_history), "--user", USER, "--json", "--exclude-channel", "General"])
        == 0
    )
    record = json.loads(capsys.readouterr().out.strip())
    assert all(e["channel"] == "Project" for t in record["topics"] for e in t["examples"])
    assert beepgpt(["suggest", str(tmp_path / "missing.parquet"), "--user", USER]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_eval_suggestions_reports_every_person(
    small_history: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = pd.read_parquet(small_history)
    start = int(table["ts"].min()) // 3600 * 3600
    hours = range(start, int(table["ts"].max()) + 3600, 3600)
    schedule = tmp_path / "schedule.jsonl"
    schedule.write_text(
        "".join(
            json.dumps(
                {
                    "timestamp": h,
                    "topic": f'The primary discussion topic for this hour is: "topic {i}"',
                    "current_project": f"Sector: S, Name: Project {i // 4}, Description: d",
                }
            )
            + "\n"
            for i, h in enumerate(hours)
        )
    )
    out = tmp_path / "report"
    assert beepgpt(["eval", "suggestions", "--data", str(small_history), "--schedule", str(schedule),
                    "--out", str(out)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "target met for" in printed
    report = json.loads((out / "report.json").read_text())
    assert len(report) == 6
    for person in report:
        assert set(person["projects_recovered"]) <= set(person["projects_discussed"])
        assert 0 <= person["unmatched"] <= len(person["suggestions"]) <= 5


def _suggestion(name: str, members: list[str]) -> Suggestion:
    return Suggestion(name=name, members=tuple(members), examples=(Example(members[0], "C", "1.0", "x"),))


def test_judging_a_suggestion_by_where_most_of_its_conversations_fall() -> None:
    schedule = Schedule(
        [Hour(0, "Fraud", "models"), Hour(3600, "Fraud", "alerts"), Hour(7200, "Stock", "sync")]
    )
    starts = {"a": 10.0, "b": 20.0, "c": 3700.0, "d": 7300.0, "e": 7400.0, "f": 100.0}
    own = [(c, t) for c, t in starts.items()]
    found = [
        _suggestion("fraud", ["a", "b", "c"]),  # Fraud's hours; 2 of 3 in one topic's hour too
        _suggestion("stock", ["d", "e"]),
        _suggestion("mixed", ["c", "d"]),  # half and half: matches nothing
    ]
    result = judge("U1", found, own, starts, schedule)
    assert result.projects_discussed == ["Fraud", "Stock"]
    assert result.projects_recovered == ["Fraud", "Stock"]
    assert result.topics_discussed == 3
    assert result.topics_recovered == 2  # "models" (a, b of 3) and "sync"
    assert result.unmatched == 1
    assert result.met  # both of the two projects discussed, one unmatched
    assert [s["project"] for s in result.suggestions] == ["Fraud", "Stock", None]


def test_schedule_texts_and_majority() -> None:
    assert (
        project_name("Sector: E, Name: Real-Time Fraud Detection, Description: x, y")
        == "Real-Time Fraud Detection"
    )
    assert (
        topic_name('The primary technology to discuss in this hour is: "Edge computing"') == "Edge computing"
    )
    assert majority(["a", "a", "b"]) == "a"
    assert majority(["a", "b"]) is None
    assert majority([None, None, "a"]) is None
    assert Schedule([Hour(0, "P", "t")]).at(3600) is None
