"""Per-topic lines set without labels from the workspace's recent conversations (`scorer.topics.lines`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from models_fixtures import TOPIC_WORKSPACE

from beepgpt.contracts import FollowedTopic
from scorer.embeddings import LocalEmbedder
from scorer.topics import lines
from scorer.topics.lexical import Lexicon
from scorer.topics.matcher import EmbeddingSpace, TopicMatcher, default_threshold

KINDS = TOPIC_WORKSPACE
HISTORY = [KINDS[i % len(KINDS)] + [f"note {i}"] for i in range(60)]
"""60 conversations (more than `lines.MIN_CONVERSATIONS`), each kind ten times."""

WEEKENDS = FollowedTopic(id="w", text="Let me know when people are talking about their weekends")
LEDGER = FollowedTopic(id="l", text="Tell me about the invoice ledger and finance reports")


def test_a_line_is_the_base_plus_the_spread_of_the_scores() -> None:
    assert lines.line([0.1, 0.1, 0.1]) == pytest.approx(lines.LINE_BASE)
    narrow, wide = lines.line([0.0, 0.1, 0.0, 0.1]), lines.line([0.0, 0.6, 0.0, 0.6])
    assert narrow == pytest.approx(lines.LINE_BASE + lines.LINE_SPREAD * 0.05)
    assert wide > narrow


def test_recent_conversations_are_bounded_and_keep_each_conversation_once() -> None:
    recent = lines.RecentConversations(capacity=3)
    one = np.ones((30, 4), dtype=np.float32)
    for number in range(5):
        recent.observe(f"c{number}", one, None)
    recent.observe("c3", one[:2], None)  # an update replaces, and counts as seen
    recent.observe("empty", one[:0], None)
    assert len(recent) == 3
    assert recent.seen == 6
    kept = list(recent.conversations())
    assert [len(m) for m, _ in kept] == [lines.RECENT_MESSAGES, lines.RECENT_MESSAGES, 2]  # c2, c4, c3


@pytest.fixture(scope="module")
def history(embedder: LocalEmbedder) -> tuple[EmbeddingSpace, Lexicon]:
    vectors = [embedder.embed(texts) for texts in HISTORY]
    space = EmbeddingSpace.of(embedder.name, np.concatenate(vectors), vectors, HISTORY)
    return space, Lexicon.of(t for texts in HISTORY for t in texts)


def test_each_topic_gets_the_line_of_its_scores_over_the_recent_conversations(
    embedder: LocalEmbedder, history: tuple[EmbeddingSpace, Lexicon]
) -> None:
    space, lexicon = history
    matcher = TopicMatcher(embedder, space, lexicon=lexicon)
    assert matcher.per_topic_lines
    assert len(matcher.recent) == len(HISTORY)
    found = matcher.lines([WEEKENDS, LEDGER])
    for topic, own in zip([WEEKENDS, LEDGER], found, strict=True):
        scores = [matcher.match(embedder.embed(texts), [topic], texts)[0].score for texts in HISTORY]
        assert own == pytest.approx(lines.line(scores), abs=1e-6)
    assert found[0] != found[1]
    weekend = HISTORY[2]
    assert matcher.match(embedder.embed(weekend), [WEEKENDS], weekend)[0].threshold == found[0]


def test_a_fixed_threshold_or_too_few_conversations_give_one_line(
    embedder: LocalEmbedder, history: tuple[EmbeddingSpace, Lexicon]
) -> None:
    space, lexicon = history
    fixed = TopicMatcher(embedder, space, lexicon=lexicon, threshold=0.3)
    assert not fixed.per_topic_lines
    assert fixed.lines([WEEKENDS, LEDGER]) == [0.3, 0.3]
    assert space.background_stems is not None
    few = EmbeddingSpace(
        space.embedder, space.mean, space.messages, space.background[:10], space.background_stems[:10]
    )
    fresh = TopicMatcher(embedder, few, lexicon=lexicon)
    assert fresh.lines([WEEKENDS]) == [default_threshold(embedder.name, lexical=True)]


def test_lines_refresh_as_conversations_arrive(
    embedder: LocalEmbedder, history: tuple[EmbeddingSpace, Lexicon]
) -> None:
    space, lexicon = history
    matcher = TopicMatcher(embedder, space, lexicon=lexicon)
    before = matcher.lines([WEEKENDS])[0]
    talk = ["what did you do on the weekend?", "a weekend of hiking", "my weekend was quiet"]
    vectors = embedder.embed(talk)
    for number in range(lines.REFRESH_EVERY - 1):
        matcher.observe(f"C9:{number}", vectors, talk)
    assert matcher.lines([WEEKENDS])[0] == before  # not refreshed yet: cached
    matcher.observe("C9:last", vectors, talk)
    after = matcher.lines([WEEKENDS])[0]
    assert after != before  # weekend talk now takes a fifth of the recent conversations
    matcher.observe("C9:no-texts", vectors)  # a matcher that reads words cannot use it
    assert len(matcher.recent) == len(HISTORY) + lines.REFRESH_EVERY


def test_the_background_stems_survive_a_save_so_a_restart_has_its_lines_at_once(
    embedder: LocalEmbedder, history: tuple[EmbeddingSpace, Lexicon], tmp_path: Path
) -> None:
    space, lexicon = history
    space.save(tmp_path)
    loaded = EmbeddingSpace.load(tmp_path)
    assert loaded.background_stems == space.background_stems
    topics = [WEEKENDS, LEDGER]
    restarted = TopicMatcher(embedder, loaded, lexicon=lexicon).lines(topics)
    assert restarted == pytest.approx(TopicMatcher(embedder, space, lexicon=lexicon).lines(topics), abs=1e-3)
    # a directory saved before stems were kept: the line waits for conversations of its own
    older = EmbeddingSpace(space.embedder, space.mean, space.messages, space.background)
    older.save(tmp_path)
    assert EmbeddingSpace.load(tmp_path).background_stems is None
    waiting = TopicMatcher(embedder, EmbeddingSpace.load(tmp_path), lexicon=lexicon)
    assert len(waiting.recent) == 0
    assert waiting.lines(topics) == [waiting.threshold] * 2
