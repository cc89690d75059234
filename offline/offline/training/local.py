"""Fitting the local interest model: features → a multinomial logistic regression.

Settings are chosen on time, never at random (rolling-origin validation): the latest
`validation_fraction` of the examples is cut into `folds` consecutive blocks, and each block is
predicted by a model fitted on everything before it — always the past predicting the future, as
in production. The regularisation strength with the best mean MRR over the blocks is kept; the
alert threshold is the probability that maximises F-beta (beta 0.5: precision first) of the
alerts those blocks would have produced (one decision per example and candidate user; a "nobody" example makes every decision a
negative). The final weights are then fitted on every example.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from offline.evaluation.interest import candidates_mask, rank_answers
from offline.evaluation.metrics import pr_curve, ranking
from offline.training.examples import Example
from scorer.interest.features import Featurizer, Vocabulary
from scorer.interest.model import NOBODY, InterestModel
from scorer.interest.substance import MIN_CONTENT_WORDS

if TYPE_CHECKING:
    import pandas as pd

Floats = npt.NDArray[np.float32]

ABSENT_CLASS_BIAS = -30.0
"""Bias of a class with no training example (a user who never wrote after someone else): it
keeps a row in the label map but is never predicted."""


@dataclass(frozen=True)
class InterestSettings:
    c_grid: tuple[float, ...] = (0.03, 0.1, 0.3, 1.0)
    validation_fraction: float = 0.5
    folds: int = 3
    min_substance: int = MIN_CONTENT_WORDS
    max_iter: int = 3000
    alert_beta: float = 0.5
    """The alert threshold maximises F-beta of the validation alerts. 0.5 weighs precision twice
    as much as recall: an alert interrupts someone's focus, a missed one costs a late read. With
    F1 the example workspace (six people who all talk in every channel) got a threshold of 11 %:
    precision 0.38 at recall 0.98, a DM to nearly everyone about nearly everything."""

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["c_grid"] = list(self.c_grid)
        return out


def rolling_blocks(count: int, fraction: float, folds: int) -> list[tuple[int, int]]:
    """[start, stop) of each validation block: the latest `fraction` of `count` ordered
    examples in `folds` consecutive blocks (each fitted on everything before its start)."""
    first = max(1, int(count * (1 - fraction)))
    edges = np.linspace(first, count, folds + 1).astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges) if b > a]


def vocabulary_of(table: pd.DataFrame, names: Mapping[str, str] | None = None) -> Vocabulary:
    """Every author of the table (sorted ids) and every channel: the model's label map."""
    users = tuple(sorted({str(u) for u in table["user"] if u is not None and str(u)}))
    channels = tuple(sorted({str(c) for c in table["channel"]}))
    known = dict(names or {})
    return Vocabulary(users=users, channels=channels, names={u: known.get(u, u) for u in users})


def class_index(examples: Sequence[Example], vocab: Vocabulary) -> npt.NDArray[np.int64]:
    index = {u: i for i, u in enumerate((*vocab.users, NOBODY))}
    return np.array([index.get(e.label, index[NOBODY]) for e in examples], dtype=np.int64)


def fit_weights(
    features: Floats, classes: npt.NDArray[np.int64], n_classes: int, c: float, max_iter: int
) -> tuple[Floats, Floats]:
    """Weights (classes × features) and biases of a multinomial logistic regression."""
    from sklearn.linear_model import LogisticRegression

    present = np.unique(classes)
    weights = np.zeros((n_classes, features.shape[1]), dtype=np.float32)
    bias = np.full(n_classes, ABSENT_CLASS_BIAS, dtype=np.float32)
    if len(present) == 1:  # one class only: it always wins
        bias[present[0]] = 0.0
        return weights, bias
    model = LogisticRegression(C=c, max_iter=max_iter)
    model.fit(features, classes)
    coef, intercept = model.coef_, model.intercept_
    if len(present) == 2:  # scikit-learn's binary case: one row for the second class
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    for row, cls in enumerate(model.classes_):
        weights[int(cls)] = coef[row]
        bias[int(cls)] = intercept[row]
    return weights, bias


