"""Builds the topic development set from the generated workspace's schedule. Rerun it with

    .venv/bin/python offline/devset/build_devset.py [--data data/slack-generation.parquet]

and it rewrites `topics.json` / `labels.jsonl` (the five evaluation topics, modelled on the
example's) and `calibration/topics.json` / `calibration/labels.jsonl` (five other topics, used
only to choose the product's default threshold and feedback settings).

Conversations are those of the sessionizer's shared query (docs/conversations.md), keyed as the labels
format wants: `{"channel": ..., "thread": <float ts of the first message>}`.

The rule (weak labels from `slack-generation/schedule.jsonl`, which says which project and which
discussion topic or technology each working hour was about):

1. A conversation's hour is the schedule entry in force for most of its messages (an entry lasts
   until the next one starts; ties go to the earlier hour).
2. Small talk: a conversation where at least two messages mention the weekend is about weekends;
   if those are more than a third of its messages, it is small talk and carries no project,
   technology or subject label.
3. Project topics are true when the conversation's hour belongs to that project.
4. Subject topics are true when the hour's scheduled subject is about it (a pattern on the
   schedule's wording), or when at least half of the conversation's messages (and at least two)
   name it (a pattern on the messages). The second clause was added after reading the
   conversations the first version labelled false yet ranked highest: an hour scheduled for
   "real-time event tracking" whose eleven messages all discuss monitoring and alerting is an
   SRE conversation by any reading.

Evaluation topics (ids and sentences as in the example):
    ID1 Supply Chain Management project      — project "Inventory Tracking Tool"
    ID2 streaming technology decisions       — technology hours naming Kafka/Pulsar/Flink/Spark
                                               Streaming; or messages naming those
    ID3 SRE topics like monitoring/alerting   — subjects or messages about monitoring, alerting,
                                               incidents, telemetry, availability, failures
    ID4 weekends                             — rule 2
    ID5 Fraud Detection project              — project "Real-Time Fraud Detection"
Calibration topics: the Personalized Product Recommendations project, the Network Monitoring
project, machine learning, choosing databases, security and privacy.
"""

from __future__ import annotations

import argparse
import bisect
import json
import re
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]

EVAL_TOPICS = {
    "ID1": "Tell me about engineering discussions related to the Supply Chain Management project",
    "ID2": "Alert me when people are making streaming technology decisions",
    "ID3": "Poke me when there are people chatting about SRE topics like monitoring and alerting",
    "ID4": "Let me know when people are talking about their weekends",
    "ID5": "Inform me of any important discussions happening on the Fraud Detection project",
}
CALIBRATION_TOPICS = {
    "recommendations": "Notify me about conversations on the Personalized Product Recommendations project",
    "network": "Ping me whenever the team discusses the Network Monitoring project",
    "ml": "Let me know when people discuss machine learning models",
    "databases": "Tell me when people are choosing databases for storing data",
    "security": "Alert me to discussions about security and privacy",
}

WEEKEND = re.compile(r"\bweekends?\b", re.IGNORECASE)
STREAMING = re.compile(r"\b(?:kafka|pulsar|flink|spark streaming|kinesis)\b", re.IGNORECASE)
SRE_SUBJECT = re.compile(
    r"monitor|alert|incident|telemetry|availability|failure|escalation|observab", re.IGNORECASE
)
SRE_TEXT = re.compile(
    r"\b(?:monitor\w*|alert\w*|incident\w*|observability|on-call|telemetry|outage\w*)\b", re.IGNORECASE
)
ML = re.compile(r"machine learning|\bML\b|predictive|tensorflow|pytorch|deep learning|neural", re.IGNORECASE)
DATABASES = re.compile(r"database|cassandra|mongodb|nosql|\bsql\b|storage", re.IGNORECASE)
SECURITY = re.compile(r"security|privacy|encrypt|authenticat|compliance|protection|biometric", re.IGNORECASE)


@dataclass(frozen=True)
class Hour:
    start: float
    project: str
    sector: str
    kind: str  # "technology" or "discussion"
    subject: str


@dataclass(frozen=True)
class Conversation:
    channel: str
    first_ts: float
    times: tuple[float, ...]
    texts: tuple[str, ...]


