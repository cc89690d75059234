"""The reply linker: which earlier message of its channel a new message answers, or none.

A channel's flow (messages outside threads) is not one conversation at a time: a busy channel
never goes quiet for ten minutes, and a quiet one pauses mid-conversation. The linker decides,
for each new flow message as it arrives, which message of the channel's recent window it replies
to (its *parent*), or that it starts a conversation; a message joins its parent's conversation,
so conversations are the connected components of the reply links (as in Kummerfeld et al. 2019,
whose annotated Ubuntu IRC data the shipped model was fitted on: `models/README.md`).

What it may look at, and why so little:

- only the past: the message itself and the latest `window_messages` flow messages of its
  channel sent at most `window_s` before it (a bounded window: memory and time per message are
  bounded, live as in history);
- a candidate's score depends only on the message, the candidate and the messages between them
  (distance, time, the channel's pace since the candidate, mentions, who spoke since and how
  many others did, shared words, question/thanks/code/link cues), and
  the score of "starts a conversation" only on the message. Nothing depends on which links were
  chosen before. That is what makes a restart repeat every decision: the sessionizer replays
  from the oldest message of an open conversation, so a replayed message sees a suffix of the
  window it saw the first time, which still holds its winner (its parent is in an open
  conversation, so it is replayed) with unchanged scores; the argmax over a subset that keeps
  the winner is the same winner.

Scoring is a linear model over those features (fitted by `offline.training.linker` as the
choice each message makes among its candidates and starting: a conditional logit); the model is
a small JSON file of named weights shipped in the package, so an install needs no training.
`link` scores it in compiled code (`linker_kernel`: the candidates, every feature's weight, the
argmax and the window's bookkeeping in one call a message), this module keeps what is Python's:
reading the text (`read`), naming users and words by ints, and each slot's ts and conversation.
The feature rows training reads (`candidates`, `_rows`) are numpy over the same window.

Thread replies never reach the linker: thread membership always wins (the sessionizer puts them
in their thread). A thread's parent is a flow message like any other here.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from sessionizer import linker_kernel as kernel

FORMAT = "beepgpt-reply-linker"
FEATURE_SET = 3
"""Bumped whenever a feature changes meaning: a model fitted on another feature set is refused."""

DEFAULT_MODEL = "reply-linker-v3.json"
"""The shipped model, in `sessionizer/models/`."""

# --- what a message says -------------------------------------------------------------------------

_MENTION = re.compile(r"<@([A-Z0-9]+)(?:\|[^>]*)?>")
_MARKUP = re.compile(r"<[^>]*>")
_WORD = re.compile(r"[a-z0-9][a-z0-9_+.\-]*[a-z0-9+]|[a-z0-9]")
_THANKS = re.compile(r"\b(thanks|thank you|thx|thanx|ty|cheers|appreciated?)\b")
_GREETING = re.compile(r"^(hi|hello|hey|hiya|morning|evening|anyone|anybody|any ?one|is there|does anyone)\b")
_OPENER = re.compile(r"^(yes|no|yeah|yep|yup|nope|nah|ok|okay|sure|right|it|that|this|then|try|you)\b")
_CODE = re.compile(r"`|^\s*[$#] |\bsudo\b|\bapt(-get)?\b|(^|\s)/[a-z]+/|\w+\.(sh|conf|py|elm|js|list)\b")
_URL = re.compile(r"https?://|www\.")
# `_CODE`'s alternatives one by one, each tried only when the text has the characters it needs:
# the one pattern tried every alternative at every position (6 µs a message on the bench's text,
# 0.7 µs this way). `read` must find exactly what `_CODE` finds (tests/sessionizer: on real chat).
_CODE_PROMPT = re.compile(r"^\s*[$#] ")
_CODE_SUDO = re.compile(r"\bsudo\b")
_CODE_APT = re.compile(r"\bapt(-get)?\b")
_CODE_PATH = re.compile(r"(^|\s)/[a-z]+/")
_CODE_FILE = re.compile(r"(?<=\w)\.(sh|conf|py|elm|js|list)\b")
r"""`\w+\.(sh|…)\b` as a search: a word character right before the dot is all the `\w+` asks."""
_THANKS_PARTS = ("thank", "thx", "thanx", "ty", "cheers", "appreciate")
"""Every word `_THANKS` finds contains one of these."""
_STOPWORDS = frozenset(
    ["the", "and", "for", "you", "your", "are", "but", "not", "with", "have", "this", "that", "what", "how", "can", "any", "there", "get", "just", "its", "it's", "out", "use", "one", "all", "was", "will", "from", "has", "had", "when", "then", "than", "them", "they", "who", "why", "yes", "yeah", "some", "about", "would", "could", "should", "into", "does", "did", "doing", "don't", "dont", "can't", "cant", "i'm", "im", "i've", "ive", "know", "think", "like", "want", "need", "try", "also", "only", "well", "here", "now", "see", "way", "make", "more", "much", "very", "really", "sure", "okay", "thanks", "thank", "hello", "anyone", "someone", "something", "thing", "still", "even", "too", "been", "being", "which", "where", "their", "there's", "were", "our", "ours", "his", "her", "him", "she", "he", "way", "got", "going"]
)

_SHORT_CHARS = 15
_LONG_CHARS = 80


class Said(NamedTuple):
    """What the linker reads from a message's text (once, when it arrives). A named tuple: made
    for every message, it costs a third of a frozen dataclass (about 1 against 3 µs)."""

    mentions: tuple[str, ...]
    words: frozenset[str]
    question: bool
    thanks: bool
    greeting: bool
    opener: bool
    code: bool
    url: bool
    length: int
    """0 short, 1 medium, 2 long."""


def read(text: str) -> Said:
    """The cues of a message text: mentions, content words, question/thanks/greeting/code/link.

    The patterns are tried only where the text has what they need (a `<` for mentions and
    markup, a substring every match contains): the same cues as `read_plainly`, which a test
    checks on real chat, in about half the time."""
    if "<" in text:
        mentions = tuple(dict.fromkeys(_MENTION.findall(text)))
        plain = _MARKUP.sub(" ", text).strip().lower()
    else:
        mentions = ()
        plain = text.strip().lower()
    words = frozenset(w for w in _WORD.findall(plain) if len(w) >= 3 and w not in _STOPWORDS)
    chars = len(plain)
    return Said(
        mentions=mentions,
        words=words,
        question="?" in plain,
        thanks=any(part in plain for part in _THANKS_PARTS) and _THANKS.search(plain) is not None,
        greeting=_GREETING.match(plain) is not None,
        opener=_OPENER.match(plain) is not None,
        code=_has_code(text.lower()),
        url="http://" in text or "https://" in text or "www." in text,
        length=0 if chars < _SHORT_CHARS else (2 if chars > _LONG_CHARS else 1),
    )


def _has_code(low: str) -> bool:
    """`_CODE.search(low) is not None`, alternative by alternative."""
    return (
        "`" in low
        or (("$" in low or "#" in low) and _CODE_PROMPT.match(low) is not None)
        or ("sudo" in low and _CODE_SUDO.search(low) is not None)
        or ("apt" in low and _CODE_APT.search(low) is not None)
        or ("/" in low and _CODE_PATH.search(low) is not None)
        or ("." in low and _CODE_FILE.search(low) is not None)
    )


def read_plainly(text: str) -> Said:
    """`read` as first written, each pattern over the whole text: the definition `read` keeps to."""
    mentions = tuple(dict.fromkeys(_MENTION.findall(text)))
    plain = _MARKUP.sub(" ", text).strip().lower()
    words = frozenset(w for w in _WORD.findall(plain) if len(w) >= 3 and w not in _STOPWORDS)
    chars = len(plain)
    return Said(
        mentions=mentions,
        words=words,
        question="?" in plain,
        thanks=_THANKS.search(plain) is not None,
        greeting=_GREETING.search(plain) is not None,
        opener=_OPENER.search(plain) is not None,
        code=_CODE.search(text.lower()) is not None,
        url=_URL.search(text) is not None,
        length=0 if chars < _SHORT_CHARS else (2 if chars > _LONG_CHARS else 1),
    )


# --- features ------------------------------------------------------------------------------------

DIST_EDGES = np.array([1, 2, 3, 4, 5, 6, 8, 10, 13, 17, 23, 31, 42, 56, 75, 100])
"""Flow messages from the candidate to the new one (1 = the previous message), binned."""
TIME_EDGES = np.array(
    [2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 240.0, 360.0, 480.0, 720.0,
     900.0, 1200.0, 1800.0, 2700.0, 3600.0, 5400.0, 7200.0, 10800.0, 14400.0]
)
"""Seconds from the candidate to the new message, binned (log-like, up to four hours: a quiet
channel's reply may come long after its question)."""
PACE_EDGES = np.array([1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0])
"""Seconds per message since the candidate (its age over its distance), binned: how busy the
channel has been since, so that a minute means something different in a busy and a quiet one."""

_PAIR_FLAGS = (
    "same_user",  # the same author going on
    "same_user_latest",  # ... and the candidate is their previous message
    "mentions_author",  # the new message mentions the candidate's author
    "mentions_author_latest",  # ... whose latest message the candidate is
    "author_mentions_me",  # the candidate mentions the new message's author
    "author_mentions_me_unanswered",  # ... who has not spoken since
    "author_latest",  # the candidate is its author's latest message
    "their_since_1",  # the candidate's author wrote one more message after it
    "their_since_2plus",  # ... two or more
    "mentions_someone_else",  # the new message addresses somebody else
    "candidate_mentions_other",  # the candidate addresses somebody other than the new author
    "i_spoke_since",  # the new message's author spoke after the candidate
    "mine_since_2plus",  # ... at least twice
    "they_addressed_me_since",  # the candidate's author mentioned me in it or after it
    "i_addressed_them_since",  # I mentioned the candidate's author after it
    "overlap_1",
    "overlap_2",
    "overlap_3plus",  # content words shared
    "answers_question",  # candidate asks, the new message by someone else does not
    "thanks_other",  # the new message thanks, the candidate is someone else's
    "code_both",
    "url_both",
    "opener_other",  # the new message opens like a reply ("yes", "it", "try"), to someone else
    "log_distance",  # log(1 + distance) / log(101): continuous, for the hidden layer
    "log_age",  # log(1 + seconds) / log(14401)
    "others_between_0",  # nobody but the two authors wrote after the candidate
    "others_between_1",  # ... one other person did
    "others_between_2",
    "others_between_3plus",
    "mention_same",  # both address the same third person
    "next_same",  # the message right after the candidate is by its author (a message in parts)
    "overlap_share_candidate",  # shared content words / the candidate's content words
    "overlap_share_message",  # shared content words / the new message's content words
)
_CUES = ("question", "thanks", "greeting", "opener", "code", "url", "short", "long", "mentions")
"""A message's own cues: a candidate's (in its pair row), the new message's (in every row)."""

PAIR_FEATURES: tuple[str, ...] = (
    *(f"dist_{i}" for i in range(len(DIST_EDGES) + 1)),
    *(f"time_{i}" for i in range(len(TIME_EDGES) + 1)),
    *(f"pace_{i}" for i in range(len(PACE_EDGES) + 1)),
    *_PAIR_FLAGS,
    *(f"candidate_{c}" for c in _CUES),
)
"""Columns only a candidate's row has (zero in the "starts a conversation" row)."""
MESSAGE_FEATURES: tuple[str, ...] = tuple(f"message_{c}" for c in _CUES)
"""Columns of the new message, the same in every row of it (so the hidden layer can combine
them with a candidate's features)."""
SELF_FEATURES: tuple[str, ...] = ("self_bias", *(f"self_{c}" for c in _CUES))
"""Columns only the "starts a conversation" row has: from the message alone (module docstring)."""
FEATURES: tuple[str, ...] = (*PAIR_FEATURES, *MESSAGE_FEATURES, *SELF_FEATURES)
"""One row per choice (each candidate, and starting a conversation), in this column order."""

_D0 = 0
_T0 = len(DIST_EDGES) + 1
_P0 = _T0 + len(TIME_EDGES) + 1
_F0 = _P0 + len(PACE_EDGES) + 1
_FLAG_ROW = {name: i for i, name in enumerate(_PAIR_FLAGS)}
_C0 = _F0 + len(_PAIR_FLAGS)
_M0 = len(PAIR_FEATURES)
_S0 = _M0 + len(MESSAGE_FEATURES)
_LOG_DIST = float(np.log1p(DIST_EDGES[-1]))
_LOG_AGE = float(np.log1p(TIME_EDGES[-1]))


def cues(said: Said) -> npt.NDArray[np.float64]:
    """A message's cues in `_CUES` order."""
    return np.array(
        [said.question, said.thanks, said.greeting, said.opener, said.code, said.url,
         said.length == 0, said.length == 2, bool(said.mentions)],
        dtype=np.float64,
    )


def self_features(said: Said) -> npt.NDArray[np.float64]:
    """The "starts a conversation" row of a message: its cues, as message and as self columns."""
    row = np.zeros(len(FEATURES))
    c = cues(said)
    row[_M0:_S0] = c
    row[_S0] = 1.0
    row[_S0 + 1 :] = c
    return row


def _others_between(latest: npt.NDArray[np.bool_], mine: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """For each candidate (oldest first, up to the newest message), how many people other than
    the new message's author and the candidate's author wrote after it, up to 3: nobody else
    joining in is what a two-person exchange looks like, however busy the channel. `latest`:
    the candidate is its author's latest message; `mine`: it is by the new message's author.
    Each author after a candidate has exactly one latest message after it, so the authors
    after candidate i are the latest messages after it."""
    authors_after = latest[::-1].cumsum()[::-1] - latest
    i_wrote_after = (mine[::-1].cumsum()[::-1] - mine) > 0
    return np.asarray(np.minimum(authors_after - i_wrote_after - (~latest & ~mine), 3), dtype=np.int64)


# --- the model -----------------------------------------------------------------------------------


class ModelError(ValueError):
    """The file is not a reply-linker model this code can use."""


@dataclass(frozen=True)
class LinkerModel:
    """A scorer of choices: score = relu(x @ hidden + hidden_bias) @ output for a feed-forward
    net (`activation` "relu"), or x @ hidden[:, 0] for a linear model ("identity", one column).

    An ensemble of nets is one wider net (hidden units side by side, output weights divided by
    their number: the mean of their logits), so scoring a window stays two matrix products.
    `hidden` is stored by feature name (one list of hidden weights per feature)."""

    hidden: npt.NDArray[np.float64]
    """(len(FEATURES), units)."""
    hidden_bias: npt.NDArray[np.float64]
    output: npt.NDArray[np.float64]
    activation: str
    window_messages: int
    window_s: float
    version: str
    meta: dict[str, Any]

    def score(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """The score of each row of `x` (rows in `FEATURES` order); higher is more likely."""
        z = x @ self.hidden
        if self.activation == "relu":
            z += self.hidden_bias
            np.maximum(z, 0.0, out=z)
        return np.asarray(z @ self.output)

    @classmethod
    def linear(cls, weights: npt.NDArray[np.float64], **kwargs: Any) -> LinkerModel:
        """A linear model over `FEATURES` (weights in that order)."""
        return cls(
            hidden=np.asarray(weights, dtype=np.float64).reshape(-1, 1),
            hidden_bias=np.zeros(1),
            output=np.ones(1),
            activation="identity",
            **kwargs,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LinkerModel:
        if data.get("format") != FORMAT or data.get("feature_set") != FEATURE_SET:
            raise ModelError(
                f"not a {FORMAT} model of feature set {FEATURE_SET}: "
                f"{data.get('format')!r} / {data.get('feature_set')!r}"
            )
        hidden: dict[str, list[float]] = data["hidden"]
        missing = [n for n in FEATURES if n not in hidden]
        if missing:
            raise ModelError(f"the model lacks weights for {missing}")
        activation = str(data.get("activation", "relu"))
        if activation not in ("relu", "identity"):
            raise ModelError(f"unknown activation {activation!r}")
        w = np.array([hidden[n] for n in FEATURES], dtype=np.float64)
        bias = np.array(data["hidden_bias"], dtype=np.float64)
        out = np.array(data["output"], dtype=np.float64)
        if w.ndim != 2 or bias.shape != (w.shape[1],) or out.shape != (w.shape[1],):
            raise ModelError(f"inconsistent layer shapes {w.shape} / {bias.shape} / {out.shape}")
        return cls(
            hidden=w,
            hidden_bias=bias,
            output=out,
            activation=activation,
            window_messages=int(data["window_messages"]),
            window_s=float(data["window_s"]),
            version=str(data["version"]),
            meta={k: v for k, v in data.items() if k not in ("hidden", "hidden_bias", "output")},
        )

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.meta)
        data.update(
            format=FORMAT,
            feature_set=FEATURE_SET,
            version=self.version,
            window_messages=self.window_messages,
            window_s=self.window_s,
            activation=self.activation,
            hidden={n: [round(v, 6) for v in row] for n, row in zip(FEATURES, self.hidden.tolist(), strict=True)},
            hidden_bias=[round(v, 6) for v in self.hidden_bias.tolist()],
            output=[round(v, 6) for v in self.output.tolist()],
        )
        return data


def load_model(path: str | Path | None = None) -> LinkerModel:
    """A model file, or the shipped one (`None`)."""
    if path is None:
        return _shipped()
    return LinkerModel.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


@cache
def _shipped() -> LinkerModel:
    text = resources.files("sessionizer").joinpath("models", DEFAULT_MODEL).read_text(encoding="utf-8")
    return LinkerModel.from_dict(json.loads(text))


# --- the window of one channel -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Link:
    """The decision about one message: its parent (None: it starts a conversation) and the
    conversation it joins, named by that conversation's first message."""

    parent_ts: str | None
    root_ts: str


class _Window:
    """The latest flow messages of one channel: the kernel's arrays (`linker_kernel`, "State of
    one channel") and, per slot, what Python keeps of its message (ts, conversation)."""

    __slots__ = ("fl", "it", "meta", "next", "pool", "roots", "size", "ts")

    def __init__(self, size: int) -> None:
        self.size = size
        self.fl, self.it, self.meta, self.pool = kernel.new_window(size)
        self.ts: list[str] = [""] * size
        self.roots: list[str] = [""] * size
        self.next = 0
        """The slot the next message goes into (the kernel's `M_NEXT`, kept here too)."""

    @property
    def seq(self) -> int:
        """Flow messages seen in this channel."""
        return int(self.meta[kernel.M_SEQ])

    def grow(self, extra: int) -> None:
        self.pool = kernel.grow_pool(self.it, self.meta, self.pool, extra)

    def live_word_positions(self) -> npt.NDArray[np.int64]:
        """Positions in `pool` of the ring's word ids (not its mention ids)."""
        filled = int(self.meta[kernel.M_FILLED])
        if filled == 0:
            return np.empty(0, dtype=np.int64)
        slots = np.arange(filled) if filled < self.size else (np.arange(self.size) + self.next) % self.size
        at, count = self.it[kernel.I_AT, slots], self.it[kernel.I_WORDS, slots]
        within = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
        return np.asarray((np.repeat(at, count) + within) % len(self.pool), dtype=np.int64)


@dataclass(frozen=True, slots=True)
class _Message:
    """What the scores need of a message's cues alone (the same for every message with those cues,
    so computed once per combination: `Linker._message`)."""

    bits: int
    other_all: float
    """The constant of the message's cues plus the "to someone else" weights every candidate gets."""
    mine_extra: float
    """What a candidate by the message's own author gets: same_user instead of "to someone else"."""
    own: float
    """The score of starting a conversation."""
    slot_score: float
    """The message's `F_SLOT_SCORE` once it is in the window (its cues as a candidate's)."""


@dataclass(frozen=True)
class Candidates:
    """A message's feature rows, before it is decided (what training reads)."""

    pair: npt.NDArray[np.float64]
    """One row of `FEATURES` per candidate, oldest first (see `ts`)."""
    ts: list[str]
    self_row: npt.NDArray[np.float64]
    distance: npt.NDArray[np.int64]
    """Flow messages from each candidate to the new one (1: the previous one)."""
    age_s: npt.NDArray[np.float64]
    """Seconds from each candidate to the new one."""


_VOCABULARY_MIN = 1 << 17
"""Word ids are compacted (`Linker._compact`) when this many, or twice the words the windows held
at the last compaction, have been given out: a long-running service's vocabulary stays bounded."""


class Linker:
    """Links each new flow message of any channel to a message of that channel's window.

    `link` is the whole decision; `candidates` + `add` are its two halves, for training (which
    needs the features of every message, whatever gets decided). A linear model (the shipped
    one) is scored in compiled code (`linker_kernel.link`); any other model from the feature
    rows (`_rows`), which are computed in numpy from what the window holds.
    """

    def __init__(self, model: LinkerModel | None = None, *, self_offset: float = 0.0) -> None:
        kernel.compile_lazily()
        self.model = model or load_model()
        self.self_offset = self_offset
        """Added to every "starts a conversation" score (settings are chosen with it)."""
        self._windows: dict[str, _Window] = {}
        self._user_ids: dict[str, int] = {}
        self._vocabulary: dict[str, int] = {}
        self._words: list[str] = [""]
        """Word id → word; 0 is no word."""
        self._vocabulary_limit = _VOCABULARY_MIN
        self._mark = np.zeros(1024, dtype=np.int64)
        size = self.model.window_messages
        self._out = np.zeros(size)
        self._ages = np.zeros(size)
        self._after = np.triu(np.ones((size, size), dtype=bool), 1)
        """[i, j]: candidate j comes after candidate i (for the rows, `_pairs`)."""
        self._messages: dict[tuple[tuple[bool | int, ...], bool], _Message] = {}
        self._weights = self.model.hidden[:, 0] * self.model.output[0] if self.model.activation == "identity" else None
        """A linear model's weights: `link` then scores without building rows (`linker_kernel`)."""
        w = self._weights if self._weights is not None else np.zeros(len(FEATURES))
        self._cue_weights = w[_C0:_M0]
        self._message_weights = w[_M0:_S0]
        self._self_weights = w[_S0 + 1 :]
        g = {name: float(w[_F0 + i]) for i, name in enumerate(_PAIR_FLAGS)}
        self._w = g
        distances = np.arange(size, 0, -1)  # oldest candidate first
        others_score = np.array(
            [g[f"others_between_{k}"] for k in ("0", "1", "2")] + [g["others_between_3plus"]] * (size - 2)
        )
        """The weight of each count of other people after a candidate (3 and more alike)."""
        dist_score = w[_D0 + np.searchsorted(DIST_EDGES, distances, side="left")] + (
            np.log1p(distances) * g["log_distance"] / _LOG_DIST
        )
        k = kernel
        self._kernel_weights = k.weight_vector(
            {
                k.W_ANSWERS_QUESTION: g["answers_question"],
                k.W_CODE_BOTH: g["code_both"],
                k.W_URL_BOTH: g["url_both"],
                k.W_SAME_USER_LATEST: g["same_user_latest"],
                k.W_I_SPOKE_SINCE: g["i_spoke_since"],
                k.W_MINE_SINCE_2PLUS: g["mine_since_2plus"],
                k.W_MENTIONS_AUTHOR: g["mentions_author"] + -g["mentions_someone_else"],
                k.W_MENTIONS_AUTHOR_LATEST: g["mentions_author_latest"],
                k.W_MENTION_SAME: g["mention_same"],
                k.W_CANDIDATE_MENTIONS_OTHER: g["candidate_mentions_other"],
                k.W_AUTHOR_MENTIONS_ME: g["author_mentions_me"],
                k.W_AUTHOR_MENTIONS_ME_UNANSWERED: g["author_mentions_me_unanswered"],
                k.W_THEY_ADDRESSED_ME_SINCE: g["they_addressed_me_since"],
                k.W_I_ADDRESSED_THEM_SINCE: g["i_addressed_them_since"],
                k.W_OVERLAP_SHARE_MESSAGE: g["overlap_share_message"],
                k.W_OVERLAP_SHARE_CANDIDATE: g["overlap_share_candidate"],
                k.W_LOG_AGE: g["log_age"] / _LOG_AGE,
                k.W_NEXT_SAME: g["next_same"],
                k.W_SINCE_0: g["author_latest"],
                k.W_SINCE_1: g["their_since_1"],
                k.W_SINCE_2: g["their_since_2plus"],
                k.W_OVERLAP_0: 0.0,
                k.W_OVERLAP_1: g["overlap_1"],
                k.W_OVERLAP_2: g["overlap_2"],
                k.W_OVERLAP_3PLUS: g["overlap_3plus"],
                k.W_WINDOW_S: self.model.window_s,
            },
            dist_score,
            w[_T0:_P0],
            w[_P0:_F0],
            others_score,
        )

    def link(self, channel: str, ts: str, sent_s: float, user: str, text: str) -> Link:
        said = read(text)
        window = self._windows.get(channel)
        if window is None:
            window = self._windows[channel] = _Window(self.model.window_messages)
        user_id = self._user_id(user)
        message = self._message(said)
        ids, n_words = self._ids(said)
        if self._weights is None:
            return self._link_by_rows(window, ts, sent_s, user_id, said, message, ids, n_words)
        threshold = message.own + self.self_offset
        given_ages = False
        while True:
            got = kernel.link(
                window.fl, window.it, window.meta, window.pool, self._kernel_weights, self._mark, self._out,
                self._ages, sent_s, user_id, message.bits, ids, n_words, message.other_all, message.mine_extra,
                threshold, message.slot_score, given_ages,
            )
            if got >= kernel.START:
                break
            if got == kernel.NEED_ROOM:
                window.grow(len(ids))
            else:  # RETRY_WITH_LOGS: `_ages` holds the candidates' ages, and stale ages after them
                np.log1p(self._ages, out=self._ages)
                given_ages = True
        slot = window.next
        parent: str | None = None
        root = ts
        if got >= 0:
            parent, root = window.ts[got], window.roots[got]
        window.ts[slot] = ts
        window.roots[slot] = root
        window.next = (slot + 1) % window.size
        return Link(parent, root)

    def candidates(self, channel: str, sent_s: float, user: str, text: str) -> Candidates:
        said = read(text)
        window = self._windows.setdefault(channel, _Window(self.model.window_messages))
        slots = self._slots(window, sent_s)
        user_id = self._user_id(user)
        x = self._rows(window, slots, said, user_id, sent_s)
        return Candidates(
            x[:-1],
            [window.ts[int(s)] for s in slots],
            x[-1],
            distance=window.seq - window.it[kernel.I_SEQ, slots],
            age_s=np.maximum(sent_s - window.fl[kernel.F_TIMES, slots], 0.0),
        )

    def add(self, channel: str, ts: str, sent_s: float, user: str, text: str, root_ts: str) -> None:
        window = self._windows.setdefault(channel, _Window(self.model.window_messages))
        said = read(text)
        user_id = self._user_id(user)
        ids, n_words = self._ids(said)
        self._add(window, ts, sent_s, user_id, self._message(said), ids, n_words, root_ts)

    # --- inside --------------------------------------------------------------------------------

    def _user_id(self, user: str) -> int:
        found = self._user_ids.get(user)
        if found is None:
            found = self._user_ids[user] = len(self._user_ids)
        return found

    def _message(self, said: Said) -> _Message:
        """The constants of the message's cues (computed as the numpy scorer did: the same floats)."""
        key = (said[2:], bool(said.mentions))  # the cues: question .. length, and whether it mentions
        found = self._messages.get(key)
        if found is not None:
            return found
        c = cues(said)
        bits = sum(1 << k for k, v in enumerate(c.tolist()) if v)
        g = self._w
        constant = float(c @ self._message_weights)
        own = constant + float(self._weights[_S0] if self._weights is not None else 0.0) + float(c @ self._self_weights)
        other_all = constant
        if said.thanks:
            other_all += g["thanks_other"]
        if said.opener:
            other_all += g["opener_other"]
        if said.mentions:
            other_all += g["mentions_someone_else"]
        slot_score = (
            float(c @ self._cue_weights) + g["author_latest"] + (g["candidate_mentions_other"] if said.mentions else 0.0)
        )
        found = self._messages[key] = _Message(
            bits=bits,
            other_all=other_all,
            mine_extra=g["same_user"] - (other_all - constant),
            own=own,
            slot_score=slot_score if self._weights is not None else 0.0,
        )
        return found

    def _ids(self, said: Said) -> tuple[npt.NDArray[np.int64], int]:
        """The message's word ids then its mentions' user ids (in order), and how many words."""
        if len(self._words) >= self._vocabulary_limit:
            self._compact()
        vocabulary = self._vocabulary
        ids = [vocabulary.get(word) or self._word_id(word) for word in said.words]
        n_words = len(ids)
        for name in said.mentions:
            ids.append(self._user_id(name))
        return np.array(ids, dtype=np.int64), n_words

    def _word_id(self, word: str) -> int:
        found = self._vocabulary[word] = len(self._words)
        self._words.append(word)
        if found >= len(self._mark):
            self._mark = np.zeros(2 * len(self._mark), dtype=np.int64)
        return found

    def _compact(self) -> None:
        """Only the words the windows hold keep an id (renumbered from 1), so that the vocabulary
        follows the windows, not every word ever seen. Ids are names only: no decision changes."""
        positions = {channel: w.live_word_positions() for channel, w in self._windows.items()}
        held = [w.pool[positions[channel]] for channel, w in self._windows.items()]
        live = np.unique(np.concatenate(held)) if held else np.empty(0, dtype=np.int64)
        renumber = np.zeros(len(self._words), dtype=np.int64)
        renumber[live] = np.arange(1, len(live) + 1)
        for channel, window in self._windows.items():
            at = positions[channel]
            window.pool[at] = renumber[window.pool[at]]
        self._words = ["", *(self._words[int(i)] for i in live)]
        self._vocabulary = {word: i for i, word in enumerate(self._words) if i}
        self._vocabulary_limit = max(_VOCABULARY_MIN, 2 * len(self._words))
        self._mark = np.zeros(max(1024, 2 * len(self._words)), dtype=np.int64)

    def _add(
        self, window: _Window, ts: str, sent_s: float, user: int, message: _Message,
        ids: npt.NDArray[np.int64], n_words: int, root: str,
    ) -> None:
        while kernel.add(
            window.fl, window.it, window.meta, window.pool, self._kernel_weights, sent_s, user, message.bits,
            ids, n_words, message.slot_score,
        ) == kernel.NEED_ROOM:
            window.grow(len(ids))
        slot = window.next
        window.ts[slot] = ts
        window.roots[slot] = root
        window.next = (slot + 1) % window.size

    def _link_by_rows(
        self, window: _Window, ts: str, sent_s: float, user: int, said: Said, message: _Message,
        ids: npt.NDArray[np.int64], n_words: int,
    ) -> Link:
        """`link` for a model other than a linear one: its score of the feature rows."""
        slots = self._slots(window, sent_s)
        parent: str | None = None
        root = ts
        if len(slots):
            both = self.model.score(self._rows(window, slots, said, user, sent_s))
            scores, own = both[:-1], float(both[-1])
            best = int(scores.argmax())
            if scores[best] > own + self.self_offset:
                slot = int(slots[best])
                parent, root = window.ts[slot], window.roots[slot]
        self._add(window, ts, sent_s, user, message, ids, n_words, root)
        return Link(parent, root)

    def _slots(self, window: _Window, sent_s: float) -> npt.NDArray[np.int64]:
        """The window's candidates, oldest first: the ring's messages after the latest one older
        than `window_s` (all of them in time order; a suffix of the ring, so candidates are
        consecutive messages)."""
        first, n = kernel.candidates(window.fl, window.meta, sent_s, self.model.window_s)
        return np.asarray((first + np.arange(n)) % window.size, dtype=np.int64)

    def _linear_scores(
        self, window: _Window, slots: npt.NDArray[np.int64], said: Said, user: int, sent_s: float
    ) -> tuple[npt.NDArray[np.float64], float]:
        """The candidates' scores and the start score of a linear model as `link` computes them
        (with numpy's log1p of the ages: the floats `link` decides on), for checks. `slots`:
        `_slots` of the same message."""
        message = self._message(said)
        ids, n_words = self._ids(said)
        for given_ages in (False, True):
            n = kernel.scores(
                window.fl, window.it, window.meta, window.pool, self._kernel_weights, self._mark, self._out,
                self._ages, sent_s, user, message.bits, ids, n_words, message.other_all, message.mine_extra,
                given_ages,
            )
            np.log1p(self._ages, out=self._ages)
        assert n == len(slots)
        return self._out[:n].copy(), message.own

    def _rows(
        self, window: _Window, slots: npt.NDArray[np.int64], said: Said, user: int, sent_s: float
    ) -> npt.NDArray[np.float64]:
        """One row of `FEATURES` per candidate, then the "starts a conversation" row (the last)."""
        n = len(slots)
        x = np.zeros((n + 1, len(FEATURES)))
        x[n] = self_features(said)
        x[:n, _M0:_S0] = x[n, _M0:_S0]
        if n == 0:
            return x
        dist_bin, time_bin, pace_bin, flags = self._pairs(window, slots, said, user, sent_s)
        rows = np.arange(n)
        x[rows, _D0 + dist_bin] = 1.0
        x[rows, _T0 + time_bin] = 1.0
        x[rows, _P0 + pace_bin] = 1.0
        x[:n, _F0:_C0] = flags.T
        x[:n, _C0:_M0] = _cue_rows(window.it[kernel.I_CUES, slots])
        return x

    def _pairs(
        self, window: _Window, slots: npt.NDArray[np.int64], said: Said, user: int, sent_s: float
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Each candidate's distance bin, time bin, pace bin and `_PAIR_FLAGS` (one row per
        flag: rows are contiguous, so each flag is one vector write).

        Computed in numpy from what the window holds of each message (time, author, cues, words,
        mentions) and nothing the kernel keeps up to date for its scores (`I_SINCE`, `I_LATEST`,
        `F_NEXT_SAME`, `F_SLOT_SCORE`): the tests that compare `link` with these rows check the
        kernel's bookkeeping too."""
        n = len(slots)
        it, fl = window.it, window.fl
        seqs = it[kernel.I_SEQ, slots]
        dist = window.seq - seqs
        dt = np.maximum(sent_s - fl[kernel.F_TIMES, slots], 0.0)
        dist_bin = np.searchsorted(DIST_EDGES, dist, side="left")
        time_bin = np.searchsorted(TIME_EDGES, dt, side="right")
        pace_bin = np.searchsorted(PACE_EDGES, dt / dist, side="right")
        flags = np.zeros((len(_PAIR_FLAGS), n))
        users = it[kernel.I_USER, slots]
        same = users == user
        other = ~same
        # candidates are the ring's latest messages, so everything after one is a later candidate
        same_author = users[:, None] == users[None, :]  # [i, j]
        after = self._after[:n, :n]  # [i, j]: j > i
        since = np.minimum((same_author & after).sum(axis=1), 2)
        latest = since == 0
        # every mention of every candidate (all of them, in order): user ids and whose they are
        named, by = self._pool_entries(window, slots, mentions=True)
        count = it[kernel.I_MENTIONS, slots]
        first = np.cumsum(count) - count
        ma = np.where(count > 0, named[np.minimum(first, len(named) - 1)] if len(named) else -2, -2)
        mb = np.where(count > 1, named[np.minimum(first + 1, len(named) - 1)] if len(named) else -2, -2)
        mentions_me = (ma == user) | (mb == user)
        # my messages after each candidate: counted over the (oldest-first) window from its end
        mine = same.astype(np.int64)
        mine_after = mine[::-1].cumsum()[::-1] - mine
        spoke_since = mine_after > 0
        f = _FLAG_ROW
        flags[f["same_user"]] = same
        flags[f["same_user_latest"]] = same & latest
        if said.mentions:
            mentioned = np.zeros(n, dtype=bool)
            for name in said.mentions:
                mentioned |= users == self._user_ids.get(name, -3)
            mentioned &= other
            flags[f["mentions_author"]] = mentioned
            flags[f["mentions_author_latest"]] = mentioned & latest
            flags[f["mentions_someone_else"]] = other & ~mentioned
            same_target = np.zeros(n, dtype=bool)
            for name in said.mentions:
                them = self._user_ids.get(name)
                if them is not None and them != user:
                    same_target |= (ma == them) | (mb == them)
            flags[f["mention_same"]] = same_target
        flags[f["author_mentions_me"]] = mentions_me & other
        flags[f["author_mentions_me_unanswered"]] = mentions_me & other & ~spoke_since
        flags[f["author_latest"]] = latest
        flags[f["their_since_1"]] = since == 1
        flags[f["their_since_2plus"]] = since >= 2
        flags[f["candidate_mentions_other"]] = (ma >= 0) & ~mentions_me
        flags[f["i_spoke_since"]] = spoke_since
        flags[f["mine_since_2plus"]] = mine_after >= 2
        # they mentioned me in the candidate or after it; I mentioned its author after it (any
        # mention of a message, not only its first two)
        at_or_after = ~after.T  # [i, j]: j >= i
        names_me = np.bincount(by[named == user], minlength=n) > 0
        flags[f["they_addressed_me_since"]] = (same_author & at_or_after & names_me[None, :]).any(axis=1) & other
        mine_named = same[by]  # my mentions: [i, e] candidate i's author is the one I named in e, at or after i
        i_named = (users[:, None] == named[None, mine_named]) & (np.arange(n)[:, None] <= by[None, mine_named])
        flags[f["i_addressed_them_since"]] = i_named.any(axis=1) & other
        if said.words:
            mine_words = np.array([self._vocabulary[w] for w in said.words if w in self._vocabulary], dtype=np.int64)
            words, holder = self._pool_entries(window, slots, mentions=False)
            shared = np.bincount(holder[np.isin(words, mine_words)], minlength=n).astype(np.float64)
            flags[f["overlap_1"]] = shared == 1
            flags[f["overlap_2"]] = shared == 2
            flags[f["overlap_3plus"]] = shared >= 3
            word_count = it[kernel.I_WORDS, slots].astype(np.float64)
            flags[f["overlap_share_candidate"]] = shared / np.maximum(word_count, 1.0)
            flags[f["overlap_share_message"]] = shared / len(said.words)
        cand = _cue_rows(it[kernel.I_CUES, slots])
        if not said.question:
            flags[f["answers_question"]] = cand[:, 0] * other
        if said.thanks:
            flags[f["thanks_other"]] = other
        if said.code:
            flags[f["code_both"]] = cand[:, 4]
        if said.url:
            flags[f["url_both"]] = cand[:, 5]
        if said.opener:
            flags[f["opener_other"]] = other
        flags[f["log_distance"]] = np.log1p(dist) / _LOG_DIST
        flags[f["log_age"]] = np.log1p(dt) / _LOG_AGE
        others = _others_between(latest, same)
        for k in range(4):
            flags[f["others_between_0"] + k] = others == k
        next_same = np.zeros(n)
        next_same[:-1] = users[1:] == users[:-1]  # the newest candidate's next message is this one
        flags[f["next_same"]] = next_same
        return dist_bin, time_bin, pace_bin, flags

    @staticmethod
    def _pool_entries(
        window: _Window, slots: npt.NDArray[np.int64], *, mentions: bool
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """The candidates' word ids (or mention ids), in order, and the candidate each is of."""
        count = window.it[kernel.I_MENTIONS if mentions else kernel.I_WORDS, slots]
        at = window.it[kernel.I_AT, slots] + (window.it[kernel.I_WORDS, slots] if mentions else 0)
        within = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
        positions = (np.repeat(at, count) + within) % len(window.pool)
        return window.pool[positions], np.repeat(np.arange(len(slots)), count)


def _cue_rows(bits: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Cue bits (`linker_kernel.CUE_*`) as rows of `cues`."""
    return np.asarray((bits[:, None] >> np.arange(len(_CUES))[None, :]) & 1, dtype=np.float64)


if not (np.array_equal(TIME_EDGES, kernel.TIME_EDGES) and np.array_equal(PACE_EDGES, kernel.PACE_EDGES)):
    raise AssertionError("linker_kernel's bin edges differ from the linker's")


def compile_kernels(model: LinkerModel | None = None) -> float:
    """Compile what `Linker.link` calls of `linker_kernel` for `model` (or load it from numba's
    on-disk cache), by deciding a few messages on a linker thrown away; the seconds it took.

    numba compiles a function at its first call: without this, the service's first linked message
    would wait for it (5-25 s on a cold cache on this machine, depending on its load). The service
    calls it at start-up in linked mode; `beepgpt conversations` and the evaluation compile at
    their first message instead, and training (`Linker.candidates`, `add`) at its first."""
    started = time.perf_counter()
    linker = Linker(model)
    for k, text in enumerate(["how do I mount a usb disk?", "<@U1> <@U2> try `sudo mount` on the disk", "thanks"]):
        linker.link("C", f"{k + 1}.000000", k + 1.0, f"U{k % 2}", text)
    return time.perf_counter() - started
