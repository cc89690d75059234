"""The scorer's own metrics (`beepgpt_scorer_*`), in one place so dashboards and alert rules have
one list to refer to. Kafka-level figures (records consumed/produced, lag, dead letters) are the
shared ones of `beepgpt.observability.metrics`.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CONVERSATIONS_SCORED = Counter(
    "beepgpt_scorer_conversations_scored_total", "Conversation events scored", ["kind"]
)
EVENTS_SKIPPED = Counter(
    "beepgpt_scorer_events_skipped_total",
    "Conversation events not scored: a kind not configured, or superseded by a newer version in the same batch",
    ["why"],
)
CANDIDATES = Counter("beepgpt_scorer_candidates_total", "Candidates published", ["reason"])
CANDIDATES_DROPPED = Counter(
    "beepgpt_scorer_candidates_dropped_total",
    "Candidates a scorer proposed for someone who may not hear of the conversation (a bug guard)",
)
SCORES = Histogram(
    "beepgpt_scorer_candidate_score",
    "Scores of the candidates published",
    ["reason"],
    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
)
BATCH_SIZE = Histogram(
    "beepgpt_scorer_batch_conversations",
    "Conversations scored together in one model call",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
BATCH_SECONDS = Histogram(
    "beepgpt_scorer_batch_seconds",
    "Time to score one batch, retries included",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ERRORS = Counter(
    "beepgpt_scorer_errors_total",
    "Failures by stage (decode, score, score_retry, publish, commit, rebalance_wait, model_load)",
    ["stage"],
)
CACHE_LOOKUPS = Counter("beepgpt_scorer_cache_lookups_total", "Message embedding cache lookups", ["result"])
CACHE_MESSAGES = Gauge("beepgpt_scorer_cache_messages", "Message embeddings held in the cache")
CACHE_EVICTIONS = Counter(
    "beepgpt_scorer_cache_evictions_total", "Conversations evicted from the cache", ["why"]
)
MODEL_INFO = Gauge(
    "beepgpt_scorer_model_info",
    "The model version in use (1) and the ones before it (0)",
    ["version", "path"],
)
MODEL_LOADS = Counter("beepgpt_scorer_model_loads_total", "Model directory loads", ["result"])
PREFERENCE_USERS = Gauge(
    "beepgpt_scorer_preferences_users", "Users in the scorer's preferences table", ["opted_in"]
)
PREFERENCE_RECORDS = Counter(
    "beepgpt_scorer_preferences_records_total",
    "Preference changes applied to the table (a tombstone is deleted)",
    ["result"],
)
