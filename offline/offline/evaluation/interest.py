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

from offline.evaluation.metrics import Calibration, Ranking, calibration, ranking, ranks
from offline.training.examples import Example
from offline.training.replay import Stream, replay
from scorer.interest.features import Vocabulary
from scorer.interest.model import NOBODY, InterestModel
from scorer.interest.pairs import Moment, PairModel, candidates, features
from scorer.interest.prompt import PROMPT_MESSAGES

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
    calibrated: str = "nobody"
    """what `nobody` measures the calibration of: the seed model's P(nobody), or the pair
    model's join probability"""

    def to_json(self) -> dict[str, Any]:
        def fig(r: Ranking) -> dict[str, float]:
            return {"examples": r.examples, "top1": r.top1, "top3": r.top3, "mrr": r.mrr}

        return {
            "split_at": self.split_at,
            "train_examples": self.train_examples,
            "test_examples": self.test_examples,
            "users": self.users,
            "rankers": {r.name: {"all": fig(r.all), "joining": fig(r.joining)} for r in self.rankers},
            "calibration": {
                "of": self.calibrated,
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


# --- the pair model ---------------------------------------------------------------------------


def evaluate_pairs(
    stream: Stream,
    vectors: npt.NDArray[np.float32],
    model: PairModel,
    split: float,
    users: Sequence[str],
    *,
    train_seconds: float = 0.0,
    settings: dict[str, Any] | None = None,
) -> InterestReport:
    """Who writes next, ranked by the pair model on the replay after `split`.

    An example is a test message by U in a conversation with an earlier message by someone
    else; the ranking is made just before U's message, over every user but the prompt's
    authors (the latest five earlier messages by others). The model ranks the people it finds
    plausible by their probability and everyone else after them by their activity in the
    channel; the baselines are the two activity counts of the messages before the split. The
    calibration reported is that of the join probability (alerted pairs: did they join?)."""
    index = {u: i for i, u in enumerate(users)}
    overall: Counter[str] = Counter()
    per_channel: dict[str, Counter[str]] = {}
    for row in stream.order:
        if stream.times[row] >= split:
            break
        overall[stream.users[row]] += 1
        per_channel.setdefault(stream.channels[row], Counter())[stream.users[row]] += 1
    following: dict[int, int] = {}
    for conversation in stream.conversations:
        for earlier, later in zip(conversation.rows, conversation.rows[1:], strict=False):
            following[earlier] = later
    total = max(1, sum(overall.values()))
    base_overall = np.array([overall[u] for u in users], dtype=np.float64)
    so_far: dict[int, list[int]] = {}
    rows: dict[str, list[npt.NDArray[np.float64]]] = {name: [] for name in RANKERS}
    answers: list[int] = []
    allowed: list[npt.NDArray[np.bool_]] = []
    joining: list[bool] = []
    predicted: list[float] = []
    joined: list[bool] = []
    for step in replay(stream, vectors, model.activity, start=split, counted=True):
        history = so_far.setdefault(step.conversation, [])
        history.append(step.row)
        people, probs, _ = model.score_moment(step.moment)
        for user, p in zip(people, probs, strict=True):
            predicted.append(float(p))
            joined.append(stream.joined_after(step.conversation, user, step.moment.now))
        after = following.get(step.row)
        if after is None or stream.users[after] not in index:
            continue
        author = stream.users[after]
        prompt = [r for r in history if stream.users[r] != author][-PROMPT_MESSAGES:]
        if not prompt:
            continue
        excluded = {stream.users[r] for r in prompt}
        channel = per_channel.get(step.moment.channel, Counter())
        by_channel = np.array([channel[u] + overall[u] / (total + 1) for u in users], dtype=np.float64)
        scored = dict(
            zip(
                *model_ranking(model, step.moment, excluded),
                strict=True,
            )
        )
        fallback = by_channel / (by_channel.max() + 1)
        mine = np.array([1 + scored[u] if u in scored else fallback[i] for i, u in enumerate(users)])
        rows["model"].append(mine)
        rows["most active overall"].append(base_overall + 0.0)
        rows["most active in channel"].append(by_channel)
        answers.append(index[author])
        allowed.append(np.array([u not in excluded for u in users]))
        joining.append(author not in step.moment.authors)
    if not answers:
        raise ValueError("the split leaves no test messages to rank")
    joins = [i for i, j in enumerate(joining) if j]
    rankers = []
    for name in RANKERS:
        every = ranks(rows[name], answers, allowed)
        rankers.append(RankerFigures(name, ranking(every), ranking(every[joins])))
    truth = np.array(joined, dtype=bool)
    return InterestReport(
        split_at=split,
        train_examples=sum(1 for r in stream.order if stream.times[r] < split),
        test_examples=len(answers),
        users=len(users),
        rankers=rankers,
        nobody_rate=float(truth.mean()) if len(truth) else 0.0,
        nobody=calibration(np.array(predicted, dtype=np.float64), truth),
        train_seconds=train_seconds,
        settings=dict(settings or {}),
        calibrated="join",
    )


RANKERS = ("model", "most active overall", "most active in channel")


def model_ranking(model: PairModel, moment: Moment, excluded: set[str]) -> tuple[list[str], list[float]]:
    """The model's plausible people (participants other than `excluded` included) and their
    probabilities."""
    people = candidates(model.activity, moment, limit=model.limit, exclude=excluded)
    return people, [float(p) for p in model.predict(features(model.activity, moment, people))]
