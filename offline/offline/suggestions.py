"""`beepgpt suggest <data> --user <id> [--json] [--publish]`: topics suggested from a person's history.

    beepgpt suggest data/slack-generation.parquet --user U3E44CFA1
    beepgpt suggest data/slack-generation.parquet --user U3E44CFA1 --json
    beepgpt suggest data/slack-generation.parquet --all-users --publish   # what /beep suggest shows

The history's conversations come from the sessionizer's one query (`sessionizer.history`), their
message vectors from the scorer's embedder (with the on-disk vector cache), and the grouping and
naming from `scorer.suggestions`. Only public conversations reach it: an export is read without
its private channels (as `beepgpt import` does by default); a message table holds what its
import admitted, and `--exclude-channel` leaves out more. `--publish` writes each person's
`Suggestions` to the compacted `user.suggestions` topic, which ingest's Slack app reads whole
(`/beep suggest`, App Home): see docs/suggestions.md for why the suggestions are computed here
and not inside a running service.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from beepgpt.contracts import ConversationEvent, SuggestedTopic, SuggestionExample, Suggestions
from offline.tables import TableError, load_table
from scorer.suggestions import Namer, Suggestion, SuggestionSettings, conversation_vector, suggest, took_part
from scorer.vector_cache import add_cache_arguments, cached_store

if TYPE_CHECKING:
    import pandas as pd

    from scorer.embeddings import Matrix, MessageEmbeddings, Vector


@dataclass(frozen=True)
class Workspace:
    """A history's public conversations with their vectors, and what names are weighed against."""

    events: list[ConversationEvent]
    vectors: list[Vector]
    namer: Namer
    store: MessageEmbeddings

    def people(self) -> list[str]:
        """Everyone who wrote in a conversation, in a stable order."""
        return sorted({m.user for e in self.events for m in e.messages if m.user})

    def of(self, user: str) -> tuple[list[ConversationEvent], list[Vector]]:
        pairs = [(e, v) for e, v in zip(self.events, self.vectors, strict=True) if took_part(e, user)]
        return [e for e, _ in pairs], [v for _, v in pairs]


def workspace(table: pd.DataFrame, store: MessageEmbeddings, exclude: Sequence[str] = ()) -> Workspace:
    """Conversations of `table` (the shared query), each message embedded once, centred vectors."""
    from sessionizer.history import conversations

    skip = set(exclude)
    events = [e for e in conversations(table) if e.channel not in skip and e.messages]
    keys = [(e.channel, m.ts) for e in events for m in e.messages]
    texts = [m.text for e in events for m in e.messages]
    matrix = store.vectors(keys, texts)
    centre = matrix.mean(axis=0) if len(matrix) else None
    vectors: list[Vector] = []
    at = 0
    for event in events:
        rows = matrix[at : at + len(event.messages)]
        at += len(event.messages)
        vectors.append(conversation_vector(rows, centre))
    namer = Namer([" ".join(m.text for m in e.messages) for e in events])
    return Workspace(events=events, vectors=vectors, namer=namer, store=store)


def followed_vectors(store: MessageEmbeddings, texts: Sequence[str]) -> Matrix | None:
    """Followed topics embedded as the matcher embeds them (their subject, not the request words)."""
    if not texts:
        return None
    from scorer.topics.phrasing import topic_subject

    return store.embedder.embed([topic_subject(t) or t for t in texts])


def suggestions_of(
    space: Workspace,
    user: str,
    followed: Sequence[str] = (),
    settings: SuggestionSettings | None = None,
) -> tuple[list[Suggestion], int]:
    """The person's suggestions and how many conversations they were drawn from."""
    events, vectors = space.of(user)
    found = suggest(
        user,
        events,
        vectors,
        space.namer,
        followed=followed,
        followed_vectors=followed_vectors(space.store, followed),
        settings=settings,
    )
    return found, len(events)


