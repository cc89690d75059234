"""`beepgpt import --from-slack`: history read through the Web API of the real Slack stand-in, with
the official client, compared with an export of the same workspace (written by the stand-in).

The workspace has what makes reading hard: threads longer than a page, a reply also sent to the
channel, bot posts, a join, reactions, an edited message, a shared channel, a channel the bot is
not in, a private channel, a DM and a group DM. Pages are 3 messages so everything paginates.
Interruptions are real: a fault that fails every call after N pages, or the task cancelled while
it reads; synchronization is by the stand-in's recorded calls, never by sleeping.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import pytest_asyncio
from slack_sdk.errors import SlackApiError

from devstack.slack_standin import Channel, SlackStandin, User, Workspace
from devstack.slack_standin.export import write_export
from ingest.importer.cli import main
from ingest.importer.slack_api import Options, SlackHistory, checkpoint_paths, slack_client
from ingest.importer.sources import Imported, read_source

ALICE, BOB, CAROL, HELPER_BOT = "U0ALICE", "U0BOB", "U0CAROL", "U0HELPER"
GENERAL, PROJECT, RANDOM, SECRET, DM, GROUP_DM = (
    "C0GENERAL",
    "C0PROJECT",
    "C0RANDOM",
    "G0SECRET",
    "D0ALICE",
    "G0MPDM",
)
DAY = 86400.0
PAGED = ("conversations.list", "conversations.history", "conversations.replies", "users.list")
PAGE = 3
EXAMPLE_EXPORT = Path(__file__).resolve().parents[2] / "data" / "slack-export"


class Clock:
    """Distinct message timestamps, `days` before the test started."""

    def __init__(self) -> None:
        self.now = time.time()
        self.n = 0

    def ts(self, days: float) -> str:
        self.n += 1
        return f"{self.now - days * DAY + self.n:.6f}"


def build_workspace() -> Workspace:
    bot = "U0BEEPGPT"
    people = [
        User(id=ALICE, name="alice", real_name="Alice"),
        User(id=BOB, name="bob", real_name="Bob"),
        User(id=CAROL, name="carol", real_name="Carol"),
        User(id=HELPER_BOT, name="helper", is_bot=True, bot_id="B0HELPER"),
    ]
    everyone = [ALICE, BOB, CAROL]
    workspace = Workspace(
        bot_user_id=bot,
        users=people,
        channels=[
            Channel(id=GENERAL, name="general", is_general=True, members=[*everyone, bot]),
            Channel(id=PROJECT, name="project", is_ext_shared=True, members=[ALICE, BOB, bot]),
            Channel(id=RANDOM, name="random", members=everyone),  # the bot is not in it
            Channel(id=SECRET, name="secret", is_private=True, members=[ALICE, bot]),
            Channel(id=DM, is_im=True, is_private=True, user=ALICE, members=[ALICE, bot]),
            Channel(
                id=GROUP_DM,
                name="mpdm-alice--bob-1",
                is_mpim=True,
                is_private=True,
                members=[ALICE, BOB, bot],
            ),
        ],
    )
    clock = Clock()
    history = workspace.history

    def say(channel: str, user: str, text: str, days: float, **extra: Any) -> str:
        ts = clock.ts(days)
        history.add(channel, {"type": "message", "user": user, "text": text, "ts": ts, **extra})
        return ts

    authors = [ALICE, BOB, CAROL]
    for i in range(12):  # general: two weeks back, one message a day or so
        say(GENERAL, authors[i % 3], f"general {i}", 12 - i)
    long_thread = say(GENERAL, ALICE, "a thread longer than a page", 5.0)
    for i in range(7):
        say(GENERAL, authors[(i + 1) % 3], f"reply {i}", 5.0, thread_ts=long_thread)
    say(GENERAL, BOB, "also sent to the channel", 5.0, thread_ts=long_thread, subtype="thread_broadcast")
    recent = say(GENERAL, CAROL, "a recent thread", 1.0)
    say(GENERAL, ALICE, "recent reply", 1.0, thread_ts=recent)
    say(GENERAL, CAROL, "<@U0CAROL> has joined the channel", 0.9, subtype="channel_join")
    say(GENERAL, HELPER_BOT, "I am a bot", 0.8, bot_id="B0HELPER")
    say(GENERAL, HELPER_BOT, "a bot user without bot_id", 0.7)
    say(
        GENERAL, BOB, "fixed typo", 0.6, edited={"user": BOB, "ts": clock.ts(0.5)},
        reactions=[{"name": "tada", "users": [ALICE, CAROL], "count": 2}],
    )  # fmt: skip
    for i in range(5):
        say(PROJECT, authors[i % 2], f"project {i}", 4 - i * 0.5)
    for i in range(4):
        say(RANDOM, authors[i % 3], f"random {i}", 6 - i)
    say(SECRET, ALICE, "private matters", 2.0)
    say(DM, ALICE, "just between us", 1.5)
    say(GROUP_DM, BOB, "group dm", 1.2)
    return workspace


@pytest_asyncio.fixture
async def slack() -> AsyncIterator[SlackStandin]:
    async with SlackStandin(build_workspace()) as standin:
        yield standin


@pytest.fixture
def export(slack: SlackStandin, tmp_path: Path) -> Imported:
    """The admin's export of the same workspace, read by the export import."""
    return read_source(write_export(slack.workspace, tmp_path / "export"))


