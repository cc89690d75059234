"""Open conversations, folded from the query's output into `ConversationEvent`s.

This is the part of the rules Kaskada 0.6 cannot hold (see query.py): the latest messages with
edits and deletions applied (an upsert by message into a bounded list) and the participant set.
It is a pure fold, used unchanged by the history path and the live service, and it forgets a
conversation as soon as it closes, so its memory follows open conversations only.

A thread starts with its parent, live as in history. In a table the parent carries its thread's
ts and the query puts it in the thread; live, the parent arrives before anyone replies (it has
no thread_ts yet) and joins the channel's flow. So the book remembers recent flow messages
(`RecentMessages`) and a thread that starts with a reply adopts its parent from there.

Versions come from event time (microseconds of the row that caused the event, bumped to stay
strictly increasing): they grow with every event, and keep growing across restarts, replays and
a thread that wakes up after it was closed, because no counter has to survive a restart.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

from beepgpt.contracts import ConversationEvent, ConversationMessage, conversation_id, now
from sessionizer.event_json import event_json, message_json
from sessionizer.query import Change, Closed, Output, Passed


@dataclass
class Conversation:
    """The state of one open conversation."""

    key: str
    channel: str
    thread_ts: str | None
    first_ts: str
    window: int | None
    messages: dict[str, ConversationMessage] = field(default_factory=dict)
    """The latest `window` messages by ts, oldest first (all of them when `window` is None)."""
    fragments: dict[str, bytes] = field(default_factory=dict)
    """Each message of `messages` as JSON (`event_json.message_json`), written when it changes."""
    known: dict[str, str] = field(default_factory=dict)
    """Every message of the conversation, ts → author: deletions and reactions of older ones count."""
    participants: dict[str, None] = field(default_factory=dict)
    reaction_count: int = 0
    last_ts: str = ""
    version: int = 0
    first_offset: int = -1
    last_offset: int = -1

    @cached_property
    def id(self) -> str:
        return conversation_id(self.channel, self.first_ts, self.thread_ts)

    def apply(self, change: Change) -> bool:
        """Apply a change; True when the messages an event carries changed."""
        self.first_offset = change.offset if self.first_offset < 0 else min(self.first_offset, change.offset)
        self.last_offset = max(self.last_offset, change.offset)
        if change.kind == "new":
            user = change.user or ""
            self._add(
                ConversationMessage(
                    ts=change.ts,
                    user=user,
                    text=change.text or "",
                    thread_ts=change.thread_ts,
                    reactions=max(0, change.reactions),
                ),
                change.reactions,
            )
            return True
        if change.ts not in self.known:
            return False  # about a message this conversation does not hold (a bot's, say)
        if change.kind == "edited":
            current = self.messages.get(change.ts)
            if current is None or current.text == (change.text or ""):
                return False
            self._put(current.model_copy(update={"text": change.text or ""}))
            return True
        if change.kind == "deleted":
            del self.known[change.ts]
            removed = self._drop(change.ts)
            if removed is not None:
                self.reaction_count -= removed.reactions
            return removed is not None
        if change.kind == "reaction":
            self.reaction_count += change.reactions
            current = self.messages.get(change.ts)
            if current is not None:
                self._put(
                    current.model_copy(update={"reactions": max(0, current.reactions + change.reactions)})
                )
            return False  # reactions ride along with the next event rather than causing one
        return False

    def adopt_parent(self, parent: ConversationMessage, offset: int) -> None:
        """Start this thread with its parent, a message of the channel's flow at `offset`.

        The parent's row becomes part of the thread (its first offset), so the commit keeps it
        in the replay a restart does, and the rebuilt thread adopts it again."""
        self.first_offset = offset if self.first_offset < 0 else min(self.first_offset, offset)
        self._add(parent.model_copy(update={"thread_ts": self.thread_ts}), parent.reactions)

    def _add(self, message: ConversationMessage, reactions: int) -> None:
        self.known[message.ts] = message.user
        self.participants.setdefault(message.user, None)
        self.reaction_count += reactions
        self._put(message)
        if self.window is not None and len(self.messages) > self.window:
            self._drop(next(iter(self.messages)))
        if _ts_order(message.ts) > _ts_order(self.last_ts):
            self.last_ts = message.ts

    def previous_by_others(self, user: str, limit: int) -> list[ConversationMessage]:
        """The latest `limit` messages of the window not written by `user`, oldest first."""
        found: list[ConversationMessage] = []
        for message in reversed(self.messages.values()):
            if message.user != user:
                found.append(message)
                if len(found) == limit:
                    break
        found.reverse()
        return found

    def next_version(self, time_ns: int) -> int:
        self.version = max(time_ns // 1_000, self.version + 1)
        return self.version

    def _put(self, message: ConversationMessage) -> None:
        self.messages[message.ts] = message
        self.fragments[message.ts] = message_json(message)

    def _drop(self, ts: str) -> ConversationMessage | None:
        self.fragments.pop(ts, None)
        return self.messages.pop(ts, None)

    def emit(self, key: str, kind: Literal["updated", "closed"], version: int, offset: int) -> Emitted:
        """What the conversation's event is made of now (later changes do not reach it)."""
        return Emitted(
            key=key,
            kind=kind,
            offset=offset,
            conversation_id=self.id,
            channel=self.channel,
            thread_ts=self.thread_ts,
            first_ts=self.first_ts,
            last_ts=self.last_ts or self.first_ts,
            version=version,
            messages=tuple(self.messages.values()),
            fragments=tuple(self.fragments.values()),
            participants=tuple(self.participants),
            message_count=len(self.known),
            reaction_count=max(0, self.reaction_count),
        )


