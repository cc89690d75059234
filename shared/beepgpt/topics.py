"""Topic names, their keys, value types and creation settings in one place (docs/topics-and-contracts.md).

Each `Topic` says what its records are (the value's contract and which of its fields is the
record key) and how the topic is created: partitions, and how long records stay (retention, or
compaction). Everything that creates topics or declares them follows this file, and tests check
it does: deploy/compose/create-topics.sh (tests/deploy), the Kubernetes KafkaTopics
(deploy/k8s/check_manifests.py, run by deploy/validate.sh and tests/deploy), and the services'
own creation of missing topics (`beepgpt.kafka.ensure_topics`).

`partitions` is the production size: partitions can grow later but never shrink, and growing
moves keys (channels, users) between partitions, so each consumed topic is sized for the peak,
with as many partitions as its consumer may have replicas (the autoscaler's maximum). Smaller
environments (the dev overlay, the single-broker compose stack, tests) may use fewer; never more.
Replication is the cluster's business, not the topic's, and is left to each environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, TypeAdapter

from beepgpt.contracts import (
    Candidate,
    ConversationEvent,
    Feedback,
    Notification,
    Preferences,
    Suggestions,
    slack_event_adapter,
)

CleanupPolicy = Literal["delete", "compact"]

DLQ_PARTITIONS = 3
"""Dead-letter topics carry little traffic; a few partitions keep a poison burst from one hot key
spread without sizing them like their topics."""
DLQ_RETENTION = timedelta(days=14)
"""Long enough for a human to notice the alert, inspect the parked records and replay them."""


@dataclass(frozen=True)
class TopicSettings:
    """What creating one Kafka topic takes: its name, partitions and topic-level configs."""

    name: str
    partitions: int
    cleanup_policy: CleanupPolicy = "delete"
    retention: timedelta | None = None
    """How long records stay (cleanup policy `delete`); None: kept forever (compacted topics)."""

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ValueError(f"{self.name}: partitions must be at least 1")
        if (self.cleanup_policy == "delete") != (self.retention is not None):
            # A deleting topic without a retention would get the broker's default, which is
            # exactly what creating topics explicitly is for avoiding; a compacted one keeps
            # every key's latest value, so a retention would only lose preferences.
            raise ValueError(f"{self.name}: a retention is set exactly when records are deleted")

    @property
    def compacted(self) -> bool:
        return self.cleanup_policy == "compact"

    @property
    def retention_ms(self) -> int | None:
        return None if self.retention is None else int(self.retention.total_seconds() * 1000)

    def configs(self) -> dict[str, str]:
        """The topic-level configs to create it with (Kafka's names and string values).

        Only what this file decides: a compacted topic says so; any other names its retention.
        """
        if self.compacted:
            return {"cleanup.policy": "compact"}
        return {"retention.ms": str(self.retention_ms)}


@dataclass(frozen=True)
class Topic:
    """A Kafka topic of the product: its records (value contract, key) and its creation settings."""

    name: str
    key: str
    """The value's field that is the record key: one key, one partition, in order."""
    adapter: TypeAdapter[Any]
    partitions: int
    retention: timedelta | None = None
    cleanup_policy: CleanupPolicy = "delete"

    def __post_init__(self) -> None:
        _ = self.settings  # TopicSettings checks itself: a topic defined wrong fails at import

    @property
    def dlq(self) -> str:
        """The dead-letter topic that takes this topic's poison records."""
        return f"{self.name}.dlq"

    @property
    def compacted(self) -> bool:
        return self.cleanup_policy == "compact"

    @property
    def settings(self) -> TopicSettings:
        """How this topic is created."""
        return TopicSettings(self.name, self.partitions, self.cleanup_policy, self.retention)

    @property
    def dlq_settings(self) -> TopicSettings:
        """How its dead-letter topic is created: never compacted (every poison record matters,
        not the latest per key), few partitions, `DLQ_RETENTION`."""
        return TopicSettings(self.dlq, DLQ_PARTITIONS, "delete", DLQ_RETENTION)

    def key_of(self, value: BaseModel) -> str:
        """The record key of `value`: its `key` field."""
        key = getattr(value, self.key)
        if not isinstance(key, str):
            raise TypeError(f"{type(value).__name__}.{self.key} is not a {self.name} key")
        return key

    def decode(self, raw: bytes) -> Any:
        """Parse and validate a record value; raises pydantic.ValidationError on bad input."""
        return self.adapter.validate_json(raw)


def encode(event: BaseModel) -> bytes:
    """Every value is the JSON of its pydantic model."""
    return event.model_dump_json().encode()


# Retention: each topic keeps what its readers may have to replay. slack.messages must outlast
# the longest open conversation (a restarted sessionizer replays from its oldest open message);
# conversations and candidates are consumed within seconds, 3 days covers a long outage; the
# audit is read back by App Home's recent alerts and the demo, feedback by training.
SLACK_MESSAGES = Topic(
    "slack.messages", "channel", slack_event_adapter, partitions=12, retention=timedelta(days=7)
)
CONVERSATIONS = Topic(
    "conversations",
    "conversation_id",
    TypeAdapter(ConversationEvent),
    partitions=12,
    retention=timedelta(days=3),
)
CANDIDATES = Topic(
    "notifications.candidates", "user", TypeAdapter(Candidate), partitions=12, retention=timedelta(days=3)
)
SENT = Topic(
    "notifications.sent", "user", TypeAdapter(Notification), partitions=6, retention=timedelta(days=30)
)
PREFERENCES = Topic(
    "user.preferences", "user", TypeAdapter(Preferences), partitions=6, cleanup_policy="compact"
)
"""Latest preferences per user is all anyone needs: compaction keeps exactly that, forever."""
FEEDBACK = Topic("feedback", "user", TypeAdapter(Feedback), partitions=6, retention=timedelta(days=90))
SUGGESTIONS = Topic(
    "user.suggestions", "user", TypeAdapter(Suggestions), partitions=6, cleanup_policy="compact"
)
"""A person's latest suggested topics replace the previous ones: compaction keeps exactly those."""

ALL_TOPICS: tuple[Topic, ...] = (
    SLACK_MESSAGES,
    CONVERSATIONS,
    CANDIDATES,
    SENT,
    PREFERENCES,
    FEEDBACK,
    SUGGESTIONS,
)


def all_topic_settings(topics: tuple[Topic, ...] = ALL_TOPICS) -> Mapping[str, TopicSettings]:
    """Every topic to create, dead-letter topics included, by name."""
    return {s.name: s for topic in topics for s in (topic.settings, topic.dlq_settings)}
