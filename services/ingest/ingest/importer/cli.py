"""`beepgpt import <export.zip|dir|table.parquet|table.jsonl> [--out messages.parquet] [--publish]`,
or `beepgpt import --from-slack --out messages.parquet [--days N] [--channel #name ...] [--join]`.

`--from-slack` reads the public channels the bot is in through the Web API (`slack_api`) with
the bot token (`SLACK_BOT_TOKEN`) when there is no admin export; it needs `--out`, beside which it
keeps its checkpoint. Exit codes are the same, plus: 1 when Slack failed or the import was
interrupted part-way (what was read is kept: the same command again resumes), 2 when the token or
the options cannot start an import at all.

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
from typing import TYPE_CHECKING

from beepgpt.settings import KafkaSettings, SlackSettings
from ingest.importer.publish import publish
from ingest.importer.sources import Imported, SourceError, read_source
from ingest.settings import SLACK_MAX_TEXT_CHARS, ImportSettings, IngestSettings

if TYPE_CHECKING:
    from ingest.importer.slack_api import SlackHistory

MAX_PROBLEMS_SHOWN = 50


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="beepgpt import",
        description="Normalize Slack history (a Slack export directory or zip, or a Parquet/JSONL "
        "message table) with the live ingest rules into the message table, and optionally "
        "publish it to Kafka (slack.messages) in timestamp order.",
    )
    p.add_argument(
        "source", type=Path, nargs="?", help="export directory, export .zip, .parquet or .jsonl table"
    )
    p.add_argument("--out", type=Path, help="write the message table here (Parquet)")
    slack = p.add_argument_group(
        "without an export",
        "--from-slack reads the public channels the bot is a member of through the Web API "
        "(SLACK_BOT_TOKEN; scopes channels:read, channels:history, users:read, and channels:join "
        "for --join). Resumable: rerun the same command after an interruption.",
    )
    slack.add_argument(
        "--from-slack", action="store_true", help="read history from Slack instead of an export (needs --out)"
    )
    slack.add_argument("--days", type=float, help="only the last N days (default: everything)")
    slack.add_argument(
        "--channel",
        action="append",
        default=[],
        metavar="#NAME",
        help="only this public channel (name or id; repeat for more)",
    )
    slack.add_argument(
        "--join", action="store_true", help="join public channels the bot is not in first (channels:join)"
    )
    slack.add_argument("--page-size", type=int, default=None, help=argparse.SUPPRESS)
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
    command = parser()
    args = command.parse_args(argv)
    if args.from_slack:
        if args.source is not None or args.private_channels:
            command.error("--from-slack reads public channels from Slack: no source, no --private-channels")
        if args.out is None:
            command.error("--from-slack needs --out (its checkpoint is kept beside it)")
        if args.days is not None and args.days <= 0:
            command.error("--days must be positive")
    elif args.source is None:
        command.error("a source is needed (an export or a table), or --from-slack")
    elif args.days is not None or args.channel or args.join:
        command.error("--days, --channel and --join go with --from-slack")
    started = time.perf_counter()
    reader = None
    try:
        if args.from_slack:
            reader, imported = _from_slack(args)
        else:
            assert args.source is not None  # checked above
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
    except _Interrupted as interrupted:
        print(f"beepgpt import: {interrupted}", file=sys.stderr)
        return 1
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
    if reader is not None:
        summary["resumed"] = reader.resumed
        summary["joined"] = reader.joined
        reader.discard()  # the table holds it all now
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


class _Interrupted(Exception):
    """Slack failed, or a person stopped the import, part-way: what was read is checkpointed."""


def _from_slack(args: argparse.Namespace) -> tuple[SlackHistory, Imported]:
    from slack_sdk.errors import SlackApiError

    # Here, not at the top: an export import needs none of this.
    from ingest.importer.slack_api import PAGE_SIZE, Options, SlackHistory, checkpoint_paths, slack_client
    from ingest.importer.terminal import TerminalProgress

    settings = SlackSettings()
    if settings.bot_token is None:
        raise SourceError("--from-slack needs the bot token: set SLACK_BOT_TOKEN (xoxb-...)")
    progress = TerminalProgress()
    client = slack_client(settings.bot_token.get_secret_value(), settings.api_url, waited=progress.waited)
    reader = SlackHistory(
        client,
        args.out,
        Options(days=args.days, channels=tuple(args.channel), join=args.join),
        page_size=args.page_size or PAGE_SIZE,
        max_text_chars=args.max_text_chars,
        progress=progress,
    )
    checkpoint, _ = checkpoint_paths(args.out)
    resume = f"what was read is kept in {checkpoint}: run the same command again to go on"
    try:
        return reader, asyncio.run(reader.run())
    except SlackApiError as error:
        code = error.response.get("error")
        if code in ("invalid_auth", "not_authed", "token_revoked", "account_inactive", "missing_scope"):
            needed = error.response.get("needed")
            detail = f"{code} (needs scope {needed})" if needed else str(code)
            raise SourceError(f"Slack refused the token: {detail}") from error
        raise _Interrupted(f"Slack answered {code or error.response.status_code}: {resume}") from error
    except (TimeoutError, OSError) as error:
        if isinstance(error, FileNotFoundError | PermissionError):
            raise
        raise _Interrupted(f"cannot reach Slack ({error!r}): {resume}") from error
    except KeyboardInterrupt:
        raise _Interrupted(f"stopped: {resume}") from None
    finally:
        progress.close()


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
    unit = "pages" if summary["kind"] == "Slack Web API" else "files"
    print(
        f"source    {summary['source']} ({summary['kind']}: {summary['files']} {unit}, "
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
        files = f", {summary['files_not_read']} files" if unit == "files" else ""
        print(f"not read  {sum(not_read.values())} channels{files}  ({detail})")
    refused = f" ({summary['members_refused']} members not read)" if summary["members_refused"] else ""
    print(f"problems  {summary['problems']}{refused}")
    if summary.get("joined"):
        joined = summary["joined"]
        assert isinstance(joined, list)
        print(f"joined    {len(joined)} channels ({', '.join('#' + name for name in joined)})")
    if summary.get("resumed"):
        print("resumed   from the checkpoint of an interrupted import")
    if "wrote" in summary:
        print(f"wrote     {summary['wrote']} ({summary['kept']} rows)")
    if "published" in summary:
        print(f"published {summary['published']} records to slack.messages ({summary['published_per_s']}/s)")
    if nothing_written:
        print("(dry run: nothing written; use --out FILE and/or --publish)")
