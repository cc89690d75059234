"""A thin layer over aiokafka: topic creation, producing contracts, consuming in groups, DLQs."""

from beepgpt.kafka.admin import ensure_topics
from beepgpt.kafka.clients import new_admin, new_consumer, new_producer
from beepgpt.kafka.consumer import committed_with_metadata, make_consumer, report_lag
from beepgpt.kafka.dlq import DeadLetters
from beepgpt.kafka.headers import Headers, header, make_headers
from beepgpt.kafka.producer import EventProducer

__all__ = [
    "DeadLetters",
    "EventProducer",
    "Headers",
    "committed_with_metadata",
    "ensure_topics",
    "header",
    "make_consumer",
    "make_headers",
    "new_admin",
    "new_consumer",
    "new_producer",
    "report_lag",
]
