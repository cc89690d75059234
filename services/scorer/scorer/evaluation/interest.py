"""How well the interest model ranks who engages next (`beepgpt eval interest`).

A time split: the model is trained on the examples before the split and ranks the workspace's
users for each example after it. Ranked are the users who could be the answer: the authors of
the prompt are never the label (by construction), so every ranker — the model and both
baselines — leaves them out. Figures: top-1, top-3 and mean reciprocal rank (MRR) of the true
author, on all test examples and on the "joining" ones (the author had not written in the
conversation yet: the situation a live alert is about). Baselines, computed on the same split:
the most active user overall (message counts before the split) and the most active user in the
example's channel. The "nobody" decision is checked for calibration: predicted probability of
"nobody" against how often the prompt really had no substance.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from scorer.evaluation.metrics import Calibration, Ranking, calibration, ranking, ranks
from scorer.interest.features import Vocabulary
from scorer.interest.model import NOBODY, InterestModel
from scorer.training.examples import Example

Probabilities = npt.NDArray[np.float32]


def candidates_mask(examples: Sequence[Example], vocab: Vocabulary) -> npt.NDArray[np.bool_]:
    """Which users may be the answer for each example: everyone but the prompt's authors."""
    mask = np.ones((len(examples), len(vocab.users)), dtype=bool)
    index = {u: i for i, u in enumerate(vocab.users)}
    for row, example in enumerate(examples):
        for author in example.prompt.authors:
            if author in index:
                mask[row, index[author]] = False
    return mask


def rank_answers(
    scores: npt.NDArray[np.float64], examples: Sequence[Example], vocab: Vocabulary
) -> npt.NDArray[np.int64]:
    """Rank of each (non-"nobody", known-user) example's author; scores are (examples × users)."""
    index = {u: i for i, u in enumerate(vocab.users)}
    chosen = [i for i, e in enumerate(examples) if e.label != NOBODY and e.label in index]
    if not chosen:
        return np.zeros(0, dtype=np.int64)
    mask = candidates_mask([examples[i] for i in chosen], vocab)
    return ranks([scores[i] for i in chosen], [index[examples[i].label] for i in chosen], list(mask))


@dataclass
class RankerFigures:
    name: str
    all: Ranking
    joining: Ranking


@dataclass
class InterestReport:
    split_at: float
    train_examples: int
    test_examples: int
    users: int
    rankers: list[RankerFigures]
    nobody_rate: float
    nobody: Calibration
    train_seconds: float
    settings: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        def fig(r: Ranking) -> dict[str, float]:
            return {"examples": r.examples, "top1": r.top1, "top3": r.top3, "mrr": r.mrr}

        return {
            "split_at": self.split_at,
            "train_examples": self.train_examples,
            "test_examples": self.test_examples,
            "users": self.users,
            "rankers": {r.name: {"all": fig(r.all), "joining": fig(r.joining)} for r in self.rankers},
            "nobody": {
                "rate": self.nobody_rate,
                "brier": self.nobody.brier,
                "ece": self.nobody.ece,
                "bins": self.nobody.bins,
            },
            "train_seconds": self.train_seconds,
            "settings": self.settings,
        }

    @property
    def beats_baselines(self) -> bool:
        model = next(r for r in self.rankers if r.name == "model")
        return all(model.all.mrr > r.all.mrr for r in self.rankers if r.name != "model")


def activity_scores(
    train: Sequence[Example], test: Sequence[Example], vocab: Vocabulary, *, by_channel: bool
) -> npt.NDArray[np.float64]:
    """Baseline scores: how many training messages each user wrote (overall or in the channel).

    Counted over the training examples' authors, i.e. the messages before the split."""
    overall = Counter(e.author for e in train)
    per_channel: dict[str, Counter[str]] = {}
    for e in train:
        per_channel.setdefault(e.channel, Counter())[e.author] += 1
    out = np.zeros((len(test), len(vocab.users)), dtype=np.float64)
    for row, example in enumerate(test):
        counts = per_channel.get(example.channel, Counter()) if by_channel else overall
        # ties (and channels never seen) fall back to overall activity, scaled below one message
        total = max(1, sum(overall.values()))
        out[row] = [counts[u] + overall[u] / (total + 1) for u in vocab.users]
    return out


def evaluate(
    examples: Sequence[Example],
    vectors_of: Callable[[Example], npt.NDArray[np.float32]],
    vocab: Vocabulary,
    split_at: float,
    train: Callable[[Sequence[Example]], tuple[InterestModel, dict[str, Any]]],
) -> InterestReport:
    """Train on examples before `split_at` (with `train`), rank users on the rest."""
    import time

    before = [e for e in examples if e.ts < split_at]
    after = [e for e in examples if e.ts >= split_at]
    if not before or not after:
        raise ValueError(f"the split leaves {len(before)} training and {len(after)} test examples")
    started = time.perf_counter()
    model, metrics = train(before)
    seconds = time.perf_counter() - started
    features = model.featurizer.rows([e.prompt for e in after], [vectors_of(e) for e in after])
    probs = model.predict(features).astype(np.float64)
    users = len(vocab.users)
    scores = {
        "model": probs[:, :users],
        "most active overall": activity_scores(before, after, vocab, by_channel=False),
        "most active in channel": activity_scores(before, after, vocab, by_channel=True),
    }
    joining = [i for i, e in enumerate(after) if e.joining]
    rankers = []
    for name, matrix in scores.items():
        all_ranks = rank_answers(matrix, after, vocab)
        join_ranks = rank_answers(matrix[joining], [after[i] for i in joining], vocab)
        rankers.append(RankerFigures(name, ranking(all_ranks), ranking(join_ranks)))
    nobody_truth = np.array([e.label == NOBODY for e in after])
    return InterestReport(
        split_at=split_at,
        train_examples=len(before),
        test_examples=len(after),
        users=users,
        rankers=rankers,
        nobody_rate=float(nobody_truth.mean()),
        nobody=calibration(probs[:, users], nobody_truth),
        train_seconds=seconds,
        settings=metrics.get("settings", {}),
    )