def _ts_order(ts: str) -> tuple[int, str]:
    """Slack ts strings compare as numbers; equal-length ones also compare as text."""
    return (len(ts), ts)


@dataclass
class Emitted:
    """An event to publish, as it was when emitted: the live service writes it straight to JSON
    (`encoded`), history and tests read it as a `ConversationEvent` (`event`). Both give the same
    event; the JSON skips building the pydantic model (`event_json.py` says why). Not frozen
    only because one is made per message and a frozen dataclass's constructor is 5x slower:
    nothing changes it after `Conversation.emit`."""

    key: str
    """The conversation's key in the query."""
    kind: Literal["updated", "closed"]
    offset: int
    """The input row behind it (a close: the conversation's last row)."""
    conversation_id: str
    channel: str
    thread_ts: str | None
    first_ts: str
    last_ts: str
    version: int
    messages: tuple[ConversationMessage, ...]
    fragments: tuple[bytes, ...]
    participants: tuple[str, ...]
    message_count: int
    reaction_count: int

    @cached_property
    def event(self) -> ConversationEvent:
        return ConversationEvent(
            kind=self.kind,
            conversation_id=self.conversation_id,
            channel=self.channel,
            thread_ts=self.thread_ts,
            first_ts=self.first_ts,
            last_ts=self.last_ts,
            version=self.version,
            messages=list(self.messages),
            participants=list(self.participants),
            message_count=self.message_count,
            reaction_count=self.reaction_count,
        )

    def encoded(self, emitted_at: float | None = None) -> bytes:
        """`self.event`'s JSON, byte for byte, without building it."""
        return event_json(self, now() if emitted_at is None else emitted_at)


@dataclass(frozen=True)
class Span:
    """The input rows (offsets) a closed conversation was made of."""

    first_offset: int
    last_offset: int


OnMessage = Callable[[Conversation, Change], None]


@dataclass(slots=True)
class _Recent:
    message: ConversationMessage
    offset: int
    time_ns: int


class RecentMessages:
    """The latest flow messages of a partition, by message id, that a thread may still adopt as
    its parent: at most `limit`, none older than `max_age_ns` (rows come in time order, so the
    oldest is first). About 700 bytes each with an 80-character text (7 MB a partition at
    the default limit)."""

    def __init__(self, limit: int, max_age_ns: int) -> None:
        self.limit = limit
        self.max_age_ns = max_age_ns
        self._by_id: OrderedDict[str, _Recent] = OrderedDict()

    def seen(self, conversation: Conversation, change: Change) -> None:
        """Follow a flow conversation's change of one of its messages."""
        key = conversation_id(change.channel, change.ts)
        if change.kind == "new":
            message = conversation.messages.get(change.ts)
            if message is not None and self.limit > 0:
                self._by_id[key] = _Recent(message, change.offset, change.time_ns)
                if len(self._by_id) > self.limit:
                    self._by_id.popitem(last=False)
        elif change.kind == "deleted":
            self._by_id.pop(key, None)
        else:  # an edit or a reaction: the message as it is now
            recent = self._by_id.get(key)
            message = conversation.messages.get(change.ts)
            if recent is not None and message is not None:
                recent.message = message

    def take(self, channel: str, ts: str, now_ns: int) -> tuple[ConversationMessage, int] | None:
        """The message `channel`/`ts` with its offset, forgotten here; None if unknown or too old."""
        self._forget(now_ns)
        recent = self._by_id.pop(conversation_id(channel, ts), None)
        return None if recent is None else (recent.message, recent.offset)

    def _forget(self, now_ns: int) -> None:
        while self._by_id:
            oldest = next(iter(self._by_id.values()))
            if now_ns - oldest.time_ns <= self.max_age_ns:
                return
            self._by_id.popitem(last=False)


_NEVER = 2**63
"""Later than any event time: no resumable thread is waiting."""


