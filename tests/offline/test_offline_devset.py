"""The committed development set is what its rule produces from the shared conversation query."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

from offline.training import history

ROOT = Path(__file__).resolve().parents[2]
DEVSET = ROOT / "offline" / "devset"


def builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_devset", DEVSET / "build_devset.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_committed_labels_are_reproduced_by_the_rule() -> None:
    build = builder()
    found = build.conversations_from_table(ROOT / "data" / "slack-generation.parquet")
    hours = build.read_schedule(ROOT / "data" / "slack-generation" / "schedule.jsonl")
    for directory, rules in ((DEVSET, build.EVAL_RULES), (DEVSET / "calibration", build.CALIBRATION_RULES)):
        committed = [json.loads(line) for line in (directory / "labels.jsonl").read_text().splitlines()]
        assert committed == build.label(found, hours, rules)
        assert set(json.loads((directory / "topics.json").read_text())) == set(rules)


def test_every_labelled_id_is_a_conversation_of_the_shared_query() -> None:
    found = history.read_history(ROOT / "data" / "slack-generation.parquet")
    keys = {c.key for c in found.conversations}
    labelled = [json.loads(line)["id"] for line in (DEVSET / "labels.jsonl").read_text().splitlines()]
    assert {(i["channel"], round(float(i["thread"]), 6)) for i in labelled} == keys


def test_the_rule_on_a_small_case() -> None:
    build = builder()
    hours = [
        build.Hour(
            0.0,
            "Real-Time Fraud Detection",
            "Financial Services",
            "technology",
            "Apache Kafka or Apache Pulsar",
        ),
        build.Hour(
            3600.0,
            "Network Monitoring",
            "Telecommunications",
            "discussion",
            "Alerting and escalation workflows",
        ),
    ]
    chat = build.Conversation(
        "General", 10.0, (10.0, 20.0, 30.0), ("how was your weekend?", "great weekend!", "relaxing")
    )
    work = build.Conversation(
        "Project", 3590.0, (3590.0, 3700.0, 3800.0), ("pager fired", "on-call", "fixed")
    )
    lines = build.label([work, chat], hours, build.EVAL_RULES)
    assert lines[0]["result"] == {
        "ID1": False,
        "ID2": False,
        "ID3": False,
        "ID4": True,
        "ID5": False,
    }  # small talk
    assert lines[1]["result"]["ID3"] is True
    assert lines[1]["result"]["ID5"] is False
