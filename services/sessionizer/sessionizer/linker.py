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
choice each message makes among its candidates and starting: a conditional logit), evaluated
with numpy over the window at once; the model is a
small JSON file of named weights shipped in the package, so an install needs no training.

Thread replies never reach the linker: thread membership always wins (the sessionizer puts them
in their thread). A thread's parent is a flow message like any other here.
"""

from __future__ import annotations

import json
import re
from collections import deque
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

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


@dataclass(frozen=True, slots=True)
class Said:
    """What the linker reads from a message's text (once, when it arrives)."""

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


_ROW_TIMES, _ROW_SLOT_SCORE, _ROW_QUESTION, _ROW_CODE, _ROW_URL, _ROW_SHARE_WEIGHT = range(6)
_TABLE_ROWS = 6
"""The rows of `_Window.table`."""


class _Window:
    """The latest flow messages of one channel, as arrays the scores are computed over."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.filled = 0
        self.next = 0  # the slot the next message goes into
        self.seq = 0  # flow messages seen in this channel
        self.table = np.zeros((_TABLE_ROWS, size))
        """Per slot, what `_linear_scores` reads of each candidate, one row each (`_ROW_TIMES`...),
        so that the candidates' values are one view (or one gather when the ring wraps)."""
        self.times = self.table[_ROW_TIMES]
        self.seqs = np.zeros(size, dtype=np.int64)
        self.users = np.full(size, -1, dtype=np.int64)
        self.mention_a = np.full(size, -2, dtype=np.int64)
        self.mention_b = np.full(size, -2, dtype=np.int64)
        self.since = np.zeros(size, dtype=np.int64)
        """Messages its author wrote after each slot's message, up to 2 (0: its author's latest)."""
        self.latest = np.zeros(size, dtype=np.int64)
        """1 where a slot's message is its author's latest (`since` 0), else 0."""
        self.question = self.table[_ROW_QUESTION]
        """Each slot's question cue (the first of `cues`, for `answers_question`)."""
        self.code = self.table[_ROW_CODE]
        self.url = self.table[_ROW_URL]
        self.cues = np.zeros((size, len(_CUES)))
        self.slot_score = self.table[_ROW_SLOT_SCORE]
        """A linear model's weight of what a slot's message says alone (its cues, whether it
        addresses someone) and of its author's messages after it: kept up to date by `_add`."""
        self.next_same = np.zeros(size)
        """1 where the message right after a slot's message is by the same author."""
        self.word_count = np.zeros(size)
        """Each slot's number of content words (for the shares of shared words)."""
        self.share_weight = self.table[_ROW_SHARE_WEIGHT]
        """A linear model's weight of one shared word as a share of each slot's content words."""
        self.words: list[frozenset[str]] = [frozenset()] * size
        self.ts: list[str] = [""] * size
        self.roots: list[str] = [""] * size
        self.mentioned_me: dict[int, dict[int, int]] = {}
        """user → {author: seq of the author's latest message mentioning that user}: "they
        mentioned me in or after the candidate" is one comparison per author who did, and
        depends on nothing older than the candidate."""
        self.mentioned_by: dict[int, dict[int, int]] = {}
        """author → {user: seq of the author's latest message mentioning them}."""
        self.word_slots: dict[str, set[int]] = {}
        """content word → the slots whose message has it (shared words without a loop over the window)."""
        self.by_user: dict[int, deque[int]] = {}
        """author → seqs of their messages in the ring, oldest first."""
        self.mentioning: dict[int, deque[int]] = {}
        """user → seqs of the ring's messages that mention them (first two mentions), oldest first."""


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


