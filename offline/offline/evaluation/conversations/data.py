"""Chat whose conversations are known: a message table plus its truth, keyed by message id.

The truth files are the ones the real-chat exports carry: `conversations.json` (`{ts:
conversation}`) and, where people annotated reply links, `links.json` (`[[ts, parent_ts], ...]`,
a message linked to itself starts a conversation). A ts names a message within an export; the
files do not say the channel, so a ts that occurs in two channels of the export is refused
rather than guessed.

Messages are identified here as `channel:ts` (`beepgpt.contracts.conversation_id` of a
message), the way the sessionizer names them.
"""

from __future__ import annotations

import json
import zlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from beepgpt.contracts import conversation_id
from beepgpt.person_messages import is_person_message
from offline.tables import load_table

if TYPE_CHECKING:
    import pandas as pd


class TruthError(ValueError):
    """The truth files do not fit the export."""


@dataclass
class Annotated:
    table: pd.DataFrame
    truth: dict[str, str]
    """message id → true conversation, for the messages whose conversation is known."""
    parents: dict[str, frozenset[str]] = field(default_factory=dict)
    """message id → its true parents (itself: it starts a conversation); empty without links."""
    channel_names: dict[str, str] = field(default_factory=dict)

    def subset(self, channels: set[str]) -> Annotated:
        """The same data restricted to some channels (chunks, for a split)."""
        table = self.table[self.table["channel"].isin(channels)].reset_index(drop=True)
        keep = {_channel_of(m) for m in self.truth} & channels
        return Annotated(
            table=table,
            truth={m: c for m, c in self.truth.items() if _channel_of(m) in keep},
            parents={m: p for m, p in self.parents.items() if _channel_of(m) in keep},
            channel_names={k: v for k, v in self.channel_names.items() if k in channels},
        )


def _channel_of(message_id: str) -> str:
    return message_id.rsplit(":", 1)[0]


def load_annotated(data: Path, truth: Path, links: Path | None = None) -> Annotated:
    """An export (or table) with its known conversations and, optionally, reply links."""
    table = load_table(data)
    by_ts: dict[str, str] = {}
    clashes: set[str] = set()
    for channel, ts in zip(table["channel"], table["slack_ts"], strict=True):
        if ts in by_ts and by_ts[ts] != channel:
            clashes.add(ts)
        by_ts[ts] = str(channel)

    def message(ts: str) -> str | None:
        if ts in clashes:
            raise TruthError(f"ts {ts} occurs in more than one channel; the truth cannot say which")
        channel = by_ts.get(ts)
        return None if channel is None else conversation_id(channel, ts)

    known: dict[str, str] = {}
    missing = 0
    for ts, conversation in json.loads(truth.read_text(encoding="utf-8")).items():
        found = message(str(ts))
        if found is None:
            missing += 1
        else:
            known[found] = str(conversation)
    if not known:
        raise TruthError(f"no message of {truth} is in {data}")
    if missing > len(known):
        raise TruthError(f"{missing} messages of {truth} are not in {data} (found {len(known)})")
    parents: dict[str, set[str]] = defaultdict(set)
    if links is not None:
        for ts, parent_ts in json.loads(links.read_text(encoding="utf-8")):
            child, parent = message(str(ts)), message(str(parent_ts))
            if child is not None and parent is not None:
                parents[child].add(parent)
    names = _channel_names(data)
    return Annotated(
        table=table,
        truth=known,
        parents={m: frozenset(p) for m, p in parents.items()},
        channel_names=names,
    )


def _channel_names(data: Path) -> dict[str, str]:
    """Channel id → name from an export directory's channels.json (ids stand for themselves)."""
    listing = data / "channels.json" if data.is_dir() else None
    if listing is None or not listing.exists():
        return {}
    return {
        str(c["id"]): str(c.get("name", c["id"])) for c in json.loads(listing.read_text(encoding="utf-8"))
    }


SPLITS = ("train", "dev", "test")


def split_of(chunk_name: str) -> str:
    """The fixed split of an annotated chunk, by a checksum of its name: 60 % train, 20 % dev
    (settings are chosen there), 20 % test (reported, never used for a choice). A checksum
    rather than a position in a listing, so adding chunks never moves the others."""
    bucket = zlib.crc32(chunk_name.encode()) % 5
    return "dev" if bucket == 3 else "test" if bucket == 4 else "train"


def split(annotated: Annotated) -> dict[str, Annotated]:
    """The train/dev/test parts of chunked data (each channel a chunk, named in channels.json)."""
    parts: dict[str, set[str]] = {name: set() for name in SPLITS}
    for channel in annotated.table["channel"].unique():
        parts[split_of(annotated.channel_names.get(str(channel), str(channel)))].add(str(channel))
    return {name: annotated.subset(channels) for name, channels in parts.items()}


def people_messages(table: pd.DataFrame) -> Iterator[tuple[Any, Any, Any, Any, Any]]:
    """(channel, slack_ts, slack_thread_ts, user, text) of the table's people's messages, in table
    order: rows with an author whose subtype, if any, is a person's (`beepgpt.person_messages`, the
    rule of ingest and the live sessionizer). The linker's evaluation and its training read the
    same rows."""
    for channel, ts, thread_ts, user, text, subtype in zip(
        table["channel"],
        table["slack_ts"],
        table["slack_thread_ts"],
        table["user"],
        table["text"],
        table["subtype"],
        strict=True,
    ):
        if not is_person_message(subtype, user):
            continue
        yield channel, ts, thread_ts, user, text
