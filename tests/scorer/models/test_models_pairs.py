"""The pair interest model: trained on a replayed workspace whose answers are known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pair_fixtures import DAY, START, workspace

from beepgpt.contracts import ConversationEvent, ConversationMessage
from offline.training.pairs import PairSettings, fit, recency_weights
from scorer.artifact import ModelFormatError
from scorer.interest.pairs import (
    FEATURES,
    PAIRS_FILE,
    PairModel,
    booster_file,
    features,
    moment_of,
    trained_features,
)

NAMES = {"UANA": "Ana", "UBO": "Bob", "UCYD": "Cyd", "UDEE": "Dee", "UEVE": "Eve"}


@pytest.fixture(scope="module")
def trained() -> tuple[PairModel, dict]:  # type: ignore[type-arg]
    stream, vectors = workspace(days=30)
    return fit(stream, vectors, settings=PairSettings(rounds=60, min_child_samples=5), names=NAMES)


def question(
    channel: str, user: str, ts: float, version: int = 1, text: str = "how do I fix the setup?"
) -> ConversationEvent:
    message = ConversationMessage(ts=f"{ts:.6f}", user=user, text=text)
    return ConversationEvent(
        kind="updated",
        conversation_id=f"{channel}:{ts:.6f}",
        channel=channel,
        first_ts=message.ts,
        last_ts=message.ts,
        version=version,
        messages=[message],
        participants=[user],
        message_count=1,
    )


LATER = START + 30 * DAY + 9 * 3600  # the next morning, as live scoring goes on from training


def test_the_usual_answerer_is_the_likeliest(trained: tuple[PairModel, dict]) -> None:  # type: ignore[type-arg]
    model, _ = trained
    infra = model.probabilities(question("CINFRA", "UANA", LATER), np.eye(3, dtype=np.float32)[[0]])
    assert max(infra, key=infra.__getitem__) == "UBO"
    assert infra["UBO"] > model.threshold
    assert infra.get("UEVE", 0.0) < model.threshold  # nobody ever hears back from her, nor she from others
    food = model.probabilities(question("CFOOD", "UCYD", LATER + 60), np.eye(3, dtype=np.float32)[[1]])
    assert max(food, key=food.__getitem__) == "UDEE"
    assert "UANA" not in model.probabilities(
        question("CINFRA", "UANA", LATER + 120), np.eye(3, dtype=np.float32)[[0]]
    )  # the asker is in the conversation: never a candidate


def test_the_explanation_names_who_they_answer(trained: tuple[PairModel, dict]) -> None:  # type: ignore[type-arg]
    model, _ = trained
    event = question("CINFRA", "UANA", LATER + 300)
    probs = model.probabilities(event, np.eye(3, dtype=np.float32)[[0]])
    signals = model.signals(event, "UBO", probs["UBO"])
    assert signals, "an alert says why"
    assert any("Ana" in s for s in signals) or any("<#CINFRA>" in s for s in signals)
    assert model.signals(question("CINFRA", "UANA", LATER + 301), "UBO", 0.5) == ()  # another version


def test_someone_new_is_scored_from_their_first_messages(trained: tuple[PairModel, dict]) -> None:  # type: ignore[type-arg]
    model, _ = trained
    t = LATER + DAY
    for i in range(4):  # Fay, new since training, answers Ana's questions live
        first = ConversationMessage(ts=f"{t + i * 3600:.6f}", user="UANA", text="the setup is broken?")
        reply = ConversationMessage(ts=f"{t + i * 3600 + 60:.6f}", user="UFAY", text="try restarting it")
        event = ConversationEvent(
            kind="closed",
            conversation_id=f"CINFRA:{first.ts}",
            channel="CINFRA",
            first_ts=first.ts,
            last_ts=reply.ts,
            version=2,
            messages=[first, reply],
            participants=["UANA", "UFAY"],
            message_count=2,
        )
        model.observe(event, np.eye(3, dtype=np.float32)[[0, 0]])
    probs = model.probabilities(question("CINFRA", "UANA", t + 5 * 3600), np.eye(3, dtype=np.float32)[[0]])
    assert "UFAY" in probs


def test_audience_limits_who_is_scored(trained: tuple[PairModel, dict]) -> None:  # type: ignore[type-arg]
    model, _ = trained
    probs = model.probabilities(
        question("CINFRA", "UANA", LATER + 2 * DAY), np.eye(3, dtype=np.float32)[[0]], audience={"UDEE"}
    )
    assert set(probs) <= {"UDEE"}


def test_a_saved_model_scores_the_same(trained: tuple[PairModel, dict], tmp_path: Path) -> None:  # type: ignore[type-arg]
    model, metrics = trained
    assert metrics["kind"] == "pairs"
    assert 0 < metrics["threshold"]["value"] < 1
    model.save(tmp_path)
    loaded = PairModel.load(tmp_path, NAMES)
    event = question("CINFRA", "UANA", LATER + 3 * DAY)
    vectors = np.eye(3, dtype=np.float32)[[0]]
    assert loaded.threshold == model.threshold
    assert loaded.probabilities(event, vectors) == pytest.approx(model.probabilities(event, vectors))


@pytest.fixture(scope="module")
def ensemble() -> PairModel:
    """Five boosters of seeds 7-11, fit examples weighted towards the latest days."""
    stream, vectors = workspace(days=30)
    settings = PairSettings(rounds=30, min_child_samples=5, boosters=5, recency_half_life_days=10)
    model, _ = fit(stream, vectors, settings=settings, names=NAMES)
    return model


def test_an_ensemble_averages_its_boosters_and_saves_them_all(
    ensemble: PairModel,
    trained: tuple[PairModel, dict],  # type: ignore[type-arg]
    tmp_path: Path,
) -> None:
    single, _ = trained
    assert (ensemble.boosters, single.boosters) == (5, PairSettings().boosters) == (5, 1)
    event = question("CINFRA", "UANA", LATER + 4 * DAY)
    vectors = np.eye(3, dtype=np.float32)[[0]]
    rows = features(ensemble.activity, moment_of(event, vectors), ["UBO", "UDEE"])
    margins = [b.predict(rows, raw_score=True) for b in ensemble._boosters]  # type: ignore[attr-defined]
    assert ensemble.raw(rows) == pytest.approx(1 / (1 + np.exp(-np.mean(margins, axis=0))))
    assert single.raw(rows) == pytest.approx(single._boosters[0].predict(rows))  # type: ignore[attr-defined]
    probs = ensemble.probabilities(event, vectors)
    assert ensemble.signals(event, "UBO", probs["UBO"])
    ensemble.save(tmp_path)
    assert all((tmp_path / booster_file(i)).exists() for i in range(ensemble.boosters))
    loaded = PairModel.load(tmp_path, NAMES)
    assert loaded.boosters == ensemble.boosters
    later = question("CINFRA", "UANA", LATER + 5 * DAY)
    assert loaded.probabilities(later, vectors) == pytest.approx(ensemble.probabilities(later, vectors))
    (tmp_path / booster_file(ensemble.boosters - 1)).unlink()
    with pytest.raises(ModelFormatError, match=f"{ensemble.boosters} boosters"):
        PairModel.load(tmp_path)


def test_a_model_saved_before_ensembles_loads_as_one_booster(
    trained: tuple[PairModel, dict],  # type: ignore[type-arg]
    tmp_path: Path,
) -> None:
    single, _ = trained
    single.save(tmp_path)
    with np.load(tmp_path / PAIRS_FILE) as arrays:
        stored = {k: v for k, v in arrays.items() if k != "boosters"}  # as written before ensembles
    np.savez(tmp_path / PAIRS_FILE, **stored)
    loaded = PairModel.load(tmp_path, NAMES)
    assert loaded.boosters == 1
    event = question("CINFRA", "UANA", LATER + 6 * DAY)
    vectors = np.eye(3, dtype=np.float32)[[0]]
    assert loaded.probabilities(event, vectors) == pytest.approx(single.probabilities(event, vectors))


def test_recency_weights_halve_per_half_life() -> None:
    days = np.array([0.0, 10.0, 20.0]) * DAY
    assert recency_weights(days, 10.0) == pytest.approx([0.25, 0.5, 1.0])
    assert recency_weights(days, 0.0) is None  # off: every example weighs the same


def test_a_model_of_other_features_is_refused(trained: tuple[PairModel, dict], tmp_path: Path) -> None:  # type: ignore[type-arg]
    model, _ = trained
    model.save(tmp_path)
    with np.load(tmp_path / PAIRS_FILE) as arrays:
        stored = dict(arrays)
    stored["features"] = np.array(["something", "else"])
    np.savez(tmp_path / PAIRS_FILE, **stored)
    with pytest.raises(ModelFormatError, match="retrain"):
        PairModel.load(tmp_path)
    assert trained_features(tmp_path) == ("something", "else")  # what the demo checks to retrain


def test_a_saved_model_says_what_it_was_trained_on(trained: tuple[PairModel, dict], tmp_path: Path) -> None:  # type: ignore[type-arg]
    model, _ = trained
    assert trained_features(tmp_path) is None
    model.save(tmp_path)
    assert trained_features(tmp_path) == FEATURES


def test_too_little_history_is_a_clear_error() -> None:
    stream, vectors = workspace(days=1)
    with pytest.raises(ValueError, match=r"no joins|too few"):
        fit(stream, vectors, end=START + 3600)


def test_a_conversation_older_than_what_was_seen_is_still_scored(trained: tuple[PairModel, dict]) -> None:  # type: ignore[type-arg]
    model, _ = trained
    # a redelivered or late event: its time is before the activity's latest message
    probs = model.probabilities(question("CINFRA", "UANA", START + 5 * DAY), np.eye(3, dtype=np.float32)[[0]])
    assert probs
    assert all(0 <= p <= 1 for p in probs.values())


def naive_threshold(
    probabilities: np.ndarray,  # type: ignore[type-arg]
    times: np.ndarray,  # type: ignore[type-arg]
    pairs: list[tuple[int, str]],
    joins: dict[tuple[int, str], float],
    beta: float,
) -> tuple[float, float]:
    """The definition, pair by pair: alerted at the first crossing, useful if the join is later."""
    grid = np.unique(np.round(np.quantile(probabilities, np.linspace(0.5, 0.9995, 150)), 4))
    best = (0.5, 0.0)
    for threshold in grid[grid > 0]:
        first: dict[tuple[int, str], float] = {}
        for p, t, pair in zip(probabilities, times, pairs, strict=True):
            if p >= threshold:
                first[pair] = min(t, first.get(pair, t))
        useful = sum(1 for pair, t in first.items() if pair in joins and joins[pair] > t)
        if not first:
            continue
        precision, recall = useful / len(first), useful / len(joins)
        b2 = beta * beta
        f = (1 + b2) * precision * recall / (b2 * precision + recall) if useful else 0.0
        if f > best[1]:
            best = (float(threshold), f)
    return best


def test_the_threshold_is_the_best_f_beta_over_alerts() -> None:
    from offline.training.pairs import choose_threshold

    stream, _ = workspace(days=6)
    rng = np.random.default_rng(3)
    joins = {(c, u): t for c, u, t in stream.joins(-np.inf)}
    people = sorted({u for _, u in joins} | {"UEVE"})
    pairs = [(int(rng.integers(len(stream.conversations))), str(rng.choice(people))) for _ in range(400)]
    times = np.sort(rng.uniform(stream.times[0], stream.times[-1], 400))
    probabilities = rng.random(400)
    for c, u in list(joins)[:10]:  # some pairs really are the joins, scored before and after them
        pairs += [(c, u), (c, u)]
        times = np.append(times, [joins[(c, u)] - 60, joins[(c, u)] + 60])
        probabilities = np.append(probabilities, [0.9, 0.95])
    threshold, chosen = choose_threshold(probabilities, times, pairs, stream, -np.inf, np.inf, 0.35)
    expected, f = naive_threshold(probabilities, times, pairs, joins, 0.35)
    assert threshold == expected
    assert chosen["f"] == pytest.approx(f)


def test_the_precision_bound_prefers_a_trusted_precision_to_a_lucky_one() -> None:
    """A constructed curve with the two maxima seen on real chat: four lucky pairs of four at the
    top, a band of very likely pairs (6 of 20), and a broad plateau (40 of 300)."""
    from offline.training.pairs import best_threshold, wilson_lower_bound

    grid = np.array([0.05, 0.1, 0.2, 0.4])
    alerts = np.array([300.0, 120.0, 20.0, 4.0])
    hits = np.array([40.0, 18.0, 6.0, 4.0])
    # the bound discounts few alerts more: 4 of 4 is trusted less than 1.0, 6 of 20 less than 0.3
    bound = wilson_lower_bound(hits, alerts, 1.0)
    assert bound[3] == pytest.approx(0.8)
    assert bound[2] < 0.3
    assert bound[0] > 0.11
    threshold, chosen = best_threshold(grid, alerts, hits, 200, 0.25, rule="precision_bound", z=1.0)
    assert threshold == 0.2  # not the tiny-count maximum (fewer than MIN_ALERTS), not the plateau
    assert chosen["alerts"] == 20
    assert chosen["precision"] == pytest.approx(0.3)
    assert chosen["precision_bound"] == pytest.approx(bound[2])
    # F-beta takes the four lucky pairs (precision 1.0 outweighs their recall of 2 %)
    assert best_threshold(grid, alerts, hits, 200, 0.25, rule="f_beta")[0] == 0.4

    def bound_choice(alerts: list[float], hits: list[float]) -> float:
        return best_threshold(
            grid, np.array(alerts), np.array(hits), 200, 0.25, rule="precision_bound", z=1.0
        )[0]

    # with a count of MIN_ALERTS or more at the top the bound weighs it: 6 of 6 is chosen
    assert bound_choice([300.0, 120.0, 20.0, 6.0], [40.0, 18.0, 6.0, 6.0]) == 0.4
    # a plateau measured on many alerts wins over a small band of nearly equal precision
    assert bound_choice([300.0, 120.0, 20.0, 6.0], [120.0, 48.0, 8.0, 2.0]) == 0.05


def test_an_unknown_threshold_rule_is_refused() -> None:
    from offline.training.pairs import best_threshold

    with pytest.raises(ValueError, match="unknown threshold rule"):
        best_threshold(np.array([0.1]), np.array([10.0]), np.array([2.0]), 10, 0.25, rule="median")
