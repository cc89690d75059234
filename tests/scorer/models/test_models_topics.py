"""The topic matcher: request wording stripped, centred scores, best message, feedback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from models_fixtures import TOPIC_WORKSPACE

from beepgpt.contracts import FollowedTopic
from scorer.artifact import ModelFormatError
from scorer.embeddings import LocalEmbedder
from scorer.topics.feedback import PRIOR_SD, FeedbackExample, FeedbackMemory, learn, learn_threshold
from scorer.topics.lexical import Lexicon, Query, words
from scorer.topics.lexical import score as lexical_score
from scorer.topics.matcher import LEXICAL_WEIGHT, EmbeddingSpace, TopicMatcher, default_threshold
from scorer.topics.phrasing import topic_subject

WORKSPACE = TOPIC_WORKSPACE


@pytest.mark.parametrize(
    ("sentence", "subject"),
    [
        (
            "Alert me when people are making streaming technology decisions",
            "making streaming technology decisions",
        ),
        ("Poke me when there are people chatting about SRE topics", "SRE topics"),
        ("Let me know when people are talking about their weekends", "their weekends"),
        (
            "Tell me about engineering discussions related to the Supply Chain project",
            "the Supply Chain project",
        ),
        ("Hey BeepGPT, let me know when there’s an important decision about fraud.", "decision about fraud"),
        ("Keep me posted on database migrations", "database migrations"),
        ("kafka", "kafka"),
        ("Tell me", "Tell me"),
    ],
)
def test_request_wording_is_stripped(sentence: str, subject: str) -> None:
    assert topic_subject(sentence) == subject


@pytest.fixture(scope="module")
def workspace(embedder: LocalEmbedder) -> tuple[TopicMatcher, list[np.ndarray]]:
    vectors = [embedder.embed(texts) for texts in WORKSPACE]
    space = EmbeddingSpace.of(embedder.name, np.concatenate(vectors), vectors)
    return TopicMatcher(embedder, space), vectors


def test_conversations_match_their_topic_and_report_the_best_message(
    workspace: tuple[TopicMatcher, list[np.ndarray]],
) -> None:
    matcher, vectors = workspace
    topics = [
        FollowedTopic(id="stream", text="Alert me when people are making streaming technology decisions"),
        FollowedTopic(id="weekend", text="Let me know when people are talking about their weekends"),
        FollowedTopic(
            id="sre",
            text="Poke me when there are people chatting about SRE topics like monitoring and alerting",
        ),
    ]
    scores = np.array([[s.score for s in matcher.match(v, topics)] for v in vectors])
    assert scores[:, 0].argmax() in (0, 1)
    assert scores[:, 1].argmax() == 2
    assert scores[:, 2].argmax() == 4
    found = matcher.match(vectors[4], topics)[2]
    assert found.best_message == 1
    assert found.threshold == default_threshold(matcher.embedder.name)
    assert matcher.match(vectors[2], topics)[1].matched
    assert not matcher.match(vectors[3], topics)[1].matched
    assert matcher.match(np.zeros((0, 384), dtype=np.float32), topics)[0].score == 0.0
    assert matcher.match(vectors[0], []) == []


def test_topic_texts_are_embedded_once(workspace: tuple[TopicMatcher, list[np.ndarray]]) -> None:
    matcher, vectors = workspace
    topic = [FollowedTopic(id="x", text="Tell me about invoices and the ledger")]
    calls: list[list[str]] = []
    real = matcher.embedder.embed
    matcher.embedder.embed = lambda texts: calls.append(texts) or real(texts)  # type: ignore[method-assign]
    try:
        for v in vectors:
            matcher.match(v, topic)
    finally:
        matcher.embedder.embed = real  # type: ignore[method-assign]
    assert calls == [["invoices and the ledger"]]


def test_feedback_moves_the_line_towards_the_clicks_and_the_prior_holds_it_near_the_default() -> None:
    assert learn_threshold([], [], 0.2) == 0.2
    lowered = learn_threshold([0.15], [True], 0.2)
    raised = learn_threshold([0.25], [False], 0.2)
    assert lowered < 0.2 < raised
    assert abs(lowered - 0.2) < PRIOR_SD  # one click nudges the line
    many = learn_threshold([0.15] * 40, [True] * 40, 0.2)
    assert many < lowered
    assert many <= 0.15 + 0.01
    # clicks already on the right side of the line teach little
    assert abs(learn_threshold([0.5, -0.2], [True, False], 0.2) - 0.2) < 0.01


def test_feedback_adapts_the_topic_threshold_through_the_matcher(
    workspace: tuple[TopicMatcher, list[np.ndarray]],
) -> None:
    matcher, vectors = workspace
    topic = FollowedTopic(id="ops", text="Tell me about operations problems")
    assert learn(matcher, topic, []).threshold is None
    target = matcher.topic_vectors([topic])[0]
    examples = [FeedbackExample(vectors[0], True), FeedbackExample(vectors[5], False)]
    adaptation = learn(matcher, topic, examples)
    scores = [matcher.score(matcher.view(e.vectors), target)[0] for e in examples]
    assert adaptation.vector is None  # the follower's words keep pointing the topic
    assert adaptation.threshold == learn_threshold(scores, [True, False], matcher.threshold)
    assert (adaptation.useful, adaptation.not_useful) == (1, 1)
    matcher.adapt("ops", adaptation)
    try:
        assert matcher.match(vectors[0], [topic])[0].threshold == adaptation.threshold
    finally:
        matcher.adaptations.clear()


def test_feedback_memory_keeps_clicks_per_person_and_topic() -> None:
    memory = FeedbackMemory(max_clicks=2)
    memory.clicked("UANA", "t", "c1", True)  # before its score is known: kept, not used yet
    assert memory.examples("UANA", "t") == ([], [])
    assert memory.threshold("UANA", "t", 0.2) == 0.2
    memory.scored("UANA", "t", "c1", 0.1)
    assert memory.threshold("UANA", "t", 0.2) == learn_threshold([0.1], [True], 0.2) < 0.2
    memory.clicked("UANA", "t", "c1", False)  # the latest click on a conversation wins
    assert memory.examples("UANA", "t") == ([0.1], [False])
    memory.scored("UANA", "t", "c2", 0.3)
    memory.scored("UANA", "t", "c3", 0.4)
    memory.clicked("UANA", "t", "c2", True)
    memory.clicked("UANA", "t", "c3", True)  # only the newest two clicks are kept
    assert memory.examples("UANA", "t") == ([0.3, 0.4], [True, True])
    assert memory.threshold("UBEN", "t", 0.2) == 0.2
    memory.forget_user("UANA")
    assert memory.examples("UANA", "t") == ([], [])
    assert memory.threshold("UANA", "t", 0.2) == 0.2


def test_feedback_memory_learns_from_the_score_a_click_carries() -> None:
    """A click carrying its alert's score teaches at once, on a conversation this memory never
    saw scored (another instance scored it, or this one before a restart)."""
    memory = FeedbackMemory()
    memory.clicked("UANA", "t", "elsewhere", True, 0.15)
    assert memory.examples("UANA", "t") == ([0.15], [True])
    assert memory.threshold("UANA", "t", 0.2) == learn_threshold([0.15], [True], 0.2) < 0.2
    # the carried score is what the person judged: it beats a later, remembered one
    memory.scored("UANA", "t", "elsewhere", 0.4)
    assert memory.examples("UANA", "t") == ([0.15], [True])
    # a later click without one (an older DM's button) changes the label, keeps the score
    memory.clicked("UANA", "t", "elsewhere", False)
    assert memory.examples("UANA", "t") == ([0.15], [False])
    # without any carried score, the remembered one is used, as before
    memory.scored("UANA", "t", "here", 0.3)
    memory.clicked("UANA", "t", "here", True)
    assert memory.examples("UANA", "t") == ([0.15, 0.3], [False, True])
    # a new embedding space makes every old score meaningless, carried ones too; clicks stay
    memory.use_space("old-model")
    assert memory.examples("UANA", "t") == ([0.15, 0.3], [False, True])  # the first space: kept
    memory.use_space("new-model")
    assert memory.examples("UANA", "t") == ([], [])
    assert memory.threshold("UANA", "t", 0.2) == 0.2
    memory.scored("UANA", "t", "elsewhere", 0.25)
    assert memory.examples("UANA", "t") == ([0.25], [False])


def test_a_carried_score_counts_only_in_the_embedding_space_it_was_measured_in() -> None:
    """A click on a DM sent before a model change (or read back after a restart with another
    model) carries a score of the old space: kept, but left out until that space is back."""
    memory = FeedbackMemory()
    memory.clicked("UANA", "t", "before", True, 0.15, "old-model")
    memory.use_space("new-model")
    assert memory.examples("UANA", "t") == ([], [])
    assert memory.threshold("UANA", "t", 0.2) == 0.2
    memory.clicked("UANA", "t", "after", False, 0.4, "new-model")
    assert memory.examples("UANA", "t") == ([0.4], [False])
    line = memory.threshold("UANA", "t", 0.2)
    memory.use_space("old-model")  # a rollback: its scores compare again
    assert memory.examples("UANA", "t") == ([0.15], [True])
    assert memory.threshold("UANA", "t", 0.2) != line


# --- words: the lexical half of a topic score --------------------------------------------------


def test_words_are_stemmed_content_words() -> None:
    assert words("How were everyone's WEEKENDS? 42 of them, a weekend!") == ["weekend", "weekend"]
    assert words("making streaming technology decisions") == ["make", "stream", "technolog", "decis"]
    assert words("'security' matters") == ["secur", "matter"]


def test_the_lexicon_weighs_rare_words_more_and_round_trips(tmp_path: Path) -> None:
    lexicon = Lexicon.of(["the fraud project", "the project plan", "project status", "weekend plans"])
    assert lexicon.messages == 4
    assert lexicon.document_frequency["project"] == 3
    assert lexicon.idf("fraud") > lexicon.idf("project")
    query = lexicon.query("the Fraud Detection project")
    assert query.terms == ("fraud", "project")  # "detection": never used here, so left out
    assert query.weights[0] > query.weights[1]
    assert sum(query.weights) == pytest.approx(1.0)
    lexicon.save(tmp_path)
    assert Lexicon.load(tmp_path) == lexicon
    (tmp_path / "lexicon.json").write_text("{}")
    with pytest.raises(ModelFormatError, match="malformed"):
        Lexicon.load(tmp_path)


def test_the_lexical_score_is_the_weighted_share_of_messages_using_the_words() -> None:
    query = Query(("fraud", "project"), (0.75, 0.25))
    messages = [
        frozenset({"fraud", "model"}),
        frozenset({"lunch"}),
        frozenset({"fraud", "project"}),
        frozenset(),
    ]
    assert lexical_score(query, messages) == pytest.approx(0.75 * 2 / 4 + 0.25 * 1 / 4)
    assert lexical_score(query, []) == 0.0
    assert lexical_score(Query((), ()), messages) == 0.0


@pytest.fixture(scope="module")
def hybrid(workspace: tuple[TopicMatcher, list[np.ndarray]]) -> TopicMatcher:
    matcher, _ = workspace
    lexicon = Lexicon.of(text for texts in WORKSPACE for text in texts)
    return TopicMatcher(matcher.embedder, matcher.space, lexicon=lexicon)


def test_with_a_lexicon_the_score_mixes_embeddings_and_words(
    workspace: tuple[TopicMatcher, list[np.ndarray]], hybrid: TopicMatcher
) -> None:
    matcher, vectors = workspace
    weekend = FollowedTopic(id="weekend", text="Let me know when people are talking about their weekends")
    assert hybrid.threshold == default_threshold(hybrid.embedder.name, lexical=True)
    dense = matcher.match(vectors[2], [weekend])[0].score
    [found] = hybrid.match(vectors[2], [weekend], WORKSPACE[2])
    share = 1 / 3  # one of the three messages says "weekend"
    assert found.score == pytest.approx((1 - LEXICAL_WEIGHT) * dense + LEXICAL_WEIGHT * share)
    scores = [hybrid.match(v, [weekend], t)[0].score for v, t in zip(vectors, WORKSPACE, strict=True)]
    assert int(np.argmax(scores)) == 2
    with pytest.raises(ValueError, match="texts"):
        hybrid.match(vectors[2], [weekend])
    with pytest.raises(ValueError, match="2 texts for 3"):
        hybrid.match(vectors[2], [weekend], WORKSPACE[2][:2])


def test_feedback_reads_the_clicked_conversations_texts_with_a_lexicon(
    workspace: tuple[TopicMatcher, list[np.ndarray]], hybrid: TopicMatcher
) -> None:
    _, vectors = workspace
    topic = FollowedTopic(id="sre", text="Tell me about alerting and dashboards")
    examples = [
        FeedbackExample(vectors[4], True, WORKSPACE[4]),
        FeedbackExample(vectors[5], False, WORKSPACE[5]),
    ]
    adaptation = learn(hybrid, topic, examples)
    scores = [hybrid.match(e.vectors, [topic], e.texts)[0].score for e in examples]
    assert adaptation.threshold == learn_threshold(scores, [True, False], hybrid.threshold)
