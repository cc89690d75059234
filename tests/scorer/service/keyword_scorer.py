"""A small deterministic Scorer: a real implementation of the protocol, for the service's tests.

Topics match when every word of the topic appears in the conversation; a user is "interesting"
for a conversation that mentions them (`<@U…>`). It decides through the same `decide` as the
model scorer, so explanations, caps and eligibility are the product's. A message containing
FAIL_MARKER makes it raise, so tests can watch retries and dead-lettering; FLAKY_MARKER fails
the first time a conversation is seen and succeeds on the next attempt.

`python -m scorer` builds it with BEEPGPT_SCORER_FACTORY=keyword_scorer:build (this directory on
PYTHONPATH), which keeps subprocess tests free of the ML stack's start-up time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from beepgpt.contracts import Candidate, ConversationEvent, Preferences
from scorer.eligibility import eligible_users
from scorer.pipeline import InterestScore, ModelOutputs, TopicMatch, decide
from scorer.settings import ScorerSettings

FAIL_MARKER = "#fail-scoring"
FLAKY_MARKER = "#flaky-scoring"
MENTION = re.compile(r"<@([A-Z0-9]+)>")


class ScoringFailed(RuntimeError):
    pass


class KeywordScorer:
    model_version = "keywords-1"

    def __init__(self, bot_users: frozenset[str] = frozenset()) -> None:
        self.bot_users = bot_users
        self.calls: list[list[str]] = []
        self.forgotten: list[str] = []
        self._flaky_seen: set[str] = set()

    async def score(
        self, conversations: Sequence[ConversationEvent], preferences: Mapping[str, Preferences]
    ) -> list[Candidate]:
        self.calls.append([c.conversation_id for c in conversations])
        candidates: list[Candidate] = []
        for conversation in conversations:
            text = " ".join(m.text for m in conversation.messages).lower()
            if FAIL_MARKER in text:
                raise ScoringFailed(f"model refused {conversation.conversation_id}")
            if FLAKY_MARKER in text and conversation.conversation_id not in self._flaky_seen:
                self._flaky_seen.add(conversation.conversation_id)
                raise ScoringFailed("transient failure")
            eligible = eligible_users(conversation, preferences, self.bot_users)
            words = set(re.findall(r"[a-z0-9]+", text))
            topics = [
                TopicMatch(
                    user=user,
                    topic_id=topic.id,
                    topic_text=topic.text,
                    score=1.0 if set(re.findall(r"[a-z0-9]+", topic.text.lower())) <= words else 0.0,
                    threshold=0.5,
                    best_message=conversation.messages[-1],
                )
                for user in sorted(eligible)
                for topic in preferences[user].topics
            ]
            mentioned = {m for message in conversation.messages for m in MENTION.findall(message.text)}
            interest = [
                InterestScore(user, 0.9, 0.5, ("mentioned in the conversation",))
                for user in sorted(mentioned & eligible)
            ]
            outputs = ModelOutputs(interest=interest, topics=topics, model_version=self.model_version)
            candidates.extend(decide(conversation, eligible, outputs))
        return candidates

    def forget(self, conversation_id: str) -> None:
        self.forgotten.append(conversation_id)

    async def aclose(self) -> None:
        return None


async def build(settings: ScorerSettings) -> KeywordScorer:
    return KeywordScorer(frozenset(settings.bot_users))
