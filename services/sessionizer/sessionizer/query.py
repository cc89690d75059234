"""The one conversation query (docs/conversations.md), written with Kaskada timestreams.

History (training, evaluation, `beepgpt conversations`) and the live service both run
`conversation_query` over rows shaped by `INPUT_SCHEMA`; only the source differs (a table added
at once, or rows added as Kafka delivers them). Per input row the query decides:

- which messages form conversations (people's messages, not bots or housekeeping subtypes),
- membership: a thread message joins its thread; a channel message joins the channel's current
  conversation unless the previous channel message is more than `gap` older, then it starts one
  (gap mode), or the conversation the feeder's reply linker chose for it (linked mode),
- where an edit, deletion or reaction goes (its thread, or the channel's current conversation
  when the message it is about is not older than that conversation's first message),
- when a conversation is finished: each message's row is shifted to its close deadline (`gap`,
  or `thread_idle` in threads) and kept only where it is still the conversation's latest message.

What Kaskada 0.6 cannot express, or cannot run live, is done around the query and documented
where it is done: the window of the latest messages with edits applied and the participant set
are a fold over the query's output (`conversation.py`: Kaskada has no keyed upsert into a
bounded list, nor sets); time ordering and duplicates are handled where rows are made
(`feeder.py`).

Kaskada 0.6.1 traps this definition avoids (measured; tests/sessionizer/test_sessionizer_live.py
runs it live): `shift_by` with a computed duration fails to plan, and two `shift_by`s in one live
query stall it, so a single `shift_to` to a per-row deadline does both kinds of close. Any
`lookup` into a regrouped stream (by message id: the natural way to drop duplicates or to find
the conversation of a reaction) makes a live query stop producing output after a close, so
duplicates are dropped and reactions get their thread in the feeder. Rows that change no
conversation must still flow through the regrouping, or the live output stalls as well: they
pass under a reserved key.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import kaskada as kd
import pyarrow as pa

from beepgpt.contracts import SlackMessage, SlackReaction, conversation_id
from sessionizer.kaskada_shim import add_duration, execute
from sessionizer.rules import CONVERSATIONAL_SUBTYPES, slack_ts_ns
from sessionizer.settings import SessionizerSettings

TICK_CHANNEL = "\x00tick"
"""The reserved key of heartbeat rows: they move event time forward and mark what is processed."""

INPUT_SCHEMA = pa.schema(
    [
        ("time", pa.timestamp("ns")),  # where the row sits on the timeline (already ordered)
        ("channel", pa.string()),  # the source key
        ("kind", pa.string()),  # new | edited | deleted | reaction | tick
        ("message_id", pa.string()),  # channel:ts of the message the row is about
        ("thread_key", pa.string()),  # the thread's conversation key, for thread messages
        ("ts", pa.string()),
        ("thread_ts", pa.string()),
        ("sent", pa.float64()),  # the message's own ts in seconds (routing of amendments)
        ("user", pa.string()),
        ("text", pa.string()),
        ("subtype", pa.string()),
        ("reactions", pa.int64()),  # reactions a new row already has, or ±1 for a reaction row
        ("offset", pa.int64()),  # where the row came from: Kafka offset, table row, tick number
        ("linked_key", pa.string()),  # linked mode: the conversation key the feeder's linker chose
        ("root_ts", pa.string()),  # linked mode, new flow messages: the ts that key is made of
    ]
)

Row = dict[str, Any]


def ensure_session() -> None:
    """Kaskada has one session per process; the first caller starts it."""
    with contextlib.suppress(RuntimeError):  # already started: the normal case after the first query
        kd.init_session()


def thread_key(channel: str, thread_ts: str) -> str:
    """A thread's key inside the query: its conversation id, which differs from any flow key."""
    return conversation_id(channel, thread_ts, thread_ts)


def linked_key(channel: str, root_ts: str) -> str:
    """A linked conversation's key inside the query: its conversation id, `channel:root_ts`, the
    form of a flow conversation (`contracts.conversation_id`), never a thread's."""
    return conversation_id(channel, root_ts)


