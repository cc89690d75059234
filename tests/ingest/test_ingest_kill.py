"""`python -m ingest` killed with SIGKILL mid-stream and restarted: nothing Slack got an ack for is
lost, and Slack's redeliveries of what it got no ack for are published.

Slack's side is played by the stand-in: it pushes events over Socket Mode, records every ack, and
after the restart redelivers every event it has no ack for (as Slack does), until each one is
acked. Synchronization is by acks, /readyz, /metrics and records read back — never by sleeping.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from ingest_helpers import metric, process_env, start_process, stop_process, wait_ready

from beepgpt.settings import KafkaSettings, RedisSettings
from beepgpt.topics import SLACK_MESSAGES
from devstack.local_stack import free_port
from devstack.slack_standin import SlackStandin
from devstack.slack_standin.socket_mode import AckTimeout, NoConnection
from devstack.topic_reader import read_topic

EVENTS = 1_500
KILL_AFTER_ACKS = 300  # well before the end of the stream
IN_FLIGHT = 100  # Slack keeps sending while acks are outstanding
SLACK_ACK_TIMEOUT_S = 3.0  # Slack's: no ack within 3 s means "redeliver"
CHANNELS = ["C0GENERAL", "C0RANDOM", "C0PROJECT"]
DUPLICATES = 'beepgpt_ingest_events_total{outcome="duplicate",reason="message.new"}'


class Slack:
    """Slack's delivery bookkeeping for one stream of events: what was sent, what was acked."""

    def __init__(self, standin: SlackStandin) -> None:
        self.standin = standin
        self.sent: set[str] = set()
        self.acked: set[str] = set()

    async def deliver(self, payload: dict[str, Any], *, redelivery: bool = False) -> bool:
        """One delivery (or redelivery) of the event; True once it was acked."""
        event_id = payload["event_id"]
        self.sent.add(event_id)
        try:
            if redelivery:
                await self.standin.redeliver(payload, timeout=SLACK_ACK_TIMEOUT_S)
            else:
                await self.standin.push_event(payload, timeout=SLACK_ACK_TIMEOUT_S)
        except (AckTimeout, NoConnection):
            return False
        self.acked.add(event_id)
        return True


async def wait_disconnected(standin: SlackStandin, timeout: float = 10.0) -> None:
    """Until the stand-in saw the killed process's WebSocket close."""
    deadline = asyncio.get_running_loop().time() + timeout
    while standin.socket.connections:
        assert asyncio.get_running_loop().time() < deadline, "the dead connection stayed open"
        await asyncio.sleep(0.02)


async def test_sigkill_mid_stream_loses_nothing_acked_and_redeliveries_fill_the_gaps(
    slack: SlackStandin, kafka_topics: KafkaSettings, redis_settings: RedisSettings, tmp_path: Path
) -> None:
    ev = slack.events
    payloads = [
        ev.callback(ev.message(CHANNELS[i % len(CHANNELS)], "U0ALICE", f"event {i}")) for i in range(EVENTS)
    ]
    by_id = {p["event_id"]: p for p in payloads}
    ops_port = free_port()
    ops = f"http://127.0.0.1:{ops_port}"
    env = process_env(slack, kafka_topics, redis_settings, ops_port, mode="socket")
    log_file = (tmp_path / "ingest.log").open("ab")
    process = await start_process(env, stdout=log_file)
    delivery = Slack(slack)
    try:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, ops, process)
            await slack.wait_for_socket(1)

            # 1. Stream the events; SIGKILL the moment the KILL_AFTER_ACKS-th ack arrives.
            window = asyncio.Semaphore(IN_FLIGHT)
            killed = asyncio.Event()

            async def send(payload: dict[str, Any]) -> None:
                try:
                    acked = await delivery.deliver(payload)
                    if acked and len(delivery.acked) >= KILL_AFTER_ACKS and not killed.is_set():
                        process.send_signal(signal.SIGKILL)
                        killed.set()
                finally:
                    window.release()

            tasks: list[asyncio.Task[None]] = []
            for payload in payloads:
                await window.acquire()
                if killed.is_set():
                    window.release()
                    break
                tasks.append(asyncio.create_task(send(payload)))
            await asyncio.gather(*tasks)
            assert killed.is_set()
            assert await process.wait() == -signal.SIGKILL
            acked_before_kill = set(delivery.acked)
            unacked = delivery.sent - delivery.acked
            assert len(acked_before_kill) >= KILL_AFTER_ACKS
            assert unacked, "the kill was not mid-stream: no delivery was waiting for its ack"
            never_sent = [p for p in payloads if p["event_id"] not in delivery.sent]
            assert never_sent, "the stream was over before the kill"

            # 2. Restart. Slack redelivers what it got no ack for, and the stream goes on.
            await wait_disconnected(slack)
            process = await start_process(env, stdout=log_file)
            await wait_ready(session, ops, process)
            await slack.wait_for_socket(1, opened_total=2)
            for _ in range(3):  # Slack retries an event up to three times
                missing = sorted(unacked - delivery.acked)
                if not missing:
                    break
                await asyncio.gather(*(delivery.deliver(by_id[i], redelivery=True) for i in missing))
            assert unacked <= delivery.acked, "a redelivery after the restart got no ack"
            results = await asyncio.gather(*(delivery.deliver(p) for p in never_sent))
            assert all(results)
            assert await metric(session, ops, 'beepgpt_ingest_acks_total{durability="buffered"}') == 0
            # every ack since the restart came after Kafka's: the topic's end has all of them
            records = await read_topic(kafka_topics, SLACK_MESSAGES.name)
            copies = Counter(SLACK_MESSAGES.decode(r.value).event_id for r in records)
            assert set(copies) == set(by_id), "an event is missing from slack.messages"
            doubled = {event_id for event_id, n in copies.items() if n > 1}
            # Only an event in flight at the kill may have been published twice: once before the
            # kill (Kafka took it, no ack reached Slack), once by its redelivery. Nothing acked.
            assert doubled <= unacked
            assert not doubled & acked_before_kill

            # 3. Slack redelivers events it already got an ack for: nothing new is published.
            duplicates = await metric(session, ops, DUPLICATES)
            acked_again = sorted(acked_before_kill)
            results = await asyncio.gather(
                *(delivery.deliver(by_id[i], redelivery=True) for i in acked_again)
            )
            assert all(results)
            assert await metric(session, ops, DUPLICATES) == duplicates + len(acked_again)
            markers = [ev.callback(ev.message(channel, "U0BOB", "marker")) for channel in CHANNELS]
            assert all(await asyncio.gather(*(delivery.deliver(m) for m in markers)))
            after = await read_topic(kafka_topics, SLACK_MESSAGES.name)
            # one marker per channel (so per partition): anything published before it is read too
            assert len(after) == len(records) + len(markers)

            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        await stop_process(process)
        log_file.close()
