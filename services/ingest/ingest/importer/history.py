"""Folding normalized history into the message table: the live rules, applied to the past.

Every line goes through `ingest.normalize.normalize_event` — the function the live service uses —
so an import keeps and drops exactly what ingest would have kept and dropped: bots, joins and
other housekeeping are skipped by the same reasons, texts are cut at the same limit, and an
edit (`message_changed`) replaces the text of the message it names while a deletion removes it,
as the sessionizer does with the live stream (docs/conversations.md). Exports normally hold the final
version of each message already (with an `edited` marker); the fold matters for exports and
tables that carry the change events themselves.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from beepgpt.contracts import SlackMessage, SlackReaction
from beepgpt.message_table import from_messages
from ingest.importer.export import Problem
from ingest.normalize import DEFAULT_RULES, Accepted, Dropped, Envelope, Rules, normalize_event

if TYPE_CHECKING:
    import pandas as pd

MAX_REJECTION_PROBLEMS = 1_000  # beyond this, rejected lines are only counted


@dataclass
class Counts:
    """What an import did with each line it read; `read == kept + sum(skipped.values())`."""

    read: int = 0
    kept: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    edits: int = 0
    deletions: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "kept": self.kept,
            "skipped": dict(sorted(self.skipped.items())),
            "edits_applied": self.edits,
            "deletions_applied": self.deletions,
        }


class HistoryBuilder:
    """Feed lines with `add`; `table()` is the message table of what is left."""

    def __init__(self, rules: Rules = DEFAULT_RULES) -> None:
        self.rules = rules
        self.counts = Counts()
        self.problems: list[Problem] = []
        self._messages: dict[tuple[str, str], SlackMessage] = {}
        self._reactions: Counter[tuple[str, str]] = Counter()

    def add(
        self,
        line: Any,
        *,
        where: str,
        channel: str | None = None,
        channel_type: str | None = None,
        shared: bool = False,
        reactions: int = 0,
    ) -> None:
        """One export message / table row. `channel` fills in what export lines leave to their folder;
        `channel_type` and `shared` are what the export's listing says about that folder, and
        override whatever the line itself claims (the listing is who may read it)."""
        self.counts.read += 1
        if isinstance(line, Mapping) and (channel is not None or channel_type is not None):
            line = dict(line)
            if channel is not None:
                line.setdefault("channel", channel)
            if channel_type is not None:
                line["channel_type"] = channel_type
        outcome = normalize_event(line, Envelope(ext_shared=shared), self.rules)
        if isinstance(outcome, Dropped):
            self.counts.skipped[outcome.reason] += 1
        elif not isinstance(outcome, Accepted):
            self.counts.skipped[f"rejected:{outcome.reason}"] += 1
            if len(self.problems) < MAX_REJECTION_PROBLEMS:
                self.problems.append(
                    Problem(where, "rejected_message", f"{outcome.reason}: {outcome.detail}")
                )
        elif isinstance(outcome.event, SlackReaction):
            key = (outcome.event.channel, outcome.event.item_ts)
            self._reactions[key] += 1 if outcome.event.action == "added" else -1
            self.counts.skipped["reaction_event"] += 1
        else:
            self._message(outcome.event, reactions)

    def _message(self, message: SlackMessage, reactions: int) -> None:
        key = (message.channel, message.ts)
        known = self._messages.get(key)
        if message.action == "new":
            if known is not None:
                self.counts.skipped["duplicate"] += 1
                return
            self._messages[key] = message
            self._reactions[key] += reactions
            self.counts.kept += 1
        elif known is None:  # an edit or deletion of a message this history does not hold
            self.counts.skipped[f"{message.action}_of_unknown_message"] += 1
        elif message.action == "edited":
            self._messages[key] = known.model_copy(update={"text": message.text})
            self.counts.skipped["edit_applied"] += 1
            self.counts.edits += 1
        else:
            del self._messages[key]
            # the deletion line is skipped, and the row it removes moves from kept to skipped
            self.counts.skipped["deletion_applied"] += 1
            self.counts.kept -= 1
            self.counts.skipped["deleted"] += 1
            self.counts.deletions += 1

    def messages(self) -> list[SlackMessage]:
        """The surviving messages in time order (ties broken by channel, so the order is stable)."""
        return sorted(self._messages.values(), key=lambda m: (float(m.ts), m.channel, m.ts))

    def table(self) -> pd.DataFrame:
        counts = {key: max(0, n) for key, n in self._reactions.items() if key in self._messages}
        return from_messages(self.messages(), counts)


def reaction_count(message: Any) -> int:
    """Total reactions an exported message carries (`reactions: [{name, count, users}]`)."""
    if not isinstance(message, Mapping) or not isinstance(message.get("reactions"), list):
        return 0
    total = 0
    for reaction in message["reactions"]:
        if isinstance(reaction, Mapping):
            count = reaction.get("count")
            users = reaction.get("users")
            total += count if isinstance(count, int) else len(users) if isinstance(users, list) else 0
    return total
