"""The demo's people use each control once, as someone in Slack would, so the run shows them.

Before the replay two people type a command (through the stand-in's Socket Mode, to ingest):
`/beep mute #general`, and `/beep digest three times a day`. During it, people who get
real-time DMs click one of its controls each — *Snooze 1 hour*, *Mute this conversation*, *Fewer
like this* (on a topic alert) — on the DM the notifier posted (its blocks read back from the stand-in).
What each did is printed as it happens and listed in the summary; the decisions it changed show
as their own outcomes (`muted`, `down_weighted`, `snoozed`, `over_budget`) in the tally.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from beepgpt.contracts import FEWER_ACTION, MUTE_ACTION, SNOOZE_ACTIONS, Notification
from devstack.slack_standin.events import EventBuilder
from devstack.slack_standin.identity import AppIdentity
from devstack.slack_standin.remote import RemoteStandin

CLICKS: tuple[tuple[str, str], ...] = (
    (SNOOZE_ACTIONS["1h"], "Snooze 1 hour"),
    (MUTE_ACTION, "Mute this conversation"),
    (FEWER_ACTION, "Fewer like this"),
)
"""The DM buttons the demo clicks, each on a later DM than the one before: snooze first (the
replay lasts less than its hour, so what comes for that person next is `snoozed`), *Fewer like
this* on the first topic alert after (a followed topic matches again, and its bar is raised)."""

CONTROLS_SUFFIX = ":controls"
"""The block id ending of an alert's controls row (`notifier.dm.controls_block_id`)."""


def builder(info: dict[str, Any]) -> EventBuilder:
    """Events as the running stand-in would send them (its team, app, and `response_url`s)."""
    return EventBuilder(
        AppIdentity(
            team_id=str(info.get("team_id", "T0")),
            team_domain=str(info.get("team_domain", "standin")),
            api_app_id=str(info.get("app_id", "A0")),
            bot_user_id=str(info.get("bot_user_id", "U0BOT")),
            bot_id=str(info.get("bot_id", "B0")),
            hooks_url=f"{info['http_url']}hooks/",
        )
    )


@dataclass
class DemoControls:
    """Drives the controls through the stand-in; `used` is what the summary lists."""

    remote: RemoteStandin
    events: EventBuilder
    names: dict[str, str]
    used: list[str] = field(default_factory=list)
    sent: asyncio.Queue[Notification] = field(default_factory=asyncio.Queue)
    _commanded: set[str] = field(default_factory=set)

    def name(self, user: str) -> str:
        return self.names.get(user, user)

    def on_notification(self, note: Notification) -> None:
        """Tally listener: real-time DMs are what the buttons are clicked on."""
        if note.outcome == "sent" and note.dm_channel and note.dm_ts:
            self.sent.put_nowait(note)

    async def commands(self, muter: str, channel: str, scheduler: str) -> None:
        """The two typed controls, before any message is replayed."""
        for user, text in ((muter, f"mute <#{channel}|{channel.lower()}>"), (scheduler, "digest three times a day")):
            ack = await self.remote.push_slash_command(self.events.slash_command("/beep", text, user_id=user), timeout=30)
            reply = str((ack.get("payload") or {}).get("text", "")).split(". ")[0] or "(no reply)"
            self._commanded.add(user)
            self._say(f"{self.name(user)} typed `/beep {text}` → {reply}")

    async def click_first_dms(self) -> None:
        """Click each control once, in `CLICKS`' order, each on a later DM (of someone who typed
        no command; the snoozed person's DMs wait for their digest anyway)."""
        pending = list(CLICKS)
        while pending:
            note = await self.sent.get()
            if note.user in self._commanded:
                continue
            if pending[0][0] == FEWER_ACTION and note.reason != "topic":
                continue  # a topic's weight: its follower will see the raised bar on the next match
            post = await self._post(note)
            if post is None:
                continue
            action_id, label = pending.pop(0)
            row = next(
                (b for b in post.get("blocks") or [] if str(b.get("block_id", "")).endswith(CONTROLS_SUFFIX)), None
            )
            button = next((e for e in (row or {}).get("elements", []) if e.get("action_id") == action_id), None)
            if row is None or button is None:
                pending.insert(0, (action_id, label))
                continue
            message = {"type": "message", "ts": post["ts"], "text": post.get("text", ""), "blocks": post["blocks"]}
            click = self.events.block_actions(
                action_id,
                user_id=note.user,
                value=str(button["value"]),
                block_id=str(row["block_id"]),
                channel_id=note.dm_channel,
                message=message,
            )
            await self.remote.push_interactive(click, timeout=30)
            self._say(f"{self.name(note.user)} clicked “{label}” on their DM about {note.conversation_id}")

    async def _post(self, note: Notification) -> dict[str, Any] | None:
        with contextlib.suppress(Exception):
            for post in await self.remote.posts(method="chat.postMessage", channel=note.dm_channel):
                if post.get("ts") == note.dm_ts:
                    return post
        return None

    def _say(self, line: str) -> None:
        self.used.append(line)
        print(f"  ⚙ {line}", flush=True)
