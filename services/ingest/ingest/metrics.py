"""The ingest service's metrics (beside the shared ones in `beepgpt.observability.metrics`).

Every Slack event is counted exactly once in `beepgpt_ingest_events_total`, under its final
outcome: `published`, `duplicate`, `dropped`, `rejected` (dead-lettered), `overloaded` (refused
because the buffer was full; Slack redelivers it), `failed` (acknowledged but could not be
published before shutdown) or `unauthorized` (bad signature). Events between acknowledgement and
Kafka's acknowledgement are the buffer depth.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter(
    "beepgpt_ingest_events_total", "Slack events received, by final outcome and reason", ["outcome", "reason"]
)
REPAIRS = Counter(
    "beepgpt_ingest_repairs_total", "Accepted events whose content had to be repaired", ["repair"]
)
ACK_LATENCY = Histogram(
    "beepgpt_ingest_ack_latency_seconds",
    "From receiving a Slack request to answering it (Slack gives up after 3 s)",
    ["mode"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0),
)
PUBLISH_LATENCY = Histogram(
    "beepgpt_ingest_publish_latency_seconds",
    "From acknowledging an event to Slack to Kafka acknowledging its record",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
BUFFER_DEPTH = Gauge("beepgpt_ingest_buffer_depth", "Acknowledged events not yet acknowledged by Kafka")
BUFFER_CAPACITY = Gauge("beepgpt_ingest_buffer_capacity", "Events the buffer holds before refusing more")
PUBLISH_RETRIES = Counter(
    "beepgpt_ingest_publish_retries_total", "Batches retried because Kafka or Redis failed", ["cause"]
)
