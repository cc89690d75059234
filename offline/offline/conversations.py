"""`beepgpt conversations <messages.parquet|.jsonl|export> [--mode gap|linked] [--out conversations.jsonl]`.

Prints (or writes) one JSON line per conversation of a history table, built by the same query
the live service runs: its id as people read it (`{"channel": "General", "thread": 1690797600.0}`,
the float ts of its first message), its messages and its participants. A count goes to stderr.

`--mode gap` is the 10-minute rule; `--mode linked` builds flow conversations with the reply
linker (`sessionizer.linker`), each closing after its own silence. Both run through the Kaskada
query and the feeder the live service runs, in the mode it runs with (`BEEPGPT_CONVERSATIONS`,
the default of `--mode`), so the listing is what the service would build from the same
messages, and can be compared with known conversations (`beepgpt eval conversations` does that
with figures).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from beepgpt.contracts import ConversationEvent
from offline.tables import TableError, load_table
from sessionizer.history import conversations
from sessionizer.settings import SessionizerSettings


def parser() -> argparse.ArgumentParser:
    defaults = SessionizerSettings()
    parser = argparse.ArgumentParser(prog="beepgpt conversations", description=__doc__)
    parser.add_argument("source", type=Path, help="message table (.parquet/.jsonl) or Slack export (dir/zip)")
    parser.add_argument("--out", type=Path, help="write JSON lines here instead of stdout")
    parser.add_argument(
        "--mode",
        choices=("gap", "linked"),
        default=defaults.conversations,
        help="gap: the 10-minute rule; linked: the reply linker (default: BEEPGPT_CONVERSATIONS, "
        f"as the service runs: {defaults.conversations})",
    )
    parser.add_argument("--gap", type=float, default=defaults.gap_s, help="seconds of channel silence (600)")
    parser.add_argument(
        "--thread-idle",
        type=int,
        default=defaults.thread_idle_s,
        help="seconds before a thread closes (1800)",
    )
    return parser


def as_record(event: ConversationEvent) -> dict[str, Any]:
    """A conversation as `beepgpt conversations` prints it."""
    return {
        "id": {"channel": event.channel, "thread": float(event.first_ts)},
        "conversation_id": event.conversation_id,
        "thread_ts": event.thread_ts,
        "messages": [
            {"ts": m.ts, "user": m.user, "text": m.text, "reactions": m.reactions} for m in event.messages
        ],
        "participants": event.participants,
        "message_count": event.message_count,
        "reaction_count": event.reaction_count,
    }


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    settings = SessionizerSettings(gap_s=args.gap, thread_idle_s=args.thread_idle, conversations=args.mode)
    try:
        table = load_table(args.source)
    except (TableError, ValueError, OSError) as error:
        print(f"beepgpt conversations: {error}", file=sys.stderr)
        return 2
    found = conversations(table, settings)
    if args.out is not None:
        with args.out.open("w", encoding="utf-8") as out:
            _write(found, out)
    else:
        try:
            _write(found, sys.stdout)
            sys.stdout.flush()
        except BrokenPipeError:  # `| head`: the reader has seen enough
            sys.stderr.close()
            return 0
    where = f" to {args.out}" if args.out is not None else ""
    print(f"{len(found)} conversations from {len(table)} messages{where}", file=sys.stderr)
    return 0


def _write(found: list[ConversationEvent], out: TextIO) -> None:
    for event in found:
        out.write(json.dumps(as_record(event), ensure_ascii=False) + "\n")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
