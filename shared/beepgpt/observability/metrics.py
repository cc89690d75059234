"""Metrics shared by every service; each service defines its own beside these.

Names follow Prometheus conventions (`beepgpt_` prefix, `_total` counters, `_seconds`
histograms); deploy/ rules and dashboards refer to them by these names.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

PRODUCED = Counter("beepgpt_kafka_records_produced_total", "Records acknowledged by Kafka", ["topic"])
CONSUMED = Counter("beepgpt_kafka_records_consumed_total", "Records read from Kafka", ["topic", "service"])
DEAD_LETTERS = Counter(
    "beepgpt_dlq_records_total", "Records sent to a dead-letter topic", ["topic", "service", "error"]
)
CONSUMER_LAG = Gauge(
    "beepgpt_kafka_consumer_lag",
    "Records between the end of a partition and the consumer's position",
    ["topic", "partition", "service"],
)
READY = Gauge("beepgpt_ready", "1 when the service is ready to do work", ["service"])
