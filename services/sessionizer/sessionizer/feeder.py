"""Slack events (or table rows) into query rows the live query can rely on.

Three rules live here rather than in the query, because Kaskada 0.6.1 cannot run them live
(see query.py):

- order: times always move forward (`rules.Timeline`: late rows are clamped, and a new message older
  than anything this feeder has seen is dropped, since it could be a forgotten duplicate);
- identity: a (channel, ts) seen before is a duplicate and never reaches the rules twice;
- reactions do not say which thread their message is in, so the feeder remembers it (a
  thread's parent included, once a reply names it).

Everything a feeder remembers spans the life of one query instance, exactly like the query's
own state: rebuilding the query (a restart, a rebalance, a rebuild that releases memory) starts
a new feeder, and the replay from the committed offset restores both.
"""

from __future__ import annotations

import enum

from beepgpt.contracts import SlackMessage, SlackReaction, conversation_id
from sessionizer.query import Row, message_row, reaction_row, skip_row, tick_row
from sessionizer.rules import Lateness, Placement, Timeline, is_conversational, slack_ts_ns, to_ns

SlackEvent = SlackMessage | SlackReaction


class Fed(enum.Enum):
    """What became of a record."""

    ACCEPTED = "accepted"
    CLAMPED = "clamped"  # accepted, at the newest time fed rather than its own
    DUPLICATE = "duplicate"
    TOO_LATE = "too_late"
    HOUSEKEEPING = "housekeeping"
    UNREADABLE = "unreadable"


class Feeder:
    def __init__(self) -> None:
        self.timeline = Timeline()
        self._seen: set[str] = set()
        self._threads: dict[str, str] = {}

    def event(self, offset: int, event: SlackEvent | None) -> tuple[Row, Fed]:
        """The row for the record at `offset`; None is a record that could not be read."""
        if event is None:
            return self._skip(offset), Fed.UNREADABLE
        if isinstance(event, SlackReaction):
            placement = self.timeline.amendment(to_ns(event.event_time))
            thread_ts = self._threads.get(conversation_id(event.channel, event.item_ts))
            return reaction_row(event, _time(placement), offset, thread_ts), _fed(placement)
        if event.action != "new":
            placement = self.timeline.amendment(to_ns(event.event_time))
            return message_row(event, _time(placement), offset), _fed(placement)
        if not is_conversational(event.subtype, event.user):
            return self._skip(offset), Fed.HOUSEKEEPING
        message_id = conversation_id(event.channel, event.ts)
        if message_id in self._seen:
            return self._skip(offset), Fed.DUPLICATE
        placement = self.timeline.message(slack_ts_ns(event.ts))
        if placement.time_ns is None:
            return self._skip(offset), Fed.TOO_LATE
        self._seen.add(message_id)
        if event.thread_ts is not None:
            self._threads[message_id] = event.thread_ts
            # Live, the parent came without thread_ts; its thread adopts it, reactions follow.
            self._threads.setdefault(conversation_id(event.channel, event.thread_ts), event.thread_ts)
        return message_row(event, placement.time_ns, offset), _fed(placement)

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