def read_schedule(path: Path) -> list[Hour]:
    hours = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        raw = json.loads(line)
        project = re.search(r"Name: ([^,]*),", raw["current_project"])
        sector = re.search(r"Sector: ([^,]*),", raw["current_project"])
        subject = re.search(r'"(.*)"', raw["topic"])
        hours.append(
            Hour(
                start=float(raw["timestamp"]),
                project=project.group(1) if project else "",
                sector=sector.group(1) if sector else "",
                kind="technology" if "technology" in raw["topic"] else "discussion",
                subject=subject.group(1) if subject else raw["topic"],
            )
        )
    return sorted(hours, key=lambda h: h.start)


def hour_of(conversation: Conversation, hours: Sequence[Hour]) -> Hour:
    starts = [h.start for h in hours]
    votes: Counter[int] = Counter()
    for t in conversation.times:
        votes[max(0, bisect.bisect_right(starts, t) - 1)] += 1
    best = max(votes.items(), key=lambda item: (item[1], -item[0]))[0]
    return hours[best]


def naming(conversation: Conversation, pattern: re.Pattern[str]) -> bool:
    """At least half of the messages, and at least two, match `pattern`."""
    hits = sum(1 for text in conversation.texts if pattern.search(text))
    return hits >= 2 and 2 * hits >= len(conversation.texts)


Rule = Callable[[Conversation, Hour, bool], bool]


def weekend_count(conversation: Conversation) -> int:
    return sum(1 for text in conversation.texts if WEEKEND.search(text))


EVAL_RULES: Mapping[str, Rule] = {
    "ID1": lambda c, h, small: not small and h.sector == "Supply Chain Management",
    "ID2": lambda c, h, small: (
        not small and ((h.kind == "technology" and bool(STREAMING.search(h.subject))) or naming(c, STREAMING))
    ),
    "ID3": lambda c, h, small: not small and (bool(SRE_SUBJECT.search(h.subject)) or naming(c, SRE_TEXT)),
    "ID4": lambda c, h, small: weekend_count(c) >= 2,
    "ID5": lambda c, h, small: not small and h.project == "Real-Time Fraud Detection",
}
CALIBRATION_RULES: Mapping[str, Rule] = {
    "recommendations": lambda c, h, small: not small and h.project == "Personalized Product Recommendations",
    "network": lambda c, h, small: not small and h.project == "Network Monitoring",
    "ml": lambda c, h, small: not small and (bool(ML.search(h.subject)) or naming(c, ML)),
    "databases": lambda c, h, small: (
        not small and ((h.kind == "technology" and bool(DATABASES.search(h.subject))) or naming(c, DATABASES))
    ),
    "security": lambda c, h, small: not small and (bool(SECURITY.search(h.subject)) or naming(c, SECURITY)),
}


def label(
    conversations: Sequence[Conversation], hours: Sequence[Hour], rules: Mapping[str, Rule]
) -> list[dict[str, Any]]:
    lines = []
    for conversation in sorted(conversations, key=lambda c: (c.first_ts, c.channel)):
        hour = hour_of(conversation, hours)
        weekend = weekend_count(conversation)
        small_talk = weekend >= 2 and 3 * weekend > len(conversation.texts)
        lines.append(
            {
                "id": {"channel": conversation.channel, "thread": conversation.first_ts},
                "result": {tid: rule(conversation, hour, small_talk) for tid, rule in rules.items()},
            }
        )
    return lines


def write(directory: Path, topics: Mapping[str, str], lines: Sequence[dict[str, Any]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "topics.json").write_text(json.dumps(topics, indent=2) + "\n")
    (directory / "labels.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def conversations_from_table(path: Path) -> list[Conversation]:
    """The conversations of the shared Kaskada query over the message table at `path`."""
    from offline.training.history import read_history

    history = read_history(path)
    table = history.table
    out = []
    for found in history.conversations:
        rows = table.iloc[list(found.rows)]
        out.append(
            Conversation(
                channel=found.channel,
                first_ts=found.first_ts,
                times=tuple(float(t) for t in rows["ts"]),
                texts=tuple(str(t) for t in rows["text"]),
            )
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=REPO / "data" / "slack-generation.parquet")
    parser.add_argument(
        "--schedule", type=Path, default=REPO / "data" / "slack-generation" / "schedule.jsonl"
    )
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    hours = read_schedule(args.schedule)
    found = conversations_from_table(args.data)
    for directory, topics, rules in (
        (args.out, EVAL_TOPICS, EVAL_RULES),
        (args.out / "calibration", CALIBRATION_TOPICS, CALIBRATION_RULES),
    ):
        lines = label(found, hours, rules)
        write(directory, topics, lines)
        counts = {tid: sum(1 for line in lines if line["result"][tid]) for tid in topics}
        print(f"{directory}: {len(lines)} conversations, positives {counts}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
