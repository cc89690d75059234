"""The stand-in's workspace written as a Slack export, for tests and demos only.

`beepgpt import --from-slack` must build the same message table from the Web API as an admin's
export of the same workspace gives; the only honest comparison is an export of exactly what the
stand-in serves. This writes what Slack's export writes, as far as the importer reads it: the
four listings (`channels.json` public, `groups.json` private, `dms.json`, `mpims.json`), `users.json`
(as `users.list` describes each member), and one folder per conversation (its name, a DM's id)
with one file per UTC day holding every message of that day in `ts` order, thread replies
included, as Slack writes them. Like a real export it holds every public channel, whether or not
the bot is in it, and the private conversations too (the importer is what skips them).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .workspace import Channel, Message, Workspace


def _listing_entry(channel: Channel) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": channel.id,
        "created": channel.created,
        "creator": channel.creator,
        "members": list(channel.members),
    }
    if channel.is_im:
        entry["user"] = channel.user
        return entry
    entry.update(
        name=channel.name,
        is_archived=channel.is_archived,
        is_general=channel.is_general,
        topic={"value": channel.topic, "creator": "", "last_set": 0},
        purpose={"value": channel.purpose, "creator": "", "last_set": 0},
    )
    if channel.is_ext_shared:
        entry["is_ext_shared"] = True
    return entry


def _day(message: Message) -> str:
    return datetime.fromtimestamp(float(message["ts"]), UTC).strftime("%Y-%m-%d")


def write_export(workspace: Workspace, folder: Path) -> Path:
    """Write `workspace` (people, conversations, history) as an unzipped Slack export in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    listings: dict[str, list[dict[str, Any]]] = {
        "channels.json": [],
        "groups.json": [],
        "dms.json": [],
        "mpims.json": [],
    }
    for channel in sorted(workspace.channels.values(), key=lambda c: c.id):
        if channel.is_im:
            listing, name = "dms.json", channel.id
        elif channel.is_mpim:
            listing, name = "mpims.json", channel.name
        elif channel.is_private:
            listing, name = "groups.json", channel.name
        else:
            listing, name = "channels.json", channel.name
        listings[listing].append(_listing_entry(channel))
        days: dict[str, list[Message]] = {}
        for message in workspace.history.messages(channel.id):
            days.setdefault(_day(message), []).append(message)
        for day, messages in days.items():
            (folder / name).mkdir(exist_ok=True)
            (folder / name / f"{day}.json").write_text(json.dumps(messages, indent=1), encoding="utf-8")
    for listing, entries in listings.items():
        (folder / listing).write_text(json.dumps(entries, indent=1), encoding="utf-8")
    users = [u.to_api() for u in sorted(workspace.users.values(), key=lambda u: u.id)]
    (folder / "users.json").write_text(json.dumps(users, indent=1), encoding="utf-8")
    return folder
