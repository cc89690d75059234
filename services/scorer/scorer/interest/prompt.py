"""What the interest model reads: a few recent messages of a conversation and where it happens.

Training and live scoring must show the model the same thing (docs/conversations.md, docs/scoring.md). In training,
the prompt for a message by U is the up-to-5 messages before it in its conversation written by
others than U (the sessionizer's shared query picks them). Live, the people who already take part
are never candidates, so the prompt is simply the conversation's latest 5 messages: they were all
written by someone other than whoever is being scored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from beepgpt.contracts import ConversationEvent

PROMPT_MESSAGES = 5


@dataclass(frozen=True)
class PromptMessage:
    user: str
    text: str


@dataclass(frozen=True)
class Prompt:
    """Oldest message first; at most `PROMPT_MESSAGES`."""

    channel: str
    in_thread: bool
    messages: tuple[PromptMessage, ...]

    @property
    def texts(self) -> list[str]:
        return [m.text for m in self.messages]

    @property
    def authors(self) -> list[str]:
        return [m.user for m in self.messages]


def latest(count: int, limit: int = PROMPT_MESSAGES) -> slice:
    """Which of a conversation's `count` messages (and vector rows) form its live prompt."""
    return slice(max(0, count - limit), count)


def prompt_of(conversation: ConversationEvent, limit: int = PROMPT_MESSAGES) -> Prompt:
    """The live prompt of a conversation: its latest `limit` messages."""
    chosen = conversation.messages[latest(len(conversation.messages), limit)]
    return Prompt(
        channel=conversation.channel,
        in_thread=conversation.thread_ts is not None,
        messages=tuple(PromptMessage(m.user, m.text) for m in chosen),
    )


def render(prompt: Prompt, names: Mapping[str, str] | None = None) -> str:
    """The prompt as text, one `name: text` line per message (what the OpenAI model reads)."""
    known = names or {}
    where = f"#{prompt.channel}" + (" (thread)" if prompt.in_thread else "")
    lines = [f"Channel: {where}"]
    lines.extend(f"{known.get(m.user, m.user)}: {' '.join(m.text.split())}" for m in prompt.messages)
    return "\n".join(lines)