def alert_threshold(
    probs: npt.NDArray[np.float64], examples: Sequence[Example], vocab: Vocabulary, beta: float = 1.0
) -> tuple[float, dict[str, float]]:
    """The probability above which alerting maximises F-beta over (example, candidate user)
    decisions; the figures returned are precision, recall and F1 there."""
    mask = candidates_mask(examples, vocab)
    index = {u: i for i, u in enumerate(vocab.users)}
    truth = np.zeros_like(mask)
    for row, example in enumerate(examples):
        if example.label in index:
            truth[row, index[example.label]] = True
    scores = probs[:, : len(vocab.users)][mask]
    curve = pr_curve(truth[mask], scores)
    threshold, best = curve.best(beta)
    return threshold, {"precision": best.precision, "recall": best.recall, "f1": best.f1}


def train_interest(
    examples: Sequence[Example],
    vectors_of: Callable[[Example], Floats],
    vocab: Vocabulary,
    dimension: int,
    settings: InterestSettings = InterestSettings(),
    *,
    progress: Callable[[str], None] | None = None,
) -> tuple[InterestModel, dict[str, Any]]:
    """The fitted model and its training metrics."""
    started = time.perf_counter()
    ordered = sorted(examples, key=lambda e: (e.ts, e.row))
    if len(ordered) < 10:
        raise ValueError(f"only {len(ordered)} examples; the interest model needs at least 10")
    featurizer = Featurizer(vocab, dimension)
    features = featurizer.rows([e.prompt for e in ordered], [vectors_of(e) for e in ordered])
    classes = class_index(ordered, vocab)
    n_classes = len(vocab.users) + 1
    blocks = rolling_blocks(len(ordered), settings.validation_fraction, settings.folds)
    validation: dict[str, dict[str, float]] = {}
    best_c, best_key = settings.c_grid[0], (-1.0, 0.0)
    best_probs: dict[int, npt.NDArray[np.float64]] = {}
    for c in settings.c_grid:
        if progress:
            progress(f"C={c}")
        out_of_fold: dict[int, npt.NDArray[np.float64]] = {}
        mrrs, losses, tops = [], [], []
        for start, stop in blocks:
            weights, bias = fit_weights(features[:start], classes[:start], n_classes, c, settings.max_iter)
            probe = InterestModel(vocab, dimension, weights, bias, threshold=1.0)
            probs = probe.predict(features[start:stop]).astype(np.float64)
            figures = ranking(rank_answers(probs[:, : len(vocab.users)], ordered[start:stop], vocab))
            chosen = classes[start:stop]
            losses.append(float(-np.mean(np.log(np.clip(probs[np.arange(len(chosen)), chosen], 1e-9, 1.0)))))
            mrrs.append(figures.mrr)
            tops.append((figures.top1, figures.top3))
            out_of_fold.update({start + i: row for i, row in enumerate(probs)})
        mrr, log_loss = float(np.mean(mrrs)), float(np.mean(losses))
        validation[str(c)] = {
            "mrr": mrr,
            "top1": float(np.mean([t[0] for t in tops])),
            "top3": float(np.mean([t[1] for t in tops])),
            "log_loss": log_loss,
        }
        if (mrr, -log_loss) > best_key:
            best_c, best_key, best_probs = c, (mrr, -log_loss), out_of_fold
    held = sorted(best_probs)
    threshold, at_threshold = alert_threshold(
        np.stack([best_probs[i] for i in held]), [ordered[i] for i in held], vocab, settings.alert_beta
    )
    if progress:
        progress("final fit")
    weights, bias = fit_weights(features, classes, n_classes, best_c, settings.max_iter)
    model = InterestModel(vocab, dimension, weights, bias, threshold=threshold)
    nobody = int(np.sum(classes == n_classes - 1))
    metrics = {
        "examples": len(ordered),
        "nobody_examples": nobody,
        "joining_examples": sum(1 for e in ordered if e.joining),
        "users": len(vocab.users),
        "validation_examples": sum(stop - start for start, stop in blocks),
        "validation_folds": len(blocks),
        "validation": validation,
        "chosen_c": best_c,
        "threshold": threshold,
        "validation_alerts_at_threshold": at_threshold,
        "fit_seconds": round(time.perf_counter() - started, 3),
        "settings": settings.to_json(),
    }
    return model, metrics
