"""The suggested topics' pure core: grouping conversations, naming groups, what is left out."""

from __future__ import annotations

import numpy as np

from beepgpt.contracts import ConversationEvent, ConversationMessage
from scorer.embeddings import normalise
from scorer.suggestions import (
    Namer,
    SuggestionSettings,
    cluster,
    conversation_vector,
    first_line,
    suggest,
    terms,
    took_part,
)

BACKGROUND = [
    "the streaming pipeline and the kafka topics",
    "streaming again, kafka lag is high",
    "lunch plans for friday",
    "fraud detection model retraining with streaming features",
    "weekend hiking trip",
    "streaming dashboards for the warehouse",
]


def event(i: int, texts: list[str], users: list[str] | None = None, channel: str = "C1") -> ConversationEvent:
    ts = f"{1_690_000_000 + i * 3600}.000100"
    who = users or ["U1"] * len(texts)
    messages = [
        ConversationMessage(ts=f"{1_690_000_000 + i * 3600 + k}.000100", user=u, text=t)
        for k, (u, t) in enumerate(zip(who, texts, strict=True))
    ]
    return ConversationEvent(
        kind="closed",
        conversation_id=f"{channel}:{ts}",
        channel=channel,
        first_ts=ts,
        last_ts=messages[-1].ts,
        version=1,
        messages=messages,
        participants=list(dict.fromkeys(who)),
        message_count=len(messages),
    )


def blobs(sizes: list[int], dimension: int = 16, spread: float = 0.05, seed: int = 0) -> np.ndarray:
    """Unit vectors in well-separated groups (one axis each), `sizes[g]` of group g."""
    rng = np.random.default_rng(seed)
    rows = []
    for g, size in enumerate(sizes):
        centre = np.zeros(dimension)
        centre[g] = 1.0
        rows += [centre + rng.normal(0, spread, dimension) for _ in range(size)]
    return normalise(np.array(rows))


def test_cluster_finds_separated_groups_and_their_number() -> None:
    vectors = blobs([12, 10, 8])
    labels = cluster(vectors, max_groups=6)
    assert len(set(labels.tolist())) == 3
    assert len(set(labels[:12].tolist())) == 1
    assert len(set(labels[12:22].tolist())) == 1


def test_cluster_leaves_too_few_vectors_as_one_group() -> None:
    assert cluster(blobs([2]), max_groups=5).tolist() == [0, 0]
    assert cluster(blobs([12, 10]), max_groups=1).tolist() == [0] * 22


def test_a_conversation_vector_is_a_centred_unit_mean() -> None:
    rows = normalise(np.array([[1.0, 1.0, 0.0], [1.0, 0.9, 0.1]]))
    centre = np.array([0.7, 0.0, 0.0], dtype=np.float32)
    vector = conversation_vector(rows, centre)
    assert abs(float(np.linalg.norm(vector)) - 1) < 1e-5
    assert float(vector[1]) > float(vector[0])  # the shared direction (axis 0) is taken out
    assert np.allclose(conversation_vector(rows, None), normalise(rows.mean(axis=0))[0])


def test_names_come_from_a_groups_distinctive_terms_against_the_workspace() -> None:
    namer = Namer(BACKGROUND)
    group = [
        "fraud detection needs streaming features",
        "the fraud detection model flags card payments",
        "streaming card payments into fraud detection",
        "fraud detection again",
        "great idea, thanks!",
    ]
    name, chosen = namer.name(group)
    assert chosen[0] == "fraud detection"  # a phrase before the words it holds
    assert "fraud" not in chosen
    assert "detection" not in chosen
    weights = namer.weights(group)
    assert weights["streaming"] < weights["card payments"]  # everywhere in this workspace: not distinctive
    assert "great" not in name
    assert "thanks" not in name
    assert name == ", ".join(chosen)


def test_a_plural_is_not_a_second_term() -> None:
    namer = Namer(BACKGROUND)
    _, chosen = namer.name(
        ["recommendations for users", "a recommendation for users", "recommendations again"]
    )
    assert sum(c.startswith("recommendation") for c in chosen) == 1


def test_terms_skip_stop_words_markup_and_numbers() -> None:
    found = terms("Hey <@U123>, the Kafka lag is 250 :tada: see <https://x.y|link>")
    assert "kafka" in found
    assert "kafka lag" in found
    assert not {"hey", "the", "250", "tada", "u123", "link"} & set(found)


def test_took_part_means_wrote_in_it() -> None:
    conversation = event(0, ["a", "b"], users=["U1", "U2"])
    assert took_part(conversation, "U2")
    assert not took_part(conversation, "U3")


def test_first_line_is_the_first_messages_first_line_cut_short() -> None:
    assert first_line(event(0, ["Kafka lag\nsecond line"])) == "Kafka lag"
    long = first_line(event(0, ["x" * 500]))
    assert len(long) == 120
    assert long.endswith("…")


def _three_subjects() -> tuple[list[ConversationEvent], list[np.ndarray]]:
    subjects = [(12, "fraud detection"), (9, "inventory forecast"), (2, "hiking trip")]
    moods = ["looks promising", "needs review", "is late"]
    events = []
    i = 0
    for size, text in subjects:
        for k in range(size):
            events.append(event(i, [f"the {text} again", f"{text} {moods[k % 3]}"]))
            i += 1
    vectors = list(blobs([s for s, _ in subjects]))
    return events, vectors


def test_suggest_ranks_groups_by_size_names_them_and_drops_the_small_ones() -> None:
    events, vectors = _three_subjects()
    found = suggest(
        "U1", events, vectors, Namer(BACKGROUND), settings=SuggestionSettings(conversations_per_group=5)
    )
    assert [len(s.members) for s in found] == [12, 9]  # the 2-conversation group is too small
    assert "fraud detection" in found[0].name
    assert "inventory forecast" in found[1].name
    for s in found:
        assert len(s.examples) == 2
        assert all(e.channel == "C1" and e.first_line and e.conversation_id in s.members for e in s.examples)
        assert [float(e.first_ts) for e in s.examples] == sorted(float(e.first_ts) for e in s.examples)


def test_suggest_leaves_out_what_the_person_follows() -> None:
    events, vectors = _three_subjects()
    namer = Namer(BACKGROUND)
    settings = SuggestionSettings(conversations_per_group=5)
    fraud_axis = normalise(np.eye(16)[:1])
    by_meaning = suggest(
        "U1",
        events,
        vectors,
        namer,
        followed=["card payments"],
        followed_vectors=fraud_axis,
        settings=settings,
    )
    assert [len(s.members) for s in by_meaning] == [9]
    first = suggest("U1", events, vectors, namer, settings=settings)[0].name
    by_name = suggest("U1", events, vectors, namer, followed=[first.upper()], settings=settings)
    assert first not in [s.name for s in by_name]


def test_suggest_without_conversations_suggests_nothing() -> None:
    assert suggest("U1", [], [], Namer(BACKGROUND)) == []
