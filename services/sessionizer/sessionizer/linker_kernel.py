"""The reply linker's per-message work in compiled code: candidates, linear scores, argmax, window.

Why: in numpy, `Linker.link` made some 30-40 small array operations a message (about a
microsecond each, whatever the size) and dictionary bookkeeping for the window; that was
50-60 µs a message, and linked mode's 10,000 messages/s target leaves the linker about 10-25
(bench/NOTES.md). Here one call per message does the candidates, every feature's weight, the
argmax and the ring update as plain loops over at most `window_messages` candidates, compiled
by numba; `sessionizer.linker` keeps the text (`read`), the names (users and words as ints),
the ts/roots of each slot and the model's constants, and calls `link` once per message.

The arithmetic is that of the numpy scorer it replaces (the linker of v3 before this module),
operation for operation and in the same order for every candidate, so the scores are the same
floats, with one exception: numpy's `log1p` (SIMD, on AVX-512 machines) and the C library's,
which compiled code calls, differ in the last bit for about one value in a hundred. So `link`
scores with the C library's, and when the decision is closer than `TIE_MARGIN` (an exact tie
among candidates, or the best one and "starts a conversation" within it) it asks for numpy's
`log1p` of the candidates' ages and decides again with those: the same decision as numpy's
scorer in every case (a last-bit difference moves a score by about 1e-14, far inside the margin).

State of one channel (made by `new_window`, owned by `linker._Window`):

- `fl` (float64, `F_ROWS` × size) and `it` (int64, `I_ROWS` × size): one column per ring slot;
  rows named `F_*` and `I_*` below;
- `meta` (int64): `M_FILLED` messages in the ring, `M_NEXT` the slot the next one goes into,
  `M_SEQ` flow messages seen, `M_HEAD` the next free position of `pool`;
- `pool` (int64): every slot's content-word ids then its mention ids (user ids, all of them,
  in order), consecutive from the slot's `I_AT`, positions counted from the channel's first
  message and taken modulo `len(pool)`. Messages leave in the order they came, so the live part
  is one run; `link` and `add` return `NEED_ROOM` (before changing anything) when the message
  would not fit, and the owner doubles the pool (`grow_pool`).

Shared by every channel: `weights` (`weight_vector` lays it out) and `mark`, one int64 per word id
(0 everywhere between calls), where a message marks its own words to count the shared ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

# Bin edges: the same values as `linker.TIME_EDGES` / `PACE_EDGES` (kept here so that the compiled
# code holds them as constants; `linker` checks they are equal at import).
TIME_EDGES = np.array(
    [2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 240.0, 360.0, 480.0, 720.0,
     900.0, 1200.0, 1800.0, 2700.0, 3600.0, 5400.0, 7200.0, 10800.0, 14400.0]
)
PACE_EDGES = np.array([1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0])

F_TIMES, F_SLOT_SCORE, F_QUESTION, F_CODE, F_URL, F_SHARE_WEIGHT, F_NEXT_SAME = range(7)
F_ROWS = 7
"""`F_SLOT_SCORE`: a linear model's weight of what the slot's message says alone and of its
author's messages after it (kept up to date by `add`); `F_SHARE_WEIGHT`: the weight of one shared
word as a share of the slot's content words; `F_NEXT_SAME`: 1.0 when the next message is by the
same author."""
I_SEQ, I_USER, I_SINCE, I_LATEST, I_MENTION_A, I_MENTION_B, I_CUES, I_AT, I_WORDS, I_MENTIONS = range(10)
I_ROWS = 10
"""`I_SINCE`: messages its author wrote after it, up to 2; `I_LATEST`: 1 when it is its author's
latest; `I_MENTION_A/B`: its first two mentions (-2: none); `I_CUES`: its cues as bits (`CUE_*`);
`I_AT`, `I_WORDS`, `I_MENTIONS`: where its ids start in `pool`, how many words, how many mentions."""
M_FILLED, M_NEXT, M_SEQ, M_HEAD = range(4)
M_SIZE = 4

CUE_QUESTION, CUE_THANKS, CUE_GREETING, CUE_OPENER, CUE_CODE, CUE_URL, CUE_SHORT, CUE_LONG, CUE_MENTIONS = (
    1 << k for k in range(9)
)
"""A message's cues as bits, in `linker._CUES` order."""