def from_slack(
    slack: SlackStandin, out: Path, waits: list[tuple[str, float]] | None = None, **options: Any
) -> SlackHistory:
    def waited(method: str, seconds: float) -> None:
        if waits is not None:
            waits.append((method, seconds))

    client = slack_client(slack.bot_token, slack.api_url, waited=waited)
    return SlackHistory(client, out, Options(**options), page_size=PAGE)


def assert_same_table(got: Imported, expected: Imported | pd.DataFrame) -> None:
    table = expected if isinstance(expected, pd.DataFrame) else expected.history.table()
    pd.testing.assert_frame_equal(
        got.history.table().reset_index(drop=True), table.reset_index(drop=True), check_dtype=True
    )


def assert_nothing_lost_or_repeated(got: Imported, export: Imported) -> None:
    """Every line read once: the same counts as the export's, and no duplicate among them."""
    assert_same_table(got, export)
    assert got.history.counts.as_dict() == export.history.counts.as_dict()
    assert "duplicate" not in got.history.counts.skipped


def channels_read(slack: SlackStandin) -> set[str]:
    return {
        str(c.args.get("channel"))
        for c in slack.recorder.calls
        if c.method in ("conversations.history", "conversations.replies")
    }


# ---- (1) the same table as an export ---------------------------------------------------------------


async def test_from_slack_builds_the_table_an_export_of_the_workspace_gives(
    slack: SlackStandin, export: Imported, tmp_path: Path
) -> None:
    reader = from_slack(slack, tmp_path / "messages.parquet", join=True)
    got = await reader.run()

    assert_nothing_lost_or_repeated(got, export)
    table = got.history.table()
    assert set(table["channel"]) == {GENERAL, PROJECT, RANDOM}
    assert table.loc[table["text"] == "fixed typo", "reactions"].item() == 2
    assert (
        table["slack_thread_ts"]
        == table.loc[table["text"] == "a thread longer than a page", "slack_ts"].item()
    ).sum() == 9
    kinds = {(m.channel, m.channel_kind) for m in got.history.messages()}
    assert kinds == {(GENERAL, "public"), (PROJECT, "shared"), (RANDOM, "public")}
    assert kinds == {(m.channel, m.channel_kind) for m in export.history.messages()}
    assert {"bot", "channel_join"} <= set(got.history.counts.skipped)
    # paginated: every listing asked for pages of PAGE, and the long thread took several
    assert all(int(c.args.get("limit", 0)) == PAGE for c in slack.recorder.calls if c.method in PAGED)
    assert sum(1 for c in slack.recorder.calls if c.method == "conversations.replies") >= 4
    reader.discard()
    assert not any(p.exists() for p in checkpoint_paths(tmp_path / "messages.parquet"))


async def test_the_example_export_served_by_the_stand_in_reads_back_the_same(tmp_path: Path) -> None:
    workspace = Workspace.from_export_dir(EXAMPLE_EXPORT)
    async with SlackStandin(workspace) as slack:
        export = read_source(write_export(workspace, tmp_path / "export"))
        got = await from_slack(slack, tmp_path / "out.parquet").run()
    assert export.history.counts.kept == 12
    assert_nothing_lost_or_repeated(got, export)


# ---- (2) a rate-limit storm ---------------------------------------------------------------------------


async def test_a_rate_limit_storm_is_waited_out_and_the_table_is_the_same(
    slack: SlackStandin, export: Imported, tmp_path: Path
) -> None:
    slack.faults.add("conversations.history", status=429, retry_after=1, after=2, times=1)
    # every other call answered 429 for the whole import, and one that asks for a second's wait
    storm = slack.faults.rate_limit_storm("*", times=None, every=2, retry_after=0)
    waits: list[tuple[str, float]] = []

    started = time.monotonic()
    got = await from_slack(slack, tmp_path / "out.parquet", waits, join=True).run()

    assert storm.hits >= 15
    answered_429 = [c for c in slack.recorder.calls if c.status == 429]
    assert len(answered_429) == storm.hits + 1
    assert len(waits) == storm.hits + 1  # each 429 waited out, for as long as Retry-After said
    assert sorted(seconds for _, seconds in waits) == [0.0] * storm.hits + [1.0]
    assert ("conversations.history", 1.0) in waits
    assert {m for m, _ in waits} >= {"conversations.history", "conversations.replies", "conversations.list"}
    assert time.monotonic() - started >= 1.0
    assert_nothing_lost_or_repeated(got, export)


