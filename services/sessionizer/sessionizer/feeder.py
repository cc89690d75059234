"""Slack events (or table rows) into query rows the live query can rely on.

These rules live here rather than in the query, because Kaskada 0.6.1 cannot run them live
(see query.py):

- order: times always move forward (`rules.Timeline`: late rows are clamped, and a new message older
  than anything this feeder has seen is dropped, since it could be a forgotten duplicate);
- identity: a (channel, ts) seen before is a duplicate and never reaches the rules twice;
- reactions do not say which thread their message is in, so the feeder remembers it (a
  thread's parent included, once a reply names it);
- linked mode (`BEEPGPT_CONVERSATIONS=linked`): which conversation each new flow message joins,
  decided by the reply linker (`LinkedFlow`), and the conversation of every message an edit,
  deletion or reaction is about. The linker is a model over the channel's recent window: it
  cannot be written as a Kaskada expression, so its choice goes into the row as a key, the
  way a thread's does.

Everything a feeder remembers spans the life of one query instance, exactly like the query's
own state: rebuilding the query (a restart, a rebalance, a rebuild that releases memory) starts
a new feeder, and the replay from the committed offset restores both. The linker's window is
rebuilt by that replay too, refilled from before its cut, and decides every replayed message as
before: see `LinkedFlow`.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable

from beepgpt.contracts import SlackMessage, SlackReaction, conversation_id
from sessionizer.linker import Linker, LinkerModel
from sessionizer.query import Row, message_row, reaction_row, skip_row, tick_row
from sessionizer.rules import NS, Lateness, Placement, Timeline, is_conversational, slack_ts_ns, to_ns
from sessionizer.settings import SessionizerSettings

SlackEvent = SlackMessage | SlackReaction


class Fed(enum.Enum):
    """What became of a record."""

    ACCEPTED = "accepted"
    CLAMPED = "clamped"  # accepted, at the newest time fed rather than its own
    DUPLICATE = "duplicate"
    TOO_LATE = "too_late"
    HOUSEKEEPING = "housekeeping"
    UNREADABLE = "unreadable"


OnLink = Callable[[str, str | None], None]
"""Told each linked message's id and its parent's id (None: it starts a conversation)."""


class LinkedFlow:
    """Linked mode: the conversation each new flow message joins, and each message's conversation.

    The linker names a parent (or none); the message joins its parent's conversation, named
    `channel:root_ts` after that conversation's first message. Only up to the instant the query
    would close it: a conversation closes `idle_ns` after its latest message on the query's
    timeline, so a message placed later starts a conversation of its own rather than reviving
    one whose `closed` event is out. With `linked_idle_s` shorter than the linker's window (the
    defaults: 30 minutes and 4 hours) that happens to messages on time as well as to a message
    the timeline clamped later than its own ts. The roots are kept here rather than read from the
    linker's `Link.root_ts`, which cannot know of such a cut.

    Restarts decide the same. The replay starts at the sessionizer's clean cut (at or before
    the first message of every conversation that may still change; no closed conversation
    straddles it), and the records of the linker's window before the cut are read again first,
    only to refill the window (`Feeder.warm`, from `ReplayMarks.linker_from`, which
    `linker_from` computes). A replayed message therefore sees the very candidates it saw the
    first time, with the same scores (they depend on nothing older than the candidate), and the
    linker names the same parent. If that parent was replayed, its conversation was decided as
    before (by induction, roots and latest times included), so the message joins or starts as
    before. If it was not (it lies before the cut), its conversation was closed when the message
    came (a message that joined it would straddle the cut), so the message started one of its
    own, as it does again: a parent this flow did not place starts a conversation.

    Refilling is needed because the linker's window (4 hours in the shipped model) is longer
    than `idle_ns` (30 minutes): a message whose best candidate's conversation had closed
    started a conversation, and over a window cut at the replay's start, without that
    candidate, the linker named the runner-up instead and the message joined that one's
    conversation (seen once as a live test that differed from history after a rebuild).
    Records the timeline dropped as too late in the first run are not known as such when
    refilling; such records are rare (older than anything the query held) and can only shift a
    candidate set by one. The price: a restart or rebuild reads up to one window (4 hours) of
    records more, through the linker alone.
    """

    def __init__(self, linker: Linker, idle_ns: int, on_link: OnLink | None = None) -> None:
        self.linker = linker
        self.idle_ns = idle_ns
        self.on_link = on_link
        self._roots: dict[str, str] = {}
        """message id → the ts of its conversation's first message."""
        self._last_ns: dict[str, int] = {}
        """conversation key → the query time of its latest message."""
        self._window_s = linker.model.window_s
        self._linked: deque[tuple[float, int]] = deque()
        """(sent time, offset) of every flow message the linker saw, in offset order, back to
        what a replay from the committed cut still needs (`forget_before`)."""

    def place(self, message: SlackMessage, time_ns: int, offset: int) -> str:
        """The root ts of the conversation the new flow `message`, placed at `time_ns`, joins."""
        channel, ts = message.channel, message.ts
        sent_s = float(ts)
        self._linked.append((sent_s, offset))
        link = self.linker.link(channel, ts, sent_s, message.user or "", message.text)
        root, parent = ts, None
        if link.parent_ts is not None:
            parent = conversation_id(channel, link.parent_ts)
            parent_root = self._roots.get(parent)
            last = None if parent_root is None else self._last_ns.get(conversation_id(channel, parent_root))
            if parent_root is not None and last is not None and time_ns <= last + self.idle_ns:
                root = parent_root
            else:
                parent = None  # that conversation is closed (or closes at this instant)
        message_id = conversation_id(channel, ts)
        self._roots[message_id] = root
        self._last_ns[conversation_id(channel, root)] = time_ns
        if self.on_link is not None:
            self.on_link(message_id, parent)
        return root

    def warm(self, message: SlackMessage, offset: int) -> None:
        """A flow message before the replay's cut: into the linker's window only (its own
        conversation was decided, and closed, before the cut)."""
        sent_s = float(message.ts)
        self._linked.append((sent_s, offset))
        self.linker.link(message.channel, message.ts, sent_s, message.user or "", message.text)

    def linker_from(self, cut: int) -> int:
        """The first record a replay from offset `cut` must refill the linker's window from
        (-1: none before the cut): the oldest flow message within the linker's window of the
        earliest message at or after the cut (of the newest message, if none is)."""
        if not self._linked:
            return -1
        reference = self._linked[-1][0]
        for sent_s, offset in reversed(self._linked):
            if offset < cut:
                break
            reference = min(reference, sent_s)
        oldest = reference - self._window_s
        for sent_s, offset in self._linked:
            if offset >= cut:
                return -1
            if sent_s >= oldest:
                return offset
        return -1

    def forget_before(self, cut: int) -> None:
        """`cut` is committed: what a replay from it cannot need is dropped."""
        start = self.linker_from(cut)
        keep = cut if start < 0 else start
        while self._linked and self._linked[0][1] < keep:
            self._linked.popleft()

    def root_of(self, message_id: str) -> str | None:
        """The root ts of the linked conversation `message_id` is in (None: not a linked message)."""
        return self._roots.get(message_id)


