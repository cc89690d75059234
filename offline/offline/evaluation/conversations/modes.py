"""Each conversation mode's answer for a history table: message id → conversation id.

- `gap`: today's rule, through the sessionizer's own history query (`history.conversations`,
  the Kaskada query the live service runs): a flow conversation ends after 10 minutes of
  channel silence, a thread is its own conversation.
- `linked`: the reply linker (`sessionizer.linker`) over every flow message in time order, each
  joining the conversation of the message it replies to; threads stay their own conversation
  (thread membership always wins). Built by the same history query in linked mode
  (`history.conversations` with `conversations="linked"`), so through the feeder's `LinkedFlow`:
  the one definition of the rule, which the live service runs with `BEEPGPT_CONVERSATIONS=linked`.
  It also says which parent each message was given, for link accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from beepgpt.contracts import conversation_id
from sessionizer.history import conversations
from sessionizer.linker import LinkerModel
from sessionizer.settings import SessionizerSettings

if TYPE_CHECKING:
    import pandas as pd

Mode = Literal["gap", "linked"]
MODES: tuple[Mode, ...] = ("gap", "linked")


@dataclass(frozen=True)
class Assignment:
    """A mode's conversations: each kept message's conversation id, and its parent where known."""

    conversation: dict[str, str]
    parents: dict[str, str | None] | None = None
    members: dict[str, list[str]] | None = None
    """conversation id → its messages' ids in time order (what `beepgpt conversations` lists)."""


def assign(
    table: pd.DataFrame,
    mode: Mode,
    *,
    settings: SessionizerSettings | None = None,
    model: LinkerModel | None = None,
) -> Assignment:
    if mode == "gap":
        return gap(table, settings)
    return linked(table, model, settings)


def gap(table: pd.DataFrame, settings: SessionizerSettings | None = None) -> Assignment:
    """The 10-minute rule, as the sessionizer's history query builds it."""
    rules = (settings or SessionizerSettings()).model_copy(update={"conversations": "gap"})
    found: dict[str, str] = {}
    parents: dict[str, str | None] = {}
    members: dict[str, list[str]] = {}
    for event in conversations(table, rules):
        ids = [conversation_id(event.channel, m.ts) for m in event.messages]
        members[event.conversation_id] = ids
        for previous, message in zip([None, *ids], ids, strict=False):
            found[message] = event.conversation_id
            parents[message] = previous  # the rule's implicit link: the message before
    return Assignment(found, parents, members)


def linked(
    table: pd.DataFrame, model: LinkerModel | None = None, settings: SessionizerSettings | None = None
) -> Assignment:
    """The reply linker's conversations, as the sessionizer builds them in linked mode: a flow
    conversation is named `channel:root_ts` after its first message, a thread
    `channel:thread_ts/thread`. A thread reply's parent is the thread's first message."""
    rules = (settings or SessionizerSettings()).model_copy(update={"conversations": "linked"})
    links: dict[str, str | None] = {}
    found: dict[str, str] = {}
    parents: dict[str, str | None] = {}
    members: dict[str, list[str]] = {}
    events = conversations(table, rules, model=model, on_link=links.__setitem__)
    for event in sorted(events, key=lambda e: _ts_order(e.messages[0].ts) if e.messages else (0, "")):
        ids = []
        for message in event.messages:
            message_id = conversation_id(event.channel, message.ts)
            ids.append(message_id)
            found[message_id] = event.conversation_id
            if message.thread_ts is not None and message.thread_ts != message.ts:
                parents[message_id] = conversation_id(event.channel, message.thread_ts)
            else:
                parents[message_id] = links.get(message_id)
        members[event.conversation_id] = ids
    return Assignment(found, parents, members)


def _ts_order(ts: str) -> tuple[int, str]:
    """Slack ts strings compare as numbers; equal-length ones also compare as text."""
    return (len(ts), ts)
