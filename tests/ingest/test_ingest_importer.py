"""`beepgpt import`: the example export (directory and zip), the example table, damaged inputs, --publish."""

from __future__ import annotations

import asyncio
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from ingest_helpers import decoded, read_values

from beepgpt.kafka.headers import SOURCE, header
from beepgpt.message_table import BASE_COLUMNS, COLUMNS, complete
from beepgpt.settings import KafkaSettings
from ingest.importer.cli import main
from ingest.importer.sources import SourceError, read_source

DATA = Path(__file__).resolve().parents[2] / "data"
EXPORT = DATA / "slack-export"
GENERATED = DATA / "slack-generation.parquet"


def zip_dir(source: Path, target: Path, *, top: str | None) -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(source.rglob("*.json")):
            name = path.relative_to(source).as_posix()
            archive.write(path, f"{top}/{name}" if top else name)
    return target


@pytest.fixture
def export_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(EXPORT, tmp_path / "export"))


def test_the_example_export_directory() -> None:
    imported = read_source(EXPORT)
    counts = imported.history.counts
    assert (counts.read, counts.kept, dict(counts.skipped)) == (24, 12, {"channel_join": 12})
    assert imported.problems == []
    assert (imported.files, imported.channels) == (6, 3)
    table = imported.history.table()
    assert list(table.columns) == list(COLUMNS)
    assert table["ts"].is_monotonic_increasing
    assert set(table["channel"]) == {"general", "random", "demo"}
    replies = table[table["slack_thread_ts"] == "1690360240.229079"]
    assert len(replies) == 5  # the parent and its four replies
    assert table.loc[table["text"] == "howdy", "reactions"].item() == 1
    assert (table["subtype"].isna()).all()


@pytest.mark.parametrize("top", [None, "My Workspace Slack export Jul 25 2023 - Jul 26 2023"])
def test_a_zip_of_the_export_gives_the_same_table(tmp_path: Path, top: str | None) -> None:
    archive = zip_dir(EXPORT, tmp_path / "export.zip", top=top)
    from_zip = read_source(archive)
    pd.testing.assert_frame_equal(from_zip.history.table(), read_source(EXPORT).history.table())
    assert from_zip.kind == "Slack export zip"
    assert from_zip.history.counts == read_source(EXPORT).history.counts


def test_the_example_parquet_table() -> None:
    imported = read_source(GENERATED)
    assert imported.history.counts.read == imported.history.counts.kept == 1678
    table = imported.history.table()
    original = complete(pd.read_parquet(GENERATED))
    pd.testing.assert_frame_equal(table[list(BASE_COLUMNS)], original[list(BASE_COLUMNS)])
    assert imported.problems == []


def test_a_jsonl_table_with_a_corrupt_line_and_an_unknown_column(tmp_path: Path) -> None:
    rows: list[Any] = [
        {
            "ts": 1690000000.5,
            "thread_ts": None,
            "channel": "General",
            "user": "U1",
            "text": "hi",
            "mood": "ok",
        },
        {"ts": 1690000001.5, "thread_ts": 1690000000.5, "channel": "General", "user": "U2", "text": "yo"},
        {
            "ts": 1690000002.5,
            "thread_ts": None,
            "channel": "General",
            "user": "U3",
            "text": "joined",
            "subtype": "channel_join",
        },
    ]
    path = tmp_path / "table.jsonl"
    lines = [json.dumps(rows[0]), "{broken", json.dumps(rows[1]), "", json.dumps(rows[2])]
    path.write_text("\n".join(lines) + "\n")
    imported = read_source(path)
    assert [str(p) for p in imported.problems] == [
        "table.jsonl:2: corrupt_line: not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        "table.jsonl: unknown_field: column 'mood' is not a message table column",
    ]
    table = imported.history.table()
    assert list(table["text"]) == ["hi", "yo"]
    assert list(table["slack_thread_ts"]) == [None, "1690000000.500000"]
    assert dict(imported.history.counts.skipped) == {"channel_join": 1}


