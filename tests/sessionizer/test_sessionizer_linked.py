"""Linked mode (`BEEPGPT_CONVERSATIONS=linked`) live: the reply linker decides each flow message's
conversation in the feeder, before the Kaskada query, the same way in history and in the service.

On real chat whose conversations interleave (a slice of the annotated Ubuntu IRC corpus, converted
by `offline.tables.load_table`): the service through Kafka gives exactly history's conversations,
also when its queries are rebuilt on the way (each rebuild replays from the clean cut, the linker's
window with it), and a process killed mid-stream and started again loses and doubles nothing.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sessionizer_helpers import (
    Conversations,
    closed_count,
    fast_settings,
    publish,
    running_service,
    same_conversation,
)
from test_sessionizer_restart import service_env, start_service

from beepgpt.contracts import ConversationEvent, SlackMessage, SlackReaction
from beepgpt.message_table import complete, to_messages
from beepgpt.settings import KafkaSettings
from beepgpt.topics import SLACK_MESSAGES
from offline.evaluation.conversations.modes import linked
from offline.tables import load_table
from sessionizer import metrics
from sessionizer.clock import FakeClock
from sessionizer.conversation import Span
from sessionizer.feeder import Fed, Feeder
from sessionizer.history import conversations
from sessionizer.offsets import CleanCut, ReplayMarks
from sessionizer.partition import PartitionSessionizer
from sessionizer.settings import SessionizerSettings

UBUNTU = Path("/work/shared/data/real-chat/ubuntu-irc-train")
LINKED = SessionizerSettings(conversations="linked")

needs_ubuntu = pytest.mark.skipif(not UBUNTU.exists(), reason="the annotated Ubuntu IRC corpus is not here")


def ubuntu_slice(channels: int) -> pd.DataFrame:
    """The first `channels` chunks of the corpus (a chunk is a channel of its own), in time order."""
    table = load_table(UBUNTU)
    keep = sorted(table["channel"].unique())[:channels]
    return table[table["channel"].isin(keep)].reset_index(drop=True)


async def committed_records(kafka: KafkaSettings, group: str) -> int:
    """The records of slack.messages the group has committed past, over all partitions."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        partitions = [TopicPartition(SLACK_MESSAGES.name, p) for p in range(kafka.partitions)]
        offsets = await admin.list_consumer_group_offsets(group, partitions=partitions)
    finally:
        await admin.close()
    return sum(max(0, o.offset) for o in offsets.values())


def history_linked(table: pd.DataFrame) -> dict[str, ConversationEvent]:
    return {c.conversation_id: c for c in conversations(table, LINKED, window=20)}


def test_linked_mode_is_one_definition_in_history() -> None:
    """`beepgpt conversations --mode linked` and the evaluation's `linked` build the same
    conversations as `history.conversations` in linked mode, and gap mode stays the rule of gaps."""
    start = 1_700_000_000.0
    said = [
        ("UA", "how do I mount a usb disk in ubuntu?"),
        ("UC", "anyone know a good irc client for gnome?"),
        ("UB", "<@UA> try sudo mount /dev/sdb1 /mnt for the usb disk"),
        ("UD", "<@UC> xchat is a good irc client"),
        ("UA", "<@UB> thanks, the usb disk mounts now"),
    ]
    table = pd.DataFrame(
        {
            "ts": [start + 30 * i for i in range(len(said))],
            "thread_ts": [None] * len(said),
            "channel": ["C"] * len(said),
            "user": [u for u, _ in said],
            "text": [t for _, t in said],
        }
    )
    found = conversations(table, LINKED)
    members = sorted(sorted(m.user for m in c.messages) for c in found)
    assert members == [["UA", "UA", "UB"], ["UC", "UD"]]
    assert {c.conversation_id for c in found} == {f"C:{start:.6f}", f"C:{start + 30:.6f}"}
    assignment = linked(table)
    assert assignment.members == {c.conversation_id: [f"C:{m.ts}" for m in c.messages] for c in found}
    assert len(conversations(table, SessionizerSettings(conversations="gap"))) == 1