# `weights`: these scalars, then the distance, time, pace and others-between tables
(
    W_ANSWERS_QUESTION, W_CODE_BOTH, W_URL_BOTH, W_SAME_USER_LATEST, W_I_SPOKE_SINCE,
    W_MINE_SINCE_2PLUS, W_MENTIONS_AUTHOR, W_MENTIONS_AUTHOR_LATEST, W_MENTION_SAME,
    W_CANDIDATE_MENTIONS_OTHER, W_AUTHOR_MENTIONS_ME, W_AUTHOR_MENTIONS_ME_UNANSWERED,
    W_THEY_ADDRESSED_ME_SINCE, W_I_ADDRESSED_THEM_SINCE, W_OVERLAP_SHARE_MESSAGE,
    W_OVERLAP_SHARE_CANDIDATE, W_LOG_AGE, W_NEXT_SAME, W_SINCE_0, W_SINCE_1, W_SINCE_2,
    W_OVERLAP_0, W_OVERLAP_1, W_OVERLAP_2, W_OVERLAP_3PLUS, W_WINDOW_S,
) = range(26)
W_SCALARS = 26
"""`W_MENTIONS_AUTHOR` holds mentions_author − mentions_someone_else (what a mention of the
candidate's author adds once "to someone else" was added to every candidate); `W_LOG_AGE` the
log_age weight over log(14401); `W_SINCE_k` author_latest, their_since_1, their_since_2plus;
`W_OVERLAP_0` is 0.0."""

START = -1
"""`link`: the message starts a conversation."""
RETRY_WITH_LOGS = -2
"""`link`: too close to call with the C library's log1p; call again with numpy's (`ages` filled)."""
NEED_ROOM = -3
"""`link`/`add`: `pool` is too small for the message; nothing was changed."""
TIE_MARGIN = 1e-9


