"""History replayed in time order, one message at a time, as the live services see it.

Training and `beepgpt eval alerts` walk the same stream: each message joins its conversation
(the sessionizer's shared query decided which), `Activity` counts it, and the conversation as
it stands then — a `Moment`, what the scorer sees in an `updated` event — is what a pair is
scored on. Labels look forward: a person *joins* a conversation when they post in it after
someone else did, and the label of (person, moment) is whether they post in it later.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from offline.training.history import ConversationRows
from scorer.interest.activity import Activity
from scorer.interest.pairs import CONTENT_MESSAGES, Moment, content_vector

Matrix = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Step:
    """One message of the replay and its conversation right after it arrived."""

    row: int
    conversation: int
    """index into the replay's conversations"""
    user: str
    moment: Moment


@dataclass
class Stream:
    """A history laid out for replay: rows in time order, each with its conversation."""

    users: list[str]
    channels: list[str]
    times: list[float]
    texts: list[str]
    in_thread: list[bool]
    conversation_of: list[int]
    conversations: Sequence[ConversationRows]
    order: list[int]
    first_post: list[dict[str, float]]
    """per conversation: each author's first post time in it"""

    def joined_after(self, conversation: int, user: str, ts: float) -> bool:
        """Whether `user` first posts in the conversation after `ts` (a join still to come)."""
        first = self.first_post[conversation].get(user)
        return first is not None and first > ts

    def joins(self, start: float, end: float = float("inf")) -> list[tuple[int, str, float]]:
        """(conversation, person, time) of every join whose time is in [start, end)."""
        out = []
        for index, posts in enumerate(self.first_post):
            if not posts:
                continue
            opener = min(posts.values())
            for user, ts in posts.items():
                if ts > opener and start <= ts < end:
                    out.append((index, user, ts))
        return out


def stream_of(
    users: Sequence[str],
    channels: Sequence[str],
    times: Sequence[float],
    texts: Sequence[str],
    in_thread: Sequence[bool],
    conversations: Sequence[ConversationRows],
) -> Stream:
    conversation_of = [-1] * len(users)
    first_post: list[dict[str, float]] = []
    for index, conversation in enumerate(conversations):
        posts: dict[str, float] = {}
        for row in conversation.rows:
            if conversation_of[row] == -1:
                conversation_of[row] = index
            posts.setdefault(users[row], times[row])
        first_post.append(posts)
    order = sorted((r for r in range(len(users)) if conversation_of[r] >= 0), key=lambda r: (times[r], r))
    return Stream(
        list(users),
        list(channels),
        list(times),
        list(texts),
        list(in_thread),
        conversation_of,
        conversations,
        order,
        first_post,
    )


def replay(
    stream: Stream,
    vectors: Matrix,
    activity: Activity,
    *,
    start: float = float("-inf"),
    end: float = float("inf"),
    counted: bool = False,
) -> Iterator[Step]:
    """Feed every message before `end` to `activity`; yield a `Step` for those at or after `start`.

    Messages before `start` only build up the activity (the history a model starts from), or,
    with `counted` (an activity that training already took up to `start`), only the
    conversations still open at `start`."""
    progress: dict[int, list[int]] = {}
    authors: dict[int, list[str]] = {}
    for row in stream.order:
        ts = stream.times[row]
        if ts >= end:
            break
        index = stream.conversation_of[row]
        user = stream.users[row]
        conversation_id = f"replay:{index}"
        if ts >= start or not counted:
            activity.observe(conversation_id, stream.channels[row], user, ts, vectors[row])
        rows = progress.setdefault(index, [])
        rows.append(row)
        names = authors.setdefault(index, [])
        if user not in names:
            names.append(user)
        conversation = stream.conversations[index]
        if len(rows) == len(conversation.rows) and (ts >= start or not counted):
            activity.closed(conversation_id)
        if ts < start:
            continue
        latest = rows[-CONTENT_MESSAGES:]
        latest_vectors = vectors[latest]
        yield Step(
            row=row,
            conversation=index,
            user=user,
            moment=Moment(
                conversation_id=conversation_id,
                channel=stream.channels[row],
                in_thread=stream.in_thread[row],
                now=ts,
                first_ts=stream.times[rows[0]],
                authors=tuple(names),
                texts=tuple(stream.texts[r] for r in latest),
                vector=content_vector(latest_vectors),
                last_vector=_unit(vectors[row]),
                message_count=len(rows),
            ),
        )


def _unit(vector: npt.NDArray[np.float32]) -> npt.NDArray[np.float32] | None:
    norm = float(np.linalg.norm(vector))
    return (vector / norm).astype(np.float32) if norm > 0 else None
