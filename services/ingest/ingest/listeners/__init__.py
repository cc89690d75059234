"""Bolt listeners, one module per kind of Slack input, each with a `register(app, intake)`.

Order matters in Bolt (the first matching listener handles a request): specific listeners first,
then whatever the caller adds (slash commands, App Home, button actions), and last the catch-all
that dead-letters event types nobody handles — instead of Bolt's 404, which Slack would retry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from slack_bolt.async_app import AsyncApp

from ingest.intake import Intake
from ingest.listeners import events

Register = Callable[[AsyncApp, Intake], None]


def register_all(app: AsyncApp, intake: Intake, extra: Sequence[Register] = ()) -> None:
    events.register(app, intake)
    for register in extra:
        register(app, intake)
    events.register_fallback(app, intake)
