"""Is this a person's message? The one rule ingest and the sessionizer share (docs/conversations.md).

Conversations are made of what people say, so ingest (live and `beepgpt import`), the
sessionizer's feeder and its Kaskada query, and the history readers behind training and
evaluation must all agree on which Slack messages count. They used to keep lists of their own,
and those drifted (ingest kept `reply_broadcast`, the sessionizer skipped it as housekeeping):
this module is the only list.

Slack says what a message is by its `subtype`, which falls in one of these kinds:

- a person's words: no subtype, or one of `PERSON_SUBTYPES`. `thread_broadcast` is a thread
  reply also sent to the channel ("also send to #channel"); `reply_broadcast` is its older
  name (Slack no longer sends it, but exports and tables of that time carry it), the same
  person's reply, so it counts the same way;
- a bot's: `BOT_SUBTYPES` (and, whatever the subtype, any message with a bot id or by a known
  bot user: ingest checks those fields, which only it sees);
- Slack's own notices about a channel (joins, topic changes, pins, ...): `HOUSEKEEPING_SUBTYPES`;
- a change to an earlier message: `CHANGE_SUBTYPES`. Ingest turns them into `edited` /
  `deleted` actions on the message they name; as a message of their own they are nobody's words;
- anything else is unknown: ingest dead-letters it (replayable once this module learns it),
  and nothing downstream takes it for a person's message.

Pure and dependency-free, so that every package can import it.
"""

from __future__ import annotations

import enum
from typing import Final


class SubtypeKind(enum.Enum):
    """What a message's subtype says it is."""

    PERSON = "person"
    BOT = "bot"
    HOUSEKEEPING = "housekeeping"
    CHANGE = "change"
    UNKNOWN = "unknown"


PERSON_SUBTYPES: Final[frozenset[str]] = frozenset(
    {"thread_broadcast", "reply_broadcast", "file_share", "me_message"}
)
"""Subtypes of messages a person wrote (a message without subtype is one too)."""

BOT_SUBTYPES: Final[frozenset[str]] = frozenset({"bot_message", "slackbot_response"})
"""Written by a bot or by Slack itself: never part of a conversation between people."""

HOUSEKEEPING_SUBTYPES: Final[frozenset[str]] = frozenset(
    {
        "channel_join", "channel_leave", "channel_topic", "channel_purpose", "channel_name",
        "channel_archive", "channel_unarchive", "channel_posting_permissions",
        "channel_convert_to_private", "channel_convert_to_public", "channel_canvas_updated",
        "group_join", "group_leave", "group_topic", "group_purpose", "group_name",
        "group_archive", "group_unarchive", "pinned_item", "unpinned_item", "reminder_add",
        "bot_add", "bot_remove", "bot_enable", "bot_disable", "ekm_access_denied",
        "file_comment", "file_mention", "sh_room_created", "huddle_thread", "message_replied",
        "app_conversation_join", "app_conversation_leave", "joiner_notification",
        "joiner_notification_for_inviter",
    }
)  # fmt: skip
"""Slack's own notices about a channel: they never form conversations."""

CHANGE_SUBTYPES: Final[frozenset[str]] = frozenset({"message_changed", "message_deleted", "tombstone"})
"""Changes to an earlier message (`tombstone`: a thread parent deleted while its replies stay)."""


def subtype_kind(subtype: str | None) -> SubtypeKind:
    """The kind of message a subtype names (no subtype: a person's plain message)."""
    if subtype is None or subtype in PERSON_SUBTYPES:
        return SubtypeKind.PERSON
    if subtype in BOT_SUBTYPES:
        return SubtypeKind.BOT
    if subtype in HOUSEKEEPING_SUBTYPES:
        return SubtypeKind.HOUSEKEEPING
    if subtype in CHANGE_SUBTYPES:
        return SubtypeKind.CHANGE
    return SubtypeKind.UNKNOWN


def is_person_subtype(subtype: str | None) -> bool:
    """Whether a message of this subtype carries what a person said."""
    return subtype is None or subtype in PERSON_SUBTYPES


def is_person_message(subtype: str | None, user: str | None) -> bool:
    """A message that may take part in a conversation: it has an author and a person's subtype.

    What ingest publishes as a new message always passes (it drops bots and housekeeping and
    dead-letters unknown subtypes); the sessionizer and the history readers test it again because
    their input may come from elsewhere (a table written by older code, an export read directly).
    """
    return user is not None and is_person_subtype(subtype)
