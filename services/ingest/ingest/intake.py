"""From a Slack delivery to a record in Kafka: normalize, count, log, offer to the publisher, and
wait — within the ack budget — until Kafka has the record, so that Slack's ack means "durable".

This is what every Bolt listener for Slack events calls. Normalizing and offering do no I/O; the
wait is for the publisher's next round (it batches the records of every delivery waiting at the
same time). If Kafka or Redis is slower than the budget, the listener returns anyway and the
record stays buffered (Slack must hear from us within 3 s). When the buffer is full the
delivery is refused (`Overloaded`), which the app turns into a refusal Slack will retry.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from beepgpt.kafka import Headers, make_headers
from beepgpt.topics import SLACK_MESSAGES
from ingest.metrics import ACKS, EVENTS, REPAIRS
from ingest.normalize import (
    DEFAULT_RULES,
    Accepted,
    Dropped,
    Envelope,
    Outcome,
    Rejected,
    Rules,
    action_label,
    envelope_of,
    normalize_event,
)
from ingest.publisher import Outgoing, Publisher

log = logging.getLogger(__name__)

SOURCE = "ingest"
# Headroom for headers and the record envelope under the producer's max_request_size.
_DLQ_OVERHEAD_BYTES = 16 * 1024


class Refused(Exception):
    """This delivery must not be acknowledged, so that Slack redelivers it later."""


class Overloaded(Refused):
    """The buffer is full."""


class NotPublished(Refused):
    """The service stopped before Kafka took the record (and before Slack got an ack)."""


class Intake:
    """Normalizes Slack events and hands them to the publisher; one per service."""

    def __init__(
        self, publisher: Publisher, rules: Rules = DEFAULT_RULES, *, max_record_bytes: int = 1_048_576
    ) -> None:
        self.publisher = publisher
        self.rules = rules
        self._max_dlq_value = max(1024, max_record_bytes - _DLQ_OVERHEAD_BYTES)

    async def receive(self, body: Mapping[str, Any]) -> Outcome:
        """An Events API / Socket Mode `event_callback` body (envelope plus `event`): returns once
        its record is in Kafka or the ack budget ran out; raises `Refused` when Slack must retry."""
        try:
            envelope = envelope_of(body)
            outcome = normalize_event(body.get("event"), envelope, self.rules)
        except Exception as error:
            # The normalizer is meant to turn every input into an outcome; should one still make
            # it fail, the event is parked with the error rather than answered 500 (Slack's
            # retries would fail the same way and then give up: the event would be lost).
            envelope = Envelope(event_id=_event_id_of(body))
            outcome = Rejected("normalize_failed", f"{type(error).__name__}: {error}"[:200])
        if (
            body.get("event_time") is not None
            and envelope.event_time is None
            and isinstance(outcome, Accepted)
        ):
            REPAIRS.labels("ignored_event_time").inc()
        await self.settle(self.take(outcome, envelope, body))
        return outcome

    async def settle(self, item: Outgoing | None) -> None:
        """Wait for a taken record (at most the publisher's ack budget); count how the ack goes."""
        if item is None:
            ACKS.labels("no_record").inc()
            return
        state = await self.publisher.wait(item)
        if state == "lost":
            raise NotPublished("ingest stopped before Kafka took the event")
        ACKS.labels(state).inc()
        if state == "buffered" and log.isEnabledFor(logging.DEBUG):
            log.debug("acked before Kafka had the event", extra={"event_id": item.event_id})

    def take(self, outcome: Outcome, envelope: Envelope, raw: Mapping[str, Any]) -> Outgoing | None:
        """Count and buffer one outcome; returns the record to wait for (None if it has none).
        Raises Overloaded when the record does not fit."""
        if isinstance(outcome, Accepted):
            reason = action_label(outcome.event)
            headers = make_headers(SOURCE, **_event_id_header(envelope))
            item = Outgoing(
                SLACK_MESSAGES.name,
                outcome.key,
                outcome.event,
                headers,
                event_id=envelope.event_id,
                reason=reason,
            )
            self._offer(item)
            for repair in outcome.repairs:
                REPAIRS.labels(repair).inc()
            if outcome.repairs:
                log.info(
                    "event repaired",
                    extra={"event_id": envelope.event_id, "repairs": list(outcome.repairs), "kind": reason},
                )
            return item
        if isinstance(outcome, Dropped):
            EVENTS.labels("dropped", outcome.reason).inc()
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "event dropped",
                    extra={"event_id": envelope.event_id, "reason": outcome.reason, "detail": outcome.detail},
                )
            return None
        return self.reject(_encode_raw(raw), outcome, envelope.event_id, key=_channel_of(raw))

    async def park(self, raw: bytes, rejected: Rejected, event_id: str | None) -> None:
        """Dead-letter a body no listener can take and wait for it to be taken; raises `Refused`
        when the buffer is full (then Slack must resend it)."""
        await self.settle(self.reject(raw, rejected, event_id))

    def reject(self, value: bytes, rejected: Rejected, event_id: str | None, *, key: str = "") -> Outgoing:
        """Park what could not be understood in `slack.messages.dlq`, with why, for a later replay;
        returns the buffered dead letter (`settle` it before acking)."""
        log.warning(
            "event rejected to the dead-letter topic",
            extra={"event_id": event_id, "reason": rejected.reason, "detail": rejected.detail},
        )
        headers = make_headers(SOURCE, **_event_id_header(Envelope(event_id=event_id)))
        headers += _dlq_headers(rejected)
        if len(value) > self._max_dlq_value:
            headers.append(("dlq.original.size", str(len(value)).encode()))
            value = value[: self._max_dlq_value]
        item = Outgoing(
            SLACK_MESSAGES.dlq,
            key,
            value,
            headers,
            event_id=event_id,
            outcome="rejected",
            reason=rejected.reason,
            source_topic=SLACK_MESSAGES.name,
        )
        self._offer(item)
        return item

    def _offer(self, item: Outgoing) -> None:
        if not self.publisher.offer(item):
            EVENTS.labels("overloaded", item.reason).inc()
            raise Overloaded(f"ingest buffer full ({self.publisher.depth} of {self.publisher.capacity})")


