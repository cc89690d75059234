"""The local interest model: the "nobody" rule, features, training, scoring and explanations."""

from __future__ import annotations

import numpy as np
import pytest
from models_fixtures import VOCAB, conversation, synthetic_examples, vectors_of

from offline.training.local import InterestSettings, train_interest
from scorer.embeddings import LocalEmbedder
from scorer.interest.features import Featurizer
from scorer.interest.model import NOBODY, InterestModel
from scorer.interest.prompt import Prompt, PromptMessage, prompt_of
from scorer.interest.substance import content_words, has_substance


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        (["Good morning!", "thanks :tada:"], False),
        (["standup?"], False),
        (["<@U123> ok, sounds good!", "+1"], False),
        (["Could we move the Kafka consumer to the new cluster?"], True),
        (["hi", "the invoice totals look wrong"], True),
    ],
)
def test_the_nobody_rule(texts: list[str], expected: bool) -> None:
    assert has_substance(texts) is expected


def test_content_words_ignore_markup_and_pleasantries() -> None:
    assert content_words(
        "Thanks <@U12|ana>! See <https://x.io|the doc> about :fire: Kafka lag ```code```"
    ) == ["see", "kafka", "lag"]


def test_features_mark_who_spoke_last_and_who_was_mentioned() -> None:
    featurizer = Featurizer(VOCAB, dimension=4)
    prompt = Prompt(
        "random", True, (PromptMessage("UANA", "hey <@UBO|bob>, look"), PromptMessage("UDEE", "<@UCY> too"))
    )
    row = featurizer.row(prompt, np.eye(4, dtype=np.float32)[:2])
    g = featurizer.groups
    assert row[g["last_author"]].tolist() == [0, 0, 0, 1, 0]
    assert row[g["mentions"]].tolist() == [0, 1, 1, 0]
    assert row[g["channel"]].tolist() == [0, 1, 0, 1]  # random, then "in a thread"
    assert row[g["content"]][4:].tolist() == [0, 1, 0, 0]  # the latest message's vector


@pytest.fixture(scope="module")
def trained(embedder: LocalEmbedder) -> tuple[InterestModel, dict[str, object]]:
    examples, store = synthetic_examples(embedder)
    return train_interest(examples, vectors_of(store), VOCAB, 384, InterestSettings(validation_fraction=0.25))


def test_training_learns_who_answers_what(
    trained: tuple[InterestModel, dict[str, object]], embedder: LocalEmbedder
) -> None:
    model, metrics = trained
    assert metrics["nobody_examples"] == 16
    assert metrics["users"] == 4
    assert 0.0 < model.threshold < 1.0
    cases = {
        "UANA": "the Kafka brokers are rejecting writes from the stream job",
        "UBO": "any tips for a crispy pizza crust recipe",
        "UCY": "the expense report totals are off for the budget",
    }
    for user, text in cases.items():
        event = conversation([("UDEE", text)])
        probabilities = model.probabilities(event, embedder.embed([text]))
        assert max(probabilities, key=probabilities.__getitem__) == user, (text, probabilities)
    chatter = conversation([("UDEE", "thanks, good morning")])
    assert model.nobody(chatter, embedder.embed(["thanks, good morning"])) > 0.5


def test_scoring_reads_the_latest_five_messages_and_explains(
    trained: tuple[InterestModel, dict[str, object]], embedder: LocalEmbedder
) -> None:
    model, _ = trained
    texts = [
        ("UBO", "lunch?"),
        ("UDEE", "sure"),
        ("UBO", "ok"),
        ("UDEE", "hm"),
        ("UBO", "so"),
        ("UDEE", "the partition count on the Kafka topic is too low"),
    ]
    event = conversation(texts)
    vectors = embedder.embed([t for _, t in texts])
    assert len(prompt_of(event).messages) == 5
    probabilities = model.probabilities(event, vectors)
    assert set(probabilities) == {"UANA", "UBO", "UCY", "UDEE"}
    assert NOBODY not in probabilities
    assert abs(sum(probabilities.values()) + model.nobody(event, vectors) - 1) < 1e-5
    signals = model.signals(event, "UANA", probabilities["UANA"])
    assert signals
    assert all(isinstance(s, str) and s for s in signals)
    with pytest.raises(ValueError, match="vectors"):
        model.probabilities(event, vectors[:3])
