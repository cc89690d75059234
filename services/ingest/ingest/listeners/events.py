"""Events API listeners: messages (every subtype) and reactions go through the normalizer.

A message the normalizer skips because of its channel (a private channel while they are not
read, a DM, a group DM) is counted in `beepgpt_ingest_channel_skips_total{reason}` and logged
here, where every message event arrives: the log line names the event, the channel and why,
never the text, which is exactly what was not to be read.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from slack_bolt.async_app import AsyncApp

from ingest.intake import Intake
from ingest.metrics import CHANNEL_SKIPS
from ingest.normalize import CHANNEL_SKIP_REASONS, Dropped, Outcome

log = logging.getLogger(__name__)

HANDLED_EVENTS = ("message", "reaction_added", "reaction_removed")


def register(app: AsyncApp, intake: Intake) -> None:
    async def on_event(body: dict[str, Any]) -> None:
        # Bolt acknowledges after this returns (process_before_response), which is once Kafka has
        # the record or the ack budget ran out. Refused (buffer full) propagates to the app's
        # error handler, which refuses the delivery so Slack retries it.
        outcome = await intake.receive(body)
        count_channel_skip(outcome, body)

    for event_type in HANDLED_EVENTS:
        app.event(event_type)(on_event)


def count_channel_skip(outcome: Outcome, body: Mapping[str, Any]) -> None:
    """Count and log a message skipped for its channel's kind; any other outcome is left alone."""
    if not isinstance(outcome, Dropped) or outcome.reason not in CHANNEL_SKIP_REASONS:
        return
    CHANNEL_SKIPS.labels(outcome.reason).inc()
    event = body.get("event")
    event_id = body.get("event_id")
    log.info(
        "message skipped: its channel is not read",
        extra={
            "reason": outcome.reason,
            "detail": outcome.detail,  # "<channel> is <kind>": ids only
            "event_id": event_id if isinstance(event_id, str) else None,
            "channel_type": _short(event.get("channel_type")) if isinstance(event, Mapping) else None,
        },
    )


def _short(value: object) -> str | None:
    return value[:32] if isinstance(value, str) else None


def register_fallback(app: AsyncApp, intake: Intake) -> None:
    """Any other event type: the normalizer rejects it to the DLQ with its type named."""

    async def on_unknown_event(body: dict[str, Any]) -> None:
        await intake.receive(body)

    app.event(re.compile(".*"))(on_unknown_event)
