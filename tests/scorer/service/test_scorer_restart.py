"""`python -m scorer` as a process: SIGKILL and restart lose nothing and repeat at most one batch.

The notifier dedups on (user, conversation), so a repeated candidate is harmless; a missing one
is a lost alert. The test checks both sides: every expected decision is there after the restart,
and the only repeats are the killed process's last, uncommitted batch.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition
from scorer_service_helpers import candidates, conversation, preferences, publish

from beepgpt.settings import KafkaSettings
from beepgpt.topics import CONVERSATIONS
from devstack.local_stack import free_port
from devstack.topic_reader import read_topic

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
GROUP = "scorer-restart-test"
BATCH = 8


def _start_scorer(settings: KafkaSettings, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "services" / "scorer"), str(HERE)]),
        "BEEPGPT_KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "BEEPGPT_KAFKA_IDEMPOTENCE": "false",
        "BEEPGPT_KAFKA_PARTITIONS": str(settings.partitions),
        "BEEPGPT_KAFKA_SESSION_TIMEOUT_MS": str(settings.session_timeout_ms),
        "BEEPGPT_KAFKA_HEARTBEAT_INTERVAL_MS": str(settings.heartbeat_interval_ms),
        "BEEPGPT_HTTP_HOST": "127.0.0.1",
        "BEEPGPT_HTTP_PORT": str(port),
        "BEEPGPT_SCORER_FACTORY": "keyword_scorer:build",
        "BEEPGPT_SCORER_GROUP_ID": GROUP,
        "BEEPGPT_SCORER_BATCH_SIZE": str(BATCH),
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "scorer"], env=env, stdout=out, stderr=subprocess.STDOUT
        )


async def _committed_to_end(settings: KafkaSettings, timeout: float) -> None:
    """Wait until the group has committed every conversation record published so far.

    Asked through a consumer that names the group but never subscribes, so it does not join it.
    """
    watcher = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=GROUP)
    await watcher.start()
    try:
        partitions = [TopicPartition(CONVERSATIONS.name, p) for p in range(settings.partitions)]
        ends: dict[TopicPartition, int] = await watcher.end_offsets(partitions)
        deadline = time.monotonic() + timeout
        while True:
            done = {tp: await watcher.committed(tp) or 0 for tp in partitions}
            if all(done[tp] >= end for tp, end in ends.items()):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"group committed {done}, ends are {ends}")
            await asyncio.sleep(0.2)  # polling the broker's answer, bounded by the deadline
    finally:
        await watcher.stop()


async def _get(port: int, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}{path}") as reply:
        return reply.status, await reply.text()


def _incidents(first: int, count: int) -> list:  # type: ignore[type-arg]
    return [
        conversation(
            f"C{i % 5}:{1_700_000_000 + i}.000000", [("UBEN", f"incident {i} in prod")], channel=f"C{i % 5}"
        )
        for i in range(first, first + count)
    ]


async def test_sigkill_and_restart_lose_nothing_and_repeat_at_most_the_last_batch(
    kafka_topics: KafkaSettings, tmp_path: Path
) -> None:
    await publish(kafka_topics, preferences("UANA", "incident"), preferences("UCAT", "incident"))
    before = _incidents(0, 40)
    after = _incidents(40, 40)
    expected = {(user, c.conversation_id, c.version) for c in before + after for user in ("UANA", "UCAT")}

    await publish(kafka_topics, *before)
    first = _start_scorer(kafka_topics, free_port(), tmp_path / "scorer-1.log")
    try:
        await read_topic(kafka_topics, "notifications.candidates", count=1, timeout=60)
    finally:
        first.send_signal(signal.SIGKILL)  # mid-stream: possibly between publish and commit
        first.wait(10)

    await publish(kafka_topics, *after)
    port = free_port()
    second = _start_scorer(kafka_topics, port, tmp_path / "scorer-2.log")
    try:
        await _committed_to_end(kafka_topics, timeout=90)
        status, _ = await _get(port, "/readyz")
        assert status == 200
        _, metrics = await _get(port, "/metrics")
        assert 'beepgpt_scorer_candidates_total{reason="topic"}' in metrics
        assert "beepgpt_scorer_batch_conversations_bucket" in metrics
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0, (tmp_path / "scorer-2.log").read_text()[-3000:]

    published = Counter((c.user, c.conversation_id, c.version) for c in await candidates(kafka_topics))
    assert set(published) == expected  # nothing lost, nothing invented
    repeated = {key: n for key, n in published.items() if n > 1}
    assert all(n == 2 for n in repeated.values())
    assert len({conversation_id for _, conversation_id, _ in repeated}) <= BATCH


async def test_a_rebalance_waits_for_the_batch_in_hand_but_not_forever() -> None:
    """The revocation waits on the batch lock; a batch stuck (its commit waiting for the very
    group that is rebalancing) must not hold the group forever."""
    from beepgpt.runtime import RebalanceListener
    from scorer.metrics import ERRORS
    from scorer.service import rebalance_gave_up

    lock = asyncio.Lock()
    listener = RebalanceListener(lock, wait_s=0.2, gave_up=rebalance_gave_up)
    gave_up = ERRORS.labels("rebalance_wait")._value.get()

    async with lock:  # a batch in hand that never finishes
        revoked = asyncio.create_task(listener.on_partitions_revoked([]))
        done, _ = await asyncio.wait({revoked}, timeout=5)
        assert revoked in done
    assert ERRORS.labels("rebalance_wait")._value.get() == gave_up + 1

    taken, batch_done = asyncio.Event(), asyncio.Event()

    async def batch() -> None:
        async with lock:
            taken.set()
            await batch_done.wait()

    holder = asyncio.create_task(batch())
    await taken.wait()
    waiting = asyncio.create_task(
        RebalanceListener(lock, wait_s=30, gave_up=rebalance_gave_up).on_partitions_revoked([])
    )
    done, _ = await asyncio.wait({waiting}, timeout=0.5)
    assert not done  # an ordinary batch is waited for
    batch_done.set()
    await asyncio.wait_for(waiting, 5)
    await holder
    assert ERRORS.labels("rebalance_wait")._value.get() == gave_up + 1