# ---- (3) interrupted, then resumed ------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "after"), [("conversations.history", 3), ("conversations.replies", 2)])
async def test_a_hard_failure_part_way_resumes_from_the_checkpoint(
    slack: SlackStandin, export: Imported, tmp_path: Path, method: str, after: int
) -> None:
    out = tmp_path / "out.parquet"
    slack.faults.add(method, error="internal_error", after=after, times=None)
    with pytest.raises(SlackApiError):
        await from_slack(slack, out, join=True).run()
    checkpoint_path, spool_path = checkpoint_paths(out)
    checkpoint = json.loads(checkpoint_path.read_text())
    assert checkpoint["spool_bytes"] > 0
    assert checkpoint["spool_bytes"] == spool_path.stat().st_size
    first_run_calls = len(slack.recorder.calls)

    slack.faults.clear()
    reader = from_slack(slack, out, join=True)
    got = await reader.run()

    assert reader.resumed
    assert_nothing_lost_or_repeated(got, export)
    second_run = slack.recorder.calls[first_run_calls:]
    assert not any(c.method == "conversations.join" for c in second_run)  # listed and joined once
    resumed_call = next(c for c in second_run if c.method == method)
    assert resumed_call.args.get("cursor") or method == "conversations.replies"


@pytest.mark.parametrize(("method", "after", "cursor"), [
    ("conversations.history", 2, "cursor"),
    ("conversations.replies", 2, "thread_cursor"),
])  # fmt: skip
async def test_a_cursor_slack_no_longer_knows_resumes_from_the_last_ts_read(
    slack: SlackStandin, export: Imported, tmp_path: Path, method: str, after: int, cursor: str
) -> None:
    out = tmp_path / "out.parquet"
    slack.faults.add(method, error="internal_error", after=after, times=None)
    with pytest.raises(SlackApiError):
        await from_slack(slack, out, join=True).run()
    checkpoint_path, _ = checkpoint_paths(out)
    checkpoint = json.loads(checkpoint_path.read_text())
    general = checkpoint["channels"][GENERAL]
    assert general[cursor]  # stopped in the middle of a paginated read
    general[cursor] = "bm9wZTpub3BlCg=="  # a cursor the stand-in does not know: invalid_cursor
    checkpoint_path.write_text(json.dumps(checkpoint))
    slack.faults.clear()

    got = await from_slack(slack, out, join=True).run()

    assert any(c.error == "invalid_cursor" for c in slack.recorder.calls)
    assert_nothing_lost_or_repeated(got, export)


