"""How well the topic matcher finds the conversations a topic's follower wants (`beepgpt eval topics`).

Inputs are the formats the issue fixes: `topics.json` maps topic ids to sentences; each line of
`labels.jsonl` is `{"id": {"channel": ..., "thread": <float ts of the first message>},
"result": {"ID1": true, ...}}`, keyed by the conversation ids of docs/conversations.md.

Figures:

- at the product's default lines (what users get, not tuned on these labels: each topic's
  label-free line from its scores over the workspace's conversations, `scorer.topics.lines`, or
  the one threshold given): per-topic precision, recall, F1, and their macro average;
- beside them, each topic's best threshold and its F1 ("how good could one line be") and the
  best single threshold for all topics — upper bounds, tuned on the answers;
- with `shots=K`: K labelled conversations per topic are taken as feedback (at least one
  useful and one not useful when the topic has both), the matcher learns from them, and the
  figures are computed on the remaining conversations; repeated over several random draws and
  averaged, because which five conversations a person happens to click changes the outcome.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from beepgpt.contracts import FollowedTopic
from offline.evaluation.metrics import PRF, average_precision, pr_curve, prf
from scorer.embeddings import Matrix
from scorer.topics.feedback import FeedbackExample, learn
from scorer.topics.matcher import TopicMatcher

ConversationKey = tuple[str, float]
"""(channel, float ts of the conversation's first message) — the labels' `id`."""


class LabelsError(ValueError):
    """A topics or labels file that does not follow the format."""


@dataclass(frozen=True)
class LabelledConversation:
    key: ConversationKey
    result: Mapping[str, bool]


def key_of(raw: Mapping[str, Any]) -> ConversationKey:
    return (str(raw["channel"]), round(float(raw["thread"]), 6))


def read_topics(path: Path) -> dict[str, str]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise LabelsError(f"cannot read topics from {path}: {error}") from None
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise LabelsError(f"{path} must map topic ids to sentences")
    return {str(k): v for k, v in raw.items()}


def read_labels(path: Path) -> list[LabelledConversation]:
    out = []
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise LabelsError(f"cannot read labels from {path}: {error}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            out.append(
                LabelledConversation(key_of(raw["id"]), {str(k): bool(v) for k, v in raw["result"].items()})
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise LabelsError(f"{path}:{number}: not a label line ({error!r})") from None
    return out


@dataclass
class TopicFigures:
    topic: str
    text: str
    positives: int
    conversations: int
    default: PRF
    best_threshold: float
    best: PRF
    average_precision: float
    line: float
    """the topic's line at the product's defaults (label-free per topic, `TopicMatcher.thresholds`)"""
    curve: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class FewShotFigures:
    shots: int
    draws: int
    macro_f1: float
    macro_f1_std: float
    per_topic_f1: dict[str, float]
    baseline_macro_f1: float
    """the same draws' held-out conversations scored without learning, for comparison"""


@dataclass
class TopicReport:
    threshold: float
    conversations: int
    unmatched_labels: int
    topics: list[TopicFigures]
    macro_f1_default: float
    macro_f1_best_per_topic: float
    best_global_threshold: float
    macro_f1_best_global: float
    few_shot: FewShotFigures | None = None

    def to_json(self) -> dict[str, Any]:
        def prf_json(value: PRF) -> dict[str, float]:
            return {"precision": value.precision, "recall": value.recall, "f1": value.f1}

        return {
            "default_threshold": self.threshold,
            "conversations": self.conversations,
            "labelled_conversations_not_found": self.unmatched_labels,
            "macro_f1": {
                "default_threshold": self.macro_f1_default,
                "best_threshold_per_topic": self.macro_f1_best_per_topic,
                "best_single_threshold": self.macro_f1_best_global,
            },
            "best_single_threshold": self.best_global_threshold,
            "topics": {
                t.topic: {
                    "text": t.text,
                    "positives": t.positives,
                    "conversations": t.conversations,
                    "line": t.line,
                    "default": prf_json(t.default),
                    "best_threshold": t.best_threshold,
                    "best": prf_json(t.best),
                    "average_precision": t.average_precision,
                    "curve": t.curve,
                }
                for t in self.topics
            },
            "feedback": None
            if self.few_shot is None
            else {
                "shots_per_topic": self.few_shot.shots,
                "draws": self.few_shot.draws,
                "macro_f1": self.few_shot.macro_f1,
                "macro_f1_std": self.few_shot.macro_f1_std,
                "macro_f1_same_draws_without_feedback": self.few_shot.baseline_macro_f1,
                "per_topic_f1": self.few_shot.per_topic_f1,
            },
        }


Texts = Sequence[str]
"""A conversation's message texts, in the order of its vectors."""


def score_matrix(
    matcher: TopicMatcher,
    conversations: Sequence[Matrix],
    topics: Mapping[str, str],
    texts: Sequence[Texts] | None = None,
) -> np.ndarray:
    """Scores (conversations × topics), each conversation's vectors centred once."""
    followed = [FollowedTopic(id=tid, text=text) for tid, text in topics.items()]
    targets = matcher.topic_vectors(followed)
    queries = matcher.topic_queries(followed)
    views = [matcher.view(v, None if texts is None else texts[i]) for i, v in enumerate(conversations)]
    return np.array(
        [[score for score, _ in matcher.scores(view, targets, queries)] for view in views], dtype=np.float64
    )


def evaluate(
    matcher: TopicMatcher,
    conversations: Mapping[ConversationKey, Matrix],
    topics: Mapping[str, str],
    labels: Sequence[LabelledConversation],
    *,
    shots: int = 0,
    draws: int = 10,
    seed: int = 0,
    texts: Mapping[ConversationKey, Texts] | None = None,
) -> TopicReport:
    """The report; `texts` (message texts per conversation) is required when the matcher has a
    `Lexicon`."""
    found = [label for label in labels if label.key in conversations]
    if not found:
        raise LabelsError(
            "none of the labelled conversations is in the data (check the ids and the data file)"
        )
    missing = [t for t in topics if not any(t in label.result for label in found)]
    if missing:
        raise LabelsError(f"topics {missing} have no labels")
    vectors = [conversations[label.key] for label in found]
    found_texts = None if texts is None else [texts[label.key] for label in found]
    scores = score_matrix(matcher, vectors, topics, found_texts)
    figures = []
    lines = matcher.thresholds([FollowedTopic(id=tid, text=text) for tid, text in topics.items()])
    for j, ((tid, text), line) in enumerate(zip(topics.items(), lines, strict=True)):
        known = np.array([tid in label.result for label in found])
        truth = np.array([bool(label.result.get(tid, False)) for label in found])[known]
        column = scores[known, j]
        curve = pr_curve(truth, column)
        best_t, best = curve.best()
        figures.append(
            TopicFigures(
                topic=tid,
                text=text,
                positives=int(truth.sum()),
                conversations=int(known.sum()),
                default=prf(truth, column >= line),
                line=line,
                best_threshold=best_t,
                best=best,
                average_precision=average_precision(truth, column),
                curve={
                    "threshold": curve.thresholds.tolist(),
                    "precision": curve.precision.tolist(),
                    "recall": curve.recall.tolist(),
                },
            )
        )
    global_t, global_f1 = _best_global(scores, found, list(topics))
    report = TopicReport(
        threshold=matcher.threshold,
        conversations=len(found),
        unmatched_labels=len(labels) - len(found),
        topics=figures,
        macro_f1_default=float(np.mean([f.default.f1 for f in figures])),
        macro_f1_best_per_topic=float(np.mean([f.best.f1 for f in figures])),
        best_global_threshold=global_t,
        macro_f1_best_global=global_f1,
    )
    if shots > 0:
        report.few_shot = few_shot(
            matcher, vectors, found, topics, shots=shots, draws=draws, seed=seed, texts=found_texts
        )
    return report


def _best_global(
    scores: np.ndarray, found: Sequence[LabelledConversation], topic_ids: list[str]
) -> tuple[float, float]:
    best = (0.0, -1.0)
    for threshold in np.unique(scores):
        f1s = []
        for j, tid in enumerate(topic_ids):
            known = np.array([tid in label.result for label in found])
            truth = np.array([bool(label.result.get(tid, False)) for label in found])[known]
            f1s.append(prf(truth, scores[known, j] >= threshold).f1)
        macro = float(np.mean(f1s))
        if macro > best[1]:
            best = (float(threshold), macro)
    return best


def few_shot(
    matcher: TopicMatcher,
    vectors: Sequence[Matrix],
    found: Sequence[LabelledConversation],
    topics: Mapping[str, str],
    *,
    shots: int,
    draws: int,
    seed: int,
    texts: Sequence[Texts] | None = None,
) -> FewShotFigures:
    rng = np.random.default_rng(seed)
    views = [matcher.view(v, None if texts is None else texts[i]) for i, v in enumerate(vectors)]
    learnt: list[list[float]] = []
    plain: list[list[float]] = []
    for _ in range(draws):
        learnt_f1, plain_f1 = [], []
        for tid, text in topics.items():
            topic = FollowedTopic(id=tid, text=text)
            rows = np.array([i for i, label in enumerate(found) if tid in label.result])
            truth = np.array([bool(found[i].result[tid]) for i in rows])
            picked = _draw(truth, shots, rng)
            rest = np.setdiff1d(np.arange(len(rows)), picked)
            examples = [
                FeedbackExample(vectors[rows[i]], bool(truth[i]), None if texts is None else texts[rows[i]])
                for i in picked
            ]
            adaptation = learn(matcher, topic, examples)
            base = matcher.topic_vectors([topic])[0]
            query = matcher.topic_queries([topic])[0]
            target = adaptation.vector if adaptation.vector is not None else base
            own = matcher.lines([topic])[0]
            threshold = adaptation.threshold if adaptation.threshold is not None else own
            adapted_scores = np.array([matcher.score(views[rows[i]], target, query)[0] for i in rest])
            base_scores = np.array([matcher.score(views[rows[i]], base, query)[0] for i in rest])
            learnt_f1.append(prf(truth[rest], adapted_scores >= threshold).f1)
            plain_f1.append(prf(truth[rest], base_scores >= own).f1)
        learnt.append(learnt_f1)
        plain.append(plain_f1)
    table = np.array(learnt)
    macro_per_draw = table.mean(axis=1)
    return FewShotFigures(
        shots=shots,
        draws=draws,
        macro_f1=float(macro_per_draw.mean()),
        macro_f1_std=float(macro_per_draw.std()),
        per_topic_f1={tid: float(v) for tid, v in zip(topics, table.mean(axis=0), strict=True)},
        baseline_macro_f1=float(np.array(plain).mean()),
    )


def _draw(truth: np.ndarray, shots: int, rng: np.random.Generator) -> np.ndarray:
    """`shots` indexes, with one useful and one not-useful conversation first when both exist."""
    shots = min(shots, len(truth) - 1)
    picked: list[int] = []
    for wanted in (True, False):
        pool = np.flatnonzero(truth == wanted)
        if len(pool) and len(picked) < shots:
            picked.append(int(rng.choice(pool)))
    rest = np.setdiff1d(np.arange(len(truth)), picked)
    extra = shots - len(picked)
    if extra > 0:
        picked.extend(int(i) for i in rng.choice(rest, size=extra, replace=False))
    return np.array(picked, dtype=np.int64)
