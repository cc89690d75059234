"""Realistic Slack payloads, built one way for every test in the project.

Shapes follow what Slack delivers (Events API `event_callback` envelopes with `authorizations`,
message subtypes with their `hidden`/`previous_message` quirks, slash command forms, block_actions
payloads), so that a normalizer tested against these meets no surprise on Slack. Builders return
plain dicts; bind an `EventBuilder` to a workspace's identity, or use the module-level functions
for the stand-in's default workspace.

    ev = EventBuilder()
    root = ev.message("C0GENERAL", "U0ALICE", "shall we move to Kafka?")
    reply = ev.message("C0GENERAL", "U0BOB", "yes", thread_ts=root["ts"])
    payload = ev.callback(reply)  # the Events API envelope
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from .identity import AppIdentity, new_event_id, new_trigger_id, new_ts

Event = dict[str, Any]


def channel_type(channel: str) -> str:
    """Slack's `channel_type` from the id prefix (C: channel, G: private/mpim, D: DM)."""
    return {"D": "im", "G": "group"}.get(channel[:1], "channel")


def rich_text(text: str) -> list[dict[str, Any]]:
    """The `blocks` Slack attaches to a message typed in the client."""
    return [
        {
            "type": "rich_text",
            "block_id": uuid.uuid4().hex[:5],
            "elements": [{"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}],
        }
    ]


class EventBuilder:
    def __init__(self, identity: AppIdentity | None = None) -> None:
        self.identity = identity or AppIdentity()

    # ---- envelopes --------------------------------------------------------------------------

    def callback(
        self, event: Event, *, event_id: str | None = None, event_time: int | None = None, **extra: Any
    ) -> Event:
        """The Events API `event_callback` envelope around one event."""
        ident = self.identity
        ts = event.get("event_ts") or event.get("ts")
        return {
            "token": ident.verification_token,
            "team_id": ident.team_id,
            "context_team_id": ident.team_id,
            "context_enterprise_id": None,
            "api_app_id": ident.api_app_id,
            "event": event,
            "type": "event_callback",
            "event_id": event_id or new_event_id(),
            "event_time": event_time if event_time is not None else int(float(ts) if ts else time.time()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": ident.team_id,
                    "user_id": ident.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
            "event_context": "4-" + uuid.uuid4().hex,
            **extra,
        }

    def url_verification(self, challenge: str | None = None) -> Event:
        return {
            "token": self.identity.verification_token,
            "challenge": challenge or uuid.uuid4().hex,
            "type": "url_verification",
        }

    # ---- message events ------------------------------------------------------------------------

    def message(
        self,
        channel: str,
        user: str,
        text: str,
        *,
        ts: str | None = None,
        thread_ts: str | None = None,
        parent_user_id: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
        **extra: Any,
    ) -> Event:
        """A message typed by a person; with `thread_ts` a thread reply."""
        ts = ts or new_ts()
        event: Event = {
            "client_msg_id": str(uuid.uuid4()),
            "type": "message",
            "text": text,
            "user": user,
            "ts": ts,
            "blocks": blocks if blocks is not None else rich_text(text),
            "team": self.identity.team_id,
        }
        if thread_ts and thread_ts != ts:
            event["thread_ts"] = thread_ts
            if parent_user_id:
                event["parent_user_id"] = parent_user_id
        event.update(channel=channel, event_ts=ts, channel_type=channel_type(channel), **extra)
        return event

    def thread_reply(self, channel: str, user: str, text: str, thread_ts: str, **kwargs: Any) -> Event:
        return self.message(channel, user, text, thread_ts=thread_ts, **kwargs)

    def thread_broadcast(
        self,
        channel: str,
        user: str,
        text: str,
        thread_ts: str,
        *,
        ts: str | None = None,
        root: Event | None = None,
    ) -> Event:
        """A thread reply also sent to the channel ("Also send to #channel")."""
        event = self.message(channel, user, text, ts=ts, thread_ts=thread_ts)
        event.pop("client_msg_id", None)
        event["subtype"] = "thread_broadcast"
        event["root"] = root or {
            "type": "message",
            "ts": thread_ts,
            "thread_ts": thread_ts,
            "user": "",
            "text": "",
            "reply_count": 1,
        }
        return event

    def message_changed(
        self,
        channel: str,
        ts: str,
        text: str,
        *,
        user: str,
        previous_text: str = "",
        thread_ts: str | None = None,
        edit_ts: str | None = None,
    ) -> Event:
        """An edit: the event's own `ts` is new; `message.ts` is the edited message's."""
        event_ts = edit_ts or new_ts()
        original: Event = {
            "type": "message",
            "text": previous_text,
            "user": user,
            "ts": ts,
            "team": self.identity.team_id,
        }
        edited: Event = {
            **original,
            "text": text,
            "blocks": rich_text(text),
            "edited": {"user": user, "ts": event_ts},
        }
        if thread_ts and thread_ts != ts:
            original["thread_ts"] = edited["thread_ts"] = thread_ts
        return {
            "type": "message",
            "subtype": "message_changed",
            "message": edited,
            "previous_message": original,
            "channel": channel,
            "hidden": True,
            "ts": event_ts,
            "event_ts": event_ts,
            "channel_type": channel_type(channel),
        }

    def message_deleted(
        self,
        channel: str,
        deleted_ts: str,
        *,
        user: str | None = None,
        previous_text: str = "",
        thread_ts: str | None = None,
        ts: str | None = None,
    ) -> Event:
        event_ts = ts or new_ts()
        previous: Event = {"type": "message", "text": previous_text, "ts": deleted_ts}
        if user:
            previous["user"] = user
        if thread_ts and thread_ts != deleted_ts:
            previous["thread_ts"] = thread_ts
        return {
            "type": "message",
            "subtype": "message_deleted",
            "previous_message": previous,
            "channel": channel,
            "hidden": True,
            "deleted_ts": deleted_ts,
            "ts": event_ts,
            "event_ts": event_ts,
            "channel_type": channel_type(channel),
        }

    def bot_message(
        self,
        channel: str,
        text: str,
        *,
        bot_id: str = "B0OTHERBOT",
        username: str = "deploy-bot",
        ts: str | None = None,
    ) -> Event:
        """A message from an integration (not a person): never part of a conversation."""
        ts = ts or new_ts()
        return {
            "type": "message",
            "subtype": "bot_message",
            "text": text,
            "ts": ts,
            "username": username,
            "bot_id": bot_id,
            "channel": channel,
            "event_ts": ts,
            "channel_type": channel_type(channel),
        }

    def channel_join(
        self, channel: str, user: str, *, ts: str | None = None, inviter: str | None = None
    ) -> Event:
        ts = ts or new_ts()
        event: Event = {
            "type": "message",
            "subtype": "channel_join",
            "ts": ts,
            "user": user,
            "text": f"<@{user}> has joined the channel",
            "channel": channel,
            "event_ts": ts,
            "channel_type": channel_type(channel),
        }
        if inviter:
            event["inviter"] = inviter
        return event

    # ---- other events ----------------------------------------------------------------------------

    def reaction_added(
        self,
        user: str,
        reaction: str,
        channel: str,
        message_ts: str,
        *,
        item_user: str | None = None,
        event_ts: str | None = None,
    ) -> Event:
        event: Event = {
            "type": "reaction_added",
            "user": user,
            "reaction": reaction,
            "item": {"type": "message", "channel": channel, "ts": message_ts},
            "event_ts": event_ts or new_ts(),
        }
        if item_user:
            event["item_user"] = item_user
        return event

    def reaction_removed(
        self, user: str, reaction: str, channel: str, message_ts: str, **kwargs: Any
    ) -> Event:
        event = self.reaction_added(user, reaction, channel, message_ts, **kwargs)
        event["type"] = "reaction_removed"
        return event

    def app_home_opened(
        self, user: str, *, tab: str = "home", channel: str | None = None, view: dict[str, Any] | None = None
    ) -> Event:
        event: Event = {
            "type": "app_home_opened",
            "user": user,
            "channel": channel or "D" + user[1:],
            "tab": tab,
            "event_ts": new_ts(),
        }
        if view is not None:
            event["view"] = view
        return event

    # ---- interactivity --------------------------------------------------------------------------

    def _response_url(self, kind: str) -> str:
        return f"{self.identity.hooks_url}{kind}/{self.identity.team_id}/{uuid.uuid4().int % 10**13}/{uuid.uuid4().hex}"

    def slash_command(
        self,
        command: str,
        text: str = "",
        *,
        user_id: str,
        channel_id: str = "C0GENERAL",
        user_name: str | None = None,
        channel_name: str | None = None,
    ) -> dict[str, str]:
        """The form Slack posts for a slash command (all values are strings)."""
        ident = self.identity
        return {
            "token": ident.verification_token,
            "team_id": ident.team_id,
            "team_domain": ident.team_domain,
            "channel_id": channel_id,
            "channel_name": channel_name
            or ("directmessage" if channel_id.startswith("D") else channel_id.lower()),
            "user_id": user_id,
            "user_name": user_name or user_id.lower(),
            "command": command,
            "text": text,
            "api_app_id": ident.api_app_id,
            "is_enterprise_install": "false",
            "response_url": self._response_url("commands"),
            "trigger_id": new_trigger_id(),
        }

    def block_actions(
        self,
        action_id: str,
        *,
        user_id: str,
        value: str | None = None,
        block_id: str = "actions",
        channel_id: str | None = None,
        message: dict[str, Any] | None = None,
        text: str = "Button",
        action_type: str = "button",
        container_type: str = "message",
    ) -> Event:
        """A click on a button in a message (or, with `container_type="view"`, in App Home)."""
        ident = self.identity
        action_ts = new_ts()
        action: dict[str, Any] = {
            "action_id": action_id,
            "block_id": block_id,
            "text": {"type": "plain_text", "text": text, "emoji": True},
            "type": action_type,
            "action_ts": action_ts,
        }
        if value is not None:
            action["value"] = value
        payload: Event = {
            "type": "block_actions",
            "user": {
                "id": user_id,
                "username": user_id.lower(),
                "name": user_id.lower(),
                "team_id": ident.team_id,
            },
            "api_app_id": ident.api_app_id,
            "token": ident.verification_token,
            "trigger_id": new_trigger_id(),
            "team": {"id": ident.team_id, "domain": ident.team_domain},
            "enterprise": None,
            "is_enterprise_install": False,
            "state": {"values": {}},
            "actions": [action],
        }
        if container_type == "message":
            channel = channel_id or "D" + user_id[1:]
            msg = message or {
                "type": "message",
                "user": ident.bot_user_id,
                "bot_id": ident.bot_id,
                "ts": new_ts(),
                "text": "",
            }
            payload["container"] = {
                "type": "message",
                "message_ts": msg["ts"],
                "channel_id": channel,
                "is_ephemeral": False,
            }
            payload["channel"] = {
                "id": channel,
                "name": "directmessage" if channel.startswith("D") else channel,
            }
            payload["message"] = msg
            payload["response_url"] = self._response_url("actions")
        else:
            payload["container"] = {"type": "view", "view_id": "V0HOMEVIEW"}
            payload["view"] = {"id": "V0HOMEVIEW", "type": "home", "team_id": ident.team_id, "blocks": []}
        return payload


_default = EventBuilder()

# Module-level builders for the default workspace.
callback = _default.callback
url_verification = _default.url_verification
message = _default.message
thread_reply = _default.thread_reply
thread_broadcast = _default.thread_broadcast
message_changed = _default.message_changed
message_deleted = _default.message_deleted
bot_message = _default.bot_message
channel_join = _default.channel_join
reaction_added = _default.reaction_added
reaction_removed = _default.reaction_removed
app_home_opened = _default.app_home_opened
slash_command = _default.slash_command
block_actions = _default.block_actions
