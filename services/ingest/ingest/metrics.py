"""The ingest service's metrics (beside the shared ones in `beepgpt.observability.metrics`).

Every Slack event is counted exactly once in `beepgpt_ingest_events_total`, under its final
outcome: `published`, `duplicate`, `dropped`, `rejected` (dead-lettered), `overloaded` (refused
because the buffer was full; Slack redelivers it), `failed` (Kafka refused the record for good,
or a shutdown ran out of time before Kafka took it) or `unauthorized` (bad signature).

Every ack of an event is counted once in `beepgpt_ingest_acks_total` by what Kafka had at that
moment: `durable` (its record, or the record of the event it repeats), `buffered` (the ack
budget ran out first: acked before durable), `failed` (Kafka refused the record for good, so a
redelivery could not help) or `no_record` (dropped events, which publish nothing). Records
taken but not yet acknowledged by Kafka are the buffer depth; those among them already acked
to Slack are `beepgpt_ingest_buffer_acked`, what a SIGKILL would lose at that moment.

Messages not read because of their channel's kind (private channels unless allowed, DMs, group
DMs) are also counted apart in `beepgpt_ingest_channel_skips_total{reason}` (besides `dropped`
in the events counter): it is the figure to watch when deciding whether to allow private
channels, and a sudden rise of `private_channel` means the bot was invited to one.
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
ACKS = Counter(
    "beepgpt_ingest_acks_total",
    "Slack events acknowledged, by what Kafka had when the ack went out",
    ["durability"],
)
PUBLISH_LATENCY = Histogram(
    "beepgpt_ingest_publish_latency_seconds",
    "From taking an event into the buffer to Kafka acknowledging its record",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
BUFFER_DEPTH = Gauge("beepgpt_ingest_buffer_depth", "Events taken but not yet acknowledged by Kafka")
BUFFER_ACKED = Gauge(
    "beepgpt_ingest_buffer_acked",
    "Buffered events already acknowledged to Slack (the ack budget ran out): lost if the process is killed",
)
BUFFER_CAPACITY = Gauge("beepgpt_ingest_buffer_capacity", "Events the buffer holds before refusing more")
PUBLISH_RETRIES = Counter(
    "beepgpt_ingest_publish_retries_total", "Batches retried because Kafka or Redis failed", ["cause"]
)
CHANNEL_SKIPS = Counter(
    "beepgpt_ingest_channel_skips_total",
    "Slack messages not read because of their channel's kind (private_channel, direct_message, group_dm)",
    ["reason"],
)