class Linker:
    """Links each new flow message of any channel to a message of that channel's window.

    `link` is the whole decision; `candidates` + `add` are its two halves, for training (which
    needs the features of every message, whatever gets decided).
    """

    def __init__(self, model: LinkerModel | None = None, *, self_offset: float = 0.0) -> None:
        self.model = model or load_model()
        self.self_offset = self_offset
        """Added to every "starts a conversation" score (settings are chosen with it)."""
        self._windows: dict[str, _Window] = {}
        self._user_ids: dict[str, int] = {}
        self._weights = self.model.hidden[:, 0] * self.model.output[0] if self.model.activation == "identity" else None
        """A linear model's weights: `link` then scores without building rows (`_linear_scores`)."""
        self._cue_weights = None if self._weights is None else self._weights[_C0:_M0]
        w = self._weights if self._weights is not None else np.zeros(len(FEATURES))
        self._time_score = w[_T0:_P0]
        """The weight of each time bin (views of `w`: the very numbers the rows are scored with)."""
        self._pace_score = w[_P0:_F0]
        self._message_weights = w[_M0:_S0]
        self._self_weights = w[_S0 + 1 :]
        self._w = {name: float(w[_F0 + i]) for i, name in enumerate(_PAIR_FLAGS)}
        self._w["log_age"] /= _LOG_AGE
        distances = np.arange(self.model.window_messages, 0, -1)  # oldest candidate first
        size = self.model.window_messages
        self._rings = (np.arange(size)[:, None] + np.arange(size)[None, :]) % size
        """Row k: a full ring's slots oldest first when the next message goes into slot k."""
        self._rings.flags.writeable = False
        self._distances = distances.astype(np.float64)
        self._others_score = np.array(
            [self._w[f"others_between_{k}"] for k in ("0", "1", "2")]
            + [self._w["others_between_3plus"]] * (self.model.window_messages - 2)
        )
        """The weight of each count of other people after a candidate (3 and more alike)."""
        self._dist_score = w[_D0 + np.searchsorted(DIST_EDGES, distances, side="left")] + (
            np.log1p(distances) * self._w["log_distance"] / _LOG_DIST
        )
        self._overlap_table = np.array([0.0, self._w["overlap_1"], self._w["overlap_2"], self._w["overlap_3plus"]])
        """The weight of sharing 0, 1, 2, 3 or more content words with a candidate."""
        self._since_score = (self._w["author_latest"], self._w["their_since_1"], self._w["their_since_2plus"])
        """A slot's weight for its author's messages after it: none, one, two or more."""

    def link(self, channel: str, ts: str, sent_s: float, user: str, text: str) -> Link:
        said = read(text)
        message = cues(said)
        window = self._windows.get(channel)
        if window is None:
            window = self._windows[channel] = _Window(self.model.window_messages)
        user_id = self._user_id(user)
        slots = self._slots(window, sent_s)
        parent: str | None = None
        root = ts
        if len(slots):
            if self._weights is not None:
                scores, own = self._linear_scores(window, slots, said, user_id, sent_s, message)
            else:
                both = self.model.score(self._rows(window, slots, said, user_id, sent_s))
                scores, own = both[:-1], float(both[-1])
            best = int(scores.argmax())
            if scores[best] > own + self.self_offset:
                slot = int(slots[best])
                parent, root = window.ts[slot], window.roots[slot]
        self._add(window, ts, sent_s, user_id, said, root, message)
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
            distance=window.seq - window.seqs[slots],
            age_s=np.maximum(sent_s - window.times[slots], 0.0),
        )

    def add(self, channel: str, ts: str, sent_s: float, user: str, text: str, root_ts: str) -> None:
        window = self._windows.setdefault(channel, _Window(self.model.window_messages))
        self._add(window, ts, sent_s, self._user_id(user), read(text), root_ts)

    # --- inside --------------------------------------------------------------------------------

    def _user_id(self, user: str) -> int:
        found = self._user_ids.get(user)
        if found is None:
            found = self._user_ids[user] = len(self._user_ids)
        return found

    def _slots(self, window: _Window, sent_s: float) -> npt.NDArray[np.int64]:
        """The window's candidates, oldest first: the ring's messages after the latest one older
        than `window_s` (all of them in time order; a suffix of the ring, so candidates are
        consecutive messages and `_linear_scores` can address them by seq)."""
        n = window.filled
        if n == 0:
            return np.empty(0, dtype=np.int64)
        if n < window.size:  # not full yet: slots 0 .. n-1 in order (views of arrays made once)
            order = self._rings[0, :n]
            times = window.times[:n]
        else:
            order = self._rings[window.next]
            times = window.times.take(order)
        old = (times < sent_s - self.model.window_s).nonzero()[0]
        return order[old[-1] + 1 :] if len(old) else order

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
        x[:n, _C0:_M0] = window.cues[slots]
        return x

    def _linear_scores(
        self,
        window: _Window,
        slots: npt.NDArray[np.int64],
        said: Said,
        user: int,
        sent_s: float,
        message_cues: npt.NDArray[np.float64] | None = None,
    ) -> tuple[npt.NDArray[np.float64], float]:
        """The candidates' scores and the start score of a linear model, without building rows
        (what `link` runs; equal to `_rows` @ weights, which a test checks on random chat).

        Each group of features is added where it applies: distance is a fixed vector (the
        candidates are the latest messages), a candidate's own cues and its author's later
        messages were weighted when they happened (`slot_score`), and what depends on the new
        message's author and mentions is added at the few seqs it concerns (`by_user`,
        `mentioning`), so a message costs a handful of vector operations and short loops."""
        w = self._weights
        assert w is not None
        g = self._w
        n = len(slots)
        seq0 = window.seq - n  # the oldest candidate's seq; candidate i has seq seq0 + i
        first = int(slots[0])
        if first + n <= window.size:  # the candidates lie in order in the ring: views, no copies
            cand = window.table[:, first : first + n]
            latest = window.latest[first : first + n]
        else:
            cand = window.table.take(slots, axis=1)
            latest = window.latest.take(slots)
        dt = sent_s - cand[_ROW_TIMES]
        np.maximum(dt, 0.0, out=dt)
        scores = self._dist_score[-n:] + cand[_ROW_SLOT_SCORE]
        scores += self._time_score.take(TIME_EDGES.searchsorted(dt, side="right"))
        scores += self._pace_score.take(PACE_EDGES.searchsorted(dt / self._distances[-n:], side="right"))
        age = np.log1p(dt)
        age *= g["log_age"]
        scores += age
        message = cues(said) if message_cues is None else message_cues
        constant = float(message @ self._message_weights)
        own = constant + w[_S0] + float(message @ self._self_weights)
        # "to someone else" cues: everyone's candidates, mine taken back below
        other_all = constant
        if said.thanks:
            other_all += g["thanks_other"]
        if said.opener:
            other_all += g["opener_other"]
        if said.mentions:
            other_all += g["mentions_someone_else"]
        scores += other_all
        if not said.question:
            scores += cand[_ROW_QUESTION] * g["answers_question"]
        if said.code:
            scores += cand[_ROW_CODE] * g["code_both"]
        if said.url:
            scores += cand[_ROW_URL] * g["url_both"]
        mine = [q - seq0 for q in window.by_user.get(user, ()) if q >= seq0]  # oldest first
        # others after each candidate (`_others_between` without its vector work): authors with a
        # latest message after it, less its own author if they wrote since (not latest), less me
        # if I did
        others = latest.cumsum()
        others = (int(others[-1]) - 1) - others
        others += latest
        if len(mine) > 1:
            others[: mine[-1]] -= 1
            others[mine[:-1]] += 1  # mine: already taken back as "its author wrote since"
        elif mine:
            others[: mine[-1]] -= 1
        scores += self._others_score[others]
        mentioned_not_mine = 0.0
        if said.mentions:
            mentioned_not_mine = -g["mentions_someone_else"]
        for i in mine:
            scores[i] += g["same_user"] - (other_all - constant)
            if not said.question:
                scores[i] -= cand[_ROW_QUESTION, i] * g["answers_question"]
        if mine:
            last = mine[-1]
            scores[last] += g["same_user_latest"]
            scores[:last] += g["i_spoke_since"]
            if len(mine) >= 2:
                scores[: mine[-2]] += g["mine_since_2plus"]
        my_last = mine[-1] if mine else -1
        same_target: set[int] = set()
        for name in said.mentions:
            them = self._user_ids.get(name)
            if them is None or them == user:
                continue
            theirs = [q - seq0 for q in window.by_user.get(them, ()) if q >= seq0]
            for i in theirs:
                scores[i] += g["mentions_author"] + mentioned_not_mine
            if theirs:
                scores[theirs[-1]] += g["mentions_author_latest"]
            for q in window.mentioning.get(them, ()):
                i = q - seq0
                if i >= 0 and i not in same_target:
                    same_target.add(i)
                    scores[i] += g["mention_same"]
        for q in window.mentioning.get(user, ()):
            i = q - seq0
            if i < 0:
                continue
            scores[i] -= g["candidate_mentions_other"]
            if window.users[q % window.size] != user:
                scores[i] += g["author_mentions_me"]
                if my_last < i:
                    scores[i] += g["author_mentions_me_unanswered"]
        oldest = window.seq - window.filled
        for table, flag in ((window.mentioned_me, "they_addressed_me_since"), (window.mentioned_by, "i_addressed_them_since")):
            by_user = table.get(user)
            if not by_user:
                continue
            weight = g[flag]
            for them, latest_seq in list(by_user.items()):
                if latest_seq < oldest:
                    del by_user[them]
                    continue
                if them == user:
                    continue
                for q in window.by_user.get(them, ()):
                    if seq0 <= q <= latest_seq:
                        scores[q - seq0] += weight
        if said.words:
            # shared words: every slot holding a word of the message, counted at once (a slot
            # sharing none adds exactly 0.0, so adding the whole vector decides the same)
            index = window.word_slots
            held: list[int] = []
            for word in said.words:
                holders = index.get(word)
                if holders:
                    held.extend(holders)
            if held:
                shared = np.bincount(held, minlength=window.size)[slots]
                share_m = g["overlap_share_message"] / len(said.words)
                scores += self._overlap_table.take(np.minimum(shared, 3)) + shared * (cand[_ROW_SHARE_WEIGHT] + share_m)
        return scores, own

    def _pairs(
        self, window: _Window, slots: npt.NDArray[np.int64], said: Said, user: int, sent_s: float
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Each candidate's distance bin, time bin, pace bin and `_PAIR_FLAGS` (one row per
        flag: rows are contiguous, so each flag is one vector write)."""
        n = len(slots)
        seqs = window.seqs[slots]
        dist = window.seq - seqs
        dt = np.maximum(sent_s - window.times[slots], 0.0)
        dist_bin = np.searchsorted(DIST_EDGES, dist, side="left")
        time_bin = np.searchsorted(TIME_EDGES, dt, side="right")
        pace_bin = np.searchsorted(PACE_EDGES, dt / dist, side="right")
        flags = np.zeros((len(_PAIR_FLAGS), n))
        users = window.users[slots]
        same = users == user
        other = ~same
        since = window.since[slots]
        latest = since == 0
        ma, mb = window.mention_a[slots], window.mention_b[slots]
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
        oldest = window.seq - window.filled  # the ring's oldest message: monotone, unlike `slots`
        if window.mentioned_me.get(user):
            flags[f["they_addressed_me_since"]] = self._since(window.mentioned_me[user], users, seqs, oldest) & other
        if window.mentioned_by.get(user):
            flags[f["i_addressed_them_since"]] = self._since(window.mentioned_by[user], users, seqs, oldest) & other
        if said.words:
            counts = np.zeros(window.size)
            index = window.word_slots
            for word in said.words:
                for held in index.get(word, ()):
                    counts[held] += 1
            shared = counts[slots]
            flags[f["overlap_1"]] = shared == 1
            flags[f["overlap_2"]] = shared == 2
            flags[f["overlap_3plus"]] = shared >= 3
            flags[f["overlap_share_candidate"]] = shared / np.maximum(window.word_count[slots], 1.0)
            flags[f["overlap_share_message"]] = shared / len(said.words)
        cand = window.cues[slots]
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
        flags[f["next_same"]] = window.next_same[slots]
        return dist_bin, time_bin, pace_bin, flags

    @staticmethod
    def _since(
        by_user: dict[int, int] | None,
        users: npt.NDArray[np.int64],
        seqs: npt.NDArray[np.int64],
        oldest: int,
    ) -> npt.NDArray[np.bool_]:
        """Candidates whose author is in `by_user` with a seq at or after the candidate's own.
        Entries older than the ring's oldest message can match no candidate again: dropped."""
        found = np.zeros(len(users), dtype=bool)
        if not by_user:
            return found
        for other, seq in list(by_user.items()):
            if seq < oldest:
                del by_user[other]
            else:
                found |= (users == other) & (seqs <= seq)
        return found

    def _add(
        self,
        window: _Window,
        ts: str,
        sent_s: float,
        user: int,
        said: Said,
        root: str,
        message_cues: npt.NDArray[np.float64] | None = None,
    ) -> None:
        slot = window.next
        if window.filled == window.size:  # the oldest message leaves the ring
            leaving = window.seq - window.size
            window.by_user[int(window.users[slot])].popleft()
            for mentioned in (window.mention_a[slot], window.mention_b[slot]):
                seqs = window.mentioning.get(int(mentioned))
                if seqs and seqs[0] == leaving:
                    seqs.popleft()
        # every earlier message of this author now has one more after it
        since_score = self._since_score
        size = window.size
        mine = window.by_user.setdefault(user, deque())
        for back in (1, 2):  # older ones are at two already: the count stops there
            if len(mine) >= back:
                held = mine[-back] % size
                before = int(window.since[held])
                if before < 2:
                    window.since[held] = before + 1
                    window.latest[held] = 0
                    window.slot_score[held] += since_score[before + 1] - since_score[before]
        if window.filled and window.users[(slot - 1) % size] == user:  # the previous message goes on
            window.next_same[(slot - 1) % size] = 1.0
            window.slot_score[(slot - 1) % size] += self._w["next_same"]
        mine.append(window.seq)
        window.next_same[slot] = 0.0
        window.since[slot] = 0
        window.latest[slot] = 1
        window.times[slot] = sent_s
        window.seqs[slot] = window.seq
        window.users[slot] = user
        mentions = [self._user_id(name) for name in said.mentions]
        for mentioned in mentions:
            window.mentioned_me.setdefault(mentioned, {})[user] = window.seq
            window.mentioned_by.setdefault(user, {})[mentioned] = window.seq
        for mentioned in mentions[:2]:
            window.mentioning.setdefault(mentioned, deque()).append(window.seq)
        window.mention_a[slot] = mentions[0] if mentions else -2
        window.mention_b[slot] = mentions[1] if len(mentions) > 1 else -2
        window.cues[slot] = own_cues = cues(said) if message_cues is None else message_cues
        window.question[slot] = own_cues[0]
        window.code[slot] = own_cues[4]
        window.url[slot] = own_cues[5]
        if self._cue_weights is not None:
            window.slot_score[slot] = (
                float(own_cues @ self._cue_weights)
                + since_score[0]
                + (self._w["candidate_mentions_other"] if mentions else 0.0)
            )
        for word in window.words[slot]:  # the message leaving the slot
            holders = window.word_slots.get(word)
            if holders is not None:
                holders.discard(slot)
                if not holders:
                    del window.word_slots[word]
        for word in said.words:
            window.word_slots.setdefault(word, set()).add(slot)
        window.words[slot] = said.words
        window.word_count[slot] = len(said.words)
        window.share_weight[slot] = self._w["overlap_share_candidate"] / max(len(said.words), 1)
        window.ts[slot] = ts
        window.roots[slot] = root
        window.seq += 1
        window.next = (slot + 1) % window.size
        window.filled = min(window.filled + 1, window.size)
