"""`beepgpt conversations <messages.parquet|.jsonl|export> [--mode gap|linked] [--out conversations.jsonl]`.

Prints (or writes) one JSON line per conversation of a history table, built by the same query
the live service runs: its id as people read it (`{"channel": "General", "thread": 1690797600.0}`,
the float ts of its first message), its messages and its participants. A count goes to stderr.

`--mode gap` (the default, and the live service's only mode) is the 10-minute rule through the
Kaskada query; `--mode linked` builds flow conversations with the reply linker
(`sessionizer.linker`, history only for now), so its output can be compared with known
conversations (`beepgpt eval conversations` does that with figures).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from beepgpt.contracts import ConversationEvent, ConversationMessage, conversation_id
from offline.tables import TableError, load_table
from sessionizer.history import conversations
from sessionizer.settings import SessionizerSettings

if TYPE_CHECKING:
    import pandas as pd


def parser() -> argparse.ArgumentParser:
    defaults = SessionizerSettings()
    parser = argparse.ArgumentParser(prog="beepgpt conversations", description=__doc__)
    parser.add_argument("source", type=Path, help="message table (.parquet/.jsonl) or Slack export (dir/zip)")
    parser.add_argument("--out", type=Path, help="write JSON lines here instead of stdout")
    parser.add_argument(
        "--mode",
        choices=("gap", "linked"),
        default="gap",
        help="gap: the 10-minute rule (default, as live); linked: the reply linker (history only)",
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
    settings = SessionizerSettings(gap_s=args.gap, thread_idle_s=args.thread_idle)
    try:
        table = load_table(args.source)
    except (TableError, ValueError, OSError) as error:
        print(f"beepgpt conversations: {error}", file=sys.stderr)
        return 2
    found = conversations(table, settings) if args.mode == "gap" else linked_conversations(table)
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


def linked_conversations(table: pd.DataFrame) -> list[ConversationEvent]:
    """The reply linker's conversations as closed events (whole: every message), in the order
    their first messages were written."""
    from offline.evaluation.conversations.modes import linked

    found = linked(table)
    assert found.members is not None
    rows = {
        conversation_id(str(r.channel), str(r.slack_ts)): r
        for r in table.itertuples(index=False)
    }
    events = []
    for conversation, ids in found.members.items():
        first = rows[ids[0]]
        thread = str(first.slack_thread_ts) if conversation.endswith("/thread") else None
        messages = [
            ConversationMessage(
                ts=str(rows[m].slack_ts),
                user=str(rows[m].user),
                text=str(rows[m].text),
                thread_ts=thread,
                reactions=int(rows[m].reactions or 0),
            )
            for m in ids
        ]
        events.append(
            ConversationEvent(
                kind="closed",
                conversation_id=conversation,
                channel=str(first.channel),
                thread_ts=thread,
                first_ts=messages[0].ts,
                last_ts=messages[-1].ts,
                version=1,
                messages=messages,
                participants=list(dict.fromkeys(m.user for m in messages)),
                message_count=len(messages),
                reaction_count=sum(m.reactions for m in messages),
            )
        )
    return events


def _write(found: list[ConversationEvent], out: TextIO) -> None:
    for event in found:
        out.write(json.dumps(as_record(event), ensure_ascii=False) + "\n")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
