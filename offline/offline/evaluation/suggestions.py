"""`beepgpt eval suggestions --data <table> --schedule <schedule.jsonl> [--out DIR]`.

Measures suggested topics against what the example workspace's generator says each hour was
about (`slack-generation/schedule.jsonl`: one record per hour, its `timestamp`, the
`current_project` and the hour's `topic`). For each person:

- *discussed*: the projects (and hour topics) of the hours their conversations began in;
- a suggestion *matches* a project or topic when most (more than half) of the conversations
  behind it began in that project's or topic's hours;
- *recovered*: the discussed projects (topics) that one of their top suggestions matches;
- *unmatched*: their top suggestions that match no project and no topic.

Target (issue 18): each person's top 5 recover at least 3 of the projects they discussed (all of
them when they discussed fewer), with at most 1 unmatched suggestion. This is the only labelled
data for suggestions there is: the settings in `scorer.suggestions` were chosen for reasons
stated there, and the figure is reported as it comes (docs/suggestions.md says what else was
measured).
"""

from __future__ import annotations

import argparse
import bisect
import json
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from offline.suggestions import suggestions_of, workspace
from offline.tables import TableError, load_table
from scorer.suggestions import Suggestion, SuggestionSettings
from scorer.vector_cache import add_cache_arguments, cached_store

HOUR_S = 3600
TARGET_PROJECTS = 3
TARGET_UNMATCHED = 1


@dataclass(frozen=True)
class Hour:
    start: float
    project: str
    topic: str


class Schedule:
    """Which project and topic each generated hour was about."""

    def __init__(self, hours: Sequence[Hour]) -> None:
        self.hours = sorted(hours, key=lambda h: h.start)
        self._starts = [h.start for h in self.hours]

    @classmethod
    def read(cls, path: Path) -> Schedule:
        hours = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                raw = json.loads(line)
                hours.append(
                    Hour(
                        float(raw["timestamp"]),
                        project_name(raw["current_project"]),
                        topic_name(raw["topic"]),
                    )
                )
        return cls(hours)

    def at(self, ts: float) -> Hour | None:
        i = bisect.bisect_right(self._starts, ts) - 1
        if i < 0 or ts >= self.hours[i].start + HOUR_S:
            return None
        return self.hours[i]


def project_name(text: str) -> str:
    """ "Sector: …, Name: Inventory Tracking Tool, Description: …" -> "Inventory Tracking Tool"."""
    match = re.search(r"Name:\s*(.*?),\s*Description:", text)
    return match.group(1).strip() if match else text.strip()


def topic_name(text: str) -> str:
    """'The primary … is: "Edge computing …"' -> "Edge computing …"."""
    match = re.search(r'"(.+)"', text)
    return match.group(1) if match else text.strip()


def majority(labels: Sequence[str | None]) -> str | None:
    """The label more than half of `labels` carry, if any."""
    if not labels:
        return None
    label, count = Counter(labels).most_common(1)[0]
    return label if label is not None and count * 2 > len(labels) else None


@dataclass
class PersonResult:
    user: str
    conversations: int
    suggestions: list[dict[str, Any]]
    projects_discussed: list[str]
    projects_recovered: list[str]
    topics_discussed: int
    topics_recovered: int
    unmatched: int
    met: bool = field(default=False)


def judge(
    user: str,
    found: Sequence[Suggestion],
    own: Sequence[tuple[str, float]],
    starts: dict[str, float],
    schedule: Schedule,
    top: int = 5,
) -> PersonResult:
    """One person's figures: `own` are (conversation id, first ts) of their conversations,
    `starts` every conversation's first ts by id."""
    hours = [schedule.at(ts) for _, ts in own]
    projects = sorted({h.project for h in hours if h is not None})
    topics = {h.topic for h in hours if h is not None}
    recovered: set[str] = set()
    topics_hit: set[str] = set()
    unmatched = 0
    shown = []
    for suggestion in found[:top]:
        behind = [schedule.at(starts[c]) for c in suggestion.members]
        project = majority([h.project if h else None for h in behind])
        topic = majority([h.topic if h else None for h in behind])
        if project is not None:
            recovered.add(project)
        if topic is not None:
            topics_hit.add(topic)
        if project is None and topic is None:
            unmatched += 1
        shown.append(
            {
                "name": suggestion.name,
                "conversations": len(suggestion.members),
                "project": project,
                "topic": topic,
            }
        )
    need = min(TARGET_PROJECTS, len(projects))
    result = PersonResult(
        user=user,
        conversations=len(own),
        suggestions=shown,
        projects_discussed=projects,
        projects_recovered=sorted(recovered),
        topics_discussed=len(topics),
        topics_recovered=len(topics_hit & topics),
        unmatched=unmatched,
    )
    result.met = len(recovered) >= need and unmatched <= TARGET_UNMATCHED
    return result


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="beepgpt eval suggestions",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", type=Path, required=True, help="message table or Slack export")
    p.add_argument("--schedule", type=Path, required=True, help="the generator's schedule.jsonl")
    p.add_argument("--top", type=int, default=5, help="suggestions judged per person (default 5)")
    p.add_argument("--out", type=Path, help="write report.json here")
    p.add_argument(
        "--per-group",
        type=int,
        default=SuggestionSettings().conversations_per_group,
        help="conversations per group bounding the number of groups (default 10)",
    )
    add_cache_arguments(p)
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        table = load_table(args.data)
        schedule = Schedule.read(args.schedule)
    except (TableError, ValueError, OSError, KeyError) as error:
        print(f"beepgpt eval suggestions: {error}", file=sys.stderr)
        return 2
    from scorer.model_dir import shared_local_embedder

    store = cached_store(args, shared_local_embedder())
    space = workspace(table, store)
    print(store.last_run.summary(where=store.cache_note), file=sys.stderr)
    starts = {e.conversation_id: float(e.first_ts) for e in space.events}
    settings = SuggestionSettings(max_suggestions=args.top, conversations_per_group=args.per_group)
    results = []
    for user in space.people():
        found, _ = suggestions_of(space, user, settings=settings)
        events, _ = space.of(user)
        own = [(e.conversation_id, float(e.first_ts)) for e in events]
        results.append(judge(user, found, own, starts, schedule, args.top))
    print(report_table(results))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "report.json").write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return 0


def report_table(results: Sequence[PersonResult]) -> str:
    lines = [
        f"{'person':<12} {'convs':>5} {'projects':>9} {'topics':>9} {'unmatched':>9}  target",
    ]
    for r in results:
        lines.append(
            f"{r.user:<12} {r.conversations:>5} {len(r.projects_recovered):>4}/{len(r.projects_discussed):<4}"
            f" {r.topics_recovered:>4}/{r.topics_discussed:<4} {r.unmatched:>9}  {'met' if r.met else 'missed'}"
        )
    met = sum(r.met for r in results)
    mean_projects = sum(len(r.projects_recovered) for r in results) / max(1, len(results))
    lines.append(
        f"target met for {met}/{len(results)} people; projects recovered {mean_projects:.2f} on average;"
        f" unmatched suggestions {sum(r.unmatched for r in results)} in all"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