def test_a_reply_after_its_conversation_closed_starts_a_new_one() -> None:
    """The linker may name a parent whose conversation the query has already closed (the
    idle time, 60 s here, is shorter than the linker's window): the message starts a conversation
    of its own rather than reviving one whose `closed` event is out."""
    start = 1_700_000_000.0
    table = pd.DataFrame(
        {
            "ts": [start, start + 100],
            "thread_ts": [None, None],
            "channel": ["C", "C"],
            "user": ["UA", "UB"],
            "text": ["how do I mount a usb disk in ubuntu?", "<@UA> try sudo mount /dev/sdb1 /mnt"],
        }
    )
    links: dict[str, str | None] = {}
    together = conversations(table, LINKED, on_link=links.__setitem__)
    assert [len(c.messages) for c in together] == [2]
    assert links[f"C:{start + 100:.6f}"] == f"C:{start:.6f}"
    apart = conversations(table, LINKED.model_copy(update={"linked_idle_s": 60.0}))
    assert sorted(c.conversation_id for c in apart) == [f"C:{start:.6f}", f"C:{start + 100:.6f}"]


async def test_amendments_follow_their_message_and_each_conversation_closes_on_its_own_clock(
    kafka_topics: KafkaSettings,
) -> None:
    """Two conversations interleaved in one channel: an edit and a reaction go to the conversation
    of the message they are about, and the one that went quiet closes while the other goes on
    (the channel never went quiet for `linked_idle_s`)."""
    start = 1_700_000_000.0
    idle = 120.0
    settings = fast_settings(conversations="linked", linked_idle_s=idle, group_id="sessionizer-linked-amend")

    def said(i: float, user: str, text: str) -> SlackMessage:
        return SlackMessage(channel="C1", ts=f"{start + i:.6f}", user=user, text=text, event_time=start + i)

    usb = [
        said(0, "UA", "how do I mount a usb disk in ubuntu?"),
        said(20, "UB", "<@UA> try sudo mount /dev/sdb1 /mnt"),
    ]
    irc = [
        said(10, "UC", "anyone know a good irc client for gnome?"),
        said(30, "UD", "<@UC> xchat is a good irc client"),
        *(
            said(30 + 60 * k, "UC" if k % 2 else "UD", f"<@{'UD' if k % 2 else 'UC'}> xchat irc client {k}")
            for k in range(1, 6)
        ),
    ]
    edit = SlackMessage(
        channel="C1",
        ts=usb[1].ts,
        user="UB",
        text="<@UA> try sudo mount /dev/sdb1 /media/usb",
        action="edited",
        event_time=start + 40,
    )
    reaction = SlackReaction(
        channel="C1", item_ts=usb[0].ts, user="UB", reaction="eyes", event_time=start + 45
    )
    events: list[SlackMessage | SlackReaction] = sorted(
        [*usb, *irc, edit, reaction], key=lambda e: e.event_time
    )
    clock = FakeClock(start)
    async with Conversations(kafka_topics) as out, running_service(kafka_topics, settings, clock):
        await publish(kafka_topics, events)
        await out.until(lambda got: sum(e.kind == "updated" for e in got) >= len(usb) + len(irc) + 1)
        clock.set(start + 20 + idle + 1)  # the usb conversation has been quiet for `idle`, irc not
        await out.until(closed_count(1))
        assert set(out.closed()) == {f"C1:{start:.6f}"}
        clock.set(start + 330 + idle + 1)
        await out.until(closed_count(2))
    closed = out.closed()
    usb_closed, irc_closed = closed[f"C1:{start:.6f}"], closed[f"C1:{start + 10:.6f}"]
    assert [m.text for m in usb_closed.messages] == [usb[0].text, edit.text]
    assert usb_closed.reaction_count == 1
    assert [m.ts for m in irc_closed.messages] == [m.ts for m in irc]
    assert usb_closed.thread_ts is None
    assert irc_closed.thread_ts is None


def linked_keys(
    messages: list[SlackMessage], feeder: Feeder, cut: int = 0, refill_from: int = -1
) -> dict[int, str]:
    """Each new flow message's linked conversation key, by offset, fed from `cut` as a replay is
    (the records from `refill_from` up to the cut only refill the linker's window)."""
    keys: dict[int, str] = {}
    for offset, message in enumerate(messages):
        if 0 <= refill_from <= offset < cut:
            feeder.warm(offset, message)
        elif offset >= cut:
            row, fed = feeder.event(offset, message)
            if fed in (Fed.ACCEPTED, Fed.CLAMPED) and row["linked_key"]:
                keys[offset] = row["linked_key"]
    return keys


