"""The production Scorer: the trained models of a model directory, batched and cached.

One `score()` call handles a whole batch of conversations:

1. who may hear of each conversation (eligibility) — a conversation nobody may hear of costs
   nothing more;
2. every message of the batch that is not cached yet is embedded in one call (the cache makes
   that one embedding per new message; batching makes it one model call per batch);
3. the interest model and the topic matcher read those message vectors, never the texts again
   (the matcher also keeps the conversation among the recent ones its per-topic lines come from);
4. `decide` turns their outputs into explained candidates.

Model work runs in a worker thread (torch releases the GIL), so the event loop keeps the Kafka
heartbeats and the preferences table going while a batch is scored. The models come from a
`ModelWatcher`: a batch takes the current `ModelBundle` once and finishes with it even if a new
version is swapped in meanwhile. The cache belongs to the embedding model: a new bundle whose
embedder differs clears it, since vectors of two models must never be compared.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from beepgpt.contracts import Candidate, ConversationEvent, FollowedTopic, Preferences
from beepgpt.kafka import ensure_topics
from beepgpt.settings import KafkaSettings
from beepgpt.topics import FEEDBACK
from scorer.eligibility import eligible_users
from scorer.embeddings import Embedder, Matrix
from scorer.feedback import FeedbackReader
from scorer.message_cache import MessageCache, MessageRef
from scorer.model_watch import ModelWatcher
from scorer.pipeline import InterestScore, ModelOutputs, TopicMatch, decide
from scorer.settings import ScorerSettings
from scorer.topics.feedback import FeedbackMemory
from scorer.topics.matcher import TopicScore

log = logging.getLogger(__name__)


class InterestModel(Protocol):
    """Per-user probabilities of engaging with a conversation, from its message vectors."""

    @property
    def threshold(self) -> float: ...

    def observe(self, conversation: ConversationEvent, vectors: Matrix | None = None) -> None:
        """Learn from the conversation's messages (who posts where, answering whom) without scoring
        it: called for conversations nobody may hear of, so the model's memory stays complete."""
        ...

    def probabilities(
        self, conversation: ConversationEvent, vectors: Matrix, audience: Collection[str] | None = None
    ) -> Mapping[str, float]:
        """Probabilities for the people the model finds plausible (within `audience` if given)."""
        ...

    def forget(self, conversation_id: str) -> None:
        """The conversation closed: drop what is kept about it as an open conversation."""
        ...

    def signals(self, conversation: ConversationEvent, user: str, probability: float) -> tuple[str, ...]: ...


class TopicMatcher(Protocol):
    """Scores a conversation (its message vectors and texts) against topics people wrote."""

    def match(
        self, vectors: Matrix, topics: Sequence[FollowedTopic], texts: Sequence[str] | None = None
    ) -> list[TopicScore]: ...

    def observe(self, conversation_id: str, vectors: Matrix, texts: Sequence[str] | None = None) -> None:
        """A conversation of the workspace, new or updated: topics' lines are set from the
        recent ones (`scorer.topics.lines`), whether or not anyone follows a topic now."""
        ...


class ModelBundle(Protocol):
    """What one model directory provides (`scorer.model_dir.LoadedModels` in production)."""

    @property
    def version(self) -> str: ...

    @property
    def embedder(self) -> Embedder: ...

    @property
    def interest(self) -> InterestModel | None: ...

    @property
    def topics(self) -> TopicMatcher | None: ...


class ModelSource(Protocol):
    """Where the current bundle comes from (a `ModelWatcher` in production)."""

    @property
    def current(self) -> ModelBundle: ...

    @property
    def version(self) -> str | None: ...

    async def stop(self) -> None: ...


