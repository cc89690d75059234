"""The production Scorer's orchestration — batching, caching, swapping — over small real models.

The models here are tiny but real implementations of the protocols (a hashing bag-of-words
embedder, cosine topic matching, a fixed interest table), so these tests run in milliseconds and
check what `ModelScorer` itself promises; the trained models are exercised by the integration test.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scorer_service_helpers import conversation, preferences

from beepgpt.contracts import ConversationEvent, FollowedTopic
from scorer.embeddings import Matrix
from scorer.model_watch import ModelWatcher
from scorer.scoring import ModelScorer
from scorer.settings import ScorerSettings
from scorer.topics import lines
from scorer.topics.lexical import Lexicon
from scorer.topics.matcher import EmbeddingSpace, TopicMatcher, TopicScore

DIM = 64


def _bucket(word: str) -> int:
    """A hash that is the same in every process (`hash()` is salted per process, so the
    words of two test conversations collided in a bucket in some runs and not in others)."""
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "big") % DIM


class HashingEmbedder:
    def __init__(self, name: str = "hash-64") -> None:
        self.name = name
        self.calls: list[list[str]] = []

    def embed(self, texts: list[str]) -> Matrix:
        self.calls.append(list(texts))
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z]+", text.lower()):
                out[row, _bucket(word)] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return (out / np.where(norms == 0, 1, norms)).astype(np.float32)


class CosineTopics:
    def __init__(self, embedder: HashingEmbedder) -> None:
        self.embedder = embedder
        self.observed: list[str] = []

    def match(
        self, vectors: Matrix, topics: Sequence[FollowedTopic], texts: Sequence[str] | None = None
    ) -> list[TopicScore]:
        queries = self.embedder.embed([t.text for t in topics])
        sims = vectors @ queries.T
        return [
            TopicScore(topic, float(sims[:, j].max()), 0.5, int(sims[:, j].argmax()))
            for j, topic in enumerate(topics)
        ]

    def observe(self, conversation_id: str, vectors: Matrix, texts: Sequence[str] | None = None) -> None:
        self.observed.append(conversation_id)


class FixedInterest:
    threshold = 0.5

    def __init__(self, table: Mapping[str, float]) -> None:
        self.table = table
        self.observed: list[str] = []
        self.forgotten: list[str] = []
        self.audiences: list[set[str]] = []

    def observe(self, conversation: ConversationEvent, vectors: Matrix | None = None) -> None:
        self.observed.append(conversation.conversation_id)

    def forget(self, conversation_id: str) -> None:
        self.forgotten.append(conversation_id)

    def probabilities(
        self, conversation: ConversationEvent, vectors: Matrix, audience: Collection[str] | None = None
    ) -> Mapping[str, float]:
        assert vectors.shape == (len(conversation.messages), DIM)
        self.audiences.append(set(audience or ()))
        return self.table

    def signals(self, conversation: ConversationEvent, user: str, probability: float) -> tuple[str, ...]:
        return (f"often in #{conversation.channel}",)


@dataclass(frozen=True)
class Bundle:
    version: str
    embedder: HashingEmbedder
    interest: FixedInterest
    topics: CosineTopics


def _bundle(version: str, embedder: HashingEmbedder, interest: Mapping[str, float]) -> Bundle:
    return Bundle(version, embedder, FixedInterest(interest), CosineTopics(embedder))


async def _scorer(tmp_path: Path, bundles: dict[str, Bundle], **settings: object) -> ModelScorer:
    (tmp_path / "v").write_text("v1")
    watcher: ModelWatcher[Bundle] = ModelWatcher(
        tmp_path, lambda p: bundles[(p / "v").read_text()], lambda b: b.version, poll_s=3600
    )
    await watcher.start()
    return ModelScorer(ScorerSettings(**settings), watcher)  # type: ignore[arg-type]


PREFS = {
    "UANA": preferences("UANA", "kafka partitions"),
    "UCAT": preferences("UCAT"),
    "UDAN": preferences("UDAN", "lunch plans"),
}


async def test_one_embedding_call_per_batch_and_one_embedding_per_message(tmp_path: Path) -> None:
    embedder = HashingEmbedder()
    scorer = await _scorer(tmp_path, {"v1": _bundle("v1", embedder, {"UCAT": 0.7, "UDAN": 0.2})})
    a1 = conversation("C1:1.000000", [("UBEN", "how many kafka partitions")])
    b1 = conversation("C2:1.000000", [("UEVE", "deploy is green")], channel="C2")
    found = await scorer.score([a1, b1], PREFS)
    assert [t for t in embedder.calls if "deploy is green" in t] == [
        ["how many kafka partitions", "deploy is green"]
    ]
    assert {(c.user, c.conversation_id, c.reason) for c in found} == {
        ("UANA", "C1:1.000000", "topic"),
        ("UCAT", "C1:1.000000", "interest"),
        ("UCAT", "C2:1.000000", "interest"),
    }
    embedder.calls.clear()
    a2 = conversation("C1:1.000000", [("UBEN", "how many kafka partitions"), ("UEVE", "twelve")])
    await scorer.score([a2], PREFS)
    assert embedder.calls[0] == ["twelve"]  # the first message came from the cache
    assert scorer.cache.stats.hits == 1
    scorer.forget("C1:1.000000")
    assert len(scorer.cache) == 1
    await scorer.aclose()


async def test_a_conversation_nobody_may_hear_of_costs_no_model_work(tmp_path: Path) -> None:
    embedder = HashingEmbedder()
    scorer = await _scorer(tmp_path, {"v1": _bundle("v1", embedder, {"UANA": 0.9})})
    everyone = conversation("C1:1.000000", [("UANA", "kafka partitions"), ("UCAT", "x"), ("UDAN", "y")])
    assert await scorer.score([everyone], PREFS) == []
    assert embedder.calls == []
    await scorer.aclose()


async def test_settings_choose_the_scorers_and_override_the_interest_threshold(tmp_path: Path) -> None:
    embedder = HashingEmbedder()
    bundles = {"v1": _bundle("v1", embedder, {"UCAT": 0.7})}
    talk = conversation("C1:1.000000", [("UBEN", "kafka partitions")])
    only_topics = await _scorer(tmp_path, bundles, scorers={"topic"})
    assert [c.reason for c in await only_topics.score([talk], PREFS)] == ["topic"]
    strict = await _scorer(tmp_path, bundles, interest_threshold=0.8)
    assert [c.reason for c in await strict.score([talk], PREFS)] == ["topic"]


async def test_a_new_model_version_with_another_embedder_starts_a_fresh_cache(tmp_path: Path) -> None:
    first, second = HashingEmbedder("space-a"), HashingEmbedder("space-b")
    scorer = await _scorer(
        tmp_path, {"v1": _bundle("v1", first, {}), "v2": _bundle("v2", second, {"UCAT": 0.9})}
    )
    talk = conversation("C1:1.000000", [("UBEN", "kafka partitions")])
    await scorer.score([talk], PREFS)
    assert scorer.feedback.space == "space-a"
    (tmp_path / "v").write_text("v2")
    assert isinstance(scorer.models, ModelWatcher)
    await scorer.models.check()
    [candidate] = [c for c in await scorer.score([talk], PREFS) if c.reason == "interest"]
    assert candidate.model_version == "v2"
    assert scorer.model_version == "v2"
    assert [t for t in second.calls if t == ["kafka partitions"]]  # re-embedded in the new space
    assert scorer.feedback.space == "space-b"  # clicks on space-a scores no longer count
    await scorer.aclose()


async def test_the_interest_model_learns_from_every_conversation_and_hears_of_closes(tmp_path: Path) -> None:
    embedder = HashingEmbedder()
    bundle = _bundle("v1", embedder, {"UCAT": 0.7})
    scorer = await _scorer(tmp_path, {"v1": bundle})
    everyone_in = conversation("C1:1.000000", [("UANA", "kafka"), ("UCAT", "yes"), ("UDAN", "ok")])
    open_to_some = conversation("C2:1.000000", [("UBEN", "how many kafka partitions")], channel="C2")
    await scorer.score([everyone_in, open_to_some], PREFS)
    # nobody may hear of the first (all three opted-in people are in it): still learnt from
    assert bundle.interest.observed == ["C1:1.000000"]
    assert bundle.interest.audiences == [{"UANA", "UCAT", "UDAN"}]  # scored within its audience
    scorer.forget("C2:1.000000")
    assert bundle.interest.forgotten == ["C2:1.000000"]


@dataclass(frozen=True)
class MatcherBundle:
    version: str
    embedder: HashingEmbedder
    interest: None
    topics: TopicMatcher


async def test_the_live_scorer_alerts_at_each_topics_label_free_line_and_refreshes_it(tmp_path: Path) -> None:
    """The product's `TopicMatcher` in the service: its fixed threshold (0.99) would alert on
    nothing; the per-topic line set from the recent conversations lets a clear match through,
    and every conversation the service scores joins those recent conversations."""
    embedder = HashingEmbedder()
    history = [
        [f"kafka partitions and consumer lag {i}", "more partitions"] if i % 5 == 0 else [f"lunch plans {i}"]
        for i in range(lines.MIN_CONVERSATIONS)
    ]
    vectors = [embedder.embed(texts) for texts in history]
    space = EmbeddingSpace.of(embedder.name, np.concatenate(vectors), vectors, history)
    lexicon = Lexicon.of(t for texts in history for t in texts)

    async def scorer_of(matcher: TopicMatcher, directory: Path) -> ModelScorer:
        bundle = MatcherBundle("v1", embedder, None, matcher)
        watcher: ModelWatcher[MatcherBundle] = ModelWatcher(
            directory, lambda p: bundle, lambda b: b.version, poll_s=3600
        )
        await watcher.start()
        return ModelScorer(ScorerSettings(), watcher)  # type: ignore[arg-type]

    (tmp_path / "lines").mkdir()
    (tmp_path / "fixed").mkdir()
    matcher = TopicMatcher(embedder, space, lexicon=lexicon, threshold=0.99, per_topic_lines=True)
    scorer = await scorer_of(matcher, tmp_path / "lines")
    talk = conversation("C1:1.000000", [("UBEN", "how many kafka partitions for the consumer lag")])
    follower = {"UANA": PREFS["UANA"]}
    [found] = await scorer.score([talk], follower)
    [line] = matcher.lines(PREFS["UANA"].topics)
    assert line < 0.99
    assert found.reason == "topic"
    assert f"threshold {line:.2f}" in found.explanation
    assert (len(matcher.recent), matcher.recent.seen) == (lines.MIN_CONVERSATIONS + 1,) * 2
    await scorer.score([talk], follower)  # scored again: the same recent conversation, seen twice
    assert (len(matcher.recent), matcher.recent.seen) == (
        lines.MIN_CONVERSATIONS + 1,
        lines.MIN_CONVERSATIONS + 2,
    )
    await scorer.aclose()
    fixed = await scorer_of(
        TopicMatcher(embedder, space, lexicon=lexicon, threshold=0.99), tmp_path / "fixed"
    )
    assert await fixed.score([talk], follower) == []
    await fixed.aclose()
