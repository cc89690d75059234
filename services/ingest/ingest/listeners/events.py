"""Events API listeners: messages (every subtype) and reactions go through the normalizer."""

from __future__ import annotations

import re
from typing import Any

from slack_bolt.async_app import AsyncApp

from ingest.intake import Intake

HANDLED_EVENTS = ("message", "reaction_added", "reaction_removed")


def register(app: AsyncApp, intake: Intake) -> None:
    async def on_event(body: dict[str, Any]) -> None:
        # Bolt acknowledges after this returns (process_before_response), which is once Kafka has
        # the record or the ack budget ran out. Refused (buffer full) propagates to the app's
        # error handler, which refuses the delivery so Slack retries it.
        await intake.receive(body)

    for event_type in HANDLED_EVENTS:
        app.event(event_type)(on_event)


def register_fallback(app: AsyncApp, intake: Intake) -> None:
    """Any other event type: the normalizer rejects it to the DLQ with its type named."""

    async def on_unknown_event(body: dict[str, Any]) -> None:
        await intake.receive(body)

    app.event(re.compile(".*"))(on_unknown_event)