def message_row(
    message: SlackMessage, time_ns: int, offset: int, root_ts: str | None = None
) -> Row:
    """A `SlackMessage` (new, edited or deleted) as a query row placed at `time_ns`.

    `root_ts` (linked mode only) names the linked conversation the message is in, as the
    feeder's linker decided: a new message's own, or the message an edit or deletion is about.
    A thread message never has one (thread membership wins)."""
    thread_ts = message.thread_ts
    linked = root_ts if root_ts is not None and not thread_ts else None
    return {
        "time": time_ns,
        "channel": message.channel,
        "kind": message.action,
        "message_id": conversation_id(message.channel, message.ts),
        "thread_key": thread_key(message.channel, thread_ts) if thread_ts else None,
        "ts": message.ts,
        "thread_ts": thread_ts,
        "sent": slack_ts_ns(message.ts) / 1e9,
        "user": message.user,
        "text": message.text,
        "subtype": message.subtype,
        "reactions": 0,
        "offset": offset,
        "linked_key": None if linked is None else linked_key(message.channel, linked),
        "root_ts": linked if message.action == "new" else None,
    }


def reaction_row(
    reaction: SlackReaction, time_ns: int, offset: int, thread_ts: str | None, root_ts: str | None = None
) -> Row:
    """A reaction as a query row; `thread_ts` is the thread of the message it is on, if known,
    `root_ts` (linked mode) the linked conversation it is in."""
    return {
        "time": time_ns,
        "channel": reaction.channel,
        "kind": "reaction",
        "message_id": conversation_id(reaction.channel, reaction.item_ts),
        "thread_key": thread_key(reaction.channel, thread_ts) if thread_ts else None,
        "ts": reaction.item_ts,
        "thread_ts": thread_ts,
        "sent": slack_ts_ns(reaction.item_ts) / 1e9,
        "user": reaction.user,
        "text": None,
        "subtype": None,
        "reactions": 1 if reaction.action == "added" else -1,
        "offset": offset,
        "linked_key": linked_key(reaction.channel, root_ts) if root_ts and not thread_ts else None,
        "root_ts": None,
    }


def tick_row(time_ns: int, number: int) -> Row:
    """A heartbeat: advances event time so quiet conversations close; `number` comes back out."""
    return passing_row(time_ns, "tick", number)


def skip_row(time_ns: int, offset: int) -> Row:
    """A record the feeder does not hand to the rules (a poison record, a message too late to
    place): it still goes through, so the output accounts for its offset."""
    return passing_row(time_ns, "skip", offset)


def passing_row(time_ns: int, kind: str, offset: int) -> Row:
    return {
        "time": time_ns,
        "channel": TICK_CHANNEL,
        "kind": kind,
        "message_id": TICK_CHANNEL,
        "thread_key": None,
        "ts": None,
        "thread_ts": None,
        "sent": None,
        "user": None,
        "text": None,
        "subtype": None,
        "reactions": 0,
        "offset": offset,
        "linked_key": None,
        "root_ts": None,
    }


