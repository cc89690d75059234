"""The Slack experience in ingest: `/beep`, the App Home tab, the DM's feedback buttons and its
controls (mute, fewer like this, snooze).

One `SlackExperience` per ingest process owns what the listeners need (a producer, the
preferences table, recent alerts). Start it before the ingest app, pass its `register` as one
of the app's `extra_listeners`, stop it after the app:

    experience = SlackExperience(kafka_settings)
    await experience.start()
    service = IngestService(..., extra_listeners=[experience.register])
    ...
    await service.stop(); await experience.stop()
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from slack_bolt.async_app import AsyncApp

from beepgpt.kafka import EventProducer, ensure_topics
from beepgpt.settings import AlertDefaults, KafkaSettings
from beepgpt.topics import FEEDBACK, PREFERENCES, SENT, SUGGESTIONS
from ingest.slack_app import alert_controls, beep_command, feedback_buttons, suggested
from ingest.slack_app.app_home import AppHome
from ingest.slack_app.beep_command import BUILT_IN_DEFAULTS
from ingest.slack_app.preferences_store import PreferencesStore
from ingest.slack_app.recent_alerts import RecentAlerts
from ingest.slack_app.suggested import SuggestionsStore

SOURCE = "ingest-commands"


class SlackExperience:
    """Owns the listeners' resources; `register(app, intake)` fits ingest's `extra_listeners`."""

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        clock: Callable[[], float] = time.time,
        write_timeout_s: float = 2.0,
        defaults: AlertDefaults = BUILT_IN_DEFAULTS,
    ) -> None:
        """`defaults`: the budget and digest times people get until they choose (shown to them;
        the notifier applies its own copy of the same `BEEPGPT_NOTIFIER_*` settings)."""
        self.kafka = kafka
        self.clock = clock
        self.write_timeout_s = write_timeout_s
        self.defaults = defaults
        self.producer = EventProducer(kafka, SOURCE)
        self.preferences = PreferencesStore(kafka, self.producer, clock=clock)
        self.alerts = RecentAlerts(kafka)
        self.suggestions = SuggestionsStore(kafka)
        self.home = AppHome(
            self.preferences, self.alerts, clock=clock, defaults=defaults, suggestions=self.suggestions
        )

    @property
    def ready(self) -> bool:
        return self.preferences.loaded and self.suggestions.loaded

    async def start(self) -> None:
        await ensure_topics(self.kafka, [PREFERENCES, FEEDBACK, SENT, SUGGESTIONS])
        await self.producer.start()
        await self.preferences.start()
        await self.suggestions.start()
        await self.alerts.start()

    async def stop(self) -> None:
        await self.home.drain()
        await self.alerts.stop()
        await self.suggestions.stop()
        await self.preferences.stop()
        await self.producer.stop()

    def register(self, app: AsyncApp, intake: Any = None) -> None:
        """Add the listeners to a Bolt app (ingest's `Register` signature; `intake` is unused)."""
        beep_command.register(
            app,
            self.preferences,
            clock=self.clock,
            on_change=self.home.refresh,
            write_timeout_s=self.write_timeout_s,
            defaults=self.defaults,
            suggest_reply=lambda prefs: suggested.reply(prefs, self.suggestions.of(prefs.user)),
        )
        suggested.register(
            app,
            self.preferences,
            clock=self.clock,
            on_change=self.home.refresh,
            write_timeout_s=self.write_timeout_s,
        )
        self.home.register(app, write_timeout_s=self.write_timeout_s)
        feedback_buttons.register(app, self.producer, write_timeout_s=self.write_timeout_s)
        alert_controls.register(
            app,
            self.preferences,
            clock=self.clock,
            on_change=self.home.refresh,
            write_timeout_s=self.write_timeout_s,
        )
