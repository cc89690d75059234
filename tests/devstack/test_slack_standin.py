"""The Slack stand-in, exercised only through the official clients (slack_sdk, slack_bolt).

If these pass, a service that works against the stand-in talks to Slack the way Slack expects.
Synchronization is by acks, futures and the stand-in's waits — never by sleeping.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import ClientSession, test_utils
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import builtin_async_handlers
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from devstack.slack_standin import RemoteStandin, SlackStandin, Workspace, signature
from devstack.slack_standin import events as ev
from devstack.slack_standin.socket_mode import AckTimeout, NoConnection
from devstack.slack_standin.workspace import Channel, User

ALICE, BOB, CAROL = "U0ALICE", "U0BOB", "U0CAROL"
GENERAL = "C0GENERAL"
SLACK_EXPORT = Path(__file__).resolve().parents[2] / "data" / "slack-export"


@pytest_asyncio.fixture
async def slack() -> AsyncIterator[SlackStandin]:
    async with SlackStandin() as standin:
        yield standin


def web_client(slack: SlackStandin, **kwargs: Any) -> AsyncWebClient:
    return AsyncWebClient(token=slack.bot_token, base_url=slack.api_url, **kwargs)


async def error_of(call: Any) -> str:
    with pytest.raises(SlackApiError) as raised:
        await call
    return str(raised.value.response["error"])


class Acker:
    """A bare slack_sdk Socket Mode client that acks every envelope and remembers it."""

    def __init__(self, slack: SlackStandin) -> None:
        self.client = SocketModeClient(app_token=slack.app_token, web_client=web_client(slack))
        self.received: list[SocketModeRequest] = []
        self.client.socket_mode_request_listeners.append(self._on_request)

    async def _on_request(self, client: SocketModeClient, req: SocketModeRequest) -> None:
        self.received.append(req)
        await client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))


# ---- Web API through AsyncWebClient and WebClient -------------------------------------------------


async def test_async_web_client_reads_the_workspace(slack: SlackStandin) -> None:
    client = web_client(slack)
    auth = await client.auth_test()
    assert (auth["team_id"], auth["user_id"], auth["bot_id"]) == (
        slack.workspace.team_id,
        slack.workspace.bot_user_id,
        slack.workspace.bot_id,
    )

    # slack_sdk follows response_metadata.next_cursor (the iterator reuses one response object).
    pages = [[c["name"] for c in page["channels"]] async for page in await client.conversations_list(limit=2)]
    assert pages == [["general", "project"], ["random"]]

    members = [m["id"] async for page in await client.users_list(limit=2) for m in page["members"]]
    assert set(members) == set(slack.workspace.users)
    assert (await client.users_info(user=ALICE))["user"]["real_name"] == "Alice Adams"

    opened = await client.conversations_open(users=ALICE)
    assert opened["channel"]["id"] == "D0ALICE"
    again = await client.conversations_open(users=ALICE)
    assert again["already_open"] is True


async def test_async_web_client_posts_and_reads_back(slack: SlackStandin) -> None:
    client = web_client(slack)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Kafka* decision in #general"}}]
    dm = await client.chat_postMessage(channel=ALICE, text="Heads up", blocks=blocks)
    assert dm["channel"] == "D0ALICE"

    root = await client.chat_postMessage(channel=GENERAL, text="root")
    reply = await client.chat_postMessage(channel=GENERAL, text="reply", thread_ts=root["ts"])
    link = await client.chat_getPermalink(channel=GENERAL, message_ts=reply["ts"])
    assert link["permalink"].endswith(f"?thread_ts={root['ts']}&cid={GENERAL}")

    await client.chat_update(channel=GENERAL, ts=root["ts"], text="root (edited)")
    eph = await client.chat_postEphemeral(channel=GENERAL, user=BOB, text="only you")
    assert eph["message_ts"]
    home = await client.views_publish(user_id=ALICE, view={"type": "home", "blocks": blocks})
    assert home["view"]["type"] == "home"

    history = await client.conversations_history(channel=GENERAL)
    assert [m["text"] for m in history["messages"]] == ["root (edited)"]
    assert history["messages"][0]["reply_count"] == 1
    replies = await client.conversations_replies(channel=GENERAL, ts=root["ts"])
    assert [m["text"] for m in replies["messages"]] == ["root (edited)", "reply"]

    posts = await slack.wait_for_posts(6)
    assert [p.method for p in posts] == [
        "chat.postMessage",
        "chat.postMessage",
        "chat.postMessage",
        "chat.update",
        "chat.postEphemeral",
        "views.publish",
    ]
    assert posts[0].blocks == blocks
    assert "Kafka" in posts[0].block_text
    assert posts[4].user == BOB
    assert posts[5].view is not None
    assert all("token" not in p.args for p in posts)


@pytest.mark.parametrize("kind", ["WebClient", "AsyncWebClient"])
async def test_every_method_through_both_clients(slack: SlackStandin, kind: str) -> None:
    sync_client = WebClient(token=slack.bot_token, base_url=slack.api_url)
    async_client = web_client(slack)

    async def call(method: str, **kwargs: Any) -> Any:
        if kind == "WebClient":  # blocking: off the loop the stand-in runs on
            return await asyncio.to_thread(getattr(sync_client, method), **kwargs)
        return await getattr(async_client, method)(**kwargs)

    assert (await call("auth_test"))["user_id"] == "U0BEEPBOT"
    assert (await call("apps_connections_open", app_token=slack.app_token))["url"].startswith(
        "ws://127.0.0.1:"
    )
    dm = (await call("conversations_open", users=BOB))["channel"]["id"]
    root = await call("chat_postMessage", channel=dm, text="root")
    await call("chat_postMessage", channel=dm, text="reply", thread_ts=root["ts"])
    await call("chat_update", channel=dm, ts=root["ts"], text="root!")
    await call("chat_postEphemeral", channel=GENERAL, user=BOB, text="psst")
    link = await call("chat_getPermalink", channel=dm, message_ts=root["ts"])
    assert (
        link["permalink"]
        == f"https://beepgpt-standin.slack.com/archives/D0BOB/p{root['ts'].replace('.', '')}"
    )
    assert [m["text"] for m in (await call("conversations_history", channel=dm))["messages"]] == ["root!"]
    assert len((await call("conversations_replies", channel=dm, ts=root["ts"]))["messages"]) == 2
    assert len((await call("conversations_list", types="public_channel,im"))["channels"]) == 4
    assert (await call("users_info", user=BOB))["user"]["name"] == "bob"
    assert len((await call("users_list"))["members"]) == 5
    await call("views_publish", user_id=BOB, view={"type": "home", "blocks": []})

    posts = await slack.wait_for_posts(5)
    assert [p.method for p in posts] == [
        "chat.postMessage",
        "chat.postMessage",
        "chat.update",
        "chat.postEphemeral",
        "views.publish",
    ]


async def test_slack_errors_for_bad_input_and_tokens(slack: SlackStandin) -> None:
    client = web_client(slack)
    assert await error_of(client.chat_postMessage(channel="C0NOPE", text="x")) == "channel_not_found"
    assert await error_of(client.users_info(user="U0NOBODY")) == "user_not_found"
    assert await error_of(client.conversations_open(users="U0NOBODY")) == "user_not_found"
    with pytest.warns(UserWarning, match="`text` argument is missing"):
        assert await error_of(client.chat_postMessage(channel=GENERAL)) == "no_text"
    assert await error_of(client.api_call("chat.teleport")) == "unknown_method"
    long = [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]
    with pytest.raises(SlackApiError) as raised:
        await client.chat_postMessage(channel=GENERAL, text="t", blocks=long)
    assert raised.value.response["error"] == "invalid_blocks"
    assert "/blocks/0/text/text" in raised.value.response["response_metadata"]["messages"][0]

    assert (
        await error_of(AsyncWebClient(token="xoxb-forged", base_url=slack.api_url).auth_test())
        == "invalid_auth"
    )
    assert await error_of(AsyncWebClient(base_url=slack.api_url).auth_test()) == "not_authed"
    app_client = AsyncWebClient(token=slack.app_token, base_url=slack.api_url)
    assert await error_of(app_client.chat_postMessage(channel=GENERAL, text="x")) == "not_allowed_token_type"
    assert await error_of(client.apps_connections_open(app_token=slack.bot_token)) == "not_allowed_token_type"

    slack.revoke_token()
    assert await error_of(client.chat_postMessage(channel=GENERAL, text="x")) == "token_revoked"
    slack.reset()
    assert (await client.auth_test())["ok"]


async def test_guests_private_channels_and_membership(slack: SlackStandin) -> None:
    """users.info flags guests; a private channel lists its members (paged as Slack pages) to
    its members only, and is `channel_not_found` to everyone else, as on Slack."""
    ws = slack.workspace
    ws.add_user(User(id="U0GUEST", name="gus", is_restricted=True))
    ws.add_user(User(id="U0SOLO", name="solo", is_restricted=True, is_ultra_restricted=True))
    members = [ALICE, CAROL, "U0GUEST", ws.bot_user_id]
    ws.add_channel(Channel(id="C0SECRET", name="secret", is_private=True, members=members))
    ws.add_channel(Channel(id="C0HIDDEN", name="hidden", is_private=True, members=[ALICE]))
    ws.add_channel(Channel(id="C0CONNECT", name="connect", is_ext_shared=True, members=[BOB]))
    client = web_client(slack)

    bob = (await client.users_info(user=BOB))["user"]
    assert (bob["is_restricted"], bob["is_ultra_restricted"]) == (False, False)
    guest = (await client.users_info(user="U0GUEST"))["user"]
    assert (guest["is_restricted"], guest["is_ultra_restricted"]) == (True, False)
    solo = (await client.users_info(user="U0SOLO"))["user"]
    assert (solo["is_restricted"], solo["is_ultra_restricted"]) == (True, True)

    info = (await client.conversations_info(channel="C0SECRET"))["channel"]
    assert (info["is_private"], info["is_group"], info["is_channel"], info["is_member"]) == (
        True,
        True,
        False,
        True,
    )
    shared = (await client.conversations_info(channel="C0CONNECT"))["channel"]
    assert (shared["is_private"], shared["is_ext_shared"], shared["is_shared"]) == (False, True, True)
    assert (await client.conversations_info(channel=GENERAL))["channel"]["is_private"] is False

    # slack_sdk follows response_metadata.next_cursor
    pages = [
        page["members"] async for page in await client.conversations_members(channel="C0SECRET", limit=3)
    ]
    assert pages == [members[:3], members[3:]]
    last = await client.conversations_members(channel="C0SECRET")
    assert last["response_metadata"]["next_cursor"] == ""
    everyone = (await client.conversations_members(channel=GENERAL, limit=1000))["members"]
    assert set(everyone) >= {ALICE, BOB, CAROL}

    assert await error_of(client.conversations_info(channel="C0HIDDEN")) == "channel_not_found"
    assert await error_of(client.conversations_members(channel="C0HIDDEN")) == "channel_not_found"
    assert await error_of(client.conversations_members(channel="C0NOPE")) == "channel_not_found"
    bad_cursor = client.conversations_members(channel="C0SECRET", cursor="bm9wZQ==")
    assert await error_of(bad_cursor) == "invalid_cursor"
    assert slack.recorder.call_count("conversations.members") == 7


# ---- faults ------------------------------------------------------------------------------------


async def test_429_storm_is_honoured_by_the_async_retry_handler(
    slack: SlackStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    # slack_sdk adds up to 1 s of random jitter to Retry-After; pin it so the test stays fast.
    monkeypatch.setattr(builtin_async_handlers, "random", SimpleNamespace(random=lambda: 0.0))
    slack.faults.add(method="chat.postMessage", status=429, retry_after=0, times=5)
    client = web_client(slack, retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=5)])

    posted = await client.chat_postMessage(channel=ALICE, text="made it")

    assert posted["ok"]
    assert slack.call_count("chat.postMessage") == 6
    assert [c.status for c in slack.recorder.calls] == [429] * 5 + [200]
    assert len(slack.posts) == 1


async def test_retry_after_is_sent_and_waited_for_by_the_sync_handler(slack: SlackStandin) -> None:
    slack.faults.add(method="chat.postMessage", status=429, retry_after=1, times=1)
    client = WebClient(
        token=slack.bot_token,
        base_url=slack.api_url,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)],
    )
    started = time.monotonic()
    await asyncio.to_thread(client.chat_postMessage, channel=ALICE, text="later")
    assert time.monotonic() - started >= 1.0
    assert slack.call_count("chat.postMessage") == 2

    slack.faults.add(method="chat.postMessage", status=429, retry_after=7)
    async with ClientSession() as http:
        response = await http.post(
            slack.api_url + "chat.postMessage", headers={"Authorization": f"Bearer {slack.bot_token}"}
        )
        assert response.status == 429
        assert response.headers["Retry-After"] == "7"
        assert (await response.json()) == {"ok": False, "error": "ratelimited"}


async def test_faults_after_n_calls_and_a_storm_of_every_other_call(slack: SlackStandin) -> None:
    client = web_client(slack, retry_handlers=[])
    broken = slack.faults.add("users.info", error="internal_error", after=2, times=None)
    assert [(await client.users_info(user=ALICE))["ok"] for _ in range(2)] == [True, True]
    assert await error_of(client.users_info(user=ALICE)) == "internal_error"
    assert await error_of(client.users_info(user=ALICE)) == "internal_error"
    slack.faults.remove(broken)

    storm = slack.faults.rate_limit_storm("conversations.*", times=3, every=2, retry_after=4)
    answers: list[tuple[int, str | None]] = []
    for _ in range(8):
        try:
            await client.conversations_info(channel=GENERAL)
            answers.append((200, None))
        except SlackApiError as error:
            answers.append((error.response.status_code, error.response.headers["Retry-After"]))
    rate_limited = (429, "4")
    assert answers == [rate_limited, (200, None)] * 3 + [(200, None)] * 2
    assert storm.exhausted


async def test_conversations_join_public_channels_only_with_the_scope(slack: SlackStandin) -> None:
    ws = slack.workspace
    ws.add_channel(Channel(id="C0NEW", name="new", members=[ALICE]))
    ws.add_channel(Channel(id="C0OLD", name="old", members=[ALICE], is_archived=True))
    ws.add_channel(Channel(id="G0HUSH", name="hush", is_private=True, members=[ALICE]))
    client = web_client(slack)
    listed = {
        c["id"]: c["is_member"] async for page in await client.conversations_list() for c in page["channels"]
    }
    assert listed["C0NEW"] is False

    joined = await client.conversations_join(channel="C0NEW")
    assert (joined["channel"]["id"], joined["channel"]["is_member"]) == ("C0NEW", True)
    assert ws.bot_user_id in ws.channels["C0NEW"].members
    again = await client.conversations_join(channel="C0NEW")
    assert again["warning"] == "already_in_channel"
    assert (
        await error_of(client.conversations_join(channel="G0HUSH")) == "method_not_supported_for_channel_type"
    )
    assert await error_of(client.conversations_join(channel="C0OLD")) == "is_archived"

    slack.web_api.bot_scopes.discard("channels:join")
    with pytest.raises(SlackApiError) as refused:
        await client.conversations_join(channel="C0NEW")
    assert (refused.value.response["error"], refused.value.response["needed"]) == (
        "missing_scope",
        "channels:join",
    )
    assert "channels:join" not in refused.value.response.headers["X-OAuth-Scopes"]


async def test_5xx_slack_errors_and_slow_answers(slack: SlackStandin) -> None:
    slack.faults.add(method="chat.postMessage", status=503, times=1)
    client = web_client(slack, retry_handlers=[AsyncServerErrorRetryHandler(max_retry_count=1)])
    await client.chat_postMessage(channel=ALICE, text="after a 503")
    assert [c.status for c in slack.recorder.calls] == [503, 200]

    # A Slack error for one recipient only: the others still get their DM.
    slack.faults.add(method="chat.postMessage", error="channel_not_found", args={"channel": BOB}, times=None)
    assert await error_of(client.chat_postMessage(channel=BOB, text="x")) == "channel_not_found"
    assert (await client.chat_postMessage(channel=CAROL, text="fine"))["ok"]

    # Slow: the client gives up, but Slack still carries the request out (how duplicates happen).
    slack.faults.add(method="chat.postMessage", delay=0.6, args={"channel": ALICE})
    impatient = web_client(slack, timeout=0.3, retry_handlers=[])
    with pytest.raises(asyncio.TimeoutError):
        await impatient.chat_postMessage(channel=ALICE, text="late")
    posts = await slack.wait_for_posts(2, channel="D0ALICE")
    assert posts[-1].text == "late"


# ---- Socket Mode with Bolt -------------------------------------------------------------------------


async def test_bolt_socket_mode_event_command_and_click(slack: SlackStandin) -> None:
    app = AsyncApp(client=web_client(slack), signing_secret=slack.signing_secret)
    retries: list[list[str]] = []

    @app.event("message")
    async def on_message(event: dict[str, Any], say: Any, request: Any) -> None:
        retries.append(request.headers.get("x-slack-retry-num", []))
        await say(f"seen: {event['text']}")

    @app.command("/beep")
    async def on_beep(ack: Any, command: dict[str, Any]) -> None:
        await ack(f"Following: {command['text']}")

    @app.action("useful")
    async def on_useful(ack: Any, respond: Any) -> None:
        await ack()
        await respond("Thanks for the feedback")

    handler = AsyncSocketModeHandler(app, slack.app_token)
    await handler.connect_async()
    try:
        await slack.wait_for_socket()

        ack = await slack.push_event(slack.events.message(GENERAL, ALICE, "kafka or pulsar?"))
        assert ack.type == "events_api"
        assert ack.payload is None
        (post,) = await slack.wait_for_posts(1)
        assert (post.channel, post.text) == (GENERAL, "seen: kafka or pulsar?")

        retried = await slack.redeliver(ack)
        assert retried.envelope["payload"]["event_id"] == ack.envelope["payload"]["event_id"]
        assert retried.envelope["retry_attempt"] == 1
        await slack.wait_for_posts(2)
        assert retries == [["0"], ["1"]]

        ack = await slack.push_slash_command(slack.events.slash_command("/beep", "streaming", user_id=ALICE))
        assert ack.payload == {"text": "Following: streaming"}

        click = slack.events.block_actions("useful", user_id=ALICE, value="C0GENERAL:1690000000.000100")
        ack = await slack.push_interactive(click)
        assert ack.type == "interactive"
        (reply,) = await slack.wait_for_posts(1, method="response_url")
        assert reply.text == "Thanks for the feedback"

        # Slack's periodic refresh: the app reconnects and keeps receiving.
        await slack.disconnect()
        await slack.wait_for_socket(opened_total=2)
        ack = await slack.push_event(slack.events.message(GENERAL, BOB, "after refresh"))
        assert ack.connection_id == 2
    finally:
        await handler.close_async()


async def test_envelopes_are_spread_over_connections(slack: SlackStandin) -> None:
    first, second = Acker(slack), Acker(slack)
    await first.client.connect()
    await second.client.connect()
    try:
        await slack.wait_for_socket(2)
        acks = [await slack.push_event(slack.events.message(GENERAL, ALICE, f"m{i}")) for i in range(4)]
        assert sorted(a.connection_id for a in acks) == [1, 1, 2, 2]
        assert len(first.received) + len(second.received) == 4
    finally:
        await first.client.close()
        await second.client.close()


async def test_no_connection_and_missing_ack_are_reported(slack: SlackStandin) -> None:
    with pytest.raises(NoConnection):
        await slack.push_event(slack.events.message(GENERAL, ALICE, "anyone?"), timeout=0.2)

    silent = SocketModeClient(app_token=slack.app_token, web_client=web_client(slack))  # never acks
    await silent.connect()
    try:
        with pytest.raises(AckTimeout):
            await slack.push_event(slack.events.message(GENERAL, ALICE, "hello?"), timeout=0.3)
    finally:
        await silent.close()


async def test_pushed_events_keep_history_in_step(slack: SlackStandin) -> None:
    acker = Acker(slack)
    await acker.client.connect()
    client = web_client(slack)
    try:
        e = slack.events
        root = e.message(GENERAL, ALICE, "draft")
        for event in (
            root,
            e.message(GENERAL, BOB, "in thread", thread_ts=root["ts"], parent_user_id=ALICE),
            e.thread_broadcast(GENERAL, CAROL, "also to channel", root["ts"]),
            e.message_changed(GENERAL, root["ts"], "final", user=ALICE, previous_text="draft"),
            e.reaction_added(BOB, "eyes", GENERAL, root["ts"], item_user=ALICE),
            e.channel_join(GENERAL, "U0DAVE"),
            e.bot_message(GENERAL, "deploy done"),
        ):
            await slack.push_event(event)
        gone = e.message(GENERAL, ALICE, "oops")
        await slack.push_event(gone)
        await slack.push_event(e.message_deleted(GENERAL, gone["ts"], user=ALICE, previous_text="oops"))

        texts = [m["text"] for m in (await client.conversations_history(channel=GENERAL))["messages"]]
        assert texts == ["deploy done", "<@U0DAVE> has joined the channel", "also to channel", "final"]
        first = await client.conversations_history(
            channel=GENERAL, oldest=root["ts"], inclusive=True, limit=1
        )
        assert first["has_more"] is True
        thread = (await client.conversations_replies(channel=GENERAL, ts=root["ts"]))["messages"]
        assert thread[0]["reactions"] == [{"name": "eyes", "users": [BOB], "count": 1}]
        assert thread[0]["reply_count"] == 2
        assert [r.payload["event"].get("subtype") for r in acker.received][-2:] == [None, "message_deleted"]
    finally:
        await acker.client.close()


async def test_workspace_from_a_slack_export() -> None:
    workspace = Workspace.from_export_dir(SLACK_EXPORT)
    async with SlackStandin(workspace) as slack:
        client = web_client(slack)
        channels = (await client.conversations_list())["channels"]
        assert sorted(c["name"] for c in channels) == ["demo", "general", "random"]
        general = next(c["id"] for c in channels if c["name"] == "general")
        history = (await client.conversations_history(channel=general))["messages"]
        assert "old message 1" in [m["text"] for m in history]
        author = next(m["user"] for m in history if m["text"] == "old message 1")
        assert (await client.users_info(user=author))["user"]["team_id"] == workspace.team_id


def test_event_builders_follow_slack_shapes() -> None:
    root = ev.message(GENERAL, ALICE, "root")
    payload = ev.callback(ev.message(GENERAL, BOB, "reply", thread_ts=root["ts"]))
    assert payload["type"] == "event_callback"
    assert payload["event_id"].startswith("Ev")
    assert payload["authorizations"][0]["user_id"] == "U0BEEPBOT"
    assert payload["event"]["thread_ts"] == root["ts"]
    assert payload["event"]["channel_type"] == "channel"
    changed = ev.message_changed(GENERAL, root["ts"], "new", user=ALICE)
    assert changed["hidden"]
    assert changed["message"]["ts"] == root["ts"] != changed["ts"]
    deleted = ev.message_deleted("D0ALICE", root["ts"])
    assert deleted["deleted_ts"] == root["ts"]
    assert deleted["channel_type"] == "im"
    assert ev.reaction_removed(BOB, "+1", GENERAL, root["ts"])["type"] == "reaction_removed"
    assert ev.app_home_opened(ALICE)["channel"] == "D0ALICE"
    assert ev.slash_command("/beep", "list", user_id=ALICE)["response_url"].startswith(
        "https://hooks.slack.com/"
    )
    timestamps = [ev.message(GENERAL, ALICE, str(i))["ts"] for i in range(100)]
    assert len(set(timestamps)) == 100
    assert timestamps == sorted(timestamps)


# ---- HTTP Events API with Bolt -------------------------------------------------------------------


async def test_signed_http_requests_pass_bolt_verification(slack: SlackStandin) -> None:
    # process_before_response: listeners finish before Bolt answers, so replies order the test.
    app = AsyncApp(
        client=web_client(slack), signing_secret=slack.signing_secret, process_before_response=True
    )
    seen: list[tuple[str, list[str]]] = []

    @app.event("message")
    async def on_message(event: dict[str, Any], request: Any) -> None:
        seen.append((event["text"], request.headers.get("x-slack-retry-num", [])))

    @app.command("/beep")
    async def on_beep(ack: Any, command: dict[str, Any]) -> None:
        await ack(f"ok {command['text']}")

    @app.action("useful")
    async def on_useful(ack: Any) -> None:
        await ack()

    server = test_utils.TestServer(app.web_app(), host="127.0.0.1", port=0)
    await server.start_server()
    try:
        async with slack.http_sender(str(server.make_url("/slack/events"))) as sender:
            check = slack.events.url_verification("c-123")
            reply = await sender.url_verification(check)
            assert reply.status == 200
            assert "c-123" in reply.text

            payload = slack.events.callback(slack.events.message(GENERAL, ALICE, "over http"))
            assert (await sender.send_event(payload)).status == 200
            assert (await sender.send_event(payload, retry_num=1, retry_reason="http_timeout")).status == 200
            assert (await sender.send_event(payload, bad_signature=True)).status == 401
            assert (await sender.send_event(payload, stale_timestamp=True)).status == 401

            reply = await sender.send_slash_command(
                slack.events.slash_command("/beep", "list", user_id=ALICE)
            )
            assert (reply.status, reply.text) == (200, "ok list")  # Bolt acks a string as text/plain
            reply = await sender.send_interactive(slack.events.block_actions("useful", user_id=ALICE))
            assert reply.status == 200
    finally:
        await server.close()
    assert seen == [("over http", []), ("over http", ["1"])]


def test_signature_matches_slacks_documented_example() -> None:
    # The worked example from Slack's "Verifying requests from Slack" guide.
    body = (
        "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
        "&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
        "&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
        "&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    )
    assert (
        signature("8f742231b10e8888abcd99yyyzzz85a5", 1531420618, body)
        == "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    )


# ---- as a process ----------------------------------------------------------------------------------


async def test_runs_as_a_process_driven_over_http(tmp_path: Path) -> None:
    users = [
        {"id": "U1", "team_id": "T9", "name": "ann", "real_name": "Ann"},
        {"id": "U2", "team_id": "T9", "name": "ben", "real_name": "Ben"},
    ]
    (tmp_path / "users.json").write_text(json.dumps(users))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "devstack.slack_standin",
        "--port",
        "0",
        "--users",
        str(tmp_path / "users.json"),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        ready = json.loads(await asyncio.wait_for(process.stdout.readline(), 15))
        assert ready["team_id"] == "T9"
        assert ready["api_url"].endswith("/api/")
        client = AsyncWebClient(token=Workspace().bot_token, base_url=ready["api_url"])
        members = (await client.users_list())["members"]
        assert {m["id"] for m in members} == {"U1", "U2", "U0BEEPBOT"}

        async with RemoteStandin(ready["control_url"]) as remote:
            await remote.add_fault(method="chat.postMessage", error="channel_not_found", times=1)
            assert await error_of(client.chat_postMessage(channel="U1", text="x")) == "channel_not_found"
            await client.chat_postMessage(channel="U1", text="hello Ann")
            (post,) = await remote.posts(wait=1, method="chat.postMessage")
            assert (post["channel"], post["text"]) == ("D1", "hello Ann")
            assert (await remote.call_counts())["chat.postMessage"] == 2
            with pytest.raises(RuntimeError, match="no_socket_connection"):
                await remote.push_event(ev.message("C0GENERAL", "U1", "hi"), timeout=0.2)
            await remote.reset()
            assert await remote.posts() == []
    finally:
        process.terminate()
        await process.wait()