def as_contract(user: str, found: Sequence[Suggestion], conversations: int) -> Suggestions:
    """What `user.suggestions` carries for the person."""
    return Suggestions(
        user=user,
        conversations=conversations,
        topics=[
            SuggestedTopic(
                name=s.name,
                conversations=len(s.members),
                examples=[
                    SuggestionExample(
                        conversation_id=e.conversation_id,
                        channel=e.channel,
                        first_ts=e.first_ts,
                        first_line=e.first_line,
                    )
                    for e in s.examples
                ],
            )
            for s in found
        ],
    )


def as_text(record: Suggestions, names: Mapping[str, str] | None = None) -> str:
    """The suggestions as a person reads them in a terminal."""
    from datetime import UTC, datetime

    who = (names or {}).get(record.user, record.user)
    if not record.topics:
        return f"No suggestions for {who} ({record.conversations} conversations)."
    lines = [f"Suggested topics for {who}, from {record.conversations} conversations they took part in:"]
    for i, topic in enumerate(record.topics, start=1):
        lines.append(f"{i}. {topic.name}  ({topic.conversations} conversations)")
        for example in topic.examples:
            day = datetime.fromtimestamp(float(example.first_ts), UTC).strftime("%Y-%m-%d")
            lines.append(f"     #{example.channel} {day}: {example.first_line}")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="beepgpt suggest", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("source", type=Path, help="message table (.parquet/.jsonl) or Slack export (dir/zip)")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", action="append", help="the person's Slack user id (repeat for several)")
    who.add_argument("--all-users", action="store_true", help="everyone who wrote in the history")
    p.add_argument("--json", action="store_true", help="print JSON (one Suggestions record a line)")
    p.add_argument(
        "--follow",
        action="append",
        default=[],
        metavar="TEXT",
        help="a topic the person already follows (left out of the suggestions); repeatable",
    )
    p.add_argument(
        "--exclude-channel",
        action="append",
        default=[],
        metavar="NAME",
        help="a channel to leave out (e.g. a private one a table holds); repeatable",
    )
    p.add_argument(
        "--max",
        type=int,
        default=SuggestionSettings().max_suggestions,
        help="suggestions per person (default 5)",
    )
    p.add_argument(
        "--publish",
        action="store_true",
        help="also publish each person's suggestions to user.suggestions (BEEPGPT_KAFKA_*)",
    )
    add_cache_arguments(p)
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        table = load_table(args.source)
    except (TableError, ValueError, OSError) as error:
        print(f"beepgpt suggest: {error}", file=sys.stderr)
        return 2
    from scorer.model_dir import shared_local_embedder

    store = cached_store(args, shared_local_embedder())
    space = workspace(table, store, args.exclude_channel)
    print(store.last_run.summary(where=store.cache_note), file=sys.stderr)
    users = space.people() if args.all_users else list(args.user)
    settings = SuggestionSettings(max_suggestions=args.max)
    records = []
    for user in users:
        found, count = suggestions_of(space, user, args.follow, settings)
        records.append(as_contract(user, found, count))
    for record in records:
        if args.json:
            print(json.dumps(record.model_dump(mode="json"), ensure_ascii=False))
        else:
            print(as_text(record))
    if args.publish:
        asyncio.run(publish(records))
        print(f"published suggestions of {len(records)} people to user.suggestions", file=sys.stderr)
    return 0


async def publish(records: Sequence[Suggestions], kafka: Any = None) -> None:
    """Each record to the compacted `user.suggestions` topic, keyed by user (acknowledged)."""
    from beepgpt.kafka import EventProducer, ensure_topics
    from beepgpt.settings import KafkaSettings
    from beepgpt.topics import SUGGESTIONS

    settings = kafka or KafkaSettings()
    await ensure_topics(settings, [SUGGESTIONS])
    producer = EventProducer(settings, "beepgpt-suggest")
    await producer.start()
    try:
        for record in records:
            await producer.send(SUGGESTIONS, SUGGESTIONS.key_of(record), record)
        await producer.flush()
    finally:
        await producer.stop()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