def conversation_query(source: kd.Timestream, settings: SessionizerSettings) -> kd.Timestream:
    """The conversations of `source` (rows of `INPUT_SCHEMA`, keyed by channel).

    One output row per input row and per close, keyed by conversation: `change` (the input
    row, plus `first_ts`, the ts its conversation id is made of) or `closed` (how many messages
    it had). Rows that change no conversation come out under `TICK_CHANNEL` with `member` false.

    `settings.conversations` chooses how the channel's flow is cut: `gap` computes flow starts
    here; `linked` reads the conversation the feeder's reply linker chose for each flow message
    (`linked_key`, `root_ts`: decided before the query because the linker is a model over the
    channel's recent window, which Kaskada cannot run) and treats it like a thread key, so a
    linked conversation closes after `linked_idle_s` of its own silence, not the channel's.
    Both share the rest: threads, amendments, closes, pass-through rows.
    """
    gap = timedelta(seconds=settings.gap_s)
    thread_idle = timedelta(seconds=settings.thread_idle_s)
    kind = source.col("kind")

    subtype = source.col("subtype")
    allowed_subtype = subtype.is_null()
    for name in CONVERSATIONAL_SUBTYPES:
        allowed_subtype = allowed_subtype.or_(subtype.eq(name))
    accepted = source.filter(kind.eq("new").and_(source.col("user").is_not_null()).and_(allowed_subtype))

    amend = source.filter(kind.eq("edited").or_(kind.eq("deleted")).or_(kind.eq("reaction")))
    if settings.conversations == "linked":
        # The feeder decided every flow message's conversation, and knows the conversation of
        # each message an amendment is about; one it does not know passes through.
        new_key = accepted.col("thread_key").coalesce(accepted.col("linked_key")).filter(accepted.is_not_null())
        amend_key = amend.col("thread_key").coalesce(amend.col("linked_key")).filter(amend.is_not_null())
        first_ts = source.col("thread_ts").coalesce(source.col("root_ts"))
        flow_idle = timedelta(seconds=settings.linked_idle_s)
    else:
        # Channel flow: a message more than `gap` after the previous one starts a conversation,
        # whose key is the id of that first message.
        flow = accepted.filter(accepted.col("thread_key").is_null())
        previous = flow.time().lag(1)
        starts = previous.is_null().or_(flow.time().gt(_plus(previous, gap)))
        flow_key = flow.col("message_id").if_(starts).last()
        flow_first_ts = flow.col("ts").if_(starts).last()
        flow_first_sent = flow.col("sent").if_(starts).last()

        new_key = accepted.col("thread_key").coalesce(flow_key).filter(accepted.is_not_null())

        # Edits, deletions and reactions go to their thread, or to the channel's current
        # conversation if the message is not older than its start (an older one's is closed).
        in_current_flow = flow_key.filter(amend.col("sent").ge(flow_first_sent))
        amend_key = amend.col("thread_key").coalesce(in_current_flow).filter(amend.is_not_null())
        first_ts = source.col("thread_ts").coalesce(flow_first_ts)
        flow_idle = gap

    # Every other row (heartbeats, housekeeping, skipped records, amendments of gone conversations)
    # passes through under the reserved key, so the output accounts for every row fed: what has
    # come out is what has been processed.
    conversation_key = new_key.coalesce(amend_key)
    key = conversation_key.coalesce(TICK_CHANNEL)

    change = kd.record(
        {
            "kind": kind,
            "member": conversation_key.is_not_null(),
            "channel": source.col("channel"),
            "ts": source.col("ts"),
            "thread_ts": source.col("thread_ts"),
            "first_ts": first_ts,
            "user": source.col("user"),
            "text": source.col("text"),
            "reactions": source.col("reactions"),
            "offset": source.col("offset"),
        }
    ).filter(source.is_not_null())
    by_conversation = change.with_key(key.filter(source.is_not_null()))

    # Close detection: each message's count, shifted to its deadline, still the latest count.
    messages = by_conversation.filter(
        by_conversation.col("kind").eq("new").and_(by_conversation.col("member"))
    )
    count = messages.count()
    at = messages.time()
    # "Quiet for more than the gap": one nanosecond past it, so a message exactly `gap` after
    # the last one (which joins, see `starts`) is never on the same instant as the close.
    # Linked conversations: `linked_idle_s` of their own silence (the feeder joins a message to
    # one only up to that instant: `feeder.LinkedFlow`).
    due = (
        _plus(at, thread_idle, 1)
        .if_(messages.col("thread_ts").is_not_null())
        .coalesce(_plus(at, flow_idle, 1))
    )
    stamp = kd.record({"count": count, "due": due}).filter(messages.is_not_null())
    shifted = stamp.shift_to(stamp.col("due"))
    closed = shifted.filter(shifted.col("count").eq(count)).col("count")

    out = kd.record({"change": by_conversation, "closed": closed})
    return out.filter(by_conversation.is_not_null().or_(closed.is_not_null()))


