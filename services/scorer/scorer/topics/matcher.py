"""Does a conversation match a topic someone follows? Scores from message vectors, not texts.

How a conversation is scored against a topic (each choice measured on the development set, see
`offline/devset/README.md`):

- The topic's request wording is stripped (`phrasing.topic_subject`) and the rest embedded once.
- Message vectors are centred on the workspace's mean message vector (`EmbeddingSpace`) and
  re-normalised. Every message of a workspace shares a common direction (its jargon, its
  projects, the embedding model's own bias); removing it leaves what makes a message *different*
  from the workspace's usual talk, which is what a topic picks out. The topic vector is left as
  it is: it does not come from the workspace.
- The embedding score is ¾ the similarity of the whole conversation (its centred mean vector)
  and ¼ that of its best message: a whole-conversation score misses a short on-topic exchange
  inside a long chat, a best-message score fires on one stray remark. The best message is
  reported so an explanation can quote it.
- With the workspace's word statistics (a `Lexicon`, in model directories of format 2), the
  score is `LEXICAL_WEIGHT` of the lexical score (`lexical.py`: the topic's words, the share of
  messages using them) and the rest of the embedding score: topics name things, and the words
  tell apart what a small embedding model blurs (calibration best single threshold 0.699 →
  0.734). Without one (a model directory of format 1, `bench`), the embedding score alone, with
  its own measured threshold.
- Each topic gets its own line, set without labels from the spread of its scores over the
  workspace's recent conversations (`lines.py`: one line did not transfer between topics,
  evaluation macro-F1 0.603 → 0.703). The matcher keeps those conversations
  (`RecentConversations`, seeded from the model directory's background sample, refreshed by
  `observe` as the service scores conversations), and recomputes a topic's line every
  `lines.REFRESH_EVERY` conversations. Its constants, and the single default threshold used
  below `lines.MIN_CONVERSATIONS` conversations, without word statistics, or when an operator
  fixes one, were chosen on calibration topics that are *not* the ones `beepgpt eval topics`
  reports on (so the evaluation's "default threshold" figure is not tuned on its own answers).
  Clicks move a topic's line further (`feedback.py`, the per-topic line as their prior).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from beepgpt.contracts import FollowedTopic
from scorer.artifact import ModelFormatError
from scorer.embeddings import Embedder, Matrix, Vector, normalise
from scorer.topics import lexical
from scorer.topics.lexical import Lexicon, Query
from scorer.topics.lines import MIN_CONVERSATIONS, RECENT_MESSAGES, REFRESH_EVERY, RecentConversations, line
from scorer.topics.phrasing import topic_subject

SPACE_FILE = "space.npz"

DEFAULT_THRESHOLDS: Mapping[str, float] = {"local:all-MiniLM-L6-v2": 0.178}
"""Measured default thresholds per embedding space for the embedding score alone (no
`Lexicon`): the best single threshold of `beepgpt eval topics` on the calibration topics
(`offline/devset/calibration/`), never on the topics the evaluation reports. Another
space (OpenAI embeddings) has no measured default yet: measure one the same way and pass it as
the threshold."""

HYBRID_THRESHOLDS: Mapping[str, float] = {"local:all-MiniLM-L6-v2": 0.202}
"""The same, for the embedding and lexical score together (a matcher with a `Lexicon`)."""

CONVERSATION_WEIGHT = 0.75
"""Share of the whole-conversation similarity in the embedding score; the rest is the best message's."""

LEXICAL_WEIGHT = 0.6
"""Share of the lexical score in a topic score when the matcher has a `Lexicon`; the rest is the
embedding score's. Chosen on the calibration topics (0.33/0.43/0.5/0.6/0.67 measured). A convex
mix keeps scores within [-1, 1], which is what a `Feedback` event may carry."""

_TOPIC_CACHE = 4096


@dataclass(frozen=True)
class TopicScore:
    """How close a conversation is to one topic, and which of its messages came closest."""

    topic: FollowedTopic
    score: float
    threshold: float
    best_message: int | None = None

    @property
    def matched(self) -> bool:
        return self.score >= self.threshold


@dataclass(frozen=True)
class TopicAdaptation:
    """What feedback changed for one topic: its vector and/or its threshold."""

    vector: Vector | None = None
    threshold: float | None = None
    useful: int = 0
    not_useful: int = 0


BACKGROUND_CONVERSATIONS = 400
"""Recent conversations kept (at most 20 messages each) as the workspace's background sample."""

Stems = tuple[frozenset[str], ...]
"""Each message's stems (`lexical.message_stems`), in message order."""


