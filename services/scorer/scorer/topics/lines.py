"""Where a topic's line belongs, from the workspace's recent conversations, without labels.

Why: one threshold for every topic does not transfer between topics. With the hybrid score, the
best line per topic ranges from 0.07 to 0.31 on the development set's evaluation topics
(`offline/devset/README.md`), so a single default gave macro-F1 0.603 there while the best
per-topic lines would give 0.767. What tells the topics apart without labels is how widely
their scores spread over the workspace's conversations: a topic its workspace talks about in
clearly separate conversations ("the Fraud Detection project") spreads widely and needs a high
line to keep out the near misses; a narrow or vaguely worded topic ("their weekends", "the
Supply Chain Management project") has compressed scores, and a fixed line misses its matches.

So a topic's line is `LINE_BASE + LINE_SPREAD · σ`, σ the standard deviation of the topic's
scores over the recent conversations (`RecentConversations`). The two constants are the best
pair on the calibration topics (never on the topics `beepgpt eval topics` reports): macro-F1
0.742 there against 0.734 for the single default; 0.703 against 0.603 on the evaluation topics.

What did worse and why (all measured, `offline/devset/README.md`): z-score cuts (mean + k·σ)
and robust ones (median + k·MAD), and two-component mixture or Otsu splits, all *centre* the
line on the topic's bulk of scores. That bulk moves up with the topic's prevalence, so those
rules raise the line exactly for the broad topics that need it lower (supply chain: 71 of 187
conversations). A cut at an expected share of conversations fails for the same reason: shares
range from 1 % to 38 %. The spread alone keeps the absolute anchor and rescales it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence

import numpy as np

from scorer.embeddings import Matrix

LINE_BASE = 0.09
"""The line of a topic whose scores do not spread at all."""

LINE_SPREAD = 1.0
"""How much the line rises per unit of the spread of the topic's scores."""

MIN_CONVERSATIONS = 50
"""Below this many recent conversations the spread is too noisy: the matcher's single default
threshold is used instead (a fresh workspace, or a model directory without a background)."""

REFRESH_EVERY = 20
"""A topic's line is recomputed after this many conversations were seen (new or updated) since
it was last computed: the spread over a few hundred conversations changes slowly, and scoring
the whole background for every conversation would cost more than scoring the conversation."""

RECENT_CONVERSATIONS = 400
"""Conversations kept as the recent background (the same bound as the model directory's sample)."""

RECENT_MESSAGES = 20
"""Messages kept per recent conversation, its latest: bounds memory (400 × 20 message vectors)."""


def line(scores: Sequence[float] | np.ndarray) -> float:
    """A topic's line from its scores over the recent conversations (no labels)."""
    values = np.asarray(scores, dtype=np.float64)
    return float(LINE_BASE + LINE_SPREAD * values.std())


class RecentConversations:
    """The workspace's most recent conversations as the matcher compares them, bounded.

    Keyed by conversation id, so a conversation scored again after a new message replaces its
    earlier version instead of counting twice; the least recently seen goes first when full.
    `seen` counts every observation, which tells a topic's cached line when to refresh. Seeded
    from the model directory's background sample (`EmbeddingSpace.background`), so a restarted
    scorer has its lines at once and refreshes them as conversations arrive."""

    def __init__(self, capacity: int = RECENT_CONVERSATIONS) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, tuple[Matrix, tuple[frozenset[str], ...] | None]] = OrderedDict()
        self.seen = 0

    def observe(
        self, conversation_id: str, messages: Matrix, stems: tuple[frozenset[str], ...] | None
    ) -> None:
        """Remember a conversation's latest `RECENT_MESSAGES` (centred) message vectors and stems."""
        if len(messages) == 0:
            return
        self._items[conversation_id] = (
            np.asarray(messages[-RECENT_MESSAGES:], dtype=np.float32),
            None if stems is None else tuple(stems[-RECENT_MESSAGES:]),
        )
        self._items.move_to_end(conversation_id)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
        self.seen += 1

    def __len__(self) -> int:
        return len(self._items)

    def conversations(self) -> Iterable[tuple[Matrix, tuple[frozenset[str], ...] | None]]:
        """(centred message vectors, stems or None) of each conversation, oldest first."""
        return list(self._items.values())
