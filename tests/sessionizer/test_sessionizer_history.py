"""Conversations of history tables: the example data's 187, the rules at their edges, training contexts."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from offline import conversations as listing
from offline.tables import load_table
from sessionizer.history import conversations, message_contexts
from sessionizer.settings import SessionizerSettings

DATA = Path(__file__).resolve().parents[2] / "data"
GENERATED = DATA / "slack-generation.parquet"


def reference_members(table: pd.DataFrame, gap: float = 600) -> dict[tuple[str, float], list[float]]:
    """The rules of docs/conversations.md written the plain way: every message with a thread_ts (the
    parent too) belongs to its thread, the others are split per channel by the gap."""
    table = table.sort_values("ts", kind="stable")
    members: dict[tuple[str, float], list[float]] = {}
    for channel, rows in table[table.thread_ts.isna()].groupby("channel"):
        current, previous = None, None
        for ts in rows.ts:
            if previous is None or ts - previous > gap:
                current = (str(channel), float(ts))
                members[current] = []
            members[current].append(float(ts))
            previous = ts
    for (channel, thread), rows in table[table.thread_ts.notna()].groupby(["channel", "thread_ts"]):
        members[(str(channel), float(thread))] = sorted(float(t) for t in rows.ts)
    return members


@pytest.fixture(scope="module")
def generated() -> pd.DataFrame:
    return load_table(GENERATED)


def test_the_example_data_has_187_conversations_with_the_members_the_rules_give(
    generated: pd.DataFrame,
) -> None:
    found = conversations(generated)
    assert len(found) == 187
    members = {(c.channel, float(c.first_ts)): sorted(float(m.ts) for m in c.messages) for c in found}
    assert members == reference_members(pd.read_parquet(GENERATED))
    assert sum(c.message_count for c in found) == len(generated) == 1678
    assert all(c.kind == "closed" for c in found)


def test_threads_are_whole_even_when_they_pause_past_their_idle_time(generated: pd.DataFrame) -> None:
    thread = next(
        c for c in conversations(generated) if c.conversation_id == "Project:1690801242.000000/thread"
    )
    assert thread.thread_ts == "1690801242.000000"
    assert thread.message_count == 13  # the parent, then replies after 83 and 58 minute pauses
    assert thread.messages[0].ts == thread.first_ts


def test_the_gap_is_more_than_ten_minutes_not_ten_minutes() -> None:
    table = _table([("C", 1000.0), ("C", 1600.0), ("C", 2200.000001)])
    assert [c.message_count for c in conversations(table)] == [2, 1]


def test_duplicates_bots_and_housekeeping_form_no_conversation() -> None:
    table = _table([("C", 1000.0), ("C", 1000.0), ("C", 1100.0)])
    table.loc[len(table)] = {**table.iloc[0].to_dict(), "ts": 1200.0, "user": None}  # a bot post
    table["subtype"] = [None, None, "channel_join", None]
    found = conversations(table)
    assert [c.message_count for c in found] == [1]


def test_people_s_messages_form_conversations_whatever_their_subtype_and_nothing_else_does() -> None:
    """`reply_broadcast` (thread_broadcast's older name) is a person's thread reply also sent to the
    channel: it belongs to its thread, as ingest keeps it. Bots, housekeeping, edits recorded as
    rows and unknown subtypes form nothing (beepgpt.person_messages)."""
    rows: list[tuple[float, float | None, str | None]] = [
        (1000.0, 1000.0, None),  # a thread's parent
        (1010.0, 1000.0, "reply_broadcast"),
        (1020.0, 1000.0, "thread_broadcast"),
        (1030.0, None, "file_share"),
        (1040.0, None, "me_message"),
        (1050.0, None, "bot_message"),
        (1060.0, None, "slackbot_response"),
        (1070.0, None, "channel_join"),
        (1080.0, None, "message_replied"),
        (1090.0, None, "message_changed"),
        (1100.0, None, "huddle_started_v9"),
    ]
    table = _table([("C", ts) for ts, _, _ in rows])
    table["thread_ts"] = [thread for _, thread, _ in rows]
    table["subtype"] = [subtype for _, _, subtype in rows]
    members = {c.conversation_id: [m.ts for m in c.messages] for c in conversations(table)}
    assert members == {
        "C:1000.000000/thread": ["1000.000000", "1010.000000", "1020.000000"],
        "C:1030.000000": ["1030.000000", "1040.000000"],
    }


def test_channels_and_gap_settings_are_independent() -> None:
    table = _table([("A", 1000.0), ("B", 1030.0), ("A", 1061.0), ("B", 1060.0)])
    counts = {c.conversation_id: c.message_count for c in conversations(table, SessionizerSettings(gap_s=60))}
    assert counts == {"A:1000.000000": 1, "A:1061.000000": 1, "B:1030.000000": 2}


def test_message_contexts_hold_up_to_five_earlier_messages_by_others(generated: pd.DataFrame) -> None:
    contexts = message_contexts(generated)
    assert len(contexts) == 1678
    by_ts = {(c.channel, c.ts): c for c in contexts}
    ids = {c.conversation_id for c in contexts}
    assert len(ids) == 187
    for context in contexts:
        assert len(context.previous) <= 5
        assert all(p.user != context.user for p in context.previous)
    # the fifth message of the day: four people spoke before it in General, none of them its author
    fifth = by_ts[("General", "1690783205.000000")]
    assert [p.user for p in fifth.previous] == ["UFB3DA5BF", "U03CC4325", "U3E44CFA1", "UEA27BBFF"]
    assert fifth.conversation_id == "General:1690783200.000000"
    first = by_ts[("General", "1690783200.000000")]
    assert first.previous == ()
    assert json.loads(json.dumps(fifth.as_dict()))["previous"][0]["user"] == "UFB3DA5BF"


def test_message_contexts_skip_the_authors_own_messages() -> None:
    rows = [("C", 1000.0, "U1", "question?"), ("C", 1010.0, "U2", "a"), ("C", 1020.0, "U2", "b")]
    table = pd.DataFrame(
        {"ts": [r[1] for r in rows], "thread_ts": None, "channel": "C", "user": [r[2] for r in rows]}
    ).assign(text=[r[3] for r in rows])
    contexts = message_contexts(table)
    assert [(p.user, p.text) for p in contexts[2].previous] == [("U1", "question?")]


def test_the_command_writes_ids_messages_and_participants(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "conversations.jsonl"
    assert listing.main([str(GENERATED), "--out", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 187
    first = next(line for line in lines if line["id"] == {"channel": "General", "thread": 1690783200.0})
    assert first["messages"][0]["ts"] == "1690783200.000000"
    assert set(first["participants"]) >= {first["messages"][0]["user"]}
    assert "187 conversations" in capsys.readouterr().err


def test_the_command_reads_a_slack_export(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ingest.importer.sources")
    assert listing.main([str(DATA / "slack-export")]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    thread = next(line for line in lines if line["conversation_id"] == "random:1690360240.229079/thread")
    assert [m["text"] for m in thread["messages"]][-1] == "howdy"
    assert len(thread["messages"]) == 5


def test_the_command_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    assert listing.main([str(tmp_path / "missing.parquet")]) == 2


def _table(rows: list[tuple[str, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ts": [ts for _, ts in rows],
            "thread_ts": [None] * len(rows),
            "channel": [channel for channel, _ in rows],
            "user": ["U1"] * len(rows),
            "text": ["hello"] * len(rows),
        }
    )
