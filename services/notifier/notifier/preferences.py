"""Everyone's preferences, as the notifier reads them from the compacted `user.preferences` topic.

The notifier decides nothing until the table has caught up with the end of the topic as it was
at start-up: deciding with a half-read table would treat opted-in people as strangers.
"""

from __future__ import annotations

from beepgpt.contracts import Preferences
from beepgpt.kafka.compacted import CompactedTable, OnChange
from beepgpt.settings import KafkaSettings
from beepgpt.topics import PREFERENCES


class PreferencesTable(CompactedTable[Preferences]):
    """user id → latest `Preferences`; `get` answers None for someone never seen."""

    def __init__(self, settings: KafkaSettings, on_change: OnChange[Preferences] | None = None) -> None:
        super().__init__(settings, PREFERENCES, on_change=on_change)