@dataclass(frozen=True)
class EmbeddingSpace:
    """The workspace's messages in one embedding space, summarised: their mean vector, and a
    sample of recent conversations (message vectors, and their messages' stems in model
    directories that have them) from which a topic's line is set (`lines.py`) until the
    service has seen conversations of its own."""

    embedder: str
    mean: Vector
    messages: int
    background: tuple[Matrix, ...] = ()
    background_stems: tuple[Stems, ...] | None = None
    """One entry per `background` conversation, or None (a directory saved without them)."""

    def centre(self, vectors: Matrix) -> Matrix:
        """Vectors minus the workspace mean, re-normalised."""
        if len(vectors) == 0:
            return vectors.astype(np.float32)
        return normalise(vectors - self.mean)

    @classmethod
    def of(
        cls,
        embedder: str,
        vectors: Matrix,
        conversations: Sequence[Matrix] = (),
        texts: Sequence[Sequence[str]] | None = None,
    ) -> EmbeddingSpace:
        """The statistics of a history: all its message `vectors`, and its `conversations`
        (message vectors, oldest first; with their message `texts` when given)."""
        if texts is not None and len(texts) != len(conversations):
            raise ValueError(f"{len(texts)} conversations of texts for {len(conversations)} of vectors")
        mean = vectors.mean(axis=0) if len(vectors) else np.zeros(0, dtype=np.float32)
        kept = [i for i in range(len(conversations)) if len(conversations[i])][-BACKGROUND_CONVERSATIONS:]
        sample = tuple(np.asarray(conversations[i][-RECENT_MESSAGES:], dtype=np.float32) for i in kept)
        stems = (
            None
            if texts is None
            else tuple(tuple(lexical.message_stems(t) for t in texts[i][-RECENT_MESSAGES:]) for i in kept)
        )
        return cls(
            embedder=embedder,
            mean=mean.astype(np.float32),
            messages=len(vectors),
            background=sample,
            background_stems=stems,
        )

    def save(self, directory: Path) -> None:
        sizes = np.array([len(c) for c in self.background], dtype=np.int64)
        rows = (
            np.concatenate(self.background).astype(np.float16)
            if self.background
            else np.zeros((0, len(self.mean)), dtype=np.float16)
        )
        arrays: dict[str, np.ndarray] = {
            "embedder": np.array(self.embedder),
            "mean": self.mean,
            "messages": np.array(self.messages, dtype=np.int64),
            "background": rows,
            "background_sizes": sizes,
        }
        if self.background_stems is not None:
            # one string per message row: stems are letters and digits, so a space separates them
            joined = [" ".join(sorted(m)) for c in self.background_stems for m in c]
            arrays["background_stems"] = np.array(joined, dtype=np.str_)
        np.savez(directory / SPACE_FILE, **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, directory: Path) -> EmbeddingSpace:
        path = directory / SPACE_FILE
        if not path.exists():
            raise ModelFormatError(f"{directory} lacks {SPACE_FILE}")
        with np.load(path, allow_pickle=False) as arrays:
            rows = arrays["background"].astype(np.float32)
            bounds = np.cumsum(arrays["background_sizes"])[:-1]
            stems: tuple[Stems, ...] | None = None
            if "background_stems" in arrays.files:
                per_message = [frozenset(s.split()) for s in arrays["background_stems"].tolist()]
                if len(per_message) != len(rows):
                    raise ModelFormatError(f"{path}: {len(per_message)} stem rows for {len(rows)} messages")
                starts = [0, *bounds.tolist()]
                ends = [*bounds.tolist(), len(rows)]
                stems = (
                    tuple(tuple(per_message[a:b]) for a, b in zip(starts, ends, strict=True))
                    if len(rows)
                    else ()
                )
            return cls(
                embedder=str(arrays["embedder"]),
                mean=arrays["mean"].astype(np.float32),
                messages=int(arrays["messages"]),
                background=tuple(np.split(rows, bounds)) if len(rows) else (),
                background_stems=stems,
            )


@dataclass(frozen=True)
class ConversationView:
    """A conversation as the matcher compares it: centred message vectors and their mean, and
    each message's stems when its texts were given."""

    messages: Matrix
    whole: Vector
    stems: Stems | None = None


def default_threshold(embedder: str, *, lexical: bool = False) -> float:
    """The measured default threshold of an embedding space, with or without the lexical score."""
    try:
        return (HYBRID_THRESHOLDS if lexical else DEFAULT_THRESHOLDS)[embedder]
    except KeyError:
        raise ValueError(
            f"no measured default topic threshold for {embedder}; pass one explicitly "
            "(`beepgpt eval topics` on offline/devset/calibration measures one)"
        ) from None


