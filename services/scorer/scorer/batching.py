"""Turning what Kafka hands over into one batch of model work (pure, no I/O).

Batching comes from the consumer: the service asks Kafka for up to `batch_size` records and gets
whatever is already fetched, so an idle service scores each event as it comes (latency) and a
loaded one scores many conversations per model call (throughput) without a timer deciding.
Within a batch only the newest scored version of each conversation is kept — under load a busy
conversation's intermediate states are superseded before anyone could be alerted about them —
and conversations that closed are listed so their cached embeddings can go after scoring.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from beepgpt.contracts import ConversationEvent
from beepgpt.runtime.batch import decode_records, next_offsets


@dataclass(frozen=True)
class Work:
    """A conversation event to score and the record it came from (for its trace id and the DLQ)."""

    event: ConversationEvent
    record: ConsumerRecord[bytes, bytes]


@dataclass
class Batch:
    """One batch of records, planned: what to score, what to dead-letter, what to commit."""

    work: list[Work] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    poison: list[tuple[ConsumerRecord[bytes, bytes], Exception]] = field(default_factory=list)
    superseded: int = 0
    not_scored: int = 0
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    """Per partition, the offset after the last record of the batch (`next_offsets`); only `plan`
    fills it — in the service the consume loop commits, by the same rule."""


def plan(
    records: Iterable[ConsumerRecord[bytes, bytes]],
    decode: Callable[[bytes], Any],
    scores: Callable[[str], bool],
    *,
    coalesce: bool = True,
) -> Batch:
    """Decode, drop what is not scored, keep the newest version per conversation.

    `scores(kind)` says whether `updated` / `closed` events are scored. Records that do not decode
    become poison for the dead-letter topic; they never stop the batch. Without `coalesce`,
    every scored event is kept, in order.
    """
    records = list(records)
    entries = decode_records(records, conversation_decoder(decode))
    batch = plan_decoded(
        [(e.record, e.value) for e in entries if e.value is not None], scores, coalesce=coalesce
    )
    batch.poison = [(e.record, e.error) for e in entries if e.error is not None]
    batch.offsets = next_offsets(records)
    return batch


def plan_decoded(
    events: Iterable[tuple[ConsumerRecord[bytes, bytes], ConversationEvent]],
    scores: Callable[[str], bool],
    *,
    coalesce: bool = True,
) -> Batch:
    """`plan` for events the consume loop already decoded (and whose poison it dead-lettered)."""
    batch = Batch()
    newest: dict[str, Work] = {}
    every: list[Work] = []
    for record, event in events:
        if event.kind == "closed":
            batch.closed.append(event.conversation_id)
        if not scores(event.kind):
            batch.not_scored += 1
            continue
        if not coalesce:
            every.append(Work(event, record))
            continue
        previous = newest.get(event.conversation_id)
        if previous is None or event.version >= previous.event.version:
            if previous is not None:
                batch.superseded += 1
            newest[event.conversation_id] = Work(event, record)
        else:
            batch.superseded += 1
    batch.work = list(newest.values()) if coalesce else every
    return batch


def conversation_decoder(decode: Callable[[bytes], Any]) -> Callable[[bytes], ConversationEvent]:
    """`decode`, refusing whatever is not a `ConversationEvent` (a record that decodes as
    something else is poison too)."""
    return lambda raw: _conversation_event(decode(raw))


def _conversation_event(value: Any) -> ConversationEvent:
    if not isinstance(value, ConversationEvent):
        raise TypeError(f"expected a ConversationEvent, got {type(value).__name__}")
    return value
