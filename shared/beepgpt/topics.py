"""Topic names, their keys and value types in one place (DESIGN.md §2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, TypeAdapter

from beepgpt.contracts import (
    Candidate,
    ConversationEvent,
    Feedback,
    Notification,
    Preferences,
    slack_event_adapter,
)


@dataclass(frozen=True)
class Topic:
    """A Kafka topic of the product: what its key means and how its values are read."""

    name: str
    key: str
    adapter: TypeAdapter[Any]
    compacted: bool = False

    @property
    def dlq(self) -> str:
        """The dead-letter topic that takes this topic's poison records."""
        return f"{self.name}.dlq"

    def decode(self, raw: bytes) -> Any:
        """Parse and validate a record value; raises pydantic.ValidationError on bad input."""
        return self.adapter.validate_json(raw)


def encode(event: BaseModel) -> bytes:
    """Every value is the JSON of its pydantic model."""
    return event.model_dump_json().encode()


SLACK_MESSAGES = Topic("slack.messages", "channel id", slack_event_adapter)
CONVERSATIONS = Topic("conversations", "conversation id", TypeAdapter(ConversationEvent))
CANDIDATES = Topic("notifications.candidates", "user id", TypeAdapter(Candidate))
SENT = Topic("notifications.sent", "user id", TypeAdapter(Notification))
PREFERENCES = Topic("user.preferences", "user id", TypeAdapter(Preferences), compacted=True)
FEEDBACK = Topic("feedback", "user id", TypeAdapter(Feedback))

ALL_TOPICS: tuple[Topic, ...] = (SLACK_MESSAGES, CONVERSATIONS, CANDIDATES, SENT, PREFERENCES, FEEDBACK)