REPLAYED = 300
"""Records replayed after a cut in these tests: a replay's first hours, where a window could lack
a candidate."""


@dataclass
class Replays:
    """A busy slice fed whole through one feeder, and its clean cuts (`offsets.CleanCut` over the
    linked conversations' offset spans)."""

    messages: list[SlackMessage]
    whole: Feeder
    keys: dict[int, str]
    cuts: list[int]

    @classmethod
    def of(cls, table: pd.DataFrame) -> Replays:
        messages = list(to_messages(complete(table)))
        whole = Feeder(LINKED)
        keys = linked_keys(messages, whole)
        spans: dict[str, Span] = {}
        for offset, key in keys.items():
            spans[key] = Span(spans.get(key, Span(offset, offset)).first_offset, offset)
        clean = CleanCut(0)
        clean.add(list(spans.values()))
        firsts = sorted(span.first_offset for span in spans.values())  # ascending: `cut` forgets spans below
        return cls(messages, whole, keys, sorted({clean.cut(first, None) for first in firsts} - {0}))

    def replayed(self, cut: int, refill: bool, records: int = REPLAYED) -> dict[int, str]:
        head = self.messages[: cut + records]
        return linked_keys(head, Feeder(LINKED), cut, self.whole.linker_from(cut) if refill else -1)

    def expected(self, cut: int, records: int = REPLAYED) -> dict[int, str]:
        return {o: k for o, k in self.keys.items() if cut <= o < cut + records}


@needs_ubuntu
def test_a_replay_from_any_clean_cut_links_every_message_as_before() -> None:
    """The restart argument of `feeder.LinkedFlow`, checked at every clean cut of busy chat.

    The linker's window (4 hours) is longer than a linked conversation's idle time (30 minutes),
    so a message whose best candidate's conversation had closed starts a conversation of its
    own; a replay whose window lacked that candidate linked it to the runner-up instead (with
    linker v2, two cuts of this slice did, which is how the live test below once differed from
    history). Refilling the window from `linker_from` makes every cut decide as the whole run."""
    replays = Replays.of(ubuntu_slice(3))
    assert len(replays.cuts) > 50
    for cut in replays.cuts:
        assert replays.replayed(cut, refill=True) == replays.expected(cut), f"the replay from {cut} differs"


@needs_ubuntu
async def test_a_partition_replaying_in_linked_mode_refills_the_window_before_its_cut() -> None:
    """The service's side of the refill: a partition started at a cut with the commit's
    `linker_from` reads from there (its position), hands the records before the cut to the
    linker only, and publishes the conversations of the whole run. At a cut where a replay
    without the refill links differently, if the model has one (linker v2 does), else any."""
    replays = Replays.of(ubuntu_slice(3))
    differing = [c for c in replays.cuts if replays.replayed(c, refill=False) != replays.expected(c)]
    cut = (differing or replays.cuts)[0]
    marks = ReplayMarks(linker_from=replays.whole.linker_from(cut))
    assert 0 <= marks.linker_from < cut
    events: list[ConversationEvent] = []
    partition = PartitionSessionizer(
        0, LINKED, start=cut, marks=marks, publish=lambda emitted, _: events.append(emitted.event)
    )
    await partition.start()
    try:
        assert partition.position == marks.linker_from
        head = replays.messages[: cut + REPLAYED]
        await partition.feed([(o, head[o], None) for o in range(marks.linker_from, len(head))])
        await partition.heartbeat(float(head[-1].ts) + LINKED.linked_idle_s + 1)
        await partition.drain(30)
    finally:
        await partition.stop()
    members: dict[str, list[str]] = {}
    for offset, key in replays.expected(cut).items():
        members.setdefault(key, []).append(replays.messages[offset].ts)
    closed = {e.conversation_id: e for e in events if e.kind == "closed"}
    assert set(closed) == set(members)
    for key, ts in members.items():
        assert closed[key].message_count == len(ts)
        assert [m.ts for m in closed[key].messages] == ts[-LINKED.max_messages :], key


