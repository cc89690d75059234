"""A workspace's history as training and evaluation see it: the message table, its conversations
and each message's context — all from the sessionizer's one Kaskada query (docs/conversations.md).

This module is the adapter between `sessionizer.history` (the shared query on a table) and the
models: it turns what the query produces into row indexes of one message table, so examples,
conversation vectors and labels all point at the same rows and each message is embedded once.
No conversation logic lives here.

The table keeps only the messages the query kept (people's messages; bots, joins and other
housekeeping never form conversations). A context's previous messages come as (user, text); they
are located in the table as the latest earlier message of the same conversation by that user
with that text — the query draws them from exactly those messages.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from offline.tables import TableError, load_table
from sessionizer import history as query

ConversationKey = tuple[str, float]
"""(channel, float ts of the first message): the conversation id in the labels format."""


@dataclass(frozen=True)
class ConversationRows:
    channel: str
    first_ts: float
    rows: tuple[int, ...]
    """row indexes of the message table, in time order"""

    @property
    def key(self) -> ConversationKey:
        return (self.channel, round(self.first_ts, 6))


@dataclass(frozen=True)
class MessageContext:
    """A message (a table row), its conversation, and the rows of its prompt (oldest first)."""

    row: int
    conversation: ConversationKey
    prompt_rows: tuple[int, ...]


@dataclass(frozen=True)
class History:
    table: pd.DataFrame
    contexts: list[MessageContext]
    conversations: list[ConversationRows]


class HistoryError(Exception):
    """The history cannot be read or queried; the message says why."""


def key_of(channel: str, first_ts: str) -> ConversationKey:
    """(channel, float ts of the first message): how labels name a conversation."""
    return (channel, round(float(first_ts), 6))


def read_history(path: Path) -> History:
    """Read a table or export and run the shared query over it."""
    try:
        raw = load_table(Path(path))
    except (TableError, OSError, ValueError) as error:
        raise HistoryError(str(error)) from None
    return history_of(raw)


def history_of(raw: pd.DataFrame) -> History:
    """The query's contexts and conversations over a message table, as row indexes."""
    found = query.message_contexts(raw)
    kept = {(c.channel, c.ts) for c in found}
    keep = [(str(ch), str(ts)) in kept for ch, ts in zip(raw["channel"], raw["slack_ts"], strict=True)]
    table = raw[keep].reset_index(drop=True)
    rows = {
        (str(c), str(t)): i for i, (c, t) in enumerate(zip(table["channel"], table["slack_ts"], strict=True))
    }
    contexts = []
    seen: dict[str, list[tuple[str, str, int]]] = {}
    for context in sorted(found, key=lambda c: (float(c.ts), c.channel)):
        row = rows[(context.channel, context.ts)]
        earlier = seen.setdefault(context.conversation_id, [])
        prompt = tuple(_locate(earlier, p.user, p.text) for p in context.previous)
        contexts.append(
            MessageContext(
                row=row,
                conversation=key_of(context.channel, context.first_ts),
                prompt_rows=tuple(r for r in prompt if r is not None),
            )
        )
        earlier.append((context.user, context.text, row))
    conversations = []
    for event in query.conversations(raw):
        members = [rows[(event.channel, m.ts)] for m in event.messages if (event.channel, m.ts) in rows]
        conversations.append(
            ConversationRows(
                channel=event.channel,
                first_ts=float(event.first_ts),
                rows=tuple(sorted(members, key=lambda r: float(table["ts"].iat[r]))),
            )
        )
    return History(table=table, contexts=contexts, conversations=conversations)


def _locate(earlier: Sequence[tuple[str, str, int]], user: str, text: str) -> int | None:
    for author, said, row in reversed(earlier):
        if author == user and said == text:
            return row
    return None


def progress_note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
