"""Open conversations, folded from the query's output into `ConversationEvent`s.

This is the part of the rules Kaskada 0.6 cannot hold (see query.py): the latest messages with
edits and deletions applied (an upsert by message into a bounded list) and the participant set.
It is a pure fold, used unchanged by the history path and the live service, and it forgets a
conversation as soon as it closes, so its memory follows open conversations only.

Versions come from event time (microseconds of the row that caused the event, bumped to stay
strictly increasing): they grow with every event, and keep growing across restarts, replays and
a thread that wakes up after it was closed, because no counter has to survive a restart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from beepgpt.contracts import ConversationEvent, ConversationMessage, conversation_id
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
    known: dict[str, str] = field(default_factory=dict)
    """Every message of the conversation, ts → author: deletions and reactions of older ones count."""
    participants: dict[str, None] = field(default_factory=dict)
    reaction_count: int = 0
    last_ts: str = ""
    version: int = 0
    first_offset: int = -1
    last_offset: int = -1

    @property
    def id(self) -> str:
        return conversation_id(self.channel, self.first_ts)

    def apply(self, change: Change) -> bool:
        """Apply a change; True when the messages an event carries changed."""
        self.first_offset = change.offset if self.first_offset < 0 else min(self.first_offset, change.offset)
        self.last_offset = max(self.last_offset, change.offset)
        if change.kind == "new":
            return self._add(change)
        if change.ts not in self.known:
            return False  # about a message this conversation does not hold (a bot's, say)
        if change.kind == "edited":
            current = self.messages.get(change.ts)
            if current is None or current.text == (change.text or ""):
                return False
            self.messages[change.ts] = current.model_copy(update={"text": change.text or ""})
            return True
        if change.kind == "deleted":
            del self.known[change.ts]
            removed = self.messages.pop(change.ts, None)
            if removed is not None:
                self.reaction_count -= removed.reactions
            return removed is not None
        if change.kind == "reaction":
            self.reaction_count += change.reactions
            current = self.messages.get(change.ts)
            if current is not None:
                self.messages[change.ts] = current.model_copy(
                    update={"reactions": max(0, current.reactions + change.reactions)}
                )
            return False  # reactions ride along with the next event rather than causing one
        return False

    def _add(self, change: Change) -> bool:
        user = change.user or ""
        self.known[change.ts] = user
        self.participants.setdefault(user, None)
        self.reaction_count += change.reactions
        self.messages[change.ts] = ConversationMessage(
            ts=change.ts,
            user=user,
            text=change.text or "",
            thread_ts=change.thread_ts,
            reactions=max(0, change.reactions),
        )
        if self.window is not None and len(self.messages) > self.window:
            del self.messages[next(iter(self.messages))]
        self.last_ts = max(self.last_ts, change.ts, key=_ts_order)
        return True

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

    def event(self, kind: str, version: int) -> ConversationEvent:
        # Validated, although every field comes from this fold: measured, `model_construct`
        # builds faster but serializes slower (pydantic checks each value's type then), 23 µs
        # against 15 µs per event of 20 messages.
        return ConversationEvent(
            kind="closed" if kind == "closed" else "updated",
            conversation_id=self.id,
            channel=self.channel,
            thread_ts=self.thread_ts,
            first_ts=self.first_ts,
            last_ts=self.last_ts or self.first_ts,
            version=version,
            messages=list(self.messages.values()),
            participants=list(self.participants),
            message_count=len(self.known),
            reaction_count=max(0, self.reaction_count),
        )


def _ts_order(ts: str) -> tuple[int, str]:
    """Slack ts strings compare as numbers; equal-length ones also compare as text."""
    return (len(ts), ts)


@dataclass(frozen=True)
class Emitted:
    """An event to publish, and the conversation key it is about."""

    key: str
    event: ConversationEvent
    offset: int
    """The input row behind it (a close: the conversation's last row)."""


@dataclass(frozen=True)
class Span:
    """The input rows (offsets) a closed conversation was made of."""

    first_offset: int
    last_offset: int


OnMessage = Callable[[Conversation, Change], None]


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
    ) -> None:
        self.window = window
        self.open: dict[str, Conversation] = {}
        self.resumable: dict[str, tuple[Conversation, int]] = {}
        """Closed threads a reply may still continue, with when they are forgotten (close order)."""
        self._resume_threads_ns = resume_threads_ns
        self.closed_spans: list[Span] = []
        self.ignored = 0
        self.closed_count = 0
        """Conversations closed past the replay: what a rebuild would release. Closes a replay
        repeats do not count, or a replay long enough would ask for the next rebuild at once."""
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
        if change.kind == "new" and self._on_message is not None:
            self._on_message(conversation, change)
        if not conversation.apply(change):
            return None
        version = conversation.next_version(change.time_ns)
        if change.offset < self._replay_until:
            return None
        return Emitted(change.key, conversation.event("updated", version), change.offset)

    def _close(self, closed: Closed) -> Emitted | None:
        conversation = self.open.pop(closed.key, None)
        if conversation is None:
            return None
        if closed.time_ns > self._closed_until_ns:
            self.closed_count += 1
        if conversation.thread_ts is not None and self._resume_threads_ns > 0:
            self.resumable[closed.key] = (conversation, closed.time_ns + self._resume_threads_ns)
        else:
            self.closed_spans.append(Span(conversation.first_offset, conversation.last_offset))
        version = conversation.next_version(closed.time_ns)
        if closed.time_ns <= self._closed_until_ns:
            return None
        return Emitted(closed.key, conversation.event("closed", version), conversation.last_offset)

    def _forget_threads(self, now_ns: int) -> None:
        while self.resumable:
            key, (conversation, until_ns) = next(iter(self.resumable.items()))
            if until_ns > now_ns:
                return
            del self.resumable[key]
            self.closed_spans.append(Span(conversation.first_offset, conversation.last_offset))

    def min_open_offset(self) -> int | None:
        """The oldest input row a conversation that may still change is made of (None: none)."""
        firsts = [c.first_offset for c in self.open.values()]
        firsts.extend(c.first_offset for c, _ in self.resumable.values())
        return min(firsts, default=None)
