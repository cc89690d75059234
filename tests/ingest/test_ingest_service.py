"""The ingest service end to end: Slack stand-in → ingest → real broker, read back from the topics.

Synchronization is by acks, HTTP responses and records read back — never by sleeping. "Nothing
else was published" is shown with a marker event sent afterwards on the same channel (so the
same partition): once the marker is read, anything published before it would have been too.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ingest_helpers import Counters, StartIngest, acks, decoded, events_url, read_values

from beepgpt.contracts import SlackMessage, SlackReaction
from beepgpt.kafka.headers import SOURCE, TRACE_ID, header
from beepgpt.settings import KafkaSettings
from beepgpt.topics import SLACK_MESSAGES
from devstack.local_stack import Broker
from devstack.slack_standin import SlackStandin

GENERAL, RANDOM = "C0GENERAL", "C0RANDOM"
ALICE, BOB = "U0ALICE", "U0BOB"


async def test_socket_mode_payloads_bolt_cannot_take_are_dead_lettered_and_acked(
    start_ingest: StartIngest, slack: SlackStandin, kafka_topics: KafkaSettings
) -> None:
    """The checks HTTP bodies get, over Socket Mode: a payload nested too deep or with a routing
    id of the wrong type is dead-lettered with its reason and acked (else Slack resends it for
    ever), and the events after it flow."""
    ev = slack.events
    deep: dict[str, Any] = {"leaf": 1}
    for _ in range(80):
        deep = {"d": deep}
    too_deep = ev.callback(ev.message(GENERAL, ALICE, "deep")) | {"extra": deep}
    wrong_type = ev.callback(ev.message(GENERAL, ALICE, "typed")) | {"team_id": 5}
    async with start_ingest(mode="socket"):
        for payload in (too_deep, wrong_type):
            ack = await slack.push_event(payload)
            assert ack.latency < 3.0
        await slack.push_event(ev.message(GENERAL, BOB, "still flowing"))
        published = await read_values(kafka_topics, 1)
        dead = await read_values(kafka_topics, 2, topic=SLACK_MESSAGES.dlq)
    assert [m.text for m in decoded(published)] == ["still flowing"]
    assert sorted(header(r.headers, "dlq.error.reason") or "" for r in dead) == ["invalid_field", "too_deep"]


async def test_socket_mode_events_are_normalized_and_published(
    start_ingest: StartIngest, slack: SlackStandin, kafka_topics: KafkaSettings
) -> None:
    ev = slack.events
    counters = Counters()
    async with start_ingest(mode="socket"):
        root = ev.message(GENERAL, ALICE, "shall we move ingest to Kafka?")
        pushed = [
            root,
            ev.thread_reply(GENERAL, BOB, "yes, with acks=all", thread_ts=root["ts"]),
            ev.thread_broadcast(GENERAL, BOB, "decided: Kafka", thread_ts=root["ts"]),
            ev.message_changed(
                GENERAL,
                root["ts"],
                "shall we move ingest to Kafka now?",
                user=ALICE,
                previous_text=root["text"],
            ),
            ev.reaction_added(BOB, "thumbsup", GENERAL, root["ts"], item_user=ALICE),
            ev.reaction_removed(BOB, "thumbsup", GENERAL, root["ts"]),
            ev.bot_message(GENERAL, "deploy finished"),
            ev.channel_join(GENERAL, "U0CAROL"),
            ev.message_deleted(GENERAL, root["ts"], user=ALICE, previous_text="x"),
            ev.message(RANDOM, ALICE, "lunch?"),
        ]
        acks = [await slack.push_event(event) for event in pushed]
        assert all(ack.latency < 3.0 for ack in acks)
        records = await read_values(kafka_topics, 8)

    by_channel: dict[str, list[Any]] = {}
    for record, event in zip(records, decoded(records), strict=True):
        assert record.key is not None
        assert record.key.decode() == event.channel
        assert header(record.headers, SOURCE) == "ingest"
        assert header(record.headers, TRACE_ID)
        assert header(record.headers, "beepgpt.event_id") == event.event_id
        by_channel.setdefault(event.channel, []).append(event)
    general = by_channel[GENERAL]
    assert [(type(e).__name__, e.action) for e in general] == [
        ("SlackMessage", "new"),
        ("SlackMessage", "new"),
        ("SlackMessage", "new"),
        ("SlackMessage", "edited"),
        ("SlackReaction", "added"),
        ("SlackReaction", "removed"),
        ("SlackMessage", "deleted"),
    ]
    new, reply, broadcast, edited, added, _, deleted = general
    assert isinstance(new, SlackMessage)
    assert new.text == "shall we move ingest to Kafka?"
    assert new.team == slack.workspace.identity.team_id
    assert new.user == ALICE
    assert isinstance(reply, SlackMessage)
    assert reply.thread_ts == root["ts"]
    assert reply.in_thread
    assert isinstance(broadcast, SlackMessage)
    assert broadcast.subtype == "thread_broadcast"
    assert isinstance(edited, SlackMessage)
    assert edited.ts == root["ts"]
    assert edited.text.endswith("now?")
    assert isinstance(added, SlackReaction)
    assert added.item_ts == root["ts"]
    assert added.reaction == "thumbsup"
    assert isinstance(deleted, SlackMessage)
    assert deleted.ts == root["ts"]
    assert deleted.text == ""
    assert [e.text for e in by_channel[RANDOM]] == ["lunch?"]
    delta = counters.delta()
    assert delta[("dropped", "bot")] == 1
    assert delta[("dropped", "channel_join")] == 1
    assert delta[("published", "message.new")] == 4
    assert delta[("published", "reaction.added")] == 1


async def test_http_events_signed_verified_and_published(
    start_ingest: StartIngest, slack: SlackStandin, kafka_topics: KafkaSettings
) -> None:
    ev = slack.events
    counters = Counters()
    async with start_ingest(mode="http") as service, slack.http_sender(events_url(service)) as sender:
        challenge = ev.url_verification()
        reply = await sender.url_verification(challenge)
        assert reply.status == 200
        assert reply.json()["challenge"] == challenge["challenge"]

        forged = ev.callback(ev.message(GENERAL, ALICE, "forged"))
        assert (await sender.send_event(forged, bad_signature=True)).status == 401
        assert (await sender.send_event(forged, stale_timestamp=True)).status == 401
        assert (await sender.send_event(forged, signed=False)).status == 401
        # not even UTF-8, and forged: still a 401, not a dead letter
        assert (await sender.send_raw(b"\xff\xfe", "application/json", bad_signature=True)).status == 401

        genuine = ev.callback(ev.message(GENERAL, ALICE, "genuine"))
        started = time.perf_counter()
        reply = await sender.send_event(genuine)
        assert reply.status == 200
        assert time.perf_counter() - started < 3.0
        [record] = await read_values(kafka_topics, 1)

    message = SLACK_MESSAGES.decode(record.value)
    assert message.text == "genuine"
    assert message.event_id == genuine["event_id"]
    assert counters.delta()[("unauthorized", "bad_signature")] == 4


async def test_a_replayed_event_id_is_published_once(
    start_ingest: StartIngest, slack: SlackStandin, kafka_topics: KafkaSettings
) -> None:
    """Slack's retries — over Socket Mode, over HTTP, and to another instance — publish nothing twice."""
    ev = slack.events
    counters = Counters()
    async with start_ingest(mode="socket"):
        first = await slack.push_event(ev.callback(ev.message(GENERAL, ALICE, "once over socket")))
        retry = await slack.redeliver(first)  # same event_id, retry_attempt=1
        assert retry.envelope["retry_attempt"] == 1
        await slack.redeliver(first, reason="http_error")
    # two HTTP instances sharing Redis: a retry that lands on the other pod is still a retry
    async with (
        start_ingest(mode="http") as one,
        start_ingest(mode="http") as two,
        slack.http_sender(events_url(one)) as to_one,
        slack.http_sender(events_url(two)) as to_two,
    ):
        payload = ev.callback(ev.message(GENERAL, BOB, "once over http"))
        assert (await to_one.send_event(payload)).status == 200
        assert (await to_one.send_event(payload, retry_num=1, retry_reason="http_timeout")).status == 200
        assert (await to_two.send_event(payload, retry_num=2, retry_reason="http_timeout")).status == 200
        marker = ev.callback(ev.message(GENERAL, BOB, "marker"))
        assert (await to_two.send_event(marker)).status == 200
        records = await read_values(kafka_topics, 3)

    assert [m.text for m in decoded(records)] == ["once over socket", "once over http", "marker"]
    assert counters.delta()[("duplicate", "message.new")] == 4


