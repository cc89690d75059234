"""The pure core of the scorer service: who may be a candidate, and what a candidate says."""

from __future__ import annotations

from scorer_service_helpers import conversation, preferences

from beepgpt.contracts import ConversationMessage
from scorer.eligibility import eligible_users, is_eligible
from scorer.pipeline import InterestScore, ModelOutputs, TopicMatch, decide

TALK = conversation(
    "C1:1700000000.000000",
    [("UBEN", "Should we move ingestion to Kafka?"), ("UEVE", "yes, decision by Friday")],
    participants=["UBEN", "UEVE", "UFAY"],  # UFAY reacted: a participant without a message
)
PREFS = {
    "UANA": preferences("UANA", "kafka"),
    "UBEN": preferences("UBEN", "kafka"),
    "UFAY": preferences("UFAY", "kafka"),
    "UGIL": preferences("UGIL", "kafka", opted_in=False),
    "USLACKBOT": preferences("USLACKBOT"),
    "B01": preferences("B01"),
    "UHAL": preferences("UHAL"),
}


def test_participants_authors_bots_and_the_not_opted_in_are_never_eligible() -> None:
    assert eligible_users(TALK, PREFS, {"USLACKBOT"}) == {"UANA", "UHAL"}
    assert not is_eligible("UEVE", TALK, PREFS, {"USLACKBOT"})  # author, no preferences at all
    assert not is_eligible("UFAY", TALK, PREFS)
    assert not is_eligible("B01", TALK, PREFS)
    assert is_eligible("UANA", TALK, PREFS)


def test_an_author_missing_from_participants_is_still_excluded() -> None:
    odd = TALK.model_copy(update={"participants": []})
    assert "UBEN" not in eligible_users(odd, PREFS)


def _topic(user: str, score: float, topic_id: str = "t") -> TopicMatch:
    return TopicMatch(user, topic_id, "kafka decisions", score, 0.5, TALK.messages[0])


def test_a_followed_topic_wins_over_interest_and_the_best_topic_is_named() -> None:
    outputs = ModelOutputs(
        interest=[InterestScore("UANA", 0.9, 0.3, ("often replies to <@UBEN>",))],
        topics=[_topic("UANA", 0.62, "t1"), _topic("UANA", 0.71, "t2")],
        model_version="m-7",
        topic_space="minilm",
    )
    [candidate] = decide(TALK, {"UANA"}, outputs)
    assert (candidate.reason, candidate.topic_id, candidate.score) == ("topic", "t2", 0.71)
    assert candidate.explanation.startswith('Matches a topic you follow: "kafka decisions" (match score 0.71')
    assert "<@UBEN>" in candidate.explanation
    assert candidate.model_version == "m-7"
    assert candidate.score_space == "minilm"  # the click on its DM says which model scored it
    assert candidate.threshold == 0.5  # the topic's line: "fewer like this" raises it (notifier)
    assert (candidate.conversation_id, candidate.version) == (TALK.conversation_id, TALK.version)


def test_interest_candidates_explain_the_score_and_are_capped_per_conversation() -> None:
    scores = [
        InterestScore(u, p, 0.4, ("active in #C1",)) for u, p in [("U1", 0.5), ("U2", 0.8), ("U3", 0.6)]
    ]
    decided = decide(TALK, {"U1", "U2", "U3"}, ModelOutputs(interest=scores), max_interest_candidates=2)
    assert [(c.user, c.reason) for c in decided] == [("U2", "interest"), ("U3", "interest")]
    assert decided[0].score_space is None  # a probability, not a score in an embedding space
    assert decided[0].threshold == 0.4  # the model's line, carried for the notifier's weights
    assert decided[0].explanation == (
        "You may want to join: active in #C1 (80% likely you join; alerts from 40%)"
    )


def test_below_threshold_or_ineligible_outputs_make_no_candidate() -> None:
    outputs = ModelOutputs(
        interest=[InterestScore("UANA", 0.2, 0.4), InterestScore("UBEN", 0.99, 0.4)],
        topics=[_topic("UANA", 0.3), _topic("UBEN", 0.99)],
    )
    assert decide(TALK, {"UANA"}, outputs) == []


def test_the_preview_is_the_latest_messages_clipped() -> None:
    long = TALK.model_copy(
        update={
            "messages": [
                *TALK.messages,
                ConversationMessage(ts="1700000002.000000", user="UEVE", text="x" * 500),
            ]
        }
    )
    [candidate] = decide(long, {"UANA"}, ModelOutputs(topics=[_topic("UANA", 0.9)]), preview_lines=2)
    assert [line.user for line in candidate.preview] == ["UEVE", "UEVE"]
    assert len(candidate.preview[-1].text) == 300
