"""`beepgpt import <export.zip|dir|table.parquet|table.jsonl> [--out messages.parquet] [--publish]`.

Exit codes: 0 when everything was read (remarks such as unknown fields are printed as `problem:`
lines); 2 when the source cannot be read at all, or when members of an export were refused
(corrupt or too deeply nested JSON, over a size limit, an unsafe path): each is one
`beepgpt import: <member>: ...` line, and the rest of the export is still read, written and
published, so one bad day file does not cost the others; 1 when publishing failed.
"""

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
from ingest.settings import SLACK_MAX_TEXT_CHARS, ImportSettings, IngestSettings

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
    p.add_argument(
        "--private-channels",
        action="store_true",
        help="also read private channels (groups.json); default: BEEPGPT_INGEST_PRIVATE_CHANNELS, "
        "off. DMs and group DMs are never read",
    )
    p.add_argument("--max-text-chars", type=int, default=SLACK_MAX_TEXT_CHARS, help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    started = time.perf_counter()
    try:
        private_channels = args.private_channels or IngestSettings().private_channels
        imported = read_source(
            args.source,
            max_text_chars=args.max_text_chars,
            private_channels=private_channels,
            limits=ImportSettings(),
        )
    except (SourceError, OSError, ValueError) as error:  # ValueError: settings that do not validate
        print(f"beepgpt import: {_one_line(error)}", file=sys.stderr)
        return 2
    table = imported.history.table()
    summary = _summary(imported, time.perf_counter() - started)
    refused = imported.refused
    remarks = [p for p in imported.problems if not p.refused]
    for problem in refused[:MAX_PROBLEMS_SHOWN]:
        print(f"beepgpt import: {problem.file}: {problem.detail}", file=sys.stderr)
    if len(refused) > MAX_PROBLEMS_SHOWN:
        print(
            f"beepgpt import: ... and {len(refused) - MAX_PROBLEMS_SHOWN} more members not read",
            file=sys.stderr,
        )
    for problem in remarks[:MAX_PROBLEMS_SHOWN]:
        print(f"problem: {problem}", file=sys.stderr)
    if len(remarks) > MAX_PROBLEMS_SHOWN:
        print(f"... and {len(remarks) - MAX_PROBLEMS_SHOWN} more problems", file=sys.stderr)
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
    return 2 if refused else 0


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:500]


def _summary(imported: Imported, seconds: float) -> dict[str, object]:
    return {
        "source": str(imported.source),
        "kind": imported.kind,
        "files": imported.files,
        "channels": imported.channels,
        "users": imported.users,
        **imported.history.counts.as_dict(),
        "channels_not_read": imported.skipped_channels,
        "files_not_read": imported.skipped_files,
        "problems": len(imported.problems),
        "members_refused": len(imported.refused),
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
    not_read = summary["channels_not_read"]
    assert isinstance(not_read, dict)
    if not_read:
        detail = ", ".join(f"{reason} {n}" for reason, n in not_read.items())
        print(f"not read  {sum(not_read.values())} channels, {summary['files_not_read']} files  ({detail})")
    refused = f" ({summary['members_refused']} members not read)" if summary["members_refused"] else ""
    print(f"problems  {summary['problems']}{refused}")
    if "wrote" in summary:
        print(f"wrote     {summary['wrote']} ({summary['kept']} rows)")
    if "published" in summary:
        print(f"published {summary['published']} records to slack.messages ({summary['published_per_s']}/s)")
    if nothing_written:
        print("(dry run: nothing written; use --out FILE and/or --publish)")