async def test_malformed_events_are_counted_and_never_crash(
    start_ingest: StartIngest, slack: SlackStandin, kafka_topics: KafkaSettings
) -> None:
    ev = slack.events
    counters = Counters()
    big = ev.callback(ev.message(GENERAL, ALICE, "x" * 400_000))  # ~0.8 MB with its blocks: under 1 MiB
    surrogates = ev.callback(ev.message(GENERAL, ALICE, "broken \ud800 emoji"))
    unknown_subtype = ev.callback(ev.message(GENERAL, ALICE, "hm", subtype="huddle_started_v9"))
    unknown_type = ev.callback({"type": "pin_added", "user": ALICE, "event_ts": "1690400000.000100"})
    no_channel = ev.callback(
        {k: v for k, v in ev.message(GENERAL, ALICE, "where?").items() if k != "channel"}
    )
    no_user = ev.callback({k: v for k, v in ev.message(GENERAL, ALICE, "who?").items() if k != "user"})
    no_event = {k: v for k, v in ev.callback(ev.message(GENERAL, ALICE, "none")).items() if k != "event"}
    event_not_object = ev.callback(ev.message(GENERAL, ALICE, "x")) | {"event": "message"}
    async with start_ingest(mode="http") as service, slack.http_sender(events_url(service)) as sender:
        for payload in (
            big,
            surrogates,
            unknown_subtype,
            unknown_type,
            no_channel,
            no_user,
            no_event,
            event_not_object,
        ):
            reply = await sender.send_event(payload)
            assert reply.status == 200, (reply.status, reply.text)
        # bodies Bolt cannot even parse: invalid UTF-8 and invalid JSON, properly signed
        assert (
            await sender.send_raw(b'{"type": "event_callback", "x": "\xff"}', "application/json")
        ).status == 200
        assert (await sender.send_raw(b'{"type": "event_callback", ', "application/json")).status == 200
        # the same over Socket Mode (slack_sdk's client takes frames up to 4 MiB, and the stand-in
        # repeats the text in `blocks`, so 1 MB of text is what fits in one envelope)
        async with start_ingest(mode="socket"):
            await slack.push_event(ev.callback(ev.message(RANDOM, ALICE, "socket \udfff too")))
            await slack.push_event(ev.callback(ev.message(RANDOM, ALICE, "y" * 1_000_000)))
        marker = ev.callback(ev.message(GENERAL, BOB, "still alive"))
        assert (await sender.send_event(marker)).status == 200
        published = await read_values(kafka_topics, 5)
        dead = await read_values(kafka_topics, 8, topic=SLACK_MESSAGES.dlq)

    messages = {m.text[:20]: m for m in decoded(published)}
    assert len(messages["x" * 20].text) == 40_000
    assert messages["broken \ufffd emoji"].text == "broken \ufffd emoji"
    assert "socket \ufffd too" in messages
    assert len(messages["y" * 20].text) == 40_000
    assert "still alive" in messages
    reasons = sorted(header(r.headers, "dlq.error.reason") or "" for r in dead)
    assert reasons == sorted(
        [
            "unknown_subtype",
            "unknown_event_type",
            "missing_field",
            "missing_field",
            "missing_field",
            "invalid_event",
            "invalid_utf8",
            "invalid_json",
        ]
    )
    for record in dead:
        assert header(record.headers, "dlq.service") == "ingest"
        assert header(record.headers, "dlq.original.topic") == SLACK_MESSAGES.name
        assert header(record.headers, "dlq.error.message")
    # the original bytes are kept (JSON for what Bolt parsed, raw for what it could not)
    assert any(r.value == b'{"type": "event_callback", "x": "\xff"}' for r in dead)
    unknown = next(r for r in dead if header(r.headers, "dlq.error.reason") == "unknown_subtype")
    assert json.loads(unknown.value)["event_id"] == unknown_subtype["event_id"]
    delta = counters.delta()
    assert delta[("rejected", "missing_field")] == 3
    assert delta[("rejected", "invalid_utf8")] == 1
    assert delta[("published", "message.new")] == 5