def _plus(at: kd.Timestream, delta: timedelta, extra_ns: int = 0) -> kd.Timestream:
    """`at + delta (+ extra_ns)` to the nanosecond, built as Kaskada's own `add_time` of a
    duration literal: the public `Timestream.add` rounds durations to whole seconds, and gaps
    are fractional in time-compressed replays (the demo)."""
    whole = int(delta.total_seconds())
    nanos = (delta - timedelta(seconds=whole)) // timedelta(microseconds=1) * 1_000 + extra_ns
    return add_duration(at, whole, nanos)


# --- the query's output, typed --------------------------------------------------------------------
# Plain (not frozen) slotted dataclasses: one is made per output row, and a frozen dataclass's
# constructor sets each field through object.__setattr__ (1.4 against 0.24 µs for 11 fields).
# Nothing changes them after parsing.


@dataclass(slots=True)
class Change:
    """A row that changed a conversation: a new message, an edit, a deletion or a reaction."""

    key: str
    time_ns: int
    kind: str
    channel: str
    ts: str
    thread_ts: str | None
    first_ts: str
    user: str | None
    text: str | None
    reactions: int
    offset: int


@dataclass(slots=True)
class Closed:
    """The conversation `key` has been quiet for its gap at `time_ns`."""

    key: str
    time_ns: int


@dataclass(slots=True)
class Passed:
    """A row that changed no conversation: a heartbeat (`kind` tick), housekeeping, an
    amendment of a conversation that is gone, or a record the feeder skipped."""

    time_ns: int
    kind: str
    offset: int


Output = Change | Closed | Passed


def result_tables(query: kd.Timestream, mode: Literal["once", "live"]) -> kd.ResultIterator[pa.Table]:
    """The query's results as Arrow tables, one per batch Kaskada hands out, for `parse_table`.

    Not `run_iter("row")`: turning every output row into a dict of dicts cost more than the
    conversation fold itself in the live service's profile. Not `run_iter("pyarrow")`: 0.6.1
    cannot iterate it asynchronously (it hands a list where an iterator is expected). This is
    what `run_iter` does inside, with a table per batch.
    """
    execution = execute(query, mode)
    return kd.ResultIterator(execution, lambda table: iter((table,)))


def parse_table(table: pa.Table) -> list[Output]:
    """The outputs of a batch of `conversation_query` rows, column by column; one per row that
    changed no conversation, changed one, closed one, or both changed and closed one (an edit or
    reaction landing exactly on the close deadline: the change applies first)."""
    if table.num_rows == 0:
        return []
    times = table.column("_time").cast(pa.int64()).to_pylist()
    keys = table.column("_key").to_pylist()
    closed = table.column("closed").is_valid().to_pylist()
    change = table.column("change").combine_chunks()
    has_change = change.is_valid().to_pylist()
    fields = {name: change.field(name).to_pylist() for name in _CHANGE_FIELDS}
    outputs: list[Output] = []
    for i, time_ns in enumerate(times):
        if has_change[i]:
            if not fields["member"][i]:
                outputs.append(Passed(time_ns, fields["kind"][i], int(fields["offset"][i])))
            else:
                outputs.append(
                    Change(
                        key=keys[i],
                        time_ns=time_ns,
                        kind=fields["kind"][i],
                        channel=fields["channel"][i],
                        ts=fields["ts"][i],
                        thread_ts=fields["thread_ts"][i],
                        first_ts=fields["first_ts"][i],
                        user=fields["user"][i],
                        text=fields["text"][i],
                        reactions=int(fields["reactions"][i] or 0),
                        offset=int(fields["offset"][i]),
                    )
                )
        if closed[i]:
            outputs.append(Closed(keys[i], time_ns))
    return outputs


_CHANGE_FIELDS = (
    "kind",
    "member",
    "channel",
    "ts",
    "thread_ts",
    "first_ts",
    "user",
    "text",
    "reactions",
    "offset",
)