async def test_cancelled_while_reading_and_a_torn_last_page_then_resumed(
    slack: SlackStandin, export: Imported, tmp_path: Path
) -> None:
    out = tmp_path / "out.parquet"
    task = asyncio.create_task(from_slack(slack, out, join=True).run())
    await slack.wait_for_calls("conversations.replies", 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    _, spool_path = checkpoint_paths(out)
    with spool_path.open("ab") as spool:  # a process killed half-way through writing a page
        spool.write(b'{"channel": "C0GENERAL", "message": {"type": "mess')

    reader = from_slack(slack, out, join=True)
    got = await reader.run()

    assert reader.resumed
    assert_nothing_lost_or_repeated(got, export)


async def test_a_second_import_into_the_same_checkpoint_is_refused_while_one_runs(
    slack: SlackStandin, export: Imported, tmp_path: Path
) -> None:
    out = tmp_path / "out.parquet"
    slack.faults.add("conversations.history", delay=30, times=1)  # the first run hangs on Slack
    first = asyncio.create_task(from_slack(slack, out).run())
    await slack.wait_for_calls("conversations.history", 1)
    with pytest.raises(Exception, match="another import is writing"):
        await from_slack(slack, out).run()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    slack.faults.clear()
    got = await from_slack(slack, out).run()
    expected = export.history.table()
    assert_same_table(got, expected[expected["channel"] != RANDOM])


async def test_a_checkpoint_resumes_only_the_import_it_was_made_for(
    slack: SlackStandin, tmp_path: Path
) -> None:
    out = tmp_path / "out.parquet"
    slack.faults.add("conversations.history", error="internal_error", after=1, times=None)
    with pytest.raises(SlackApiError):
        await from_slack(slack, out, days=3).run()
    slack.faults.clear()
    with pytest.raises(Exception, match="was made with"):
        await from_slack(slack, out, days=5).run()


# ---- (4) what is read, and --join -------------------------------------------------------------------------


async def test_private_channels_dms_and_channels_the_bot_is_not_in_are_not_read(
    slack: SlackStandin, export: Imported, tmp_path: Path
) -> None:
    got = await from_slack(slack, tmp_path / "out.parquet").run()

    assert channels_read(slack) == {GENERAL, PROJECT}
    listed = [c for c in slack.recorder.calls if c.method == "conversations.list"]
    assert {c.args["types"] for c in listed} == {"public_channel"}
    assert slack.call_count("conversations.join") == 0
    assert got.skipped_channels == {"not_a_member": 1}
    expected = export.history.table()
    assert_same_table(got, expected[expected["channel"] != RANDOM])
    assert not {SECRET, DM, GROUP_DM} & set(export.history.table()["channel"])


async def test_join_joins_the_public_channels_the_bot_is_not_in(
    slack: SlackStandin, export: Imported, tmp_path: Path
) -> None:
    reader = from_slack(slack, tmp_path / "out.parquet", join=True)
    got = await reader.run()

    joins = [c.args["channel"] for c in slack.recorder.calls if c.method == "conversations.join"]
    assert joins == [RANDOM]
    assert reader.joined == ["random"]
    assert slack.workspace.bot_user_id in slack.workspace.channels[RANDOM].members
    assert channels_read(slack) == {GENERAL, PROJECT, RANDOM}
    assert_same_table(got, export)


async def test_channel_picks_channels_and_refuses_what_it_may_not_read(
    slack: SlackStandin, export: Imported, tmp_path: Path
) -> None:
    got = await from_slack(slack, tmp_path / "a.parquet", channels=("#project",)).run()
    assert channels_read(slack) == {PROJECT}
    expected = export.history.table()
    assert_same_table(got, expected[expected["channel"] == PROJECT])

    with pytest.raises(Exception, match="not a public channel of this workspace: #secret"):
        await from_slack(slack, tmp_path / "b.parquet", channels=("#secret",)).run()
    with pytest.raises(Exception, match="--join"):
        await from_slack(slack, tmp_path / "c.parquet", channels=("random",)).run()


async def test_join_without_the_scope_is_refused_by_slack(slack: SlackStandin, tmp_path: Path) -> None:
    slack.web_api.bot_scopes.discard("channels:join")
    with pytest.raises(SlackApiError) as refused:
        await from_slack(slack, tmp_path / "out.parquet", join=True).run()
    assert refused.value.response["error"] == "missing_scope"
    assert refused.value.response["needed"] == "channels:join"


# ---- (5) --days -----------------------------------------------------------------------------------------------


async def test_days_bounds_the_history_read(slack: SlackStandin, export: Imported, tmp_path: Path) -> None:
    started = time.time()
    got = await from_slack(slack, tmp_path / "out.parquet", days=3, join=True).run()

    history_calls = [c for c in slack.recorder.calls if c.method == "conversations.history"]
    oldest = {float(c.args["oldest"]) for c in history_calls}
    assert len(oldest) == 1
    assert abs(oldest.pop() - (started - 3 * DAY)) < 60
    expected = export.history.table()
    recent = expected[expected["slack_ts"].astype(float) >= started - 3 * DAY]
    assert 0 < len(recent) < len(expected)
    assert_same_table(got, recent)
    assert "a thread longer than a page" not in set(got.history.table()["text"])  # 5 days old


# ---- the command ------------------------------------------------------------------------------------------------


async def test_the_command_writes_the_table_reports_and_removes_its_checkpoint(
    slack: SlackStandin,
    export: Imported,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", slack.bot_token)
    monkeypatch.setenv("BEEPGPT_SLACK_API_URL", slack.api_url)
    out = tmp_path / "messages.parquet"
    slack.faults.add("conversations.replies", error="internal_error", after=1, times=None)

    interrupted = await asyncio.to_thread(main, ["--from-slack", "--join", "--out", str(out)])
    assert interrupted == 1
    assert "run the same command again" in capsys.readouterr().err

    slack.faults.clear()
    slack.faults.rate_limit("conversations.replies", times=1, retry_after=0)
    code = await asyncio.to_thread(
        main, ["--from-slack", "--join", "--out", str(out), "--page-size", "3", "--json"]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out)
    assert (summary["kind"], summary["resumed"], summary["kept"]) == (
        "Slack Web API",
        True,
        export.history.counts.kept,
    )
    assert "rate limited on conversations.replies: waiting 0 s" in captured.err
    assert "#general:" in captured.err
    pd.testing.assert_frame_equal(pd.read_parquet(out), export.history.table().reset_index(drop=True))
    assert not any(p.exists() for p in checkpoint_paths(out))

    monkeypatch.delenv("SLACK_BOT_TOKEN")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-wrong")
    assert await asyncio.to_thread(main, ["--from-slack", "--out", str(out)]) == 2
    assert "Slack refused the token: invalid_auth" in capsys.readouterr().err
