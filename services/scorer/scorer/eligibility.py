"""Who may be a candidate for a conversation at all (docs/scoring.md): a pure rule, no I/O.

Decided before any model runs, so that models only ever score people the product may alert:
nobody is told about a conversation they are already in, bots are never an audience, and only
people who opted in are considered (the notifier checks opt-in again when it sends; the scorer
checking too keeps candidates, and model work, to the people that matter).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from beepgpt.contracts import ConversationEvent, Preferences

SLACK_BOT_PREFIXES = ("B",)
"""Slack bot ids (`B…`) can appear where a user id is expected; they are never people."""


def is_bot(user: str, bot_users: Collection[str]) -> bool:
    return user in bot_users or user.startswith(SLACK_BOT_PREFIXES)


def taking_part(conversation: ConversationEvent) -> set[str]:
    """Everyone already in the conversation: its participants and the authors of its messages."""
    return set(conversation.participants) | {message.user for message in conversation.messages}


def eligible_users(
    conversation: ConversationEvent,
    preferences: Mapping[str, Preferences],
    bot_users: Collection[str] = (),
) -> set[str]:
    """Opted-in people who are not bots and do not take part in the conversation."""
    excluded = taking_part(conversation)
    return {
        user
        for user, prefs in preferences.items()
        if prefs.opted_in and user not in excluded and not is_bot(user, bot_users)
    }


def is_eligible(
    user: str,
    conversation: ConversationEvent,
    preferences: Mapping[str, Preferences],
    bot_users: Collection[str] = (),
) -> bool:
    prefs = preferences.get(user)
    return (
        prefs is not None
        and prefs.opted_in
        and user not in taking_part(conversation)
        and not is_bot(user, bot_users)
    )