def weight_vector(
    scalars: dict[int, float],
    dist_score: npt.NDArray[np.float64],
    time_score: npt.NDArray[np.float64],
    pace_score: npt.NDArray[np.float64],
    others_score: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """The `weights` argument: `scalars` by `W_*` index, then the tables (distance: one per
    distance from `size` down to 1, oldest candidate first; others: one per count 0..size)."""
    head = np.zeros(W_SCALARS)
    for k, v in scalars.items():
        head[k] = v
    return np.concatenate([head, dist_score, time_score, pace_score, others_score])


def new_window(size: int, pool: int = 1024) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(fl, it, meta, pool) of an empty channel; `pool` a power of two (positions are masked)."""
    assert pool & (pool - 1) == 0
    fl = np.zeros((F_ROWS, size))
    it = np.zeros((I_ROWS, size), dtype=np.int64)
    it[I_USER] = -1
    it[I_MENTION_A] = -2
    it[I_MENTION_B] = -2
    return fl, it, np.zeros(M_SIZE, dtype=np.int64), np.zeros(pool, dtype=np.int64)


def oldest_at(it: npt.NDArray[np.int64], meta: npt.NDArray[np.int64]) -> int:
    """Where the ring's oldest message starts in the pool (the head when the ring is empty)."""
    filled, size = int(meta[M_FILLED]), it.shape[1]
    if filled == 0:
        return int(meta[M_HEAD])
    return int(it[I_AT, 0 if filled < size else meta[M_NEXT]])


def grow_pool(it: npt.NDArray[np.int64], meta: npt.NDArray[np.int64], pool: npt.NDArray[np.int64], extra: int) -> npt.NDArray[np.int64]:
    """A pool with room for the live ids and `extra` more, holding the live ids at their positions."""
    start, head = oldest_at(it, meta), int(meta[M_HEAD])
    size = 2 * len(pool)
    while size < head - start + extra:
        size *= 2
    grown = np.zeros(size, dtype=np.int64)
    at = np.arange(start, head)
    grown[at & (size - 1)] = pool[at & (len(pool) - 1)]
    return grown


_KERNELS = ("_candidates", "_scores", "_room", "_add", "link", "scores", "add", "candidates")
_compiled = False


def compile_lazily() -> None:
    """Put numba's dispatchers (`njit(cache=True)`) in place of the plain functions below, once
    per process; `Linker` calls it when made. Until then numba is not even imported, so gap mode
    never loads it (its import alone is 0.25 s of CPU and 65 MB). Where no cache directory is
    writable (numba then refuses `cache=True`) each process compiles without one. Each function
    is compiled at its first call (`linker.compile_kernels` makes that call at start-up)."""
    global _compiled
    if _compiled:
        return
    import numba

    for name in _KERNELS:
        function = globals()[name]
        try:
            globals()[name] = numba.njit(cache=True)(function)
        except RuntimeError:
            globals()[name] = numba.njit(function)
    _compiled = True


def _candidates(fl: Any, meta: Any, sent_s: float, window_s: float) -> tuple[int, int]:
    """(slot of the oldest candidate, number of candidates): the ring's messages after the latest
    one (in ring order) sent more than `window_s` before `sent_s`; consecutive slots, oldest first."""
    filled = meta[M_FILLED]
    size = fl.shape[1]
    if filled == 0:
        return 0, 0
    start = 0 if filled < size else meta[M_NEXT]
    cutoff = sent_s - window_s
    first = 0
    s = (start + filled - 1) % size
    for k in range(filled - 1, -1, -1):
        if fl[F_TIMES, s] < cutoff:
            first = k + 1
            break
        s = s - 1 if s > 0 else size - 1
    return (start + first) % size, filled - first


def _scores(
    fl: Any, it: Any, meta: Any, pool: Any, weights: Any, mark: Any, out: Any, ages: Any,
    first: int, n: int, sent_s: float, user: int, cue_bits: int, ids: Any, n_words: int,
    other_all: float, mine_extra: float, given_ages: bool,
) -> None:
    """The scores of the `n` candidates from slot `first` into `out[:n]` (the order of operations
    per candidate is that of the numpy scorer: see the module docstring). `ids`: the message's
    word ids then its mention ids; `other_all`: the constant of the message's cues and the "to
    someone else" weights every candidate gets; `mine_extra`: what a candidate of the message's
    own author gets instead of those. `given_ages`: `ages[:n]` holds log1p of each candidate's age
    (else the age goes there, for a retry)."""
    size = fl.shape[1]
    w = weights
    dist0 = W_SCALARS
    time0 = dist0 + size
    pace0 = time0 + len(TIME_EDGES) + 1
    others0 = pace0 + len(PACE_EDGES) + 1
    question = (cue_bits & CUE_QUESTION) != 0
    code = (cue_bits & CUE_CODE) != 0
    url = (cue_bits & CUE_URL) != 0
    # the candidates' slots (no modulo in the loops below: it costs more than the rest of a step)
    slots = np.empty(n, dtype=np.int64)
    s = first
    for i in range(n):
        slots[i] = s
        s += 1
        if s == size:
            s = 0
    # who wrote what among the candidates: my messages, authors' latest messages, any mentions
    mine = np.empty(n, dtype=np.int64)
    n_mine = 0
    total_latest = 0
    any_mentions = False
    for i in range(n):
        s = slots[i]
        total_latest += it[I_LATEST, s]
        if it[I_USER, s] == user:
            mine[n_mine] = i
            n_mine += 1
        if it[I_MENTIONS, s] > 0:
            any_mentions = True
    last = mine[n_mine - 1] if n_mine > 0 else -1
    cum = 0
    for i in range(n):
        s = slots[i]
        dt = sent_s - fl[F_TIMES, s]
        if dt < 0.0:
            dt = 0.0
        v = w[dist0 + size - n + i] + fl[F_SLOT_SCORE, s]
        v += w[time0 + np.searchsorted(TIME_EDGES, dt, side="right")]
        v += w[pace0 + np.searchsorted(PACE_EDGES, dt / float(n - i), side="right")]
        if given_ages:
            age = ages[i]
        else:
            ages[i] = dt
            age = np.log1p(dt)
        age = age * w[W_LOG_AGE]
        v += age
        v += other_all
        if not question:
            v += fl[F_QUESTION, s] * w[W_ANSWERS_QUESTION]
        if code:
            v += fl[F_CODE, s] * w[W_CODE_BOTH]
        if url:
            v += fl[F_URL, s] * w[W_URL_BOTH]
        # others after it: authors with a latest message after it, less its own author if they
        # wrote since, less me if I did (my earlier messages: already taken back as their author)
        latest = it[I_LATEST, s]
        cum += latest
        others = (total_latest - 1) - cum + latest
        if i < last:
            others -= 1
        if n_mine > 1 and i != last and it[I_USER, s] == user:
            others += 1
        v += w[others0 + others]
        out[i] = v
    for k in range(n_mine):
        i = mine[k]
        out[i] += mine_extra
        if not question:
            out[i] -= fl[F_QUESTION, slots[i]] * w[W_ANSWERS_QUESTION]
    if n_mine > 0:
        out[last] += w[W_SAME_USER_LATEST]
        for i in range(last):
            out[i] += w[W_I_SPOKE_SINCE]
        if n_mine >= 2:
            for i in range(mine[n_mine - 2]):
                out[i] += w[W_MINE_SINCE_2PLUS]
    n_mentions = len(ids) - n_words
    if n_mentions > 0:
        same_target = np.zeros(n, dtype=np.bool_)
        for k in range(n_words, len(ids)):
            them = ids[k]
            if them == user:
                continue
            theirs = -1
            for i in range(n):
                if it[I_USER, slots[i]] == them:
                    out[i] += w[W_MENTIONS_AUTHOR]
                    theirs = i
            if theirs >= 0:
                out[theirs] += w[W_MENTIONS_AUTHOR_LATEST]
            for i in range(n):
                s = slots[i]
                if (it[I_MENTION_A, s] == them or it[I_MENTION_B, s] == them) and not same_target[i]:
                    same_target[i] = True
                    out[i] += w[W_MENTION_SAME]
    for i in range(n):
        s = slots[i]
        if it[I_MENTION_A, s] == user or it[I_MENTION_B, s] == user:
            out[i] -= w[W_CANDIDATE_MENTIONS_OTHER]
            if it[I_USER, s] != user:
                out[i] += w[W_AUTHOR_MENTIONS_ME]
                if last < i:
                    out[i] += w[W_AUTHOR_MENTIONS_ME_UNANSWERED]
    if any_mentions:
        # from the newest candidate back: the authors who mentioned me in a message at or after
        # it (`me_by`), the people I mentioned at or after it (`by_me`)
        mask = len(pool) - 1
        me_by = np.empty(n, dtype=np.int64)
        n_me_by = 0
        by_me = np.empty(0, dtype=np.int64)
        n_by_me = 0
        for i in range(n - 1, -1, -1):
            s = slots[i]
            author = it[I_USER, s]
            count = it[I_MENTIONS, s]
            if count > 0:
                at = it[I_AT, s] + it[I_WORDS, s]
                if author == user:
                    if n_by_me + count > len(by_me):
                        grown = np.empty(2 * (n_by_me + count), dtype=np.int64)
                        grown[:n_by_me] = by_me[:n_by_me]
                        by_me = grown
                    for k in range(count):
                        by_me[n_by_me] = pool[(at + k) & mask]
                        n_by_me += 1
                else:
                    for k in range(count):
                        if pool[(at + k) & mask] == user:
                            me_by[n_me_by] = author
                            n_me_by += 1
                            break
            if author == user:
                continue
            for k in range(n_me_by):
                if me_by[k] == author:
                    out[i] += w[W_THEY_ADDRESSED_ME_SINCE]
                    break
            for k in range(n_by_me):
                if by_me[k] == author:
                    out[i] += w[W_I_ADDRESSED_THEM_SINCE]
                    break
    if n_words > 0:
        for k in range(n_words):
            mark[ids[k]] = 1
        mask = len(pool) - 1
        share_m = w[W_OVERLAP_SHARE_MESSAGE] / n_words
        for i in range(n):
            s = slots[i]
            at = it[I_AT, s]
            shared = 0
            for k in range(it[I_WORDS, s]):
                shared += mark[pool[(at + k) & mask]]
            if shared > 0:
                out[i] += w[W_OVERLAP_0 + min(shared, 3)] + shared * (fl[F_SHARE_WEIGHT, s] + share_m)
        for k in range(n_words):
            mark[ids[k]] = 0


def _room(it: Any, meta: Any, pool: Any, extra: int) -> bool:
    """Whether the pool holds the live ids once the message comes in (its oldest leaving a full ring)."""
    size = it.shape[1]
    filled = meta[M_FILLED]
    head = meta[M_HEAD]
    if filled == size:
        start = head if size == 1 else it[I_AT, (meta[M_NEXT] + 1) % size]
    elif filled > 0:
        start = it[I_AT, 0]
    else:
        start = head
    fits: bool = head + extra - start <= len(pool)
    return fits


def _add(
    fl: Any, it: Any, meta: Any, pool: Any, weights: Any, sent_s: float, user: int, cue_bits: int,
    ids: Any, n_words: int, slot_score: float,
) -> None:
    """The message into the ring (its oldest message leaving a full one): its author's earlier
    messages have one more after them, the previous message goes on when it is the author's."""
    size = fl.shape[1]
    w = weights
    slot = meta[M_NEXT]
    filled = meta[M_FILLED]
    # the author's latest two messages of the ring (not the one leaving), newest first
    found = 0
    s = slot
    for _ in range(size - 1 if filled == size else filled):
        s = s - 1 if s > 0 else size - 1
        if it[I_USER, s] == user:
            before = it[I_SINCE, s]
            if before < 2:
                it[I_SINCE, s] = before + 1
                it[I_LATEST, s] = 0
                fl[F_SLOT_SCORE, s] += w[W_SINCE_0 + before + 1] - w[W_SINCE_0 + before]
            found += 1
            if found == 2:
                break
    previous = (slot - 1) % size
    if filled > 0 and it[I_USER, previous] == user:
        fl[F_NEXT_SAME, previous] = 1.0
        fl[F_SLOT_SCORE, previous] += w[W_NEXT_SAME]
    n_mentions = len(ids) - n_words
    fl[F_NEXT_SAME, slot] = 0.0
    fl[F_TIMES, slot] = sent_s
    fl[F_SLOT_SCORE, slot] = slot_score
    fl[F_QUESTION, slot] = 1.0 if cue_bits & CUE_QUESTION else 0.0
    fl[F_CODE, slot] = 1.0 if cue_bits & CUE_CODE else 0.0
    fl[F_URL, slot] = 1.0 if cue_bits & CUE_URL else 0.0
    fl[F_SHARE_WEIGHT, slot] = w[W_OVERLAP_SHARE_CANDIDATE] / max(n_words, 1)
    it[I_SEQ, slot] = meta[M_SEQ]
    it[I_USER, slot] = user
    it[I_SINCE, slot] = 0
    it[I_LATEST, slot] = 1
    it[I_MENTION_A, slot] = ids[n_words] if n_mentions > 0 else -2
    it[I_MENTION_B, slot] = ids[n_words + 1] if n_mentions > 1 else -2
    it[I_CUES, slot] = cue_bits
    head = meta[M_HEAD]
    mask = len(pool) - 1
    for k in range(len(ids)):
        pool[(head + k) & mask] = ids[k]
    it[I_AT, slot] = head
    it[I_WORDS, slot] = n_words
    it[I_MENTIONS, slot] = n_mentions
    meta[M_HEAD] = head + len(ids)
    meta[M_SEQ] += 1
    meta[M_NEXT] = (slot + 1) % size
    meta[M_FILLED] = min(filled + 1, size)


def link(
    fl: Any, it: Any, meta: Any, pool: Any, weights: Any, mark: Any, out: Any, ages: Any,
    sent_s: float, user: int, cue_bits: int, ids: Any, n_words: int,
    other_all: float, mine_extra: float, threshold: float, slot_score: float, given_ages: bool,
) -> int:
    """Decide one message and add it to the window: the slot of its parent, or `START`; or
    `RETRY_WITH_LOGS` / `NEED_ROOM`, having changed nothing (see the module docstring).
    `threshold`: the score of starting a conversation (plus the linker's offset) to beat;
    `slot_score`: the message's own `F_SLOT_SCORE`."""
    if not _room(it, meta, pool, len(ids)):
        return NEED_ROOM
    first, n = _candidates(fl, meta, sent_s, weights[W_WINDOW_S])
    decided = START
    if n > 0:
        _scores(fl, it, meta, pool, weights, mark, out, ages, first, n, sent_s, user, cue_bits, ids, n_words,
                other_all, mine_extra, given_ages)
        best = 0
        for i in range(1, n):
            if out[i] > out[best]:
                best = i
        if not given_ages:
            close = abs(out[best] - threshold) <= TIE_MARGIN
            for i in range(n):
                if i != best and out[best] - out[i] <= TIE_MARGIN:
                    close = True
            if close:
                return RETRY_WITH_LOGS
        if out[best] > threshold:
            decided = (first + best) % fl.shape[1]
    _add(fl, it, meta, pool, weights, sent_s, user, cue_bits, ids, n_words, slot_score)
    return decided


def scores(
    fl: Any, it: Any, meta: Any, pool: Any, weights: Any, mark: Any, out: Any, ages: Any,
    sent_s: float, user: int, cue_bits: int, ids: Any, n_words: int,
    other_all: float, mine_extra: float, given_ages: bool,
) -> int:
    """The candidates' scores into `out` (what `link` decides on; for checks): their number."""
    n: int
    first, n = _candidates(fl, meta, sent_s, weights[W_WINDOW_S])
    if n > 0:
        _scores(fl, it, meta, pool, weights, mark, out, ages, first, n, sent_s, user, cue_bits, ids, n_words,
                other_all, mine_extra, given_ages)
    return n


def add(
    fl: Any, it: Any, meta: Any, pool: Any, weights: Any, sent_s: float, user: int, cue_bits: int,
    ids: Any, n_words: int, slot_score: float,
) -> int:
    """A message into the window without deciding it (training's `Linker.add`): 0, or `NEED_ROOM`."""
    if not _room(it, meta, pool, len(ids)):
        return NEED_ROOM
    _add(fl, it, meta, pool, weights, sent_s, user, cue_bits, ids, n_words, slot_score)
    return 0


def candidates(fl: Any, meta: Any, sent_s: float, window_s: float) -> tuple[int, int]:
    """(slot of the oldest candidate, number of candidates), as `link` finds them."""
    found: tuple[int, int] = _candidates(fl, meta, sent_s, window_s)
    return found