class Feeder:
    def __init__(
        self,
        settings: SessionizerSettings | None = None,
        *,
        model: LinkerModel | None = None,
        on_link: OnLink | None = None,
    ) -> None:
        """A feeder for the conversation mode of `settings` (None: gap, the rows of today's rule).

        `model` is the linker's (default: the shipped one), `on_link` sees each link decided."""
        self.timeline = Timeline()
        self._seen: set[str] = set()
        self._threads: dict[str, str] = {}
        self.linked: LinkedFlow | None = None
        if settings is not None and settings.conversations == "linked":
            self.linked = LinkedFlow(Linker(model), int(settings.linked_idle_s * NS), on_link)

    def event(self, offset: int, event: SlackEvent | None) -> tuple[Row, Fed]:
        """The row for the record at `offset`; None is a record that could not be read."""
        if event is None:
            return self._skip(offset), Fed.UNREADABLE
        if isinstance(event, SlackReaction):
            placement = self.timeline.amendment(to_ns(event.event_time))
            about = conversation_id(event.channel, event.item_ts)
            thread_ts = self._threads.get(about)
            linked = None if self.linked is None else self.linked.root_of(about)
            return reaction_row(event, _time(placement), offset, thread_ts, linked), _fed(placement)
        if event.action != "new":
            placement = self.timeline.amendment(to_ns(event.event_time))
            about = conversation_id(event.channel, event.ts)
            linked = None if self.linked is None else self.linked.root_of(about)
            return message_row(event, _time(placement), offset, linked), _fed(placement)
        if not is_conversational(event.subtype, event.user):
            return self._skip(offset), Fed.HOUSEKEEPING
        message_id = conversation_id(event.channel, event.ts)
        if message_id in self._seen:
            return self._skip(offset), Fed.DUPLICATE
        placement = self.timeline.message(slack_ts_ns(event.ts))
        if placement.time_ns is None:
            return self._skip(offset), Fed.TOO_LATE
        self._seen.add(message_id)
        root: str | None = None
        if self.linked is not None and (event.thread_ts is None or event.thread_ts == event.ts):
            # A thread's parent is linked too: live it arrives before any reply, as a flow
            # message, so history (where it carries its own thread_ts) links it the same way;
            # its row then goes to its thread (`message_row`: the thread wins).
            root = self.linked.place(event, placement.time_ns, offset)
        if event.thread_ts is not None:
            self._threads[message_id] = event.thread_ts
            # Live, the parent came without thread_ts; its thread adopts it, reactions follow.
            self._threads.setdefault(conversation_id(event.channel, event.thread_ts), event.thread_ts)
        return message_row(event, placement.time_ns, offset, root), _fed(placement)

    def warm(self, offset: int, event: SlackEvent | None) -> None:
        """A record before the replay's cut (`ReplayMarks.linker_from`): it only refills what
        the feeder knew of it, the linker's window and the ids seen, and goes to no query. The
        same filters as `event`, but the timeline's: the cut is where the timeline starts."""
        if self.linked is None or not isinstance(event, SlackMessage) or event.action != "new":
            return
        if not is_conversational(event.subtype, event.user):
            return
        message_id = conversation_id(event.channel, event.ts)
        if message_id in self._seen:
            return
        self._seen.add(message_id)
        if event.thread_ts is None or event.thread_ts == event.ts:
            self.linked.warm(event, offset)

    def linker_from(self, cut: int) -> int:
        """Where a replay from `cut` starts reading (-1: at the cut; always in gap mode)."""
        return -1 if self.linked is None else self.linked.linker_from(cut)

    def committed(self, cut: int) -> None:
        """The partition committed `cut`: no replay will start before it (or its `linker_from`)."""
        if self.linked is not None:
            self.linked.forget_before(cut)

    def tick(self, at_ns: int, number: int) -> Row:
        return tick_row(self.timeline.tick(at_ns), number)

    def _skip(self, offset: int) -> Row:
        """Skipped records still go through the query, so its output accounts for their offsets."""
        return skip_row(self.timeline.tick(), offset)


def _time(placement: Placement) -> int:
    assert placement.time_ns is not None, "only new messages are ever dropped"
    return placement.time_ns


def _fed(placement: Placement) -> Fed:
    return Fed.CLAMPED if placement.lateness is Lateness.CLAMPED else Fed.ACCEPTED
