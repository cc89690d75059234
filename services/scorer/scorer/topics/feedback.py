"""Learning a topic's line from "useful / not useful" feedback (docs/notifications.md), a few clicks at a time.

What a handful of clicks can teach, measured on the calibration topics of the development set
(`offline/devset/README.md`, never on the topics `beepgpt eval topics` reports):

- **Not where the topic points.** Moving the topic vector towards the useful conversations and
  away from the others (Rocchio, ¼ to 1×), adding a similarity-to-the-clicked-conversations term
  (a prototype classifier, with or without leave-one-out), or expanding the topic with the
  nearest workspace conversations all ranked the unclicked conversations *worse* on the
  calibration topics: one or two useful conversations are a noisier description of a topic
  than the sentence its follower wrote. Nor did spreading the clicks to their neighbours
  (label propagation over a nearest-neighbour graph of the workspace's conversations) or a
  per-topic logistic model on the clicks with a prior centred on the no-feedback scoring: on
  the calibration topics, the more the clicks may move the ranking, the worse it gets.
- **Where the line is**, a little. Topics differ mostly in where their line should be (the
  best threshold per topic is worth +0.1 macro-F1 over one global line), and each click says
  on which side of the line a conversation belongs. The new line is the most probable one given
  the clicks and what lines look like in general (maximum a posteriori): the clicked
  conversations' scores under a logistic link of slope `SLOPE`, and a normal prior centred on
  the topic's own label-free line (`lines.py`) with spread `PRIOR_SD`. Both are measured on the calibration topics —
  the slope fitted by maximum likelihood to their scores, the spread the standard deviation of
  their best per-topic thresholds — not chosen by the evaluation's answer. With few clicks the
  prior keeps the line near the default; as clicks accumulate they take over. The earlier
  "fewest errors on the clicks" line had no prior and chased noise with five clicks.

The same code serves `beepgpt eval topics --feedback-shots` (`learn`) and the scorer service
(`FeedbackMemory`, fed by `scorer.feedback.FeedbackReader` from the `feedback` topic).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from cachetools import LRUCache

from beepgpt.contracts import FollowedTopic
from scorer.embeddings import Matrix
from scorer.topics.matcher import TopicAdaptation, TopicMatcher

SLOPE = 12.7
"""Logistic slope of P(useful | score): fitted on the calibration topics' scores (common slope,
one offset per topic, maximum likelihood), embedding and lexical score together (12.1 for the
embedding score alone, where 10.0 was used before; format-1 model directories, scored by
embeddings alone, now share these constants)."""

PRIOR_SD = 0.05
"""Spread of a topic's line around the default: the standard deviation of the calibration
topics' best per-topic thresholds (embedding and lexical score; 0.03 for embeddings alone)."""

SEARCH = 0.3
"""How far from the default a line is looked for (the logistic term makes farther lines useless)."""


@dataclass(frozen=True)
class FeedbackExample:
    """One labelled conversation: its message vectors (and texts, which a matcher with a
    `Lexicon` needs) and whether it was useful."""

    vectors: Matrix
    useful: bool
    texts: Sequence[str] | None = None


def learn_threshold(
    scores: Sequence[float],
    useful: Sequence[bool],
    prior: float,
    *,
    slope: float = SLOPE,
    prior_sd: float = PRIOR_SD,
) -> float:
    """The maximum a posteriori line for clicked conversations with these topic `scores`.

    Minimises Σ logloss(useful_i, σ(slope · (score_i − t))) + (t − prior)² / (2 · prior_sd²) over
    a fine grid around `prior`: one dimension, so a grid is exact enough and cannot diverge."""
    if len(scores) != len(useful):
        raise ValueError(f"{len(scores)} scores for {len(useful)} labels")
    if not scores:
        return prior
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(useful, dtype=bool)
    grid = np.linspace(prior - SEARCH, prior + SEARCH, 1201)
    z = slope * (s[None, :] - grid[:, None])  # grid × examples
    loss = np.where(y[None, :], np.logaddexp(0.0, -z), np.logaddexp(0.0, z)).sum(axis=1)
    loss += (grid - prior) ** 2 / (2 * prior_sd**2)
    return float(grid[int(np.argmin(loss))])


def learn(
    matcher: TopicMatcher, topic: FollowedTopic, examples: Sequence[FeedbackExample]
) -> TopicAdaptation:
    """The adaptation that feedback `examples` teach about `topic` (apply with `matcher.adapt`):
    the topic keeps its vector, its threshold becomes `learn_threshold` of the examples' scores,
    with the topic's own label-free line (`TopicMatcher.lines`) as the prior."""
    if not examples:
        return TopicAdaptation()
    followed = [FollowedTopic(id=topic.id, text=topic.text)]
    target = matcher.topic_vectors(followed)[0]
    query = matcher.topic_queries(followed)[0]
    scores = [matcher.score(matcher.view(e.vectors, e.texts), target, query)[0] for e in examples]
    useful = [e.useful for e in examples]
    return TopicAdaptation(
        threshold=learn_threshold(scores, useful, matcher.lines(followed)[0]),
        useful=sum(useful),
        not_useful=len(useful) - sum(useful),
    )


