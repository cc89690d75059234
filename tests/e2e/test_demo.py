"""`beepgpt demo` as a user runs it: the replay with the stand-in, and the real-Slack mode.

The real-Slack mode cannot reach slack.com here, so "Slack" is a stand-in the test starts on its
own and hands over exactly as a user would hand over a real workspace: through SLACK_BOT_TOKEN,
SLACK_APP_TOKEN and the Web API address. The demo must then start no stand-in and replay
nothing, and a person's `/beep follow` plus a matching conversation must end in their DM.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest

from beepgpt.message_table import slack_ts
from devstack.slack_standin import SlackStandin

DEMO_TIMEOUT_S = 420
pytestmark = pytest.mark.timeout(DEMO_TIMEOUT_S + 120)


async def run_demo(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "devstack.demo",
        *args,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


def summary_figure(output: str, label: str) -> int:
    found = re.search(rf"^\s*{re.escape(label)}\s+(\d+)", output, re.MULTILINE)
    assert found, f"no '{label}' in the summary:\n{output[-3000:]}"
    return int(found.group(1))


async def test_the_demo_replays_a_day_and_closes_with_a_summary(model_dir: Path) -> None:
    demo = await run_demo("--days", "1", "--speed", "1200", "--model-dir", str(model_dir))
    assert demo.stdout is not None
    out, _ = await asyncio.wait_for(demo.communicate(), DEMO_TIMEOUT_S)
    output = out.decode()
    assert demo.returncode == 0, output[-3000:]
    assert "exited with code" not in output  # every service stopped cleanly
    assert "follows:" in output  # the example people follow topics
    replayed = summary_figure(output, "messages replayed")
    assert replayed > 100
    # Every message of a person updates its conversation, and the demo reads them all (a tally
    # that died on an event it could not print once stopped this at 99 of 718 unnoticed).
    assert summary_figure(output, "conversation updates") >= replayed * 0.9
    assert summary_figure(output, "conversations closed") > 0  # closed by the wall clock
    assert summary_figure(output, "DMs sent") > 0
    assert re.search(r"latency message → DM\s+p50 \d", output), output[-2000:]
    # Each control is used (the typed ones always; the DM buttons on whichever DMs come) and the
    # decisions they change are counted.
    assert "typed `/beep mute <#General|general>` → 🔕 Muted <#General>" in output, output[-3000:]
    assert "typed `/beep digest three times a day` → Digest three times a day" in output
    assert re.search(r"muted / snoozed\s+\d+ / \d+", output), output[-2000:]
    assert "  controls used\n" in output


async def test_with_slack_tokens_the_demo_runs_against_that_workspace(
    model_dir: Path, slack_standin: SlackStandin
) -> None:
    demo = await run_demo(
        "--model-dir",
        str(model_dir),
        env={
            "SLACK_BOT_TOKEN": slack_standin.bot_token,
            "SLACK_APP_TOKEN": slack_standin.app_token,
            "SLACK_SIGNING_SECRET": slack_standin.signing_secret,
            "BEEPGPT_SLACK_API_URL": slack_standin.api_url,
        },
    )
    assert demo.stdout is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(180):
            while not any("running against your Slack workspace" in line for line in seen):
                line = (await demo.stdout.readline()).decode()
                assert line, "the demo ended early:\n" + "".join(seen)
                seen.append(line)
        assert not any("follows:" in line or "replaying" in line for line in seen), seen

        # Ingest is connected over Socket Mode: the slash command is acknowledged with a reply.
        follow = slack_standin.events.slash_command(
            "/beep", "follow streaming technology decisions like Kafka or Pulsar", user_id="U0DAVE"
        )
        ack = await slack_standin.push_slash_command(follow, timeout=60)
        assert "Following “streaming technology" in str(ack.payload), ack.payload

        start = time.time() - 30
        lines = [
            ("U0ALICE", "We need to pick the event streaming platform for the inventory tracker this week."),
            ("U0CAROL", "I'd go with Apache Kafka: mature ecosystem, Kafka Streams and Connect."),
            ("U0ALICE", "Pulsar has tiered storage and geo-replication built in though."),
            ("U0CAROL", "Let's decide Kafka versus Pulsar on Thursday; I'll compare throughput and cost."),
        ]
        for i, (user, text) in enumerate(lines):
            message = slack_standin.events.message("C0GENERAL", user, text, ts=slack_ts(start + i))
            await slack_standin.push_event(message, timeout=10)
        posts = await slack_standin.wait_for_posts(1, timeout=120, method="chat.postMessage")
        assert any((p.channel or "").startswith(("D", "U0DAVE")) for p in posts), posts
    finally:
        if demo.returncode is None:
            demo.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(demo.communicate(), 90)
        print("".join(seen) + rest.decode())  # shown by pytest when the test fails
    assert demo.returncode == 0, "".join(seen) + rest.decode()[-2000:]
    assert "exited with code" not in rest.decode()  # every service stopped cleanly