@needs_ubuntu
async def test_linked_mode_live_through_kafka_gives_the_conversations_of_history(
    kafka_topics: KafkaSettings,
) -> None:
    """The same messages, through the service (queries rebuilt every 60 closed conversations:
    each rebuild replays from the clean cut with a new linker) and through history."""
    table = ubuntu_slice(3)
    messages = list(to_messages(table))
    expected = history_linked(table)
    assert len(expected) > 300  # busy channels: many interleaved conversations, not one an hour
    clock = FakeClock(float(messages[0].ts))
    await publish(kafka_topics, messages)
    restarts = metrics.QUERY_RESTARTS.labels("rebuild")._value.get()
    settings = fast_settings(
        conversations="linked", rebuild_after_closed=60, max_batch=300, group_id="sessionizer-linked-history"
    )
    kept = sum(len(c.messages) for c in conversations(table, LINKED))  # duplicates (same ts) dropped
    async with Conversations(kafka_topics) as out, running_service(kafka_topics, settings, clock):
        await out.until(lambda events: sum(e.kind == "updated" for e in events) >= kept, timeout=120)
        clock.set(float(messages[-1].ts) + 7_200)
        await out.until(closed_count(len(expected)), timeout=60)
    closed = out.closed()
    assert set(closed) == set(expected)
    differ = [cid for cid in expected if not same_conversation(closed[cid], expected[cid])]
    assert not differ, f"conversations that differ from history: {differ[:5]}"
    assert len(out.updated()) == kept  # one per message, none repeated by the rebuilds' replays
    assert len({(e.conversation_id, e.version) for e in out.events}) == len(out.events)
    assert metrics.QUERY_RESTARTS.labels("rebuild")._value.get() - restarts >= 1


@needs_ubuntu
async def test_sigkill_mid_stream_in_linked_mode_then_restart_loses_and_doubles_nothing(
    kafka_topics: KafkaSettings, tmp_path: Path
) -> None:
    """The restarted process replays from the committed clean cut; its linker, rebuilt by that
    replay, links every replayed message as before (`feeder.LinkedFlow`), so each conversation
    comes out once, whole, as history builds it."""
    table = ubuntu_slice(2)
    messages = list(to_messages(table))
    cut = len(messages) // 2
    first, rest = messages[:cut], messages[cut:]
    tomorrow = [
        SlackMessage(channel=channel, ts=f"{float(messages[-1].ts) + 86_400:.6f}", user="U0", text="tomorrow")
        for channel in sorted({m.channel for m in messages})
    ]
    expected = history_linked(table)
    group = f"sessionizer-{uuid.uuid4().hex[:8]}"
    env = {**service_env(kafka_topics, group), "BEEPGPT_CONVERSATIONS": "linked"}
    log = tmp_path / "sessionizer.log"

    await publish(kafka_topics, first)
    process = await start_service(env, log)
    try:
        async with Conversations(kafka_topics) as out:
            await out.until(closed_count(len(expected) // 4), timeout=90)  # some closed, others open
            process.send_signal(signal.SIGKILL)
            await process.wait()
            # Committed past closed conversations, but trailing the records fed (open ones start
            # before it): the restart replays part of the stream, its linker deciding it again.
            committed = await committed_records(kafka_topics, group)
            assert 0 < committed < len(first)
            await publish(kafka_topics, [*rest, *tomorrow])
            process = await start_service(env, log)
            await out.until(closed_count(len(expected)), timeout=120)
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 30) == 0, log.read_text()[-2000:]
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    closed = out.closed()
    assert set(closed) == set(expected), set(closed) ^ set(expected)
    differ = [cid for cid in expected if not same_conversation(closed[cid], expected[cid])]
    assert not differ, f"conversations that differ from history: {differ[:5]}"
    updated = out.updated()
    assert {(e.conversation_id, e.messages[-1].ts) for e in updated} >= {
        (cid, m.ts) for cid, c in expected.items() for m in c.messages[-1:]
    }
    versions: dict[tuple[str, int], str] = {}
    for event in out.events:
        fingerprint = event.model_dump_json(exclude={"emitted_at"})
        assert versions.setdefault((event.conversation_id, event.version), fingerprint) == fingerprint
