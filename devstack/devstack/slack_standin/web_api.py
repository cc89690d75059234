"""Slack's Web API (`POST/GET /api/<method>`) for the methods BeepGPT calls.

Requests arrive the way slack_sdk sends them — form or JSON bodies, query strings, the token in
`Authorization: Bearer` or (form/query only, as Slack allows) a `token` argument — and answers
take Slack's shapes, errors included, so that a service passing here behaves the same on Slack.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .blocks import MAX_MESSAGE_TEXT, MAX_VIEW_BLOCKS, check_blocks, parse_json_arg
from .errors import SlackError
from .faults import Faults
from .identity import new_id, new_ts, ts_key
from .recorder import Recorder
from .workspace import Channel, Credential, TokenKind, Workspace

BOT_SCOPES = (
    "app_mentions:read,channels:history,channels:join,channels:read,chat:write,chat:write.public,"
    "commands,groups:history,groups:read,im:history,im:read,im:write,mpim:read,reactions:read,users:read"
)
MAX_LIMIT = 1000


@dataclass(frozen=True)
class Call:
    method: str
    args: dict[str, Any]
    credential: Credential


Handler = Callable[[Call], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class MethodSpec:
    handler: Handler
    token_kinds: Sequence[TokenKind]
    header_token_only: bool = False


# ---- argument helpers -------------------------------------------------------------------------


def _str(args: dict[str, Any], key: str) -> str | None:
    value = args.get(key)
    return None if value is None or value == "" else str(value)


def _required(args: dict[str, Any], key: str, error: str = "invalid_arguments") -> str:
    value = _str(args, key)
    if value is None:
        raise SlackError(error)
    return value


def _int(args: dict[str, Any], key: str, default: int, *, lo: int = 0, hi: int = MAX_LIMIT) -> int:
    value = args.get(key)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise SlackError("invalid_arguments") from None
    return max(lo, min(hi, number))


def _bool(args: dict[str, Any], key: str) -> bool:
    value = args.get(key)
    if isinstance(value, bool):
        return value
    return str(value).lower() in ("1", "true", "yes")


def _encode_cursor(prefix: str, value: str) -> str:
    return base64.b64encode(f"{prefix}:{value}".encode()).decode()


def _decode_cursor(cursor: str | None, prefix: str) -> str | None:
    if not cursor:
        return None
    try:
        kind, _, value = base64.b64decode(cursor, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise SlackError("invalid_cursor") from None
    if kind != prefix or not value:
        raise SlackError("invalid_cursor")
    return value


def _page(
    items: list[Any], key: Callable[[Any], str], cursor: str | None, prefix: str, limit: int
) -> tuple[list[Any], str]:
    """One page of `items` starting at the cursor's item; the next cursor names the next item."""
    start = 0
    position = _decode_cursor(cursor, prefix)
    if position is not None:
        start = next((i for i, item in enumerate(items) if key(item) == position), -1)
        if start < 0:
            raise SlackError("invalid_cursor")
    end = len(items) if limit <= 0 else start + limit
    page = items[start:end]
    next_cursor = _encode_cursor(prefix, key(items[end])) if end < len(items) else ""
    return page, next_cursor


async def read_args(request: web.Request) -> tuple[dict[str, Any], str | None, bool]:
    """Query string plus body; returns (args, bearer token, whether the body was JSON)."""
    args: dict[str, Any] = dict(request.query)
    is_json = False
    if request.can_read_body:
        if request.content_type == "application/json":
            is_json = True
            try:
                body = await request.json()
            except ValueError:
                raise SlackError("invalid_json") from None
            if not isinstance(body, dict):
                raise SlackError("invalid_json")
            args.update(body)
        elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            args.update({k: v for k, v in form.items() if isinstance(v, str)})
    header = request.headers.get("Authorization", "")
    bearer = header[7:].strip() if header.lower().startswith("bearer ") else None
    return args, bearer or None, is_json


# ---- the API ----------------------------------------------------------------------------------


