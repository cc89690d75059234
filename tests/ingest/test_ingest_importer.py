"""`beepgpt import`: the example export (directory and zip), the example table, damaged inputs, --publish,
which channels of an export are read, and hostile exports (real crafted zips: a bomb, a member
that lies about its size, members outside the export folder, JSON nested too deeply)."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from ingest_helpers import decoded, read_values

from beepgpt.kafka.headers import SOURCE, header
from beepgpt.message_table import BASE_COLUMNS, COLUMNS, complete
from beepgpt.settings import KafkaSettings
from ingest.importer.cli import main
from ingest.importer.export import MemberRefused, ReadBudget
from ingest.importer.sources import SourceError, read_source
from ingest.settings import ImportSettings

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


# --- who may see what: which folders of an export are read -----------------------------------


def day(*messages: dict[str, Any]) -> str:
    return json.dumps(list(messages))


def said(user: str, text: str, ts: str) -> dict[str, Any]:
    return {"type": "message", "user": user, "text": text, "ts": ts}


def full_export(root: Path) -> Path:
    """An "export everything" export: public, shared, private, DM and group DM folders."""
    listings = {
        "channels.json": [
            {"id": "C0GENERAL", "name": "general"},
            {"id": "C0PARTNER", "name": "partners", "is_ext_shared": True},
        ],
        "groups.json": [{"id": "G0SECRET", "name": "secret"}],
        "dms.json": [{"id": "D0ALICEBOB", "members": ["U0ALICE", "U0BOB"]}],
        "mpims.json": [{"id": "G0MPIM", "name": "mpdm-alice--bob--carol-1"}],
        "users.json": [{"id": "U0ALICE", "name": "alice"}, {"id": "U0BOB", "name": "bob"}],
    }
    root.mkdir()
    for name, entries in listings.items():
        (root / name).write_text(json.dumps(entries))
    folders = {
        "general": [said("U0ALICE", "hello all", "1690000000.000100")],
        "partners": [said("U0ALICE", "hello partners", "1690000001.000100")],
        "secret": [said("U0ALICE", "the reorg", "1690000002.000100"), said("U0BOB", "shh", "1690000003.0")],
        "D0ALICEBOB": [said("U0ALICE", "just us", "1690000004.000100")],
        "mpdm-alice--bob--carol-1": [said("U0BOB", "us three", "1690000005.000100")],
    }
    for folder, messages in folders.items():
        (root / folder).mkdir()
        (root / folder / "2023-07-22.json").write_text(day(*messages))
    (root / "secret" / "2023-07-23.json").write_text(day(said("U0BOB", "still secret", "1690090000.0")))
    return root


def test_only_public_and_shared_channels_are_read_by_default(tmp_path: Path) -> None:
    export = full_export(tmp_path / "export")
    imported = read_source(export)
    messages = imported.history.messages()
    assert [(m.channel, m.text, m.channel_kind) for m in messages] == [
        ("C0GENERAL", "hello all", "public"),
        ("C0PARTNER", "hello partners", "shared"),
    ]
    assert imported.skipped_channels == {"direct_message": 1, "group_dm": 1, "private_channel": 1}
    assert imported.skipped_files == 4  # never opened: secret has two days
    assert (imported.files, imported.channels) == (2, 2)
    assert imported.history.counts.read == 2
    assert imported.problems == []
    zipped = read_source(zip_dir(export, tmp_path / "export.zip", top="Acme export"))
    assert [(m.channel, m.channel_kind) for m in zipped.history.messages()] == [
        (m.channel, m.channel_kind) for m in messages
    ]
    assert zipped.skipped_channels == imported.skipped_channels


def test_private_channels_are_read_when_allowed_but_never_dms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    export = full_export(tmp_path / "export")
    imported = read_source(export, private_channels=True)
    assert [(m.channel, m.channel_kind) for m in imported.history.messages()] == [
        ("C0GENERAL", "public"),
        ("C0PARTNER", "shared"),
        ("G0SECRET", "private"),
        ("G0SECRET", "private"),
        ("G0SECRET", "private"),
    ]
    assert imported.skipped_channels == {"direct_message": 1, "group_dm": 1}
    # the CLI takes the live setting (and --private-channels)
    assert main([str(export), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["channels_not_read"]["private_channel"] == 1
    monkeypatch.setenv("BEEPGPT_INGEST_PRIVATE_CHANNELS", "true")
    assert main([str(export), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["kept"], summary["channels_not_read"]) == (5, {"direct_message": 1, "group_dm": 1})


def test_the_summary_counts_what_was_not_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(full_export(tmp_path / "export"))]) == 0
    printed = capsys.readouterr().out
    assert "not read  3 channels, 4 files  (direct_message 1, group_dm 1, private_channel 1)" in printed
    assert "kept      2" in printed


def test_a_line_cannot_claim_its_channel_is_public(tmp_path: Path) -> None:
    """The listing says who may read a folder, whatever a message in it says of itself."""
    export = full_export(tmp_path / "export")
    (export / "secret" / "2023-07-23.json").write_text(
        day({**said("U0BOB", "I am public", "1690090000.0"), "channel_type": "channel"})
    )
    imported = read_source(export)
    assert "I am public" not in {m.text for m in imported.history.messages()}
    allowed = read_source(export, private_channels=True)
    [claimed] = [m for m in allowed.history.messages() if m.text == "I am public"]
    assert claimed.channel_kind == "private"


def test_a_folder_no_listing_names_is_not_read(tmp_path: Path) -> None:
    """Its kind is unknown: it may be the folder of a private channel whose listing is missing."""
    export = full_export(tmp_path / "export")
    (export / "groups.json").unlink()
    imported = read_source(export)
    assert [m.channel for m in imported.history.messages()] == ["C0GENERAL", "C0PARTNER"]
    assert imported.skipped_channels["unlisted_channel"] == 1
    assert [str(p) for p in imported.problems] == [
        "secret/: unlisted_channel: no channel listing names this folder: not read"
    ]


def test_an_export_without_listings_is_read_with_the_kind_unknown() -> None:
    imported = read_source(EXPORT)  # the example export has no channels.json
    assert {m.channel_kind for m in imported.history.messages()} == {None}
    assert imported.skipped_channels == {}


# --- hostile exports: real crafted zips -------------------------------------------------------

BOMB_BYTES = 256 * 1024 * 1024  # one repeated byte: deflates to about 260 KB


def export_zip(target: Path, extra: dict[str, bytes] | None = None, *, bomb: str | None = None) -> Path:
    """The full export as a zip (under a top folder, as Slack makes it), with `extra` members
    (names as written; one named like an export file replaces it) and optionally a zip bomb member written in a stream of 1 MiB chunks."""
    source = full_export(target.parent / f"{target.stem}-src")
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(source.rglob("*.json")):
            name = f"Acme export/{path.relative_to(source).as_posix()}"
            if name not in (extra or {}):
                archive.write(path, name)
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
        if bomb is not None:
            with archive.open(bomb, "w") as member:
                chunk = b" " * (1024 * 1024)
                for _ in range(BOMB_BYTES // len(chunk)):
                    member.write(chunk)
    return target


def lie_about_size(archive: Path, member: str, size: int) -> None:
    """Rewrite the uncompressed size a member declares, in its local header and the central directory."""
    data = bytearray(archive.read_bytes())
    encoded = member.encode()
    for signature, size_at, name_at in ((b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)):
        start = 0
        while (start := data.find(signature, start)) >= 0:
            if data[start + name_at : start + name_at + len(encoded)] == encoded:
                data[start + size_at : start + size_at + 4] = size.to_bytes(4, "little")
            start += 4
    archive.write_bytes(bytes(data))
    with zipfile.ZipFile(archive) as check:
        assert check.getinfo(member).file_size == size


def peak_memory(read: Callable[[], Any]) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        result = read()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


READ_BY_DEFAULT = [("C0GENERAL", "hello all"), ("C0PARTNER", "hello partners")]


def texts(imported: Any) -> list[tuple[str, str]]:
    return [(m.channel, m.text) for m in imported.history.messages()]


def test_a_zip_bomb_is_refused_from_its_declared_size_and_the_rest_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bomb = "Acme export/general/2023-07-23.json"
    archive = export_zip(tmp_path / "bomb.zip", bomb=bomb)
    assert archive.stat().st_size < 1024 * 1024
    imported, peak = peak_memory(lambda: read_source(archive))
    assert peak < 32 * 1024 * 1024, f"reading the export took {peak / 2**20:.0f} MiB"
    assert texts(imported) == READ_BY_DEFAULT
    [problem] = imported.refused
    assert (problem.file, problem.kind) == ("general/2023-07-23.json", "too_large")
    assert "declares 268,435,456 bytes" in problem.detail
    # the command: one line naming the member, exit 2, no traceback, the rest still written
    out = tmp_path / "messages.parquet"
    assert main([str(archive), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "beepgpt import: general/2023-07-23.json: declares 268,435,456 bytes" in err
    assert "Traceback" not in err
    assert len(pd.read_parquet(out)) == 2


def test_a_member_that_lies_about_its_size_is_stopped_while_reading(tmp_path: Path) -> None:
    bomb = "Acme export/general/2023-07-23.json"
    archive = export_zip(tmp_path / "liar.zip", bomb=bomb)
    lie_about_size(archive, bomb, 5_000)  # under every limit, as declared
    imported, peak = peak_memory(lambda: read_source(archive))
    assert peak < 32 * 1024 * 1024, f"reading the export took {peak / 2**20:.0f} MiB"
    assert texts(imported) == READ_BY_DEFAULT
    [problem] = imported.refused
    assert (problem.file, problem.kind) == ("general/2023-07-23.json", "corrupt_file")
    assert "CRC" in problem.detail  # inflating stopped at the declared size, which does not check out


def test_the_read_budget_counts_what_is_read_not_what_is_declared() -> None:
    """What a stream really gives is counted, whatever its member declared (directories, or a zip
    reader that trusts the stream): the read stops one byte past the limit."""
    budget = ReadBudget(ImportSettings(max_member_bytes=1000, max_total_bytes=1500))
    budget.check_declared(10)
    stream = io.BytesIO(b"x" * 10_000_000)
    with pytest.raises(MemberRefused, match="more than 1,000 bytes once read"):
        budget.read(stream)
    assert stream.tell() <= 1001
    assert budget.read(io.BytesIO(b"y" * 900)) == b"y" * 900
    with pytest.raises(MemberRefused, match="total"):
        budget.read(io.BytesIO(b"z" * 900))  # 900 + 900 is over the total of 1500


def test_a_highly_compressed_member_under_the_size_limit_is_refused_by_its_ratio(tmp_path: Path) -> None:
    archive = export_zip(tmp_path / "ratio.zip", {"Acme export/general/2023-07-23.json": b" " * (8 * 2**20)})
    imported = read_source(archive)
    [problem] = imported.refused
    assert (problem.file, problem.kind) == ("general/2023-07-23.json", "too_large")
    assert "expands" in problem.detail
    assert texts(imported) == READ_BY_DEFAULT


def test_the_total_limit_stops_reading_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = export_zip(tmp_path / "total.zip")
    with zipfile.ZipFile(archive) as zipped:
        metadata = sum(i.file_size for i in zipped.infolist() if i.filename.count("/") == 1)
        general = zipped.getinfo("Acme export/general/2023-07-22.json").file_size
    imported = read_source(archive, limits=ImportSettings(max_total_bytes=metadata + general))
    assert texts(imported) == [("C0GENERAL", "hello all")]  # read in folder order, until the total
    assert [(p.file, p.kind) for p in imported.refused] == [("partners/2023-07-22.json", "too_large")]
    monkeypatch.setenv("BEEPGPT_IMPORT_MAX_TOTAL_BYTES", str(metadata + general))
    assert main([str(archive)]) == 2


def test_members_outside_the_export_folder_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    evil = json.dumps([said("U0EVIL", "from outside", "1690000009.0")]).encode()
    archive = export_zip(
        tmp_path / "evil.zip",
        {
            "../evil.json": evil,
            "Acme export/general/../../evil/2023-07-22.json": evil,
            "/etc/evil/2023-07-22.json": evil,
        },
    )
    imported = read_source(archive)
    assert texts(imported) == READ_BY_DEFAULT
    assert sorted((p.file, p.kind) for p in imported.refused) == [
        ("../evil.json", "unsafe_path"),
        ("/etc/evil/2023-07-22.json", "unsafe_path"),
        ("Acme export/general/../../evil/2023-07-22.json", "unsafe_path"),
    ]
    assert main([str(archive)]) == 2
    err = capsys.readouterr().err
    assert "beepgpt import: ../evil.json: names a parent folder (..): not read" in err
    assert "beepgpt import: /etc/evil/2023-07-22.json: absolute path: not read" in err
    assert "Traceback" not in err


def test_a_symbolic_link_in_an_export_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside.json"
    outside.write_text(day(said("U0EVIL", "read through a link", "1690000009.0")))
    export = full_export(tmp_path / "export")
    (export / "general" / "2023-07-23.json").symlink_to(outside)
    imported = read_source(export)
    assert texts(imported) == READ_BY_DEFAULT
    assert [(p.file, p.kind) for p in imported.refused] == [("general/2023-07-23.json", "symlink")]


@pytest.mark.parametrize("member", ["Acme export/general/2023-07-23.json", "Acme export/users.json"])
def test_deeply_nested_json_is_one_line_naming_the_member_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], member: str
) -> None:
    deep = b"[" * 200_000 + b"]" * 200_000
    archive = export_zip(tmp_path / "deep.zip", {member: deep})
    out = tmp_path / "messages.parquet"
    assert main([str(archive), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    relative = member.removeprefix("Acme export/")
    refused = [line for line in err.splitlines() if line.startswith("beepgpt import: ")]
    assert refused == [f"beepgpt import: {relative}: not valid JSON: nested too deeply to parse"]
    assert "Traceback" not in err
    assert len(pd.read_parquet(out)) == 2  # nothing else lost


def test_a_deeply_nested_jsonl_line_is_a_problem_of_its_line(tmp_path: Path) -> None:
    path = tmp_path / "table.jsonl"
    row = {"ts": 1690000000.5, "thread_ts": None, "channel": "General", "user": "U1", "text": "hi"}
    path.write_bytes(b"[" * 200_000 + b"]" * 200_000 + b"\n" + json.dumps(row).encode() + b"\n")
    imported = read_source(path)
    assert [str(p) for p in imported.problems] == [
        "table.jsonl:1: corrupt_line: not valid JSON: nested too deeply to parse"
    ]
    assert list(imported.history.table()["text"]) == ["hi"]
