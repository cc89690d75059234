"""Clicks on topic alerts move that person's topic line: the `feedback` topic, read against the
real broker, into the `FeedbackMemory` the production scorer consults."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from scorer_service_helpers import conversation, preferences
from test_scorer_model_scorer import Bundle, FixedInterest, HashingEmbedder, _scorer

from beepgpt.contracts import Feedback, FollowedTopic
from beepgpt.kafka import EventProducer
from beepgpt.settings import KafkaSettings
from beepgpt.topics import FEEDBACK
from scorer.embeddings import Matrix
from scorer.feedback import FeedbackReader
from scorer.topics.feedback import FeedbackMemory, learn_threshold
from scorer.topics.matcher import TopicScore


class SteadyTopics:
    """Every conversation scores `score` for every topic, against a line of 0.5."""

    def __init__(self, score: float) -> None:
        self.score = score

    def match(
        self, vectors: Matrix, topics: Sequence[FollowedTopic], texts: Sequence[str] | None = None
    ) -> list[TopicScore]:
        return [TopicScore(topic, self.score, 0.5, 0) for topic in topics]

    def observe(self, conversation_id: str, vectors: Matrix, texts: Sequence[str] | None = None) -> None:
        """Its line does not depend on the workspace's conversations."""


async def _send(settings: KafkaSettings, *events: Feedback) -> None:
    async with EventProducer(settings, "ingest") as producer:
        for event in events:
            await producer.send(FEEDBACK, event.user, event)


async def test_topic_clicks_reach_the_memory_and_are_read_again_after_a_restart(
    kafka_topics: KafkaSettings,
) -> None:
    clicks = [
        Feedback(user="UANA", conversation_id="C1:1.000000", useful=True, reason="topic", topic_id="t0"),
        Feedback(user="UANA", conversation_id="C1:2.000000", useful=False, reason="topic", topic_id="t0"),
        Feedback(user="UANA", conversation_id="C1:3.000000", useful=True, reason="interest"),
        Feedback(user="UBEN", conversation_id="C1:1.000000", useful=True, reason="topic", topic_id="t9"),
        # scored by another instance (or before a restart): the click carries its alert's score
        Feedback(
            user="UCAT",
            conversation_id="C1:4.000000",
            useful=False,
            reason="topic",
            topic_id="t2",
            score=0.05,
        ),
        # a click on a DM scored by a model this scorer no longer runs
        Feedback(
            user="UDAN",
            conversation_id="C1:5.000000",
            useful=True,
            reason="topic",
            topic_id="t3",
            score=0.2,
            score_space="old-model",
        ),
    ]
    memory = FeedbackMemory()
    for cid, score in (("C1:1.000000", 0.10), ("C1:2.000000", 0.30)):
        memory.scored("UANA", "t0", cid, score)
    reader = FeedbackReader(kafka_topics, memory)
    await reader.start(timeout=30)
    try:
        await _send(kafka_topics, *clicks)
        await reader.wait_for("UBEN", lambda f: f.topic_id == "t9")
        await reader.wait_for("UANA", lambda f: f.conversation_id == "C1:3.000000")
        await reader.wait_for("UCAT", lambda f: f.topic_id == "t2")
        await reader.wait_for("UDAN", lambda f: f.topic_id == "t3")
        assert reader.clicks == 5  # the interest click teaches no topic
        assert memory.examples("UANA", "t0") == ([0.10, 0.30], [True, False])
        assert memory.examples("UBEN", "t9") == ([], [])  # clicked, but its score is unknown here
        assert memory.examples("UCAT", "t2") == ([0.05], [False])  # never scored here: carried
        assert memory.threshold("UCAT", "t2", 0.0) == learn_threshold([0.05], [False], 0.0) > 0.0
    finally:
        await reader.stop()

    # a restarted scorer reads the whole topic again before it scores anything
    again = FeedbackMemory()
    again.scored("UANA", "t0", "C1:1.000000", 0.10)
    reread = FeedbackReader(kafka_topics, again)
    await reread.start(timeout=30)
    try:
        assert reread.clicks == 5
        again.use_space("new-model")  # the restarted scorer runs another embedding model
        assert again.examples("UANA", "t0") == ([0.10], [True])
        assert again.examples("UCAT", "t2") == ([0.05], [False])  # nothing scored since the restart
        assert again.examples("UDAN", "t3") == ([], [])  # an old model's score does not compare
    finally:
        await reread.stop()


async def test_useful_clicks_below_the_line_lower_it_for_that_person_only(tmp_path: Path) -> None:
    """The scorer remembers each topic score it computes; "useful" clicks on conversations that
    scored under the line lower that person's line (a few clicks move it little: the prior holds
    it near the default), until such a conversation is proposed. The other follower of the same
    words keeps the default line."""
    bundle = Bundle("v1", HashingEmbedder(), FixedInterest({}), SteadyTopics(0.45))  # type: ignore[arg-type]
    scorer = await _scorer(tmp_path, {"v1": bundle}, scorers={"topic"})
    prefs = {
        "UANA": preferences("UANA", "kafka partitions consumer lag"),
        "UCAT": preferences("UCAT", "kafka partitions consumer lag"),
    }
    lines = []
    found = []
    for i in range(1, 201):
        talk = conversation(f"C1:{i}.000000", [("UBEN", "kafka partitions are uneven today")])
        found = await scorer.score([talk], prefs)
        if found:
            break
        scorer.feedback.clicked("UANA", "UANA-t0", talk.conversation_id, True)
        lines.append(scorer.feedback.threshold("UANA", "UANA-t0", 0.5))
    assert [(c.user, c.reason) for c in found] == [("UANA", "topic")]
    scores, useful = scorer.feedback.examples("UANA", "UANA-t0")
    assert all(useful)
    assert scores == [0.45] * len(scores)
    assert lines[0] > 0.48  # one click under the line moves it little: the prior holds it
    assert lines == sorted(lines, reverse=True)
    assert lines[-1] < lines[0]
    assert lines[-1] == learn_threshold(scores, useful, 0.5)
    assert found[0].score >= lines[-1]
    assert scorer.feedback.threshold("UCAT", "UCAT-t0", 0.5) == 0.5
    await scorer.aclose()
