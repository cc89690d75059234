"""Who may see what, live: which channels' messages ingest reads, through the real Bolt app.

Each test builds ingest's own Bolt app (`build_app`: Bolt's signature check, the envelope
middleware, the listeners) over a real `Intake` and `Publisher` producing to the test's broker,
and dispatches signed Events API bodies built by the Slack stand-in's event builders. "Nothing
else was published" is shown by a marker message sent last: once it is read back, anything the
publisher took before it is in Kafka too, and the topic is then read to its end offsets.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from ingest_helpers import counter, decoded, read_values
from prometheus_client import REGISTRY
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.signature import SignatureVerifier

from beepgpt.contracts import SlackMessage
from beepgpt.settings import KafkaSettings
from beepgpt.topics import SLACK_MESSAGES
from devstack.slack_standin.events import EventBuilder
from devstack.topic_reader import read_topic
from ingest.bolt_app import BotIdentity, build_app
from ingest.intake import Intake
from ingest.normalize import Rules
from ingest.publisher import Publisher

SECRET = "test-signing-secret"
GENERAL = "C0GENERAL"
ALICE = "U0ALICE"
SECRET_TEXT = "the reorg is confidential"

Dispatch = Callable[[dict[str, Any]], Coroutine[Any, Any, int]]


def channel_skips(reason: str) -> float:
    return REGISTRY.get_sample_value("beepgpt_ingest_channel_skips_total", {"reason": reason}) or 0.0


def app_for(publisher: Publisher, rules: Rules) -> Dispatch:
    """Signed bodies into ingest's Bolt app; returns the HTTP status Slack would get."""
    identity = BotIdentity(team_id="T0TEAM", bot_user_id="U0BEEPGPT", bot_id="B0BEEPGPT", bot_token="xoxb-t")
    app = build_app(Intake(publisher, rules), identity, signing_secret=SECRET, api_url="http://127.0.0.1:9/")
    verifier = SignatureVerifier(SECRET)

    async def dispatch(body: dict[str, Any]) -> int:
        raw = json.dumps(body)
        timestamp = str(int(time.time()))
        headers = {
            "content-type": "application/json",
            "x-slack-request-timestamp": timestamp,
            "x-slack-signature": verifier.generate_signature(timestamp=timestamp, body=raw),
        }
        response = await app.async_dispatch(AsyncBoltRequest(body=raw, headers=headers))
        return int(response.status)

    return dispatch


async def test_only_public_and_shared_channels_are_read_by_default(
    publisher: Publisher, kafka_topics: KafkaSettings, caplog: pytest.LogCaptureFixture
) -> None:
    ev = EventBuilder()
    dispatch = app_for(publisher, Rules())
    before = {r: channel_skips(r) for r in ("private_channel", "direct_message", "group_dm")}
    dropped = {r: counter("dropped", r) for r in before}
    private = ev.message("G0PRIVATE", ALICE, SECRET_TEXT)
    assert private["channel_type"] == "group"
    skipped = [
        ev.callback(private),
        ev.callback({**ev.message("C0PRIVATE", ALICE, SECRET_TEXT), "channel_type": "group"}),  # a C id
        ev.callback(
            ev.message_changed("G0PRIVATE", private["ts"], SECRET_TEXT + "!", user=ALICE, previous_text="x")
        ),
        ev.callback(ev.message("D0ALICE01", ALICE, SECRET_TEXT)),
        ev.callback({**ev.message("G0MPIM001", ALICE, SECRET_TEXT), "channel_type": "mpim"}),
    ]
    with caplog.at_level(logging.INFO, logger="ingest.listeners.events"):
        for body in skipped:
            assert await dispatch(body) == 200  # acked: Slack must not retry what is not read
    shared = ev.callback(ev.message("C0CONNECT", ALICE, "hello partners"), is_ext_shared_channel=True)
    assert await dispatch(shared) == 200
    assert await dispatch(ev.callback(ev.message(GENERAL, ALICE, "public marker"))) == 200

    await read_values(kafka_topics, 2)
    # then everything up to the end offsets: every channel, every partition
    records = await read_topic(kafka_topics, SLACK_MESSAGES.name)
    assert len(records) == 2
    messages = {m.channel: m for m in decoded(records)}
    assert set(messages) == {"C0CONNECT", GENERAL}  # only what was published before the marker
    assert (messages[GENERAL].text, messages[GENERAL].channel_kind) == ("public marker", "public")
    assert messages["C0CONNECT"].channel_kind == "shared"
    assert {r: channel_skips(r) - before[r] for r in before} == {
        "private_channel": 3,
        "direct_message": 1,
        "group_dm": 1,
    }
    assert {r: counter("dropped", r) - dropped[r] for r in dropped} == {
        "private_channel": 3,
        "direct_message": 1,
        "group_dm": 1,
    }
    lines = [r for r in caplog.records if r.getMessage() == "message skipped: its channel is not read"]
    assert [getattr(r, "reason", None) for r in lines] == [
        "private_channel",
        "private_channel",
        "private_channel",
        "direct_message",
        "group_dm",
    ]
    assert [getattr(r, "event_id", None) for r in lines] == [b["event_id"] for b in skipped]
    logged = caplog.text + " ".join(json.dumps(vars(r), default=str) for r in caplog.records)
    assert "confidential" not in logged  # the log names the channel and why, never the text


async def test_private_channels_are_read_when_allowed_and_marked_private(
    publisher: Publisher, kafka_topics: KafkaSettings
) -> None:
    ev = EventBuilder()
    dispatch = app_for(publisher, Rules(private_channels=True))
    dms = channel_skips("direct_message")
    private = ev.message("G0PRIVATE", ALICE, "private but allowed")
    assert await dispatch(ev.callback(private)) == 200
    assert await dispatch(ev.callback(ev.message("D0ALICE01", ALICE, SECRET_TEXT))) == 200  # never read
    deletion = ev.message_deleted("G0PRIVATE", private["ts"], user=ALICE, previous_text="private but allowed")
    assert await dispatch(ev.callback(deletion)) == 200
    assert await dispatch(ev.callback(ev.message("G0PRIVATE", ALICE, "private marker"))) == 200

    await read_values(kafka_topics, 3)
    records = await read_topic(kafka_topics, SLACK_MESSAGES.name)  # to the end: no DM among them
    messages: list[SlackMessage] = decoded(records)
    assert [(m.action, m.text, m.channel_kind) for m in messages] == [
        ("new", "private but allowed", "private"),
        ("deleted", "", "private"),
        ("new", "private marker", "private"),
    ]
    assert channel_skips("direct_message") - dms == 1
