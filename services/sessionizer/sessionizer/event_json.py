"""A conversation event's JSON, written from its parts: the sessionizer's hot path.

The live service publishes an `updated` event for every message, each carrying up to
MAX_MESSAGES messages, so the same message is serialized up to 20 times. Building the pydantic
`ConversationEvent` and dumping it cost about 30 µs a message in `python -m bench sessionizer`
(71–80 against 106–109 µs of CPU per message with that step taken out), a quarter of the
service. Here each message's JSON is written once, when the message arrives or changes
(`message_json`), and an event is those fragments joined inside the envelope.

The bytes are exactly `ConversationEvent(...).model_dump_json()` — the contract in
`beepgpt.contracts` stays the one definition: every value goes through pydantic-core's own
serializer, and `tests/sessionizer/test_sessionizer_event_json.py` checks byte equality on
awkward texts and that the envelope lists the contract's fields in its order, so a field added to
`ConversationEvent` fails that test instead of being silently left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pydantic_core import to_json

from beepgpt.contracts import SCHEMA_VERSION, ConversationMessage

FIELDS = (
    "schema_version",
    "kind",
    "conversation_id",
    "channel",
    "thread_ts",
    "first_ts",
    "last_ts",
    "version",
    "messages",
    "participants",
    "message_count",
    "reaction_count",
    "emitted_at",
)
"""The envelope's fields in the order `ConversationEvent` serializes them (checked by a test)."""

_MESSAGE = ConversationMessage.__pydantic_serializer__


def message_json(message: ConversationMessage) -> bytes:
    """One message as it appears inside an event's `messages`."""
    return _MESSAGE.to_json(message)


class EventParts(Protocol):
    """What an event is made of (`sessionizer.conversation.Emitted`), messages as JSON fragments."""

    @property
    def kind(self) -> str: ...
    @property
    def conversation_id(self) -> str: ...
    @property
    def channel(self) -> str: ...
    @property
    def thread_ts(self) -> str | None: ...
    @property
    def first_ts(self) -> str: ...
    @property
    def last_ts(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def fragments(self) -> Sequence[bytes]: ...
    @property
    def participants(self) -> Sequence[str]: ...
    @property
    def message_count(self) -> int: ...
    @property
    def reaction_count(self) -> int: ...


def event_json(parts: EventParts, emitted_at: float) -> bytes:
    """The event's JSON from its values and its messages' `message_json` fragments."""
    return b"".join(
        (
            b'{"schema_version":',
            str(SCHEMA_VERSION).encode(),
            b',"kind":',
            to_json(parts.kind),
            b',"conversation_id":',
            to_json(parts.conversation_id),
            b',"channel":',
            to_json(parts.channel),
            b',"thread_ts":',
            to_json(parts.thread_ts),
            b',"first_ts":',
            to_json(parts.first_ts),
            b',"last_ts":',
            to_json(parts.last_ts),
            b',"version":',
            str(parts.version).encode(),
            b',"messages":[',
            b",".join(parts.fragments),
            b'],"participants":',
            to_json(list(parts.participants)),
            b',"message_count":',
            str(parts.message_count).encode(),
            b',"reaction_count":',
            str(parts.reaction_count).encode(),
            b',"emitted_at":',
            to_json(emitted_at),
            b"}",
        )
    )
