"""The `feedback` topic read into the scorer's `FeedbackMemory`: clicks teach topics their line.

Ingest publishes a `Feedback` event for each "useful / not useful" click on a DM, keyed by user.
Every scorer instance needs every click (a person's topic is scored wherever their
conversations land), so the topic is read the way the preferences table is: the shared
`CompactedTable` reader, every partition, from the beginning on each start (which is how the
memory is rebuilt after a restart), then followed — no consumer group, nothing committed. The
table itself keeps only each user's latest event; what matters is its change hook, which sees
every event and hands topic clicks to the memory, with the score the click carries (so a
click on a conversation this instance never scored still teaches). A tombstone for a user
forgets them.
"""

from __future__ import annotations

from beepgpt.contracts import Feedback
from beepgpt.kafka.compacted import CompactedTable
from beepgpt.settings import KafkaSettings
from beepgpt.topics import FEEDBACK
from scorer.topics.feedback import FeedbackMemory


class FeedbackReader(CompactedTable[Feedback]):
    """Follows the `feedback` topic into `memory` (only clicks on topic alerts teach a topic)."""

    def __init__(self, settings: KafkaSettings, memory: FeedbackMemory) -> None:
        super().__init__(settings, FEEDBACK, on_change=self._learn)
        self.memory = memory
        self.clicks = 0

    async def _learn(self, user: str, before: Feedback | None, after: Feedback | None) -> None:
        if after is None:
            self.memory.forget_user(user)
            return
        if after.reason == "topic" and after.topic_id:
            self.clicks += 1
            self.memory.clicked(
                after.user,
                after.topic_id,
                after.conversation_id,
                after.useful,
                after.score,
                after.score_space,
            )