TopicKey = tuple[str, str]
"""(user, topic id): topic ids are a person's own, so feedback is kept per person."""


class FeedbackMemory:
    """Clicks and scores per (user, topic), and the line they teach.

    A click's score is the one its `Feedback` event carries (the alerted candidate's topic score,
    which the DM's button brought back): that is what the person judged, and it lets a click
    teach wherever and whenever the conversation was scored — before a restart, or by another
    scorer instance. Clicks from DMs sent before scores travelled carry none; for those the
    score is the one the matcher gave that conversation for that person's topic here
    (`scored`), remembered for the most recent `max_scores` (user, topic, conversation)
    triples, and such a click waits, kept, until the conversation is scored again. The latest
    click per conversation wins (keeping an earlier click's carried score if it brings none),
    and at most `max_clicks` per (user, topic) are kept, the newest.

    Thread-safe: scores are recorded from the scoring thread, clicks from the event loop.
    """

    def __init__(self, *, max_scores: int = 200_000, max_clicks: int = 200) -> None:
        self.max_scores = max_scores
        self.max_clicks = max_clicks
        self.space: str | None = None
        """The embedding model scores are measured in now (`use_space`); None until known."""
        self._scores: LRUCache[tuple[str, str, str], float] = LRUCache(max_scores)
        self._clicks: dict[TopicKey, OrderedDict[str, tuple[bool, float | None, str | None]]] = {}
        """(useful, carried score, the space it was measured in) per clicked conversation"""
        self._lines: dict[TopicKey, tuple[float, float]] = {}
        """(prior, learnt line) per topic, dropped whenever its evidence changes"""
        self._lock = threading.Lock()

    def scored(self, user: str, topic_id: str, conversation_id: str, score: float) -> None:
        """Remember the score a conversation got for a person's topic."""
        with self._lock:
            key = (user, topic_id, conversation_id)
            self._scores[key] = score  # full: the least recently used goes
            if conversation_id in self._clicks.get((user, topic_id), {}):
                self._lines.pop((user, topic_id), None)

    def clicked(
        self,
        user: str,
        topic_id: str,
        conversation_id: str,
        useful: bool,
        score: float | None = None,
        space: str | None = None,
    ) -> None:
        """Record a "useful" / "not useful" click (the latest for a conversation wins), with the
        score its event carried, if any, and the embedding model that score was measured in (a
        click on a DM sent before a model swap, or read back after a restart with another model,
        carries a score of another space: it is kept, and counts only while that space is used)."""
        with self._lock:
            clicks = self._clicks.setdefault((user, topic_id), OrderedDict())
            if score is None and conversation_id in clicks:
                _, score, space = clicks[conversation_id]
            clicks[conversation_id] = (useful, score, space)
            clicks.move_to_end(conversation_id)
            while len(clicks) > self.max_clicks:
                clicks.popitem(last=False)
            self._lines.pop((user, topic_id), None)

    def forget_user(self, user: str) -> None:
        """Drop everything about a person (their feedback record was deleted)."""
        with self._lock:
            for key in [k for k in self._clicks if k[0] == user]:
                del self._clicks[key]
                self._lines.pop(key, None)
            for triple in [k for k in self._scores if k[0] == user]:
                del self._scores[triple]

    def use_space(self, space: str) -> None:
        """Scores are measured in `space` from now on. When it replaces another, every remembered
        score is dropped (scores of two models do not compare), and so are carried scores that
        do not say their space; clicks stay and count again once their conversation is scored in
        the new space, or when their carried score's space is back."""
        with self._lock:
            if space == self.space:
                return
            replaced = self.space is not None
            self.space = space
            self._lines.clear()  # which carried scores count has changed
            if not replaced:
                return
            self._scores.clear()
            for clicks in self._clicks.values():
                for conversation, (label, _, scored_in) in clicks.items():
                    if scored_in is None:
                        clicks[conversation] = (label, None, None)

    def examples(self, user: str, topic_id: str) -> tuple[list[float], list[bool]]:
        """(scores, useful) of the clicked conversations whose score is known (carried or remembered)."""
        with self._lock:
            return self._examples(user, topic_id)

    def threshold(self, user: str, topic_id: str, default: float) -> float:
        """The line for a person's topic: `default` until clicks with known scores say otherwise."""
        with self._lock:
            key = (user, topic_id)
            if key not in self._clicks:
                return default
            cached = self._lines.get(key)
            if cached is not None and cached[0] == default:
                return cached[1]
            scores, useful = self._examples(user, topic_id)
            line = learn_threshold(scores, useful, default)
            self._lines[key] = (default, line)
            return line

    def _examples(self, user: str, topic_id: str) -> tuple[list[float], list[bool]]:
        scores: list[float] = []
        useful: list[bool] = []
        for conversation, (label, carried, scored_in) in self._clicks.get((user, topic_id), {}).items():
            if scored_in is not None and scored_in != self.space:
                carried = None  # measured by another model: not comparable with today's scores
            score = carried if carried is not None else self._scores.get((user, topic_id, conversation))
            if score is not None:
                scores.append(score)
                useful.append(label)
        return scores, useful
