"""`beepgpt eval topics …` and `beepgpt eval interest …`: rerunnable measurements.

    beepgpt eval topics --data data/slack-generation.parquet \\
        --topics offline/devset/topics.json --labels offline/devset/labels.jsonl \\
        [--feedback-shots 5] [--out reports/topics]
    beepgpt eval interest --data data/slack-generation.parquet [--split-at 2023-08-10 | --test-fraction 0.2]
    beepgpt eval alerts --data path/to/export [--split-at 2019-10-01 | --test-fraction 0.3] [--out reports/alerts]

Each prints a table and writes `report.json` and a PNG plot into `--out`.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from offline.evaluation.topics import LabelsError
from offline.training.history import HistoryError
from scorer.vector_cache import add_cache_arguments, cached_store

if TYPE_CHECKING:
    from offline.training.pipeline import Prepared
    from offline.training.replay import Stream
    from scorer.interest.pairs import PairModel


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="beepgpt eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="what", required=True)
    t = sub.add_parser(
        "topics", help="topic matcher: macro-F1 at the default threshold, best thresholds, feedback"
    )
    t.add_argument("--data", type=Path, required=True, help="message table or Slack export")
    t.add_argument("--topics", type=Path, required=True, help="JSON mapping topic ids to sentences")
    t.add_argument(
        "--labels", type=Path, required=True, help="JSONL: {id: {channel, thread}, result: {topic: bool}}"
    )
    t.add_argument(
        "--feedback-shots",
        type=int,
        default=0,
        metavar="K",
        help="also learn from K labelled conversations per topic",
    )
    t.add_argument(
        "--draws", type=int, default=20, help="random draws of feedback shots to average (default 20)"
    )
    t.add_argument(
        "--threshold",
        type=float,
        help="one threshold for every topic, instead of the product's label-free per-topic lines",
    )
    t.add_argument(
        "--model", type=Path, help="use a trained model directory's workspace statistics and threshold"
    )
    t.add_argument(
        "--embeddings", choices=("local", "openai"), default="local", help="embedding model (default local)"
    )
    t.add_argument("--embedding-model", default="text-embedding-3-small", help="OpenAI embedding model")
    t.add_argument(
        "--embedding-only",
        action="store_true",
        help="score by embeddings alone, without the workspace's word statistics (format-1 models)",
    )
    t.add_argument("--out", type=Path, default=Path("reports/topics"))
    t.add_argument("--no-progress", action="store_true")
    add_cache_arguments(t)
    i = sub.add_parser("interest", help="interest model vs baselines on a time split")
    i.add_argument("--data", type=Path, required=True, help="message table or Slack export")
    split = i.add_mutually_exclusive_group()
    split.add_argument("--split-at", help="test on messages from this UTC date/time on (ISO format)")
    split.add_argument(
        "--test-fraction", type=float, default=0.2, help="test on the latest share of examples (default 0.2)"
    )
    i.add_argument("--users", type=Path, help="Slack users.json for display names")
    i.add_argument("--out", type=Path, default=Path("reports/interest"))
    i.add_argument("--no-progress", action="store_true")
    add_cache_arguments(i)
    a = sub.add_parser(
        "alerts", help="replay the history after a split: DMs per person per day, precision, join recall"
    )
    a.add_argument("--data", type=Path, required=True, help="message table or Slack export")
    cut = a.add_mutually_exclusive_group()
    cut.add_argument("--split-at", help="replay messages from this UTC date/time on (ISO format)")
    cut.add_argument(
        "--test-fraction", type=float, default=0.3, help="replay the latest share of messages (default 0.3)"
    )
    a.add_argument("--users", type=Path, help="Slack users.json for display names")
    a.add_argument("--daily-budget", type=int, default=3, help="real-time DMs per person per day (default 3)")
    a.add_argument("--out", type=Path, default=Path("reports/alerts"))
    a.add_argument("--no-progress", action="store_true")
    add_cache_arguments(a)
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        commands = {"topics": topics, "interest": interest, "alerts": alerts}
        return commands[args.what](args)
    except (HistoryError, LabelsError, ValueError) as error:
        print(f"beepgpt eval {args.what}: {error}", file=sys.stderr)
        return 2


def topics(args: argparse.Namespace) -> int:
    from offline.evaluation.report import plot_topics, topics_table, write_json
    from offline.evaluation.topics import evaluate, read_labels, read_topics
    from offline.training.cli import choose_embedder
    from offline.training.pipeline import (
        conversation_texts,
        conversation_vectors,
        prepare,
        workspace_lexicon,
        workspace_space,
    )
    from scorer.topics.matcher import DEFAULT_THRESHOLDS, TopicMatcher

    topic_texts = read_topics(args.topics)
    labels = read_labels(args.labels)
    embedder = choose_embedder(args.embeddings, args.embedding_model, 0.0)
    prepared = prepare(args.data, embedder, progress=not args.no_progress, store=cached_store(args, embedder))
    threshold = args.threshold
    per_topic_lines: bool | None = None
    if args.model is not None:
        from scorer.model_dir import load_models

        loaded = load_models(args.model, embedder=embedder)
        space = loaded.topics.space
        lexicon = loaded.topics.lexicon
        if threshold is None and not args.embedding_only:
            threshold = loaded.topics.threshold
            per_topic_lines = loaded.topics.per_topic_lines
    else:
        space = workspace_space(prepared)
        lexicon = workspace_lexicon(prepared)
    if args.embedding_only:
        lexicon = None
    if threshold is None and embedder.name not in DEFAULT_THRESHOLDS:
        threshold = 0.0
        print(f"no measured default threshold for {embedder.name}: read the best single threshold below")
    matcher = TopicMatcher(
        embedder, space, lexicon=lexicon, threshold=threshold, per_topic_lines=per_topic_lines
    )
    started = time.perf_counter()
    report = evaluate(
        matcher,
        conversation_vectors(prepared),
        topic_texts,
        labels,
        shots=args.feedback_shots,
        draws=args.draws,
        texts=conversation_texts(prepared),
    )
    print(topics_table(report))
    out = {
        "data": str(args.data),
        "topics_file": str(args.topics),
        "labels_file": str(args.labels),
        "embedder": embedder.name,
        "lexical": lexicon is not None,
        "seconds": round(time.perf_counter() - started, 3),
        **report.to_json(),
    }
    write_json(args.out / "report.json", out)
    plot_topics(report, args.out / "precision_recall.png")
    print(f"report: {args.out / 'report.json'}, plot: {args.out / 'precision_recall.png'}")
    return 0


def split_time(examples_ts: list[float], split_at: str | None, test_fraction: float) -> float:
    if split_at:
        moment = datetime.fromisoformat(split_at)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    if not 0 < test_fraction < 1:
        raise ValueError("--test-fraction must be between 0 and 1")
    ordered = sorted(examples_ts)
    return ordered[min(len(ordered) - 1, int(len(ordered) * (1 - test_fraction)))]


@dataclass
class SplitRun:
    """A history read, embedded and replayable, and the pair model trained before the split."""

    prepared: Prepared
    stream: Stream
    cut: float
    model: PairModel
    metrics: dict[str, Any]


def train_before_split(args: argparse.Namespace) -> SplitRun:
    """What `eval interest` and `eval alerts` share: the model of the history before the split
    (the latest `--test-fraction` of the messages, or `--split-at`)."""
    from offline.training.history import progress_note
    from offline.training.pairs import fit
    from offline.training.pipeline import prepare, replay_stream
    from scorer.model_dir import shared_local_embedder

    embedder = shared_local_embedder()
    prepared = prepare(
        args.data,
        embedder,
        users_file=args.users,
        progress=not args.no_progress,
        store=cached_store(args, embedder),
    )
    stream = replay_stream(prepared)
    cut = split_time([stream.times[r] for r in stream.order], args.split_at, args.test_fraction)
    started = time.perf_counter()
    model, metrics = fit(
        stream,
        prepared.vectors,
        end=cut,
        names=dict(prepared.vocab.names),
        say=None if args.no_progress else progress_note,
    )
    metrics["timings"]["train_seconds"] = round(time.perf_counter() - started, 3)
    print(f"split at {datetime.fromtimestamp(cut, UTC).isoformat()}")
    return SplitRun(prepared, stream, cut, model, metrics)


def interest(args: argparse.Namespace) -> int:
    from offline.evaluation.interest import evaluate_pairs
    from offline.evaluation.report import interest_table, plot_interest, write_json

    run = train_before_split(args)
    report = evaluate_pairs(
        run.stream,
        run.prepared.vectors,
        run.model,
        run.cut,
        sorted(set(run.stream.users)),
        train_seconds=run.metrics["timings"]["train_seconds"],
        settings=run.metrics["settings"],
    )
    print(interest_table(report))
    write_json(args.out / "report.json", {"data": str(args.data), **report.to_json()})
    plot_interest(report, args.out / "interest.png")
    print(f"report: {args.out / 'report.json'}, plot: {args.out / 'interest.png'}")
    return 0


def alerts(args: argparse.Namespace) -> int:
    from offline.evaluation.alerts import alerts_table, evaluate, plot_alerts
    from offline.evaluation.policy import PolicySettings
    from offline.evaluation.report import write_json

    if args.daily_budget < 0:
        raise ValueError("--daily-budget must be 0 or more")
    from offline.training.history import progress_note

    run = train_before_split(args)
    report = evaluate(
        run.stream,
        run.prepared.vectors,
        run.model,
        run.cut,
        policy=PolicySettings(daily_budget=args.daily_budget),
        training=run.metrics,
        say=None if args.no_progress else progress_note,
    )
    print(alerts_table(report))
    write_json(args.out / "report.json", {"data": str(args.data), **report.to_json()})
    plot_alerts(report, args.out / "precision_volume.png")
    print(f"report: {args.out / 'report.json'}, plot: {args.out / 'precision_volume.png'}")
    return 0
