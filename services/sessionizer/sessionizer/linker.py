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
  (distance, time, mentions, who spoke since, shared words, question/thanks/code/link cues), and
  the score of "starts a conversation" only on the message. Nothing depends on which links were
  chosen before. That is what makes a restart repeat every decision: the sessionizer replays
  from the oldest message of an open conversation, so a replayed message sees a suffix of the
  window it saw the first time, which still holds its winner (its parent is in an open
  conversation, so it is replayed) with unchanged scores; the argmax over a subset that keeps
  the winner is the same winner.

Scoring is a linear model over those features (fitted with scikit-learn's logistic regression by
`offline.training.linker`), evaluated with numpy over the window at once; the model is a
small JSON file of named weights shipped in the package, so an install needs no training.

Thread replies never reach the linker: thread membership always wins (the sessionizer puts them
in their thread). A thread's parent is a flow message like any other here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

FORMAT = "beepgpt-reply-linker"
FEATURE_SET = 1
"""Bumped whenever a feature changes meaning: a model fitted on another feature set is refused."""

DEFAULT_MODEL = "reply-linker-v1.json"
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
    """The cues of a message text: mentions, content words, question/thanks/greeting/code/link."""
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

DIST_EDGES = np.array([1, 2, 3, 5, 8, 13, 21, 34])
"""Flow messages from the candidate to the new one (1 = the previous message), binned."""
TIME_EDGES = np.array([5.0, 15.0, 30.0, 60.0, 120.0, 240.0, 480.0, 900.0, 1800.0, 3600.0, 7200.0])
"""Seconds from the candidate to the new message, binned (log-like)."""

_PAIR_FLAGS = (
    "same_user",  # the same author going on
    "same_user_latest",  # ... and the candidate is their latest message
    "mentions_author",  # the new message mentions the candidate's author
    "mentions_author_latest",  # ... whose latest message the candidate is
    "author_mentions_me",  # the candidate mentions the new message's author
    "author_mentions_me_unanswered",  # ... who has not spoken since
    "author_latest",  # the candidate is its author's latest message
    "mentions_someone_else",  # the new message addresses somebody else
    "i_spoke_since",  # the new message's author spoke after the candidate
    "they_addressed_me_since",  # the candidate's author mentioned me in it or after it
    "i_addressed_them_since",  # I mentioned the candidate's author after it
    "overlap_1",
    "overlap_2",
    "overlap_3plus",  # content words shared
    "candidate_question",
    "answers_question",  # candidate asks, the new message by someone else does not
    "candidate_thanks",
    "thanks_other",  # the new message thanks, the candidate is someone else's
    "candidate_greeting",
    "candidate_code",
    "candidate_url",
    "code_both",
    "opener_other",  # the new message opens like a reply ("yes", "it", "try"), to someone else
    "candidate_short",
    "candidate_long",
)
PAIR_FEATURES: tuple[str, ...] = (
    *(f"dist_{i}" for i in range(len(DIST_EDGES) + 1)),
    *(f"time_{i}" for i in range(len(TIME_EDGES) + 1)),
    *_PAIR_FLAGS,
)
SELF_FEATURES: tuple[str, ...] = (
    "self_bias",
    "self_mentions",
    "self_question",
    "self_greeting",
    "self_thanks",
    "self_opener",
    "self_code",
    "self_url",
    "self_short",
    "self_long",
)
"""The score of "starts a conversation": from the message alone (see the module docstring)."""

_D0 = 0
_T0 = len(DIST_EDGES) + 1
_F0 = _T0 + len(TIME_EDGES) + 1
_FLAG = {name: _F0 + i for i, name in enumerate(_PAIR_FLAGS)}


def self_features(said: Said) -> npt.NDArray[np.float64]:
    return np.array(
        [
            1.0,
            float(bool(said.mentions)),
            float(said.question),
            float(said.greeting),
            float(said.thanks),
            float(said.opener),
            float(said.code),
            float(said.url),
            float(said.length == 0),
            float(said.length == 2),
        ]
    )


# --- the model -----------------------------------------------------------------------------------


class ModelError(ValueError):
    """The file is not a reply-linker model this code can use."""


