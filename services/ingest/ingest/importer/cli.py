"""`beepgpt import <export.zip|dir|table.parquet|table.jsonl> [--out messages.parquet] [--publish]`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from beepgpt.settings import KafkaSettings
from ingest.importer.publish import publish
from ingest.importer.sources import Imported, SourceError, read_source
from ingest.settings import SLACK_MAX_TEXT_CHARS

MAX_PROBLEMS_SHOWN = 50


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="beepgpt import",
        description="Normalize Slack history (a Slack export directory or zip, or a Parquet/JSONL "
        "message table) with the live ingest rules into the message table, and optionally "
        "publish it to Kafka (slack.messages) in timestamp order.",
    )
    p.add_argument("source", type=Path, help="export directory, export .zip, .parquet or .jsonl table")
    p.add_argument("--out", type=Path, help="write the message table here (Parquet)")
    p.add_argument(
        "--publish", action="store_true", help="publish the rows to slack.messages (BEEPGPT_KAFKA_*)"
    )
    p.add_argument("--max-text-chars", type=int, default=SLACK_MAX_TEXT_CHARS, help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    started = time.perf_counter()
    try:
        imported = read_source(args.source, max_text_chars=args.max_text_chars)
    except (SourceError, OSError) as error:
        print(f"beepgpt import: {error}", file=sys.stderr)
        return 2
    table = imported.history.table()
    summary = _summary(imported, time.perf_counter() - started)
    for problem in imported.problems[:MAX_PROBLEMS_SHOWN]:
        print(f"problem: {problem}", file=sys.stderr)
    if len(imported.problems) > MAX_PROBLEMS_SHOWN:
        print(f"... and {len(imported.problems) - MAX_PROBLEMS_SHOWN} more problems", file=sys.stderr)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        table.to_parquet(args.out, index=False)
        summary["wrote"] = str(args.out)
    if args.publish:
        try:
            published = asyncio.run(publish(imported.history.messages(), KafkaSettings()))
        except Exception as error:
            print(f"beepgpt import: publishing failed: {error!r}", file=sys.stderr)
            return 1
        summary["published"] = published.records
        summary["published_per_s"] = round(published.per_second)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print(summary, nothing_written=args.out is None and not args.publish)
    return 0


def _summary(imported: Imported, seconds: float) -> dict[str, object]:
    return {
        "source": str(imported.source),
        "kind": imported.kind,
        "files": imported.files,
        "channels": imported.channels,
        "users": imported.users,
        **imported.history.counts.as_dict(),
        "problems": len(imported.problems),
        "seconds": round(seconds, 3),
    }


def _print(summary: dict[str, object], *, nothing_written: bool) -> None:
    skipped = summary["skipped"]
    assert isinstance(skipped, dict)
    print(
        f"source    {summary['source']} ({summary['kind']}: {summary['files']} files, "
        f"{summary['channels']} channels, {summary['users']} users)"
    )
    print(f"read      {summary['read']}")
    print(f"kept      {summary['kept']}")
    detail = ", ".join(f"{reason} {n}" for reason, n in skipped.items())
    print(f"skipped   {sum(skipped.values())}" + (f"  ({detail})" if detail else ""))
    print(f"applied   {summary['edits_applied']} edits, {summary['deletions_applied']} deletions")
    print(f"problems  {summary['problems']}")
    if "wrote" in summary:
        print(f"wrote     {summary['wrote']} ({summary['kept']} rows)")
    if "published" in summary:
        print(f"published {summary['published']} records to slack.messages ({summary['published_per_s']}/s)")
    if nothing_written:
        print("(dry run: nothing written; use --out FILE and/or --publish)")
