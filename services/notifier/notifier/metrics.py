"""The notifier's metrics (beside the shared Kafka ones); deploy/ rules refer to these names."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from beepgpt.contracts import NOTIFICATION_OUTCOMES

DECISIONS = Counter(
    "beepgpt_notifier_decisions_total",
    f"Decisions about candidates, by outcome ({', '.join(NOTIFICATION_OUTCOMES)})",
    ["outcome"],
)
# Every outcome of the contract is a series from the start, at 0: an alert on `rate(...)` or
# `increase(...{outcome="failed"})` then sees the first failure, not a series appearing with it.
for _outcome in NOTIFICATION_OUTCOMES:
    DECISIONS.labels(_outcome)
DECISION_LATENCY = Histogram(
    "beepgpt_notifier_decision_latency_seconds",
    "From reading a candidate to publishing its decision (Slack send included)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
CANDIDATE_AGE = Histogram(
    "beepgpt_notifier_candidate_age_seconds",
    "From the scorer creating a candidate to the notifier deciding it",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600),
)
END_TO_END = Histogram(
    "beepgpt_notifier_end_to_end_seconds",
    "From the latest Slack message of the conversation to the notifier's decision",
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600),
)
SLACK_ERRORS = Counter(
    "beepgpt_notifier_slack_errors_total",
    "Failed Slack Web API calls, by method and error (each attempt counts)",
    ["method", "error"],
)
SLACK_RATE_LIMITED = Counter(
    "beepgpt_notifier_slack_rate_limited_total", "HTTP 429 answers from Slack, by method", ["method"]
)
SLACK_RETRIES = Counter(
    "beepgpt_notifier_slack_retries_total", "Slack calls retried after a backoff, by method", ["method"]
)
CORRECTIONS = Counter(
    "beepgpt_notifier_corrections_total",
    "Sent DMs drawn again because a message they quote was edited or deleted, by result",
    ["result"],
)
DIGESTS = Counter("beepgpt_notifier_digests_total", "Digest DMs, by result", ["result"])
REDIS_UP = Gauge("beepgpt_notifier_redis_up", "1 while Redis answers; 0 while consumption is paused")
HELD_USERS = Gauge("beepgpt_notifier_held_users", "Users with alerts waiting for a digest")