class WebApi:
    """Dispatches `/api/<method>` to handlers after faults and authentication, recording each call."""

    def __init__(
        self, workspace: Workspace, faults: Faults, recorder: Recorder, socket_url: Callable[[], str]
    ) -> None:
        self.workspace = workspace
        self.faults = faults
        self.recorder = recorder
        self._socket_url = socket_url
        # The bot token's scopes (`X-OAuth-Scopes`); a test removes one to see a method refused
        # with `missing_scope`, as Slack refuses an app installed without it.
        self.bot_scopes: set[str] = set(BOT_SCOPES.split(","))
        bot: Sequence[TokenKind] = ("bot", "user")
        self.methods: dict[str, MethodSpec] = {
            "api.test": MethodSpec(self.api_test, ("bot", "user", "app")),
            "auth.test": MethodSpec(self.auth_test, bot),
            "chat.postMessage": MethodSpec(self.chat_post_message, bot),
            "chat.postEphemeral": MethodSpec(self.chat_post_ephemeral, bot),
            "chat.update": MethodSpec(self.chat_update, bot),
            "chat.getPermalink": MethodSpec(self.chat_get_permalink, bot),
            "conversations.open": MethodSpec(self.conversations_open, bot),
            "conversations.list": MethodSpec(self.conversations_list, bot),
            "conversations.info": MethodSpec(self.conversations_info, bot),
            "conversations.join": MethodSpec(self.conversations_join, bot),
            "conversations.members": MethodSpec(self.conversations_members, bot),
            "conversations.history": MethodSpec(self.conversations_history, bot),
            "conversations.replies": MethodSpec(self.conversations_replies, bot),
            "users.info": MethodSpec(self.users_info, bot),
            "users.list": MethodSpec(self.users_list, bot),
            "views.publish": MethodSpec(self.views_publish, bot),
            "apps.connections.open": MethodSpec(self.apps_connections_open, ("app",), header_token_only=True),
        }

    async def handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        await self.recorder.count_attempt(method)
        args: dict[str, Any] = {}
        fault_id: int | None = None
        headers = {"X-Slack-Req-Id": secrets.token_hex(16)}
        status = 200
        try:
            args, bearer, is_json = await read_args(request)
            fault = self.faults.take(method, args)
            if fault is not None:
                fault_id = fault.id
                if fault.delay > 0:
                    await asyncio.sleep(fault.delay)  # the injected slowness itself, not a wait
                if fault.fails:
                    status, body, extra = fault.response()
                    headers.update(extra)
                    await self.recorder.record_call(method, args, status, body, fault_id)
                    return web.json_response(body, status=status, headers=headers)
            spec = self.methods.get(method)
            if spec is None:
                raise SlackError("unknown_method", req_method=method)
            body_token = None if is_json or spec.header_token_only else _str(args, "token")
            credential = self.workspace.authenticate(bearer or body_token)
            if credential.kind not in spec.token_kinds:
                raise SlackError("not_allowed_token_type")
            if credential.kind == "bot":
                headers["X-OAuth-Scopes"] = ",".join(sorted(self.bot_scopes))
            body = {"ok": True, **await spec.handler(Call(method, args, credential))}
        except SlackError as e:
            body = e.body()
        await self.recorder.record_call(method, args, status, body, fault_id)
        return web.json_response(body, status=status, headers=headers)

    # ---- methods ----------------------------------------------------------------------------

    async def api_test(self, call: Call) -> dict[str, Any]:
        return {"args": {k: v for k, v in call.args.items() if k != "token"}}

    async def auth_test(self, call: Call) -> dict[str, Any]:
        ws = self.workspace
        user = ws.user(call.credential.user_id)
        body: dict[str, Any] = {
            "url": ws.url,
            "team": ws.team_name,
            "user": user.name,
            "team_id": ws.team_id,
            "user_id": user.id,
            "is_enterprise_install": False,
        }
        if call.credential.kind == "bot":
            body["bot_id"] = ws.bot_id
        return body

    def _message_content(
        self, args: dict[str, Any], *, required: bool = True
    ) -> tuple[str, list[dict[str, Any]] | None]:
        text = _str(args, "text") or ""
        blocks: list[dict[str, Any]] | None = None
        if args.get("blocks") not in (None, ""):
            blocks = parse_json_arg(args["blocks"], "invalid_blocks_format")
            check_blocks(blocks)
        if required and not text and not blocks and not args.get("attachments"):
            raise SlackError("no_text")
        if len(text) > MAX_MESSAGE_TEXT:
            raise SlackError("msg_too_long")
        return text, blocks

    def _bot_message(self, text: str, blocks: list[dict[str, Any]] | None, ts: str) -> dict[str, Any]:
        ws = self.workspace
        message: dict[str, Any] = {
            "type": "message",
            "user": ws.bot_user_id,
            "bot_id": ws.bot_id,
            "app_id": ws.app_id,
            "text": text,
            "ts": ts,
            "team": ws.team_id,
            "bot_profile": {
                "id": ws.bot_id,
                "app_id": ws.app_id,
                "name": ws.users[ws.bot_user_id].name,
                "team_id": ws.team_id,
                "deleted": False,
            },
        }
        if blocks is not None:
            message["blocks"] = blocks
        return message

    def _writable(self, channel: Channel) -> None:
        if channel.is_archived:
            raise SlackError("is_archived")
        if channel.is_private and not channel.is_im and self.workspace.bot_user_id not in channel.members:
            raise SlackError("not_in_channel")

    async def chat_post_message(self, call: Call) -> dict[str, Any]:
        args = call.args
        channel = self.workspace.channel(_str(args, "channel"))
        self._writable(channel)
        text, blocks = self._message_content(args)
        ts = new_ts()
        message = self._bot_message(text, blocks, ts)
        thread_ts = _str(args, "thread_ts")
        if thread_ts:
            message["thread_ts"] = thread_ts
            if _bool(args, "reply_broadcast"):
                message["subtype"] = "thread_broadcast"
        if isinstance(args.get("metadata"), dict):
            message["metadata"] = args["metadata"]
        self.workspace.history.add(channel.id, message)
        await self.recorder.record_post(
            method=call.method,
            channel=channel.id,
            ts=ts,
            text=text,
            blocks=blocks,
            thread_ts=thread_ts,
            args=_public(args),
        )
        return {"channel": channel.id, "ts": ts, "message": message}

    async def chat_post_ephemeral(self, call: Call) -> dict[str, Any]:
        args = call.args
        channel = self.workspace.channel(_str(args, "channel"))
        user = self.workspace.user(_str(args, "user"))
        if not channel.is_im and user.id not in channel.members:
            raise SlackError("user_not_in_channel")
        text, blocks = self._message_content(args)
        ts = new_ts()
        await self.recorder.record_post(
            method=call.method,
            channel=channel.id,
            ts=ts,
            text=text,
            blocks=blocks,
            thread_ts=_str(args, "thread_ts"),
            user=user.id,
            args=_public(args),
        )
        return {"message_ts": ts}

    async def chat_update(self, call: Call) -> dict[str, Any]:
        args = call.args
        ws = self.workspace
        channel = ws.channel(_str(args, "channel"))
        ts = _required(args, "ts", "message_not_found")
        message = ws.history.get(channel.id, ts)
        if message is None:
            raise SlackError("message_not_found")
        if message.get("bot_id") != ws.bot_id:
            raise SlackError("cant_update_message")
        text, blocks = self._message_content(args, required=False)
        changes: dict[str, Any] = {"edited": {"user": ws.bot_user_id, "ts": new_ts()}}
        if "text" in args:
            changes["text"] = text
        if blocks is not None:
            changes["blocks"] = blocks
        updated = ws.history.update(channel.id, ts, changes) or message
        await self.recorder.record_post(
            method=call.method,
            channel=channel.id,
            ts=ts,
            text=updated.get("text", ""),
            blocks=updated.get("blocks"),
            thread_ts=updated.get("thread_ts"),
            args=_public(args),
        )
        return {
            "channel": channel.id,
            "ts": ts,
            "text": updated.get("text", ""),
            "message": copy.deepcopy(updated),
        }

    async def chat_get_permalink(self, call: Call) -> dict[str, Any]:
        # Lenient on purpose: any ts in a known channel gets a link, because services link to
        # messages that reached them as events the stand-in may not have stored.
        channel = self.workspace.channel(_str(call.args, "channel"))
        ts = _required(call.args, "message_ts", "message_not_found")
        return {"channel": channel.id, "permalink": self.workspace.permalink(channel, ts)}

    async def conversations_open(self, call: Call) -> dict[str, Any]:
        args = call.args
        ws = self.workspace
        existing_ref = _str(args, "channel")
        if existing_ref:
            channel, already = ws.channel(existing_ref), True
        else:
            users = [u.strip() for u in (_str(args, "users") or "").split(",") if u.strip()]
            if not users:
                raise SlackError("users_list_not_supplied")
            if len(users) > 8:
                raise SlackError("too_many_users")
            others = [u for u in users if u != ws.bot_user_id]
            if len(others) == 1 and len(users) <= 2:
                channel, already = ws.open_im(others[0])
            else:
                channel, already = ws.open_mpim(users)
        body: dict[str, Any] = {"channel": channel.to_api(ws.bot_user_id)}
        if not _bool(args, "return_im") and channel.is_im:
            body["channel"] = {"id": channel.id}
        if already:
            body.update(no_op=True, already_open=True)
        return body

    async def conversations_list(self, call: Call) -> dict[str, Any]:
        args = call.args
        kinds = {t.strip() for t in (_str(args, "types") or "public_channel").split(",") if t.strip()}
        unknown = kinds - {"public_channel", "private_channel", "mpim", "im"}
        if unknown:
            raise SlackError("invalid_types")
        exclude_archived = _bool(args, "exclude_archived")
        channels = sorted(
            (
                c
                for c in self.workspace.channels.values()
                if c.kind in kinds
                and not (exclude_archived and c.is_archived)
                and (c.kind == "public_channel" or self.workspace.bot_user_id in c.members)
            ),
            key=lambda c: (c.name or "~", c.id),
        )
        page, next_cursor = _page(
            channels, lambda c: c.id, _str(args, "cursor"), "team", _int(args, "limit", 100, lo=1)
        )
        bot = self.workspace.bot_user_id
        return {"channels": [c.to_api(bot) for c in page], "response_metadata": {"next_cursor": next_cursor}}

    def _visible(self, call: Call) -> Channel:
        """The conversation named by `channel`, if the caller may see it: a private one the
        caller is not in is `channel_not_found`, as on Slack."""
        channel = self.workspace.channel(_str(call.args, "channel"))
        if not channel.visible_to(call.credential.user_id):
            raise SlackError("channel_not_found")
        return channel

    async def conversations_info(self, call: Call) -> dict[str, Any]:
        channel = self._visible(call)
        return {"channel": channel.to_api(self.workspace.bot_user_id)}

    async def conversations_members(self, call: Call) -> dict[str, Any]:
        channel = self._visible(call)
        members = [m for m in channel.members if m in self.workspace.users]
        limit = _int(call.args, "limit", 100, lo=1)
        page, next_cursor = _page(members, lambda m: m, _str(call.args, "cursor"), "member", limit)
        return {"members": page, "response_metadata": {"next_cursor": next_cursor}}

    async def conversations_join(self, call: Call) -> dict[str, Any]:
        """Join a public channel (`channels:join`). Slack answers `already_in_channel` as a warning
        of a successful call; private channels and DMs cannot be joined, only invited to."""
        if call.credential.kind == "bot" and "channels:join" not in self.bot_scopes:
            raise SlackError(
                "missing_scope", needed="channels:join", provided=",".join(sorted(self.bot_scopes))
            )
        channel = self.workspace.channel(_str(call.args, "channel"))
        if channel.is_private:
            raise SlackError("method_not_supported_for_channel_type")
        if channel.is_archived:
            raise SlackError("is_archived")
        user = call.credential.user_id
        body: dict[str, Any] = {}
        if user in channel.members:
            body = {
                "warning": "already_in_channel",
                "response_metadata": {"warnings": ["already_in_channel"]},
            }
        else:
            channel.members.append(user)
        return {"channel": channel.to_api(user), **body}

    def _readable(self, call: Call) -> Channel:
        channel = self.workspace.channel(_str(call.args, "channel"))
        if self.workspace.bot_user_id not in channel.members:
            raise SlackError("not_in_channel")
        return channel

    @staticmethod
    def _in_window(messages: list[dict[str, Any]], args: dict[str, Any]) -> list[dict[str, Any]]:
        oldest = ts_key(_str(args, "oldest") or "0")
        latest = ts_key(_str(args, "latest") or "9999999999.999999")
        inclusive = _bool(args, "inclusive")

        def inside(m: dict[str, Any]) -> bool:
            key = ts_key(m["ts"])
            return oldest <= key <= latest if inclusive else oldest < key < latest

        return [m for m in messages if inside(m)]

    async def conversations_history(self, call: Call) -> dict[str, Any]:
        channel = self._readable(call)
        messages = self._in_window(list(reversed(self.workspace.history.top_level(channel.id))), call.args)
        limit = _int(call.args, "limit", 100, lo=1, hi=999)
        page, next_cursor = _page(messages, lambda m: m["ts"], _str(call.args, "cursor"), "next_ts", limit)
        return {
            "messages": copy.deepcopy(page),
            "has_more": bool(next_cursor),
            "pin_count": 0,
            "channel_actions_ts": None,
            "channel_actions_count": 0,
            "response_metadata": {"next_cursor": next_cursor},
        }

    async def conversations_replies(self, call: Call) -> dict[str, Any]:
        channel = self._readable(call)
        ts = _required(call.args, "ts", "thread_not_found")
        thread = self.workspace.history.thread(channel.id, ts)
        if not thread:
            raise SlackError("thread_not_found")
        parent, replies = thread[0], self._in_window(thread[1:], call.args)
        messages = [parent, *replies] if parent["ts"] == ts else replies
        limit = _int(call.args, "limit", 1000, lo=1)
        page, next_cursor = _page(messages, lambda m: m["ts"], _str(call.args, "cursor"), "next_ts", limit)
        return {
            "messages": copy.deepcopy(page),
            "has_more": bool(next_cursor),
            "response_metadata": {"next_cursor": next_cursor},
        }

    async def users_info(self, call: Call) -> dict[str, Any]:
        return {"user": self.workspace.user(_str(call.args, "user")).to_api()}

    async def users_list(self, call: Call) -> dict[str, Any]:
        users = sorted(self.workspace.users.values(), key=lambda u: u.id)
        page, next_cursor = _page(
            users, lambda u: u.id, _str(call.args, "cursor"), "user", _int(call.args, "limit", 0)
        )
        return {
            "members": [u.to_api() for u in page],
            "cache_ts": int(time.time()),
            "response_metadata": {"next_cursor": next_cursor},
        }

    async def views_publish(self, call: Call) -> dict[str, Any]:
        args = call.args
        ws = self.workspace
        user = ws.user(_str(args, "user_id"))
        view = parse_json_arg(args.get("view"), "invalid_arguments")
        if not isinstance(view, dict) or view.get("type") != "home":
            raise SlackError(
                "invalid_arguments", response_metadata={"messages": ["[ERROR] view type must be home"]}
            )
        blocks = view.get("blocks", [])
        check_blocks(blocks, limit=MAX_VIEW_BLOCKS, pointer="/view/blocks")
        previous = ws.home_views.get(user.id)
        expected_hash = _str(args, "hash")
        if expected_hash and previous is not None and expected_hash != previous["hash"]:
            raise SlackError("hash_conflict")
        published: dict[str, Any] = {
            "id": previous["id"] if previous else new_id("V"),
            "team_id": ws.team_id,
            "type": "home",
            "blocks": blocks,
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "external_id": view.get("external_id", ""),
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{secrets.token_hex(8)}",
            "title": {"type": "plain_text", "text": "View Title", "emoji": True},
            "clear_on_close": False,
            "notify_on_close": False,
            "close": None,
            "submit": None,
            "previous_view_id": None,
            "root_view_id": previous["id"] if previous else None,
            "app_id": ws.app_id,
            "app_installed_team_id": ws.team_id,
            "bot_id": ws.bot_id,
        }
        if published["root_view_id"] is None:
            published["root_view_id"] = published["id"]
        ws.home_views[user.id] = published
        await self.recorder.record_post(
            method=call.method,
            channel=None,
            ts=None,
            text="",
            blocks=blocks,
            user=user.id,
            view=copy.deepcopy(published),
            args=_public(args),
        )
        return {"view": copy.deepcopy(published)}

    async def apps_connections_open(self, call: Call) -> dict[str, Any]:
        return {"url": self._socket_url()}


def _public(args: dict[str, Any]) -> dict[str, Any]:
    """Arguments as recorded: parsed JSON where Slack accepts JSON strings, never the token."""
    public = {k: v for k, v in args.items() if k != "token"}
    for key in ("blocks", "view", "attachments", "metadata"):
        if isinstance(public.get(key), str):
            with contextlib.suppress(SlackError):
                public[key] = parse_json_arg(public[key], "invalid_arguments")
    return public
