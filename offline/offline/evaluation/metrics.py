"""Classification and ranking figures, small and dependency-free so every report computes them
the same way."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class PRF:
    precision: float
    recall: float
    f1: float
    predicted: int
    positives: int


def prf(truth: Bools, predicted: Bools) -> PRF:
    """Precision, recall, F1 of boolean predictions (0 where undefined, as scikit-learn does)."""
    tp = int(np.sum(truth & predicted))
    fp = int(np.sum(~truth & predicted))
    fn = int(np.sum(truth & ~predicted))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return PRF(precision, recall, f1, tp + fp, tp + fn)


@dataclass(frozen=True)
class Curve:
    """Precision and recall at each distinct score used as a threshold (highest first)."""

    thresholds: Floats
    precision: Floats
    recall: Floats
    f1: Floats

    def best(self, beta: float = 1.0) -> tuple[float, PRF]:
        """The threshold with the highest F-beta (the lowest such threshold on ties); the PRF
        reported is precision, recall and F1 there. beta < 1 weighs precision more."""
        if len(self.thresholds) == 0:
            return 0.0, PRF(0.0, 0.0, 0.0, 0, 0)
        b2 = beta * beta
        denominator = b2 * self.precision + self.recall
        score = np.divide(
            (1 + b2) * self.precision * self.recall,
            denominator,
            out=np.zeros_like(denominator, dtype=np.float64),
            where=denominator > 0,
        )
        i = int(np.flatnonzero(score == score.max())[-1])
        return float(self.thresholds[i]), PRF(
            float(self.precision[i]), float(self.recall[i]), float(self.f1[i]), 0, 0
        )


def pr_curve(truth: Bools, scores: Floats) -> Curve:
    """Every distinct score as a threshold (score >= t predicts positive)."""
    thresholds = np.unique(scores)[::-1]
    rows = [prf(truth, scores >= t) for t in thresholds]
    return Curve(
        thresholds=thresholds.astype(np.float64),
        precision=np.array([r.precision for r in rows]),
        recall=np.array([r.recall for r in rows]),
        f1=np.array([r.f1 for r in rows]),
    )


def average_precision(truth: Bools, scores: Floats) -> float:
    """Area under the precision-recall curve, step-wise (as scikit-learn computes it)."""
    positives = int(truth.sum())
    if positives == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    hits = truth[order].astype(np.float64)
    cumulative = np.cumsum(hits)
    precision_at = cumulative / np.arange(1, len(hits) + 1)
    return float(np.sum(precision_at * hits) / positives)


def ranks(
    scores: Sequence[Floats], answers: Sequence[int], allowed: Sequence[Bools] | None = None
) -> npt.NDArray[np.int64]:
    """1-based rank of each answer among its row's scores (ties count against the answer);
    entries outside `allowed` do not compete."""
    out = []
    for i, (row, answer) in enumerate(zip(scores, answers, strict=True)):
        values = np.asarray(row, dtype=np.float64).copy()
        if allowed is not None:
            values[~allowed[i]] = -np.inf
        mine = values[answer]
        out.append(int(np.sum(values > mine)) + int(np.sum(values == mine)))
    return np.array(out, dtype=np.int64)


@dataclass(frozen=True)
class Ranking:
    examples: int
    top1: float
    top3: float
    mrr: float


def ranking(rank: npt.NDArray[np.int64]) -> Ranking:
    if len(rank) == 0:
        return Ranking(0, 0.0, 0.0, 0.0)
    return Ranking(
        examples=len(rank),
        top1=float(np.mean(rank <= 1)),
        top3=float(np.mean(rank <= 3)),
        mrr=float(np.mean(1.0 / rank)),
    )


@dataclass(frozen=True)
class Calibration:
    """Reliability of predicted probabilities of one event: per-bin mean prediction vs frequency."""

    brier: float
    ece: float
    bins: list[dict[str, float]]


def calibration(probability: Floats, outcome: Bools, bins: int = 10) -> Calibration:
    if len(probability) == 0:
        return Calibration(0.0, 0.0, [])
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probability, edges[1:-1]), 0, bins - 1)
    rows = []
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if not mask.any():
            continue
        predicted, observed = float(probability[mask].mean()), float(outcome[mask].mean())
        ece += mask.mean() * abs(predicted - observed)
        rows.append(
            {
                "from": float(edges[b]),
                "to": float(edges[b + 1]),
                "count": int(mask.sum()),
                "predicted": predicted,
                "observed": observed,
            }
        )
    brier = float(np.mean((probability - outcome.astype(np.float64)) ** 2))
    return Calibration(brier=brier, ece=float(ece), bins=rows)
