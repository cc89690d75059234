"""Each conversation mode's answer for a history table: message id → conversation id.

- `gap`: today's rule, through the sessionizer's own history query (`history.conversations`,
  the Kaskada query the live service runs): a flow conversation ends after 10 minutes of
  channel silence, a thread is its own conversation.
- `linked`: the reply linker (`sessionizer.linker`) over every flow message in time order, each
  joining the conversation of the message it replies to; threads stay their own conversation
  (thread membership always wins). It also says which parent each message was given, for link
  accuracy. The live service does not run this mode yet: it is measured here in history only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from beepgpt.contracts import conversation_id
from offline.evaluation.conversations.data import people_messages
from sessionizer.history import conversations
from sessionizer.linker import Linker, LinkerModel
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
    return linked(table, model)


def gap(table: pd.DataFrame, settings: SessionizerSettings | None = None) -> Assignment:
    """The 10-minute rule, as the sessionizer's history query builds it."""
    found: dict[str, str] = {}
    parents: dict[str, str | None] = {}
    members: dict[str, list[str]] = {}
    for event in conversations(table, settings):
        ids = [conversation_id(event.channel, m.ts) for m in event.messages]
        members[event.conversation_id] = ids
        for previous, message in zip([None, *ids], ids, strict=False):
            found[message] = event.conversation_id
            parents[message] = previous  # the rule's implicit link: the message before
    return Assignment(found, parents, members)


def linked(table: pd.DataFrame, model: LinkerModel | None = None) -> Assignment:
    """The reply linker's conversations: a flow conversation is named `channel:root_ts` after its
    first message, a thread `channel:thread_ts/thread`, as the sessionizer names them."""
    linker = Linker(model)
    found: dict[str, str] = {}
    parents: dict[str, str | None] = {}
    members: dict[str, list[str]] = {}
    seen: set[str] = set()
    for channel, ts, thread_ts, user, text in people_messages(table):
        message = conversation_id(str(channel), str(ts))
        if message in seen:
            continue  # a duplicate, as the feeder drops it
        seen.add(message)
        if thread_ts is not None and thread_ts != ts:
            conversation = conversation_id(str(channel), str(thread_ts), str(thread_ts))
            parents[message] = conversation_id(str(channel), str(thread_ts))
        else:
            link = linker.link(str(channel), str(ts), float(ts), str(user), str(text))
            if thread_ts is not None:  # a thread's parent: the thread wins
                conversation = conversation_id(str(channel), str(ts), str(ts))
            else:
                conversation = conversation_id(str(channel), link.root_ts)
            parents[message] = None if link.parent_ts is None else conversation_id(str(channel), link.parent_ts)
        found[message] = conversation
        members.setdefault(conversation, []).append(message)
    return Assignment(found, parents, members)