def test_damage_is_reported_with_the_file_name_and_the_rest_imported(export_copy: Path) -> None:
    (export_copy / "general" / "2023-07-26.json").write_text('[{"type": "message", "text": "cut off')
    (export_copy / "channels.json").write_text(
        json.dumps(
            [
                {"id": "C0GENERAL", "name": "general"},
                {"id": "C0RANDOM", "name": "random"},
                {"id": "C0DEMO", "name": "demo"},
                {"id": "C0GONE", "name": "gone"},
            ]
        )
    )
    (export_copy / "users.json").write_text(
        json.dumps([{"id": "U05JQJJDJ6P", "name": "a"}, {"id": "U0BOT", "name": "b", "is_bot": True}])
    )
    random_day = export_copy / "random" / "2023-07-26.json"
    messages = json.loads(random_day.read_text())
    messages[0]["sparkles"] = True  # a field this reader does not know
    messages.append("not a message")
    messages.append({"type": "message", "user": "U0BOT", "text": "beep", "ts": "1690400600.000001"})
    messages.append({"type": "message", "user": "U05JQJJDJ6P", "text": "no ts"})
    messages.append(
        {
            "type": "message",
            "subtype": "message_changed",
            "message": {
                "type": "message",
                "user": "U05JQJJDJ6P",
                "text": "reply ONE",
                "ts": "1690360249.137789",
            },
            "previous_message": {"text": "reply  1"},
            "ts": "1690400650.0",
        }
    )
    messages.append(
        {
            "type": "message",
            "subtype": "message_deleted",
            "deleted_ts": "1690360253.041239",
            "ts": "1690400700.0",
        }
    )
    random_day.write_text(json.dumps(messages))
    (export_copy / "random" / "notes.txt").write_text("hello")

    imported = read_source(export_copy)
    problems = [str(p) for p in imported.problems]
    assert any(p.startswith("general/2023-07-26.json: corrupt_file: not valid JSON") for p in problems)
    assert "gone/: missing_folder: listed in channels.json but the export has no folder" in problems
    assert "random/2023-07-26.json: unknown_field: field 'sparkles' is not a known message field" in problems
    assert "random/notes.txt: unexpected_file: not <channel>/<YYYY-MM-DD>.json" in problems
    assert any(p.startswith("random/2023-07-26.json[9]: rejected_message: invalid_event") for p in problems)
    assert any(p.startswith("random/2023-07-26.json[11]: rejected_message: missing_field") for p in problems)
    counts = imported.history.counts
    assert counts.skipped["bot"] == 1
    assert (counts.edits, counts.deletions) == (1, 1)
    assert counts.read == counts.kept + sum(counts.skipped.values())
    table = imported.history.table()
    assert set(table["channel"]) == {"C0RANDOM", "C0DEMO"}  # ids from channels.json; general is lost
    assert "reply ONE" in set(table["text"])
    assert "1690360253.041239" not in set(table["slack_ts"])


def test_cli_prints_counts_and_writes_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "messages.parquet"
    assert main([str(EXPORT), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "read      24" in printed
    assert "kept      12" in printed
    assert "skipped   12  (channel_join 12)" in printed
    assert pd.read_parquet(out).shape == (12, len(COLUMNS))
    assert main([str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    csv = tmp_path / "messages.csv"
    csv.write_text("ts,text\n")
    with pytest.raises(SourceError, match="is not a Slack export"):
        read_source(csv)


async def test_publish_sends_rows_in_timestamp_order(
    kafka_topics: KafkaSettings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BEEPGPT_KAFKA_BOOTSTRAP_SERVERS", kafka_topics.bootstrap_servers)
    monkeypatch.setenv("BEEPGPT_KAFKA_IDEMPOTENCE", "false")
    # the CLI runs its own event loop; run it in a thread so this test's loop stays free
    assert await asyncio.to_thread(main, [str(GENERATED), "--publish", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["published"] == 1678
    records = await read_values(kafka_topics, 1678)
    assert all(header(r.headers, SOURCE) == "import" for r in records)
    by_channel: dict[str, list[float]] = {}
    for record, message in zip(records, decoded(records), strict=True):
        assert record.key == message.channel.encode()
        by_channel.setdefault(message.channel, []).append(float(message.ts))
    assert set(by_channel) == {"General", "Project"}
    for times in by_channel.values():
        assert times == sorted(times)
