"""The words a topic names, counted in a conversation: the lexical half of a topic score.

Why: topics name things ("the Fraud Detection project", "their weekends", "security and
privacy") and conversations about them mostly use those words or close forms of them
("weekend", "streamed"). The sentence embedding only approximates that: a short topic vector
sits near many conversations, and how near depends on the topic. Measured on the calibration
topics of the development set (`offline/devset/README.md`), adding this score to the
embedding similarity raised macro-F1 at the best single threshold from 0.699 to 0.734.

The score of a topic for a conversation is, over the topic subject's content words (stemmed,
English stop words out), the share of the conversation's messages that use the word, weighted
by the word's inverse document frequency among the workspace's messages (so "project", used
everywhere, counts less than "fraud"), in [0, 1]. A share of messages, not a count: a long
conversation is not more on-topic for repeating a word more often, and one stray mention in a
long chat stays small. Other forms measured (TF-IDF cosine, BM25-style saturated counts, plain
presence, the best message's coverage) all did worse on the calibration topics.

The workspace statistics (`Lexicon`: how many messages use each stem) are counted at training
time from the history and saved in the model directory (`lexicon.json`) beside `space.npz`.
Words a topic names that the workspace never used are left out of its weights: nothing in the
statistics says how telling they are, and a conversation can still match on the others.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import Stemmer
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from scorer.artifact import ModelFormatError, write_json

LEXICON_FILE = "lexicon.json"

_WORD = re.compile(r"[a-z0-9]+")
_POSSESSIVE = re.compile(r"['’]s\b")
_STEMMER = Stemmer.Stemmer("english")
_STEMS_CACHE = 65536
"""Distinct message texts whose stems are kept: the service scores a conversation again at every
update, and for every follower, so each message is tokenised once, like it is embedded once."""


def words(text: str) -> list[str]:
    """A text's content words, stemmed: lower case, letters and digits, no English stop words, no
    one-letter tokens or bare numbers ("weekends" and "weekend" → "weekend")."""
    tokens = [
        t
        for t in _WORD.findall(_POSSESSIVE.sub("", text.lower()))
        if len(t) > 1 and not t.isdigit() and t not in ENGLISH_STOP_WORDS
    ]
    return list(_STEMMER.stemWords(tokens))


@functools.lru_cache(maxsize=_STEMS_CACHE)
def message_stems(text: str) -> frozenset[str]:
    """The set of stems one message uses (cached by text)."""
    return frozenset(words(text))


@dataclass(frozen=True)
class Lexicon:
    """The workspace's messages as words: how many messages use each stem."""

    messages: int
    document_frequency: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, texts: Iterable[str]) -> Lexicon:
        counts: Counter[str] = Counter()
        total = 0
        for text in texts:
            counts.update(message_stems(text))
            total += 1
        return cls(messages=total, document_frequency=dict(counts))

    def idf(self, stem: str) -> float:
        """Smoothed inverse document frequency (scikit-learn's form): rare words weigh more."""
        df = self.document_frequency.get(stem, 0)
        return math.log((self.messages + 1) / (df + 1)) + 1.0

    def query(self, subject: str) -> Query:
        """The weighted words of a topic subject, as `score` reads them."""
        terms = [t for t in dict.fromkeys(words(subject)) if self.document_frequency.get(t, 0) > 0]
        weights = [self.idf(t) for t in terms]
        total = sum(weights)
        return Query(tuple(terms), tuple(w / total for w in weights) if total else ())

    def save(self, directory: Path) -> None:
        write_json(
            directory / LEXICON_FILE,
            {"messages": self.messages, "document_frequency": self.document_frequency},
        )

    @classmethod
    def load(cls, directory: Path) -> Lexicon:
        path = directory / LEXICON_FILE
        try:
            raw = json.loads(path.read_text())
            return cls(
                messages=int(raw["messages"]),
                document_frequency={str(k): int(v) for k, v in raw["document_frequency"].items()},
            )
        except FileNotFoundError:
            raise ModelFormatError(f"{directory} lacks {LEXICON_FILE}") from None
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
            raise ModelFormatError(f"{path} is malformed: {error!r}") from None


@dataclass(frozen=True)
class Query:
    """A topic's words and their weights (summing to 1; none when the workspace never used them)."""

    terms: tuple[str, ...]
    weights: tuple[float, ...]


def score(query: Query, messages: Sequence[frozenset[str]]) -> float:
    """Σ weight × share of the messages using the word: 0 (no word of the topic) to 1 (every
    message uses every word)."""
    if not messages or not query.terms:
        return 0.0
    n = len(messages)
    return sum(
        w * sum(term in m for m in messages) / n for term, w in zip(query.terms, query.weights, strict=True)
    )
