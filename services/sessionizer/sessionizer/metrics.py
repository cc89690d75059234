"""The sessionizer's metrics (`beepgpt_sessionizer_*`), beside the shared Kafka/DLQ ones."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

MESSAGES_IN = Counter(
    "beepgpt_sessionizer_messages_total",
    "Records from slack.messages fed to the conversation query, by kind (new, edited, deleted, reaction)",
    ["kind"],
)
LATE = Counter(
    "beepgpt_sessionizer_late_messages_total",
    "Records older than the newest time fed: clamped to it, or dropped when older than the query remembers",
    ["outcome"],
)
DUPLICATES = Counter(
    "beepgpt_sessionizer_duplicate_messages_total", "New messages whose (channel, ts) was seen before"
)
CONVERSATION_EVENTS = Counter(
    "beepgpt_sessionizer_conversation_events_total",
    "ConversationEvents published, by kind (updated, closed)",
    ["kind"],
)
OPEN_CONVERSATIONS = Gauge(
    "beepgpt_sessionizer_open_conversations",
    "Conversations that may still change (threads are remembered a while after closing)",
    ["partition"],
)
QUERY_RESTARTS = Counter(
    "beepgpt_sessionizer_query_restarts_total",
    "Live queries rebuilt: ended (Kaskada's iterator stopped: alert on it), failed, or rebuilt to release memory",
    ["reason"],
)
REPLAYED = Counter(
    "beepgpt_sessionizer_replayed_records_total",
    "Records fed again after a start, rebalance or rebuild to restore open conversations",
)


# Children the hot path uses, resolved once (`labels()` is a dict lookup under a lock).
NEW_MESSAGES = MESSAGES_IN.labels("new")
UPDATED = CONVERSATION_EVENTS.labels("updated")
CLOSED = CONVERSATION_EVENTS.labels("closed")
CLAMPED = LATE.labels("clamped")
DROPPED = LATE.labels("dropped")
