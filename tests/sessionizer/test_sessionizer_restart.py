"""A sessionizer process killed with SIGKILL mid-stream, then started again, loses and doubles nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path

from sessionizer_helpers import (
    Conversations,
    closed_count,
    generated_messages,
    generated_table,
    publish,
    same_conversation,
)

from beepgpt.contracts import SlackMessage
from beepgpt.settings import KafkaSettings
from sessionizer.history import conversations

REPO = Path(__file__).resolve().parents[2]


def service_env(kafka: KafkaSettings, group: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(REPO / p) for p in ("shared", "services/sessionizer")),
        "BEEPGPT_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "BEEPGPT_KAFKA_IDEMPOTENCE": "false",
        "BEEPGPT_KAFKA_PARTITIONS": str(kafka.partitions),
        "BEEPGPT_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "BEEPGPT_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
        "BEEPGPT_HTTP_PORT": "0",
        "BEEPGPT_LOG_LEVEL": "WARNING",
        # A replay: time comes from the records themselves, never from today's date.
        "BEEPGPT_SESSIONIZER_CLOCK": "events",
        "BEEPGPT_SESSIONIZER_GROUP_ID": group,
        "BEEPGPT_SESSIONIZER_HEARTBEAT_S": "0.05",
        "BEEPGPT_SESSIONIZER_COMMIT_INTERVAL_S": "0.1",
    }


async def start_service(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sessionizer", env=env, stdout=out, stderr=asyncio.subprocess.STDOUT
        )


async def test_sigkill_mid_stream_then_restart_loses_and_doubles_nothing(
    kafka_topics: KafkaSettings, tmp_path: Path
) -> None:
    messages = generated_messages()
    first, rest = messages[:900], messages[900:]
    tomorrow = [
        SlackMessage(channel=channel, ts=f"{float(messages[-1].ts) + 86_400:.6f}", user="U0", text="tomorrow")
        for channel in ("General", "Project")
    ]
    expected = {c.conversation_id: c for c in conversations(generated_table(), window=20)}
    env = service_env(kafka_topics, f"sessionizer-{uuid.uuid4().hex[:8]}")
    log = tmp_path / "sessionizer.log"

    await publish(kafka_topics, first)
    process = await start_service(env, log)
    try:
        async with Conversations(kafka_topics) as out:
            await out.until(closed_count(40), timeout=60)  # some conversations closed, others open
            process.send_signal(signal.SIGKILL)
            await process.wait()
            await publish(kafka_topics, [*rest, *tomorrow])
            process = await start_service(env, log)
            await out.until(closed_count(len(expected)), timeout=90)
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 30) == 0, log.read_text()[-2000:]
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    closed = out.closed()
    assert set(closed) == set(expected)
    doubled = [cid for cid in expected if not same_conversation(closed[cid], expected[cid])]
    assert not doubled, f"conversations that differ from history: {doubled[:5]}"
    # every message was announced; a replay may repeat an event, but only at the same version
    updated = out.updated()
    assert {(e.conversation_id, e.messages[-1].ts) for e in updated} >= {
        (cid, m.ts) for cid, c in expected.items() for m in c.messages[-1:]
    }
    versions: dict[tuple[str, int], str] = {}
    for event in out.events:
        fingerprint = event.model_dump_json(exclude={"emitted_at"})
        assert versions.setdefault((event.conversation_id, event.version), fingerprint) == fingerprint