class TopicMatcher:
    """Scores conversations (their message vectors, and their texts when it has a `Lexicon`)
    against followed topics, and sets each topic's line.

    A topic's line is, in order: the line its feedback taught (`adapt`); the label-free line of
    `lines.py` over the recent conversations, when `per_topic_lines` (the default when no
    `threshold` is given and the matcher has a `Lexicon`, where it was measured) and at least
    `lines.MIN_CONVERSATIONS` are known; else `threshold`."""

    def __init__(
        self,
        embedder: Embedder,
        space: EmbeddingSpace,
        *,
        lexicon: Lexicon | None = None,
        threshold: float | None = None,
        conversation_weight: float = CONVERSATION_WEIGHT,
        lexical_weight: float = LEXICAL_WEIGHT,
        adaptations: Mapping[str, TopicAdaptation] | None = None,
        per_topic_lines: bool | None = None,
    ) -> None:
        if space.embedder != embedder.name:
            raise ValueError(f"space of {space.embedder} used with embedder {embedder.name}")
        self.embedder = embedder
        self.space = space
        self.lexicon = lexicon
        self.threshold = (
            default_threshold(embedder.name, lexical=lexicon is not None) if threshold is None else threshold
        )
        self.conversation_weight = conversation_weight
        self.lexical_weight = lexical_weight
        self.adaptations: dict[str, TopicAdaptation] = dict(adaptations or {})
        self.per_topic_lines = (
            (threshold is None and lexicon is not None) if per_topic_lines is None else per_topic_lines
        )
        self._topics: OrderedDict[str, Vector] = OrderedDict()
        self._queries: OrderedDict[str, Query] = OrderedDict()
        self._lines: OrderedDict[str, tuple[int, float]] = OrderedDict()
        """(`recent.seen` when computed, line) per topic subject"""
        self.recent = RecentConversations()
        """The conversations a topic's line is set from: the model directory's sample, then the
        conversations the service scores (`observe`)."""
        stems = space.background_stems
        if lexicon is None or stems is not None:
            for number, vectors in enumerate(space.background):
                self.recent.observe(
                    f"background:{number}",
                    space.centre(vectors),
                    None if stems is None or lexicon is None else stems[number],
                )

    # --- the service's protocol --------------------------------------------------------------------

    def match(
        self, vectors: Matrix, topics: Sequence[FollowedTopic], texts: Sequence[str] | None = None
    ) -> list[TopicScore]:
        """One score per topic for a conversation whose message vectors are `vectors` and whose
        message texts are `texts` (same order; required when the matcher has a `Lexicon`)."""
        if not topics:
            return []
        view = self.view(vectors, texts)
        targets = self.topic_vectors(topics)
        queries = self.topic_queries(topics)
        found = self.scores(view, targets, queries)
        return [
            TopicScore(topic, score, line, best)
            for topic, (score, best), line in zip(topics, found, self.thresholds(topics), strict=True)
        ]

    def observe(self, conversation_id: str, vectors: Matrix, texts: Sequence[str] | None = None) -> None:
        """A conversation the workspace had (new, or updated with new messages): it joins the
        recent conversations that topics' lines are set from."""
        if self.lexicon is not None and texts is None:
            return  # its words are unknown: it could not be scored like the others
        view = self.view(vectors, texts)
        self.recent.observe(conversation_id, view.messages, view.stems)

    # --- parts, also used by evaluation ----------------------------------------------------------

    def view(self, vectors: Matrix, texts: Sequence[str] | None = None) -> ConversationView:
        """The conversation centred (and its messages' stems, when the matcher reads words)."""
        if self.lexicon is not None and texts is None:
            raise ValueError("this topic matcher scores words too: pass the messages' texts")
        if texts is not None and len(texts) != len(vectors):
            raise ValueError(f"{len(texts)} texts for {len(vectors)} message vectors")
        stems = tuple(lexical.message_stems(t) for t in texts) if self.lexicon is not None and texts else None
        if len(vectors) == 0:
            empty = np.zeros((0, len(self.space.mean)), dtype=np.float32)
            return ConversationView(empty, np.zeros(len(self.space.mean), dtype=np.float32))
        centred = self.space.centre(np.asarray(vectors, dtype=np.float32))
        return ConversationView(centred, normalise(centred.mean(axis=0))[0], stems)

    def score(
        self, view: ConversationView, target: Vector, query: Query | None = None
    ) -> tuple[float, int | None]:
        """(score, index of the best message) of one conversation against one topic: its vector,
        and its words (`topic_queries`) when the matcher has a `Lexicon`."""
        return self.scores(view, target[None, :], [query])[0]

    def scores(
        self, view: ConversationView, targets: Matrix, queries: Sequence[Query | None]
    ) -> list[tuple[float, int | None]]:
        """`score` for several topics (rows of `targets`) at once: one matrix product for all of
        a conversation's followers, and each distinct topic's words counted once."""
        if len(view.messages) == 0:
            return [(0.0, None)] * len(targets)
        per_message = view.messages @ targets.T  # messages × topics
        best = per_message.argmax(axis=0)
        w = self.conversation_weight
        dense = w * (targets @ view.whole) + (1 - w) * per_message[best, np.arange(len(targets))]
        if self.lexicon is None:
            return [(float(d), int(b)) for d, b in zip(dense, best, strict=True)]
        if view.stems is None or any(q is None for q in queries):
            raise ValueError("this topic matcher scores words too: pass the topic's query and the texts")
        words: dict[Query, float] = {}
        out: list[tuple[float, int | None]] = []
        for d, b, query in zip(dense, best, queries, strict=True):
            assert query is not None
            if query not in words:
                words[query] = lexical.score(query, view.stems)
            out.append(((1 - self.lexical_weight) * float(d) + self.lexical_weight * words[query], int(b)))
        return out

    def topic_queries(self, topics: Sequence[FollowedTopic]) -> list[Query | None]:
        """Each topic's weighted words (cached); None for every topic without a `Lexicon`."""
        if self.lexicon is None:
            return [None] * len(topics)
        out: list[Query | None] = []
        for topic in topics:
            subject = topic_subject(topic.text)
            query = self._queries.get(subject)
            if query is None:
                query = self._queries[subject] = self.lexicon.query(subject)
            self._queries.move_to_end(subject)
            out.append(query)
        while len(self._queries) > _TOPIC_CACHE:
            self._queries.popitem(last=False)
        return out

    def topic_vectors(self, topics: Sequence[FollowedTopic]) -> Matrix:
        """Each topic's vector: its feedback-adapted one, else its embedded subject (cached)."""
        subjects = [topic_subject(t.text) for t in topics]
        todo = sorted({s for s in subjects if s not in self._topics})
        if todo:
            for subject, vector in zip(todo, self.embedder.embed(todo), strict=True):
                self._topics[subject] = vector
        rows = []
        for topic, subject in zip(topics, subjects, strict=True):
            self._topics.move_to_end(subject)
            adapted = self.adaptations.get(topic.id)
            rows.append(
                adapted.vector
                if adapted is not None and adapted.vector is not None
                else self._topics[subject]
            )
        while len(self._topics) > _TOPIC_CACHE:
            self._topics.popitem(last=False)
        return np.stack(rows).astype(np.float32)

    def thresholds(self, topics: Sequence[FollowedTopic]) -> list[float]:
        """Each topic's line: feedback's, else the label-free per-topic one, else `threshold`."""
        unadapted = self.lines(topics)
        out = []
        for topic, own in zip(topics, unadapted, strict=True):
            adapted = self.adaptations.get(topic.id)
            out.append(adapted.threshold if adapted is not None and adapted.threshold is not None else own)
        return out

    def lines(self, topics: Sequence[FollowedTopic]) -> list[float]:
        """Each topic's line before feedback: `lines.line` of its scores over the recent
        conversations (recomputed every `REFRESH_EVERY` conversations seen), or `threshold`."""
        if not self.per_topic_lines or len(self.recent) < MIN_CONVERSATIONS or not topics:
            return [self.threshold] * len(topics)
        subjects = [topic_subject(t.text) for t in topics]
        stale = sorted(
            {
                s
                for s in subjects
                if s not in self._lines or self.recent.seen - self._lines[s][0] >= REFRESH_EVERY
            }
        )
        if stale:
            targets = np.stack([self._subject_vector(s) for s in stale]).astype(np.float32)
            queries = [None if self.lexicon is None else self._subject_query(s) for s in stale]
            table = np.array(
                [
                    [score for score, _ in self.scores(self._recent_view(m, st), targets, queries)]
                    for m, st in self.recent.conversations()
                ]
            )
            for column, subject in enumerate(stale):
                self._lines[subject] = (self.recent.seen, line(table[:, column]))
        for subject in subjects:
            self._lines.move_to_end(subject)
        while len(self._lines) > _TOPIC_CACHE:
            self._lines.popitem(last=False)
        return [self._lines[s][1] for s in subjects]

    def _subject_vector(self, subject: str) -> Vector:
        vector = self._topics.get(subject)
        if vector is None:
            vector = self._topics[subject] = self.embedder.embed([subject])[0]
        return vector

    def _subject_query(self, subject: str) -> Query:
        assert self.lexicon is not None
        query = self._queries.get(subject)
        if query is None:
            query = self._queries[subject] = self.lexicon.query(subject)
        return query

    @staticmethod
    def _recent_view(messages: Matrix, stems: Stems | None) -> ConversationView:
        return ConversationView(messages, normalise(messages.mean(axis=0))[0], stems)

    def threshold_for(self, topic: FollowedTopic) -> float:
        """One topic's line (`thresholds`)."""
        return self.thresholds([topic])[0]

    def adapt(self, topic_id: str, adaptation: TopicAdaptation) -> None:
        self.adaptations[topic_id] = adaptation