@dataclass(frozen=True)
class LinkerModel:
    """Weights of the pair and self features, and the window the model was chosen with."""

    pair_weights: npt.NDArray[np.float64]
    self_weights: npt.NDArray[np.float64]
    window_messages: int
    window_s: float
    version: str
    meta: dict[str, Any]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LinkerModel:
        if data.get("format") != FORMAT or data.get("feature_set") != FEATURE_SET:
            raise ModelError(
                f"not a {FORMAT} model of feature set {FEATURE_SET}: "
                f"{data.get('format')!r} / {data.get('feature_set')!r}"
            )
        weights: dict[str, float] = data["weights"]
        missing = [n for n in (*PAIR_FEATURES, *SELF_FEATURES) if n not in weights]
        if missing:
            raise ModelError(f"the model lacks weights for {missing}")
        return cls(
            pair_weights=np.array([weights[n] for n in PAIR_FEATURES], dtype=np.float64),
            self_weights=np.array([weights[n] for n in SELF_FEATURES], dtype=np.float64),
            window_messages=int(data["window_messages"]),
            window_s=float(data["window_s"]),
            version=str(data["version"]),
            meta={k: v for k, v in data.items() if k not in ("weights",)},
        )

    def to_dict(self) -> dict[str, Any]:
        weights = dict(zip(PAIR_FEATURES, self.pair_weights.tolist(), strict=True))
        weights.update(zip(SELF_FEATURES, self.self_weights.tolist(), strict=True))
        data = dict(self.meta)
        data.update(
            format=FORMAT,
            feature_set=FEATURE_SET,
            version=self.version,
            window_messages=self.window_messages,
            window_s=self.window_s,
            weights={k: round(v, 6) for k, v in weights.items()},
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
    """The latest flow messages of one channel, as arrays the scores are computed over."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.filled = 0
        self.next = 0  # the slot the next message goes into
        self.seq = 0  # flow messages seen in this channel
        self.times = np.zeros(size)
        self.seqs = np.zeros(size, dtype=np.int64)
        self.users = np.full(size, -1, dtype=np.int64)
        self.mention_a = np.full(size, -2, dtype=np.int64)
        self.mention_b = np.full(size, -2, dtype=np.int64)
        self.latest = np.zeros(size, dtype=bool)
        # candidate cues: question, thanks, greeting, code, url, short, long
        self.cues = np.zeros((size, 7))
        self.words: list[frozenset[str]] = [frozenset()] * size
        self.ts: list[str] = [""] * size
        self.roots: list[str] = [""] * size
        self.latest_slot: dict[int, int] = {}
        self.last_seq: dict[int, int] = {}
        self.mentioned_me: dict[int, dict[int, int]] = {}
        """user → {author: seq of the author's latest message mentioning that user}: "they
        mentioned me in or after the candidate" is one comparison per author who did, and
        depends on nothing older than the candidate."""
        self.mentioned_by: dict[int, dict[int, int]] = {}
        """author → {user: seq of the author's latest message mentioning them}."""
        self.word_slots: dict[str, set[int]] = {}
        """content word → the slots whose message has it (shared words without a loop over the window)."""


@dataclass(frozen=True)
class Candidates:
    """A message's feature rows, before it is decided (what training reads)."""

    pair: npt.NDArray[np.float64]
    """One row of `PAIR_FEATURES` per candidate, oldest first (see `ts`)."""
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

    def link(self, channel: str, ts: str, sent_s: float, user: str, text: str) -> Link:
        said = read(text)
        window = self._windows.get(channel)
        if window is None:
            window = self._windows[channel] = _Window(self.model.window_messages)
        user_id = self._user_id(user)
        slots = self._slots(window, sent_s)
        parent: str | None = None
        root = ts
        if len(slots):
            x = self._pair_rows(window, slots, said, user_id, sent_s)
            scores = x @ self.model.pair_weights
            best = int(np.argmax(scores))
            own = float(self_features(said) @ self.model.self_weights) + self.self_offset
            if scores[best] > own:
                slot = int(slots[best])
                parent, root = window.ts[slot], window.roots[slot]
        self._add(window, ts, sent_s, user_id, said, root)
        return Link(parent, root)

    def candidates(self, channel: str, sent_s: float, user: str, text: str) -> Candidates:
        said = read(text)
        window = self._windows.setdefault(channel, _Window(self.model.window_messages))
        slots = self._slots(window, sent_s)
        user_id = self._user_id(user)
        x = self._pair_rows(window, slots, said, user_id, sent_s)
        return Candidates(
            x,
            [window.ts[int(s)] for s in slots],
            self_features(said),
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
        """The window's slots still within `window_s` of `sent_s`, oldest first."""
        n = window.filled
        if n == 0:
            return np.empty(0, dtype=np.int64)
        order = (np.arange(window.next - n, window.next) % window.size).astype(np.int64)
        recent = window.times[order] >= sent_s - self.model.window_s
        return order[recent]

    def _pair_rows(
        self, window: _Window, slots: npt.NDArray[np.int64], said: Said, user: int, sent_s: float
    ) -> npt.NDArray[np.float64]:
        n = len(slots)
        x = np.zeros((n, len(PAIR_FEATURES)))
        if n == 0:
            return x
        rows = np.arange(n)
        dist = window.seq - window.seqs[slots]
        x[rows, _D0 + np.searchsorted(DIST_EDGES, dist, side="left")] = 1.0
        dt = np.maximum(sent_s - window.times[slots], 0.0)
        x[rows, _T0 + np.searchsorted(TIME_EDGES, dt, side="right")] = 1.0
        users = window.users[slots]
        same = users == user
        other = ~same
        latest = window.latest[slots]
        mentioned = np.zeros(n, dtype=bool)
        for name in said.mentions:
            mentioned |= users == self._user_ids.get(name, -3)
        mentioned &= other
        mentions_me = (window.mention_a[slots] == user) | (window.mention_b[slots] == user)
        spoke_since = window.seqs[slots] < window.last_seq.get(user, -1)
        cues = window.cues[slots]
        f = _FLAG
        x[:, f["same_user"]] = same
        x[:, f["same_user_latest"]] = same & latest
        x[:, f["mentions_author"]] = mentioned
        x[:, f["mentions_author_latest"]] = mentioned & latest
        x[:, f["author_mentions_me"]] = mentions_me & other
        x[:, f["author_mentions_me_unanswered"]] = mentions_me & other & ~spoke_since
        x[:, f["author_latest"]] = latest
        if said.mentions:
            x[:, f["mentions_someone_else"]] = other & ~mentioned
        x[:, f["i_spoke_since"]] = spoke_since
        seqs = window.seqs[slots]
        oldest = window.seq - window.filled  # the ring's oldest message: monotone, unlike `slots`
        x[:, f["they_addressed_me_since"]] = self._since(window.mentioned_me.get(user), users, seqs, oldest) & other
        x[:, f["i_addressed_them_since"]] = self._since(window.mentioned_by.get(user), users, seqs, oldest) & other
        if said.words:
            counts = np.zeros(window.size)
            index = window.word_slots
            for word in said.words:
                for held in index.get(word, ()):
                    counts[held] += 1
            shared = counts[slots]
            x[:, f["overlap_1"]] = shared == 1
            x[:, f["overlap_2"]] = shared == 2
            x[:, f["overlap_3plus"]] = shared >= 3
        x[:, f["candidate_question"]] = cues[:, 0]
        if not said.question:
            x[:, f["answers_question"]] = cues[:, 0] * other
        x[:, f["candidate_thanks"]] = cues[:, 1]
        if said.thanks:
            x[:, f["thanks_other"]] = other
        x[:, f["candidate_greeting"]] = cues[:, 2]
        x[:, f["candidate_code"]] = cues[:, 3]
        x[:, f["candidate_url"]] = cues[:, 4]
        if said.code:
            x[:, f["code_both"]] = cues[:, 3]
        if said.opener:
            x[:, f["opener_other"]] = other
        x[:, f["candidate_short"]] = cues[:, 5]
        x[:, f["candidate_long"]] = cues[:, 6]
        return x

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

    def _add(self, window: _Window, ts: str, sent_s: float, user: int, said: Said, root: str) -> None:
        slot = window.next
        if window.filled == window.size:  # the oldest goes
            old_user = int(window.users[slot])
            if window.latest_slot.get(old_user) == slot:
                del window.latest_slot[old_user]
        previous = window.latest_slot.get(user)
        if previous is not None:
            window.latest[previous] = False
        window.latest_slot[user] = slot
        window.latest[slot] = True
        window.times[slot] = sent_s
        window.seqs[slot] = window.seq
        window.last_seq[user] = window.seq
        window.users[slot] = user
        mentions = [self._user_id(name) for name in said.mentions]
        for mentioned in mentions:
            window.mentioned_me.setdefault(mentioned, {})[user] = window.seq
            window.mentioned_by.setdefault(user, {})[mentioned] = window.seq
        window.mention_a[slot] = mentions[0] if mentions else -2
        window.mention_b[slot] = mentions[1] if len(mentions) > 1 else -2
        window.cues[slot] = (
            said.question,
            said.thanks,
            said.greeting,
            said.code,
            said.url,
            said.length == 0,
            said.length == 2,
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
        window.ts[slot] = ts
        window.roots[slot] = root
        window.seq += 1
        window.next = (slot + 1) % window.size
        window.filled = min(window.filled + 1, window.size)
