"""Conversations of a history table, built by the same query and fold the live service runs.

Public API (signatures are stable; offline training and evaluation use them, over tables read
by `offline.tables.load_table`):

    conversations(table: DataFrame, settings: SessionizerSettings | None = None,
                  *, window: int | None = None, model: LinkerModel | None = None,
                  on_link: OnLink | None = None) -> list[ConversationEvent]
        Every conversation of the table as its final `closed` event, in the order they closed.
        `window=None` keeps every message (the live service carries the latest MAX_MESSAGES).
        In linked mode (`settings.conversations`), `model` is the reply linker's (default: the
        shipped one) and `on_link(message_id, parent_id)` sees each link it decided.

    message_contexts(table: DataFrame, settings: SessionizerSettings | None = None)
        -> list[MessageContext]
        For every kept message (people's, deduplicated), in time order: its conversation id,
        channel, ts, user, text and the up to `settings.context_messages` (5) previous messages of
        the same conversation written by others (`previous`, oldest first). They are drawn from
        the latest MAX_MESSAGES of the conversation, exactly what a live `updated` event carries,
        so training prompts and live prompts are built the same way (docs/scoring.md).

`settings` defaults to `SessionizerSettings()` (BEEPGPT_CONVERSATIONS, BEEPGPT_SESSIONIZER_* or the
defaults: gap mode, 10-minute gap, 30-minute thread idle, 20 messages, 5 context messages). Both
modes go through the feeder the live service uses, so the reply linker decides in history exactly
as it does live (`feeder.LinkedFlow`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import kaskada as kd

from beepgpt.contracts import ConversationEvent
from beepgpt.message_table import complete, to_messages
from sessionizer.conversation import Conversation, ConversationBook
from sessionizer.feeder import Fed, Feeder, OnLink
from sessionizer.linker import LinkerModel
from sessionizer.query import (
    INPUT_SCHEMA,
    Change,
    Row,
    conversation_query,
    ensure_session,
    parse_table,
    result_tables,
    tick_row,
)
from sessionizer.rules import NS
from sessionizer.settings import SessionizerSettings

if TYPE_CHECKING:
    import pandas as pd

T = TypeVar("T")

_FOREVER_NS = 2**62


@dataclass(frozen=True)
class PreviousMessage:
    """A message someone else wrote earlier in the same conversation."""

    user: str
    text: str


@dataclass(frozen=True)
class MessageContext:
    """A kept message and what others said just before it in its conversation."""

    conversation_id: str
    channel: str
    first_ts: str
    """The ts of the conversation's first message (its thread's ts, for a thread)."""
    ts: str
    thread_ts: str | None
    user: str
    text: str
    previous: tuple[PreviousMessage, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id,
            "channel": self.channel,
            "first_ts": self.first_ts,
            "ts": self.ts,
            "thread_ts": self.thread_ts,
            "user": self.user,
            "text": self.text,
            "previous": [{"user": p.user, "text": p.text} for p in self.previous],
        }


def conversations(
    table: pd.DataFrame,
    settings: SessionizerSettings | None = None,
    *,
    window: int | None = None,
    model: LinkerModel | None = None,
    on_link: OnLink | None = None,
) -> list[ConversationEvent]:
    """Every conversation of `table` as its last `closed` event, in the order they first closed.

    A thread that woke up after closing closes again, whole, with a higher version; its last
    close is the one returned. Listing whole conversations, a thread is remembered however long
    it paused (the live service forgets closed threads after `thread_resume_s`).
    """
    rules = settings or SessionizerSettings()
    book = ConversationBook(window, resume_threads_ns=_FOREVER_NS, parents=rules.remembered_parents)
    closed: dict[str, ConversationEvent] = {}
    for event in _run(fold_rows(table_rows(table, rules, model=model, on_link=on_link), rules, book)):
        if event.kind == "closed":
            closed[event.conversation_id] = event
    return list(closed.values())


def message_contexts(
    table: pd.DataFrame, settings: SessionizerSettings | None = None
) -> list[MessageContext]:
    """For every kept message: its conversation and up to 5 previous messages by others."""
    rules = settings or SessionizerSettings()
    contexts: list[MessageContext] = []

    def remember(conversation: Conversation, change: Change) -> None:
        user = change.user or ""
        contexts.append(
            MessageContext(
                conversation_id=conversation.id,
                channel=change.channel,
                first_ts=conversation.first_ts,
                ts=change.ts,
                thread_ts=change.thread_ts,
                user=user,
                text=change.text or "",
                previous=tuple(
                    PreviousMessage(m.user, m.text)
                    for m in conversation.previous_by_others(user, rules.context_messages)
                ),
            )
        )

    book = ConversationBook(
        rules.max_messages,
        resume_threads_ns=int(rules.thread_resume_s * NS),
        on_message=remember,
        parents=rules.remembered_parents,
    )
    _run(_fold(table, rules, book))
    return contexts


def table_rows(
    table: pd.DataFrame,
    settings: SessionizerSettings | None = None,
    *,
    model: LinkerModel | None = None,
    on_link: OnLink | None = None,
) -> list[Row]:
    """The query rows of a message table: one row per message, in time order, through the same
    feeder the live service uses (duplicates and what is not a person's message, by
    `beepgpt.person_messages` as in ingest, pass without forming anything; in linked mode the
    reply linker's choice of conversation)."""
    rows: list[Row] = []
    feeder = Feeder(settings, model=model, on_link=on_link)
    completed = complete(table)
    counts = completed["reactions"].fillna(0).astype(int).tolist()
    for index, (message, reactions) in enumerate(zip(to_messages(completed), counts, strict=True)):
        row, fed = feeder.event(index, message)
        if fed in (Fed.ACCEPTED, Fed.CLAMPED):
            row["reactions"] = reactions
        rows.append(row)
    return rows


async def _fold(
    table: pd.DataFrame, settings: SessionizerSettings, book: ConversationBook
) -> list[ConversationEvent]:
    return await fold_rows(table_rows(table, settings), settings, book)


async def fold_rows(
    rows: list[Row], settings: SessionizerSettings, book: ConversationBook
) -> list[ConversationEvent]:
    """Run the query once over `rows` (time-ordered) and fold its output: every event, in order."""
    rows = list(rows)
    if not rows:
        return []
    # A final heartbeat after every deadline: the history is over, so everything closes.
    last = max(row["time"] for row in rows)
    rows.append(tick_row(last + int((max(settings.gap_s, settings.thread_idle_s) + 1) * NS), 0))
    ensure_session()
    source = await kd.sources.PyDict.create(
        rows, time_column="time", key_column="channel", schema=INPUT_SCHEMA
    )
    events: list[ConversationEvent] = []
    async for table in result_tables(conversation_query(source, settings), "once"):
        for output in parse_table(table):
            emitted = book.apply(output)
            if emitted is not None:
                events.append(emitted.event)
    return events


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run async Kaskada calls from sync code, also when the caller already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