def _dlq_headers(rejected: Rejected) -> Headers:
    """The same error headers `beepgpt.kafka.DeadLetters` writes, plus the reason as a short code."""
    return [
        ("dlq.error.type", b"rejected"),
        ("dlq.error.message", f"{rejected.reason}: {rejected.detail}"[:1000].encode(errors="replace")),
        ("dlq.error.reason", rejected.reason.encode()),
        ("dlq.service", SOURCE.encode()),
        ("dlq.original.topic", SLACK_MESSAGES.name.encode()),
    ]


def _event_id_of(body: Mapping[str, Any]) -> str | None:
    event_id = body.get("event_id")
    return event_id if isinstance(event_id, str) and event_id.isascii() and len(event_id) <= 64 else None


def _event_id_header(envelope: Envelope) -> dict[str, str]:
    return {"event_id": envelope.event_id} if envelope.event_id else {}


def _encode_raw(raw: Mapping[str, Any]) -> bytes:
    """The delivery as JSON bytes; ASCII-escaped, so even lone surrogates survive unchanged."""
    try:
        return json.dumps(raw, ensure_ascii=True, separators=(",", ":"), default=str).encode()
    except (RecursionError, ValueError):  # nested deeper than the encoder goes (Socket Mode has no limit)
        return repr(raw).encode("ascii", errors="backslashreplace")


def _channel_of(raw: Mapping[str, Any]) -> str:
    event = raw.get("event", raw)
    if isinstance(event, Mapping):
        for candidate in (event.get("channel"), (event.get("item") or {}).get("channel")):
            if isinstance(candidate, str) and candidate.isascii() and len(candidate) <= 64:
                return candidate
    return ""