class ModelScorer:
    """The `Scorer` of the service, over the bundle a `ModelWatcher` keeps current."""

    def __init__(
        self,
        settings: ScorerSettings,
        models: ModelSource,
        *,
        feedback: FeedbackMemory | None = None,
        feedback_reader: FeedbackReader | None = None,
    ) -> None:
        self.settings = settings
        self.models = models
        self.cache = MessageCache(settings.cache_max_messages)
        self.feedback = feedback if feedback is not None else FeedbackMemory()
        """Per-(user, topic) clicks and scores: a topic's line moves with its follower's clicks."""
        self._feedback_reader = feedback_reader
        self._cache_space: str | None = None

    @property
    def model_version(self) -> str | None:
        return self.models.version

    async def score(
        self, conversations: Sequence[ConversationEvent], preferences: Mapping[str, Preferences]
    ) -> list[Candidate]:
        bundle = self.models.current
        return await asyncio.to_thread(self._score, bundle, list(conversations), preferences)

    def forget(self, conversation_id: str) -> None:
        self.cache.evict(conversation_id)
        interest = self.models.current.interest
        if interest is not None:
            interest.forget(conversation_id)

    async def aclose(self) -> None:
        if self._feedback_reader is not None:
            await self._feedback_reader.stop()
        await self.models.stop()

    def embed_raw(self, texts: list[str]) -> Matrix:
        """The embedding model alone, uncached: the benchmark's baseline."""
        return self.models.current.embedder.embed(texts)

    def _score(
        self,
        bundle: ModelBundle,
        conversations: list[ConversationEvent],
        preferences: Mapping[str, Preferences],
    ) -> list[Candidate]:
        if self._cache_space != bundle.embedder.name:
            self.cache.clear()
            self.feedback.use_space(bundle.embedder.name)  # scores of another space do not compare
            self._cache_space = bundle.embedder.name
        bots = self.settings.bot_users
        audiences = [eligible_users(c, preferences, bots) for c in conversations]
        todo = [(c, a) for c, a in zip(conversations, audiences, strict=True) if a]
        if bundle.interest is not None:
            for conversation, audience in zip(conversations, audiences, strict=True):
                if not audience:
                    bundle.interest.observe(conversation)
        refs = [MessageRef(c.conversation_id, m.ts, m.text) for c, _ in todo for m in c.messages]
        vectors = self.cache.embed(refs, lambda texts: list(bundle.embedder.embed(texts)))
        candidates: list[Candidate] = []
        start = 0
        for conversation, audience in todo:
            count = len(conversation.messages)
            matrix = np.stack(vectors[start : start + count]) if count else np.zeros((0, 0), np.float32)
            start += count
            outputs = self._outputs(bundle, conversation, matrix, audience, preferences)
            candidates.extend(
                decide(
                    conversation,
                    audience,
                    outputs,
                    max_interest_candidates=self.settings.max_interest_candidates,
                    preview_lines=self.settings.preview_lines,
                )
            )
        return candidates

    def _outputs(
        self,
        bundle: ModelBundle,
        conversation: ConversationEvent,
        vectors: Matrix,
        audience: set[str],
        preferences: Mapping[str, Preferences],
    ) -> ModelOutputs:
        topics: list[TopicMatch] = []
        if bundle.topics is not None and "topic" in self.settings.scorers:
            bundle.topics.observe(
                conversation.conversation_id, vectors, [m.text for m in conversation.messages]
            )
            # Every follower's topics in one call: the conversation is centred (and its words
            # stemmed) once, not once per follower.
            followers = [(user, t) for user in sorted(audience) for t in preferences[user].topics]
            texts = [m.text for m in conversation.messages]
            found_all = bundle.topics.match(vectors, [t for _, t in followers], texts) if followers else []
            for (user, _), found in zip(followers, found_all, strict=True):
                best = found.best_message
                topic_id = found.topic.id
                self.feedback.scored(user, topic_id, conversation.conversation_id, found.score)
                topics.append(
                    TopicMatch(
                        user=user,
                        topic_id=topic_id,
                        topic_text=found.topic.text,
                        score=found.score,
                        threshold=self.feedback.threshold(user, topic_id, found.threshold),
                        best_message=conversation.messages[best] if best is not None else None,
                    )
                )
        interest: list[InterestScore] = []
        if bundle.interest is not None and "interest" in self.settings.scorers:
            model = bundle.interest
            threshold = (
                model.threshold
                if self.settings.interest_threshold is None
                else self.settings.interest_threshold
            )
            for user, probability in model.probabilities(conversation, vectors, audience).items():
                if user in audience and probability >= threshold:
                    signals = model.signals(conversation, user, probability)
                    interest.append(InterestScore(user, probability, threshold, signals))
        return ModelOutputs(
            interest=interest, topics=topics, model_version=bundle.version, topic_space=bundle.embedder.name
        )


async def build(settings: ScorerSettings) -> ModelScorer:
    """The service's default factory: load `settings.model_dir` and keep watching it, and
    follow the `feedback` topic (Kafka settings from the environment, as the service reads
    them) so that clicks move their topic's line.

    A topic threshold set in the settings replaces the matcher's measured default (feedback-
    adapted per-topic thresholds still win over both); an interest threshold replaces the one
    training chose.
    """
    from scorer.model_dir import LoadedModels, load_models

    def load(path: Path) -> LoadedModels:
        return load_models(path, topic_threshold=settings.topic_threshold)

    watcher: ModelWatcher[LoadedModels] = ModelWatcher(
        settings.model_dir, load, lambda models: models.version, poll_s=settings.model_poll_s
    )
    await watcher.start()
    memory = FeedbackMemory()
    if not settings.learn_from_feedback:
        return ModelScorer(settings, watcher, feedback=memory)
    kafka = KafkaSettings()
    await ensure_topics(kafka, [FEEDBACK])
    reader = FeedbackReader(kafka, memory)
    try:
        await reader.start(timeout=settings.preferences_ready_timeout_s)
    except BaseException:
        await watcher.stop()
        raise
    return ModelScorer(settings, watcher, feedback=memory, feedback_reader=reader)