class ConversationBook:
    """Folds the query's output into events, one open `Conversation` per key.

    `window` is MAX_MESSAGES (None keeps every message: complete conversations for people to
    read). `on_message` sees each new message with its conversation as it was just before it
    (training prompts are built there). Suppression (replays after a restart) hides `updated`
    events of rows below `replay_until` and `closed` events up to `closed_until_ns`: those were
    published before, by this process or the one it replaces.
    """

    def __init__(
        self,
        window: int | None,
        *,
        resume_threads_ns: int = 0,
        on_message: OnMessage | None = None,
        replay_until: int = -1,
        closed_until_ns: int = -1,
        parents: int = 10_000,
    ) -> None:
        self.window = window
        self.recent = RecentMessages(parents, resume_threads_ns)
        """Flow messages a thread may adopt as its parent (at most `parents`, none older than a
        closed thread is remembered)."""
        self.open: dict[str, Conversation] = {}
        self.resumable: OrderedDict[str, tuple[Conversation, int]] = OrderedDict()
        """Closed threads a reply may still continue, with when they are forgotten (close order).
        An OrderedDict because the oldest is looked at on every row: a plain dict's first item
        is found by skipping the slots of every item deleted before it (measured 3.5% of the
        service's time)."""
        self._resume_threads_ns = resume_threads_ns
        self.closed_spans: list[Span] = []
        self.ignored = 0
        self.closed_count = 0
        """Conversations closed past the replay: what a rebuild would release. Closes a replay
        repeats do not count, or a replay long enough would ask for the next rebuild at once."""
        self._forget_from_ns = _NEVER
        """No resumable thread is due before this (a lower bound): most rows skip the check."""
        self._on_message = on_message
        self._replay_until = replay_until
        self._closed_until_ns = closed_until_ns

    def apply(self, output: Output) -> Emitted | None:
        self._forget_threads(output.time_ns)
        if isinstance(output, Passed):
            return None
        if isinstance(output, Closed):
            return self._close(output)
        return self._change(output)

    def _change(self, change: Change) -> Emitted | None:
        conversation = self.open.get(change.key)
        if conversation is None and change.kind == "new" and change.key in self.resumable:
            # A thread wakes up: it continues whole, with the next (higher) version.
            conversation = self.resumable.pop(change.key)[0]
            self.open[change.key] = conversation
        if conversation is None:
            if change.kind != "new":
                self.ignored += 1  # an amendment of a conversation that has closed already
                return None
            conversation = Conversation(
                key=change.key,
                channel=change.channel,
                thread_ts=change.thread_ts,
                first_ts=change.first_ts,
                window=self.window,
            )
            self.open[change.key] = conversation
            if change.thread_ts is not None and change.ts != change.thread_ts:
                parent = self.recent.take(change.channel, change.thread_ts, change.time_ns)
                if parent is not None:
                    conversation.adopt_parent(*parent)
        if change.kind == "new" and self._on_message is not None:
            self._on_message(conversation, change)
        changed = conversation.apply(change)
        if conversation.thread_ts is None:
            self.recent.seen(conversation, change)
        if not changed:
            return None
        version = conversation.next_version(change.time_ns)
        if change.offset < self._replay_until:
            return None
        return conversation.emit(change.key, "updated", version, change.offset)

    def _close(self, closed: Closed) -> Emitted | None:
        conversation = self.open.pop(closed.key, None)
        if conversation is None:
            return None
        if closed.time_ns > self._closed_until_ns:
            self.closed_count += 1
        if conversation.thread_ts is not None and self._resume_threads_ns > 0:
            until_ns = closed.time_ns + self._resume_threads_ns
            self.resumable[closed.key] = (conversation, until_ns)
            self._forget_from_ns = min(self._forget_from_ns, until_ns)
        else:
            self.closed_spans.append(Span(conversation.first_offset, conversation.last_offset))
        version = conversation.next_version(closed.time_ns)
        if closed.time_ns <= self._closed_until_ns:
            return None
        return conversation.emit(closed.key, "closed", version, conversation.last_offset)

    def _forget_threads(self, now_ns: int) -> None:
        if now_ns < self._forget_from_ns:
            return
        while self.resumable:
            key, (conversation, until_ns) = next(iter(self.resumable.items()))
            if until_ns > now_ns:
                self._forget_from_ns = until_ns
                return
            del self.resumable[key]
            self.closed_spans.append(Span(conversation.first_offset, conversation.last_offset))
        self._forget_from_ns = _NEVER

    def min_open_offset(self) -> int | None:
        """The oldest input row a conversation that may still change is made of (None: none)."""
        firsts = [c.first_offset for c in self.open.values()]
        firsts.extend(c.first_offset for c, _ in self.resumable.values())
        return min(firsts, default=None)