async def test_broker_outage_keeps_acks_fast_then_refuses_explicitly_and_loses_nothing(
    start_ingest: StartIngest, slack: SlackStandin, kafka_topics: KafkaSettings, broker: Broker
) -> None:
    ev = slack.events
    counters = Counters()
    buffered = acks("buffered")
    capacity = 20
    async with (
        start_ingest(mode="http", buffer_size=capacity, ack_budget_s=0.2) as service,
        slack.http_sender(events_url(service)) as sender,
    ):
        payloads = [
            ev.callback(ev.message(GENERAL, ALICE, f"during outage {i}")) for i in range(capacity + 1)
        ]
        broker.pause()
        try:
            slowest = 0.0
            for payload in payloads[:capacity]:
                started = time.perf_counter()
                reply = await sender.send_event(payload)
                slowest = max(slowest, time.perf_counter() - started)
                assert reply.status == 200
            assert slowest < 3.0, f"an ack took {slowest:.2f}s with Kafka away"
            assert service.publisher is not None
            assert service.publisher.depth == capacity
            assert service.publisher.acked_early == capacity  # acked after the budget, not durable
            assert acks("buffered") == buffered + capacity
            refused = await sender.send_event(payloads[capacity])
            assert refused.status == 503  # explicit: Slack will retry it
            assert not service.ready()
        finally:
            broker.resume()
        records = await read_values(kafka_topics, capacity)
        assert (await sender.send_event(payloads[capacity], retry_num=1)).status == 200
        records += await read_values(kafka_topics, capacity + 1)
        assert service.publisher.acked_early == 0

    texts = [m.text for m in decoded(records[capacity:])]
    assert sorted(texts) == sorted(f"during outage {i}" for i in range(capacity + 1))
    assert texts == [f"during outage {i}" for i in range(capacity + 1)]  # one channel: in order
    delta = counters.delta()
    assert delta[("overloaded", "message.new")] == 1
    assert delta[("published", "message.new")] == capacity + 1
