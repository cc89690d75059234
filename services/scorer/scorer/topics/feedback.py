"""Learning a topic from "useful / not useful" feedback (DESIGN.md §5), a few clicks at a time.

A person's clicks say which conversations were (not) what they meant by their topic. With a
handful of them, the topic can be moved without overfitting:

- **where the topic points** — Rocchio's relevance feedback: the topic vector moves towards the
  mean of the useful conversations and away from the not-useful ones, a quarter of the way
  each. The person's own words keep the largest weight: a click nudges the topic, it does not
  replace it.
- **where the line is** — a moved vector scores every conversation on a slightly different
  scale, so keeping the old threshold would silently change how often the topic fires. The new
  threshold is the one under which the workspace's background conversations (a sample stored
  with the model) are alerted on as often as before: the move changes *which* conversations
  match, not *how many*.
- optionally (`fit_threshold`), the threshold that misclassifies fewest of the labelled
  conversations, ties broken towards the rate-keeping one. Off by default: with five clicks it
  chased noise on the calibration topics.

The amounts were chosen on the calibration topics of the development set, never on the topics
`beepgpt eval topics --feedback-shots` reports (see `services/scorer/devset/README.md`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from beepgpt.contracts import FollowedTopic
from scorer.embeddings import Matrix, Vector, normalise
from scorer.topics.matcher import ConversationView, TopicAdaptation, TopicMatcher

TOWARDS_USEFUL = 0.25
AWAY_FROM_NOT_USEFUL = 0.25


@dataclass(frozen=True)
class FeedbackExample:
    """One labelled conversation: its message vectors and whether it was useful."""

    vectors: Matrix
    useful: bool


def learn(
    matcher: TopicMatcher,
    topic: FollowedTopic,
    examples: Sequence[FeedbackExample],
    *,
    towards: float = TOWARDS_USEFUL,
    away: float = AWAY_FROM_NOT_USEFUL,
    fit_threshold: bool = False,
) -> TopicAdaptation:
    """The adaptation that feedback `examples` teach about `topic` (apply with `matcher.adapt`)."""
    base = matcher.topic_vectors([FollowedTopic(id=topic.id, text=topic.text)])[0]
    if not examples:
        return TopicAdaptation()
    views = [matcher.view(e.vectors) for e in examples]
    useful = [v.whole for v, e in zip(views, examples, strict=True) if e.useful and len(v.messages)]
    useless = [v.whole for v, e in zip(views, examples, strict=True) if not e.useful and len(v.messages)]
    moved = base.astype(np.float32)
    if useful:
        moved = moved + towards * np.mean(useful, axis=0)
    if useless:
        moved = moved - away * np.mean(useless, axis=0)
    vector = normalise(moved)[0]
    threshold = same_rate_threshold(matcher, base, vector, matcher.threshold_for(topic.id))
    if fit_threshold:
        threshold = _fitted(matcher, views, [e.useful for e in examples], vector, threshold)
    return TopicAdaptation(vector=vector, threshold=threshold, useful=len(useful), not_useful=len(useless))


def same_rate_threshold(matcher: TopicMatcher, before: Vector, after: Vector, threshold: float) -> float:
    """The threshold for `after` that alerts on as many background conversations as `threshold`
    did for `before`: the threshold's rank among the background's old scores, read off at the
    same rank among the new ones (unchanged when the model has no background sample)."""
    background = [matcher.view(v) for v in matcher.space.background]
    if not background:
        return threshold
    old = np.sort([matcher.score(view, before)[0] for view in background])
    new = np.sort([matcher.score(view, after)[0] for view in background])
    if threshold >= old[-1]:
        return float(threshold + new[-1] - old[-1])
    if threshold <= old[0]:
        return float(threshold + new[0] - old[0])
    ranks = np.arange(len(old), dtype=np.float64)
    return float(np.interp(np.interp(threshold, old, ranks), ranks, new))


def _fitted(
    matcher: TopicMatcher,
    views: Sequence[ConversationView],
    labels: Sequence[bool],
    vector: Vector,
    default: float,
) -> float:
    scores = np.array([matcher.score(view, vector)[0] for view in views], dtype=np.float64)
    truth = np.array(labels, dtype=bool)
    ordered = np.unique(scores)
    # candidate lines: the default, and midway between neighbouring labelled scores (and just
    # outside the ends), so the chosen line always sits between pieces of evidence
    candidates = np.concatenate(
        [[default], (ordered[:-1] + ordered[1:]) / 2, [ordered[0] - 1e-3, ordered[-1] + 1e-3]]
    )
    errors = np.array([np.sum((scores >= c) != truth) for c in candidates])
    best = candidates[errors == errors.min()]
    return float(best[np.argmin(np.abs(best - default))])
