"""The workspace the stand-in serves: team, people, channels, DMs, messages and tokens.

It loads from the same files a Slack export holds (`users.json`, `channels.json`, one folder per
channel) so that a demo replaying an export and the Web API answering the services agree on who
and where everyone is. Everything the Web API reads or writes lives here and nowhere else.
"""

from __future__ import annotations

import bisect
import copy
import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import SlackError
from .identity import (
    DEFAULT_APP_ID,
    DEFAULT_APP_TOKEN,
    DEFAULT_BOT_ID,
    DEFAULT_BOT_NAME,
    DEFAULT_BOT_TOKEN,
    DEFAULT_BOT_USER_ID,
    DEFAULT_SIGNING_SECRET,
    DEFAULT_TEAM_DOMAIN,
    DEFAULT_TEAM_ID,
    DEFAULT_TEAM_NAME,
    DEFAULT_VERIFICATION_TOKEN,
    AppIdentity,
    ts_key,
)

TokenKind = Literal["bot", "app", "user"]

Message = dict[str, Any]


@dataclass
class User:
    """A member as `users.info` describes them; unknown export fields are kept and echoed back."""

    id: str
    name: str
    real_name: str = ""
    team_id: str = DEFAULT_TEAM_ID
    is_bot: bool = False
    deleted: bool = False
    # Guests: a multi-channel guest is `is_restricted`, a single-channel guest both flags.
    is_restricted: bool = False
    is_ultra_restricted: bool = False
    bot_id: str | None = None
    app_id: str | None = None
    tz: str = "Etc/UTC"
    email: str | None = None
    updated: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_export(cls, raw: Mapping[str, Any], team_id: str) -> User:
        profile = raw.get("profile") or {}
        known = {
            "id",
            "name",
            "real_name",
            "team_id",
            "is_bot",
            "deleted",
            "is_restricted",
            "is_ultra_restricted",
            "tz",
            "updated",
            "profile",
        }
        return cls(
            id=str(raw["id"]),
            name=str(raw.get("name") or raw["id"]).lower(),
            real_name=str(raw.get("real_name") or profile.get("real_name") or raw.get("name") or ""),
            team_id=str(raw.get("team_id") or team_id),
            is_bot=bool(raw.get("is_bot", False)),
            deleted=bool(raw.get("deleted", False)),
            is_restricted=bool(raw.get("is_restricted", False)),
            is_ultra_restricted=bool(raw.get("is_ultra_restricted", False)),
            bot_id=profile.get("bot_id"),
            app_id=profile.get("api_app_id"),
            tz=str(raw.get("tz") or "Etc/UTC"),
            email=profile.get("email"),
            updated=int(raw.get("updated") or 0),
            extra={k: v for k, v in raw.items() if k not in known},
        )

    def to_api(self) -> dict[str, Any]:
        profile: dict[str, Any] = {
            "real_name": self.real_name,
            "real_name_normalized": self.real_name,
            "display_name": self.name,
            "display_name_normalized": self.name,
            "team": self.team_id,
            "image_48": f"https://avatars.invalid/{self.id}_48.png",
            "image_72": f"https://avatars.invalid/{self.id}_72.png",
        }
        if self.email:
            profile["email"] = self.email
        if self.bot_id:
            profile["bot_id"] = self.bot_id
            profile["api_app_id"] = self.app_id or ""
            profile["always_active"] = True
        return {
            **self.extra,
            "id": self.id,
            "team_id": self.team_id,
            "name": self.name,
            "deleted": self.deleted,
            "real_name": self.real_name,
            "tz": self.tz,
            "tz_label": "Coordinated Universal Time",
            "tz_offset": 0,
            "profile": profile,
            "is_admin": False,
            "is_owner": False,
            "is_primary_owner": False,
            "is_restricted": self.is_restricted,
            "is_ultra_restricted": self.is_ultra_restricted,
            "is_bot": self.is_bot,
            "is_app_user": False,
            "updated": self.updated,
        }


@dataclass
class Channel:
    """A conversation: public/private channel, DM (`D...`) or group DM."""

    id: str
    name: str = ""
    created: int = 0
    creator: str = ""
    is_private: bool = False
    is_archived: bool = False
    is_general: bool = False
    is_im: bool = False
    is_mpim: bool = False
    is_ext_shared: bool = False  # a Slack Connect channel, shared with another organization
    user: str | None = None  # the other party of a DM
    members: list[str] = field(default_factory=list)
    topic: str = ""
    purpose: str = ""

    @classmethod
    def from_export(cls, raw: Mapping[str, Any]) -> Channel:
        return cls(
            id=str(raw["id"]),
            name=str(raw.get("name") or raw["id"]),
            created=int(raw.get("created") or 0),
            creator=str(raw.get("creator") or ""),
            is_private=bool(raw.get("is_private", False)),
            is_archived=bool(raw.get("is_archived", False)),
            is_general=bool(raw.get("is_general", False)),
            is_ext_shared=bool(raw.get("is_ext_shared", False)),
            members=[str(m) for m in raw.get("members") or []],
            topic=str((raw.get("topic") or {}).get("value", "")),
            purpose=str((raw.get("purpose") or {}).get("value", "")),
        )

    @property
    def kind(self) -> str:
        """The `types` value of conversations.list this channel answers to."""
        if self.is_im:
            return "im"
        if self.is_mpim:
            return "mpim"
        return "private_channel" if self.is_private else "public_channel"

    def visible_to(self, user_id: str) -> bool:
        """Whether `user_id` may see this conversation at all: anyone sees a public channel,
        only its members a private one, a DM or a group DM (Slack answers `channel_not_found`)."""
        return not self.is_private or user_id in self.members

    @property
    def channel_type(self) -> str:
        """The `channel_type` field of message events."""
        return {"im": "im", "mpim": "mpim", "private_channel": "group"}.get(self.kind, "channel")

    def to_api(self, viewer: str | None = None) -> dict[str, Any]:
        if self.is_im:
            return {
                "id": self.id,
                "created": self.created,
                "is_im": True,
                "is_org_shared": False,
                "user": self.user,
                "is_user_deleted": False,
                "priority": 0,
            }
        return {
            "id": self.id,
            "name": self.name,
            "name_normalized": self.name,
            "is_channel": not self.is_private and not self.is_mpim,
            "is_group": self.is_private and not self.is_mpim,
            "is_im": False,
            "is_mpim": self.is_mpim,
            "is_private": self.is_private,
            "created": self.created,
            "is_archived": self.is_archived,
            "is_general": self.is_general,
            "unlinked": 0,
            "is_shared": self.is_ext_shared,
            "is_ext_shared": self.is_ext_shared,
            "is_org_shared": False,
            "is_pending_ext_shared": False,
            "creator": self.creator,
            "is_member": viewer in self.members if viewer else False,
            "topic": {"value": self.topic, "creator": "", "last_set": 0},
            "purpose": {"value": self.purpose, "creator": "", "last_set": 0},
            "num_members": len(self.members),
        }


@dataclass(frozen=True)
class Credential:
    """What a token stands for. The token itself is never logged or returned by control endpoints."""

    kind: TokenKind
    user_id: str


class History:
    """Messages per channel, ordered by `ts`, with Slack's thread bookkeeping on parents."""

    def __init__(self) -> None:
        self._by_channel: dict[str, list[Message]] = {}

    def _messages(self, channel: str) -> list[Message]:
        return self._by_channel.setdefault(channel, [])

    def _index(self, channel: str, ts: str) -> int | None:
        messages = self._messages(channel)
        i = bisect.bisect_left(messages, ts_key(ts), key=lambda m: ts_key(m["ts"]))
        if i < len(messages) and messages[i]["ts"] == ts:
            return i
        return None

    def get(self, channel: str, ts: str) -> Message | None:
        i = self._index(channel, ts)
        return None if i is None else self._by_channel[channel][i]

    def add(self, channel: str, message: Message) -> Message:
        """Store a message; storing the same `ts` again replaces it (Slack retries are harmless)."""
        stored = copy.deepcopy(message)
        stored.pop("channel", None)
        stored.pop("event_ts", None)
        stored.pop("channel_type", None)
        messages = self._messages(channel)
        i = self._index(channel, stored["ts"])
        if i is not None:
            messages[i] = stored
            return stored
        bisect.insort(messages, stored, key=lambda m: ts_key(m["ts"]))
        thread_ts = stored.get("thread_ts")
        if thread_ts and thread_ts != stored["ts"]:
            self._count_reply(channel, thread_ts, stored)
        return stored

    def _count_reply(self, channel: str, thread_ts: str, reply: Message) -> None:
        parent = self.get(channel, thread_ts)
        if parent is None:
            return
        parent["thread_ts"] = thread_ts
        parent["reply_count"] = int(parent.get("reply_count", 0)) + 1
        users = list(parent.get("reply_users", []))
        author = reply.get("user") or reply.get("bot_id")
        if author and author not in users:
            users.append(author)
        parent["reply_users"] = users
        parent["reply_users_count"] = len(users)
        parent["latest_reply"] = max(parent.get("latest_reply", reply["ts"]), reply["ts"], key=ts_key)

    def update(self, channel: str, ts: str, changes: Mapping[str, Any]) -> Message | None:
        message = self.get(channel, ts)
        if message is not None:
            message.update(copy.deepcopy(dict(changes)))
        return message

    def delete(self, channel: str, ts: str) -> Message | None:
        i = self._index(channel, ts)
        if i is None:
            return None
        return self._by_channel[channel].pop(i)

    def top_level(self, channel: str) -> list[Message]:
        """What conversations.history shows: thread parents and broadcasts, not plain replies."""
        return [
            m
            for m in self._messages(channel)
            if not m.get("thread_ts") or m["thread_ts"] == m["ts"] or m.get("subtype") == "thread_broadcast"
        ]

    def messages(self, channel: str) -> list[Message]:
        """Every message of a channel in `ts` order, replies included (what an export holds)."""
        return copy.deepcopy(self._messages(channel))

    def thread(self, channel: str, thread_ts: str) -> list[Message]:
        return [m for m in self._messages(channel) if m["ts"] == thread_ts or m.get("thread_ts") == thread_ts]

    def clear(self) -> None:
        self._by_channel.clear()


def _stable_id(prefix: str, name: str) -> str:
    return prefix + hashlib.sha1(name.encode()).hexdigest()[:9].upper()


def _team_of(raw_users: list[dict[str, Any]]) -> str | None:
    return next((str(u["team_id"]) for u in raw_users if u.get("team_id")), None)


def _default_people(team_id: str) -> list[User]:
    people = [
        ("U0ALICE", "alice", "Alice Adams"),
        ("U0BOB", "bob", "Bob Brown"),
        ("U0CAROL", "carol", "Carol Chen"),
        ("U0DAVE", "dave", "Dave Diaz"),
    ]
    return [User(id=i, name=n, real_name=r, team_id=team_id, email=f"{n}@example.com") for i, n, r in people]


def _default_channels() -> list[Channel]:
    """Members are filled in with everyone once the workspace knows its people."""
    return [
        Channel(id="C0GENERAL", name="general", is_general=True),
        Channel(id="C0RANDOM", name="random"),
        Channel(id="C0PROJECT", name="project"),
    ]


def _read_json_list(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read a JSON list ({e})") from e
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise ValueError(f"{path}: expected a JSON list of objects")
    return data


class Workspace:
    """One team with its app installed: what every Web API method and event refers to."""

    def __init__(
        self,
        *,
        team_id: str = DEFAULT_TEAM_ID,
        team_name: str = DEFAULT_TEAM_NAME,
        domain: str = DEFAULT_TEAM_DOMAIN,
        app_id: str = DEFAULT_APP_ID,
        bot_user_id: str = DEFAULT_BOT_USER_ID,
        bot_id: str = DEFAULT_BOT_ID,
        bot_token: str = DEFAULT_BOT_TOKEN,
        app_token: str = DEFAULT_APP_TOKEN,
        signing_secret: str = DEFAULT_SIGNING_SECRET,
        users: Iterable[User] = (),
        channels: Iterable[Channel] = (),
    ) -> None:
        self.team_id = team_id
        self.team_name = team_name
        self.domain = domain
        self.app_id = app_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.bot_token = bot_token
        self.app_token = app_token
        self.signing_secret = signing_secret
        self.users: dict[str, User] = {}
        self.channels: dict[str, Channel] = {}
        self.history = History()
        self.home_views: dict[str, dict[str, Any]] = {}
        self._credentials: dict[str, Credential] = {
            bot_token: Credential("bot", bot_user_id),
            app_token: Credential("app", bot_user_id),
        }
        self._revoked: set[str] = set()
        for user in users:
            self.add_user(user)
        if bot_user_id not in self.users:
            self.add_user(
                User(
                    id=bot_user_id,
                    name=DEFAULT_BOT_NAME,
                    real_name="BeepGPT",
                    team_id=team_id,
                    is_bot=True,
                    bot_id=bot_id,
                    app_id=app_id,
                )
            )
        for channel in channels:
            self.add_channel(channel)

    # ---- construction -------------------------------------------------------------------------

    @classmethod
    def default(cls, **kwargs: Any) -> Workspace:
        """A small team that needs no files: four people and #general, #random, #project."""
        return cls.from_files(None, None, **kwargs)

    @classmethod
    def from_files(
        cls, users_path: Path | str | None = None, channels_path: Path | str | None = None, **kwargs: Any
    ) -> Workspace:
        """Load Slack-export style `users.json` / `channels.json` lists; defaults fill the gaps."""
        raw_users = _read_json_list(Path(users_path)) if users_path else None
        team_id = str(kwargs.pop("team_id", None) or _team_of(raw_users or []) or DEFAULT_TEAM_ID)
        if raw_users is None:
            users = _default_people(team_id)
        else:
            users = [User.from_export(u, team_id) for u in raw_users if "id" in u]
        if channels_path:
            channels = [Channel.from_export(c) for c in _read_json_list(Path(channels_path)) if "id" in c]
        else:
            channels = _default_channels()
        workspace = cls(team_id=team_id, users=users, channels=channels, **kwargs)
        workspace._fill_empty_memberships()
        return workspace

    @classmethod
    def from_export_dir(cls, path: Path | str, *, with_history: bool = True, **kwargs: Any) -> Workspace:
        """Load an unzipped Slack export: users and channels from its lists or, when an export
        lacks them, from its channel folders and message authors; optionally its messages too."""
        root = Path(path)
        if not root.is_dir():
            raise ValueError(f"{root}: not a directory")
        users_file = root / "users.json"
        channels_file = root / "channels.json"
        day_files = {p.name: sorted(p.glob("*.json")) for p in sorted(root.iterdir()) if p.is_dir()}
        if channels_file.exists():
            channels = [Channel.from_export(c) for c in _read_json_list(channels_file) if "id" in c]
        else:
            channels = [Channel(id=_stable_id("C", name), name=name) for name in day_files]
        by_name = {c.name: c for c in channels}
        messages: list[tuple[str, Message]] = []
        for name, files in day_files.items():
            if name in by_name:
                for day in files:
                    messages.extend((by_name[name].id, m) for m in _read_json_list(day) if "ts" in m)
        raw_users = _read_json_list(users_file) if users_file.exists() else None
        team_id = str(
            kwargs.pop("team_id", None)
            or _team_of(raw_users or [])
            or next((m["team"] for _, m in messages if m.get("team")), DEFAULT_TEAM_ID)
        )
        if raw_users is not None:
            users = [User.from_export(u, team_id) for u in raw_users if "id" in u]
        else:
            authors = sorted({str(m["user"]) for _, m in messages if m.get("user")})
            users = [User(id=a, name=a.lower(), real_name=a, team_id=team_id) for a in authors]
        workspace = cls(team_id=team_id, users=users, channels=channels, **kwargs)
        workspace._fill_empty_memberships()
        if with_history:
            for channel_id, message in messages:
                workspace.history.add(channel_id, message)
        return workspace

    def _fill_empty_memberships(self) -> None:
        everyone = [u.id for u in self.users.values() if not u.deleted]
        for channel in self.channels.values():
            if not channel.members and not channel.is_im:
                channel.members = list(everyone)

    def add_user(self, user: User) -> User:
        self.users[user.id] = user
        return user

    def add_channel(self, channel: Channel) -> Channel:
        self.channels[channel.id] = channel
        return channel

    @property
    def identity(self) -> AppIdentity:
        return AppIdentity(
            team_id=self.team_id,
            team_domain=self.domain,
            api_app_id=self.app_id,
            bot_user_id=self.bot_user_id,
            bot_id=self.bot_id,
            verification_token=DEFAULT_VERIFICATION_TOKEN,
        )

    @property
    def url(self) -> str:
        return f"https://{self.domain}.slack.com/"

    # ---- tokens ---------------------------------------------------------------------------------

    def add_token(self, token: str, kind: TokenKind, user_id: str) -> None:
        self._credentials[token] = Credential(kind, user_id)

    def revoke(self, token: str) -> None:
        """Later calls with this token get `token_revoked`, as after an uninstall."""
        self._revoked.add(token)

    def restore_tokens(self) -> None:
        self._revoked.clear()

    def authenticate(self, token: str | None) -> Credential:
        if not token:
            raise SlackError("not_authed")
        if token in self._revoked:
            raise SlackError("token_revoked")
        credential = self._credentials.get(token)
        if credential is None:
            raise SlackError("invalid_auth")
        return credential

    # ---- lookups ---------------------------------------------------------------------------------

    def user(self, user_id: str | None) -> User:
        user = self.users.get(user_id or "")
        if user is None:
            raise SlackError("user_not_found")
        return user

    def channel(self, ref: str | None) -> Channel:
        """Resolve what chat.postMessage accepts: a conversation id, `#name`, or a user id (their DM)."""
        if not ref:
            raise SlackError("channel_not_found")
        if ref in self.channels:
            return self.channels[ref]
        if ref in self.users:
            return self.open_im(ref)[0]
        name = ref.removeprefix("#")
        for channel in self.channels.values():
            if channel.name == name and not channel.is_im:
                return channel
        raise SlackError("channel_not_found")

    def open_im(self, user_id: str) -> tuple[Channel, bool]:
        """The DM between the bot and a user: one stable `D...` id per user."""
        user = self.user(user_id)
        channel_id = "D" + user.id[1:]
        existing = self.channels.get(channel_id)
        if existing is not None:
            return existing, True
        channel = Channel(
            id=channel_id,
            is_im=True,
            is_private=True,
            user=user.id,
            created=int(time.time()),
            members=[user.id, self.bot_user_id],
        )
        return self.add_channel(channel), False

    def open_mpim(self, user_ids: list[str]) -> tuple[Channel, bool]:
        members = sorted({self.user(u).id for u in user_ids} | {self.bot_user_id})
        channel_id = _stable_id("G", ",".join(members))
        existing = self.channels.get(channel_id)
        if existing is not None:
            return existing, True
        name = "mpdm-" + "--".join(self.users[m].name for m in members) + "-1"
        channel = Channel(
            id=channel_id, name=name, is_mpim=True, is_private=True, created=int(time.time()), members=members
        )
        return self.add_channel(channel), False

    def permalink(self, channel: Channel, ts: str) -> str:
        link = f"{self.url}archives/{channel.id}/p{ts.replace('.', '')}"
        message = self.history.get(channel.id, ts)
        thread_ts = message.get("thread_ts") if message else None
        if thread_ts and thread_ts != ts:
            link += f"?thread_ts={thread_ts}&cid={channel.id}"
        return link

    # ---- events ----------------------------------------------------------------------------------

    def apply_event(self, event: Mapping[str, Any]) -> None:
        """Keep history in step with an event delivered to the app, as Slack's own state would be."""
        kind = event.get("type")
        if kind == "message":
            self._apply_message(event)
        elif kind in ("reaction_added", "reaction_removed"):
            item = event.get("item") or {}
            if item.get("type") == "message":
                self._apply_reaction(
                    item,
                    str(event.get("reaction", "")),
                    str(event.get("user", "")),
                    added=kind == "reaction_added",
                )

    def _apply_message(self, event: Mapping[str, Any]) -> None:
        channel = str(event.get("channel", ""))
        subtype = event.get("subtype")
        if channel not in self.channels:
            return
        if subtype == "message_changed":
            changed = dict(event.get("message") or {})
            if changed.get("ts"):
                if self.history.get(channel, changed["ts"]) is None:
                    self.history.add(channel, changed)
                else:
                    self.history.update(channel, changed["ts"], changed)
        elif subtype == "message_deleted":
            if event.get("deleted_ts"):
                self.history.delete(channel, str(event["deleted_ts"]))
        elif event.get("ts") and not event.get("hidden"):
            self.history.add(channel, dict(event))

    def _apply_reaction(self, item: Mapping[str, Any], name: str, user: str, *, added: bool) -> None:
        message = self.history.get(str(item.get("channel", "")), str(item.get("ts", "")))
        if message is None or not name:
            return
        reactions: list[dict[str, Any]] = message.setdefault("reactions", [])
        entry = next((r for r in reactions if r["name"] == name), None)
        if added:
            if entry is None:
                entry = {"name": name, "users": [], "count": 0}
                reactions.append(entry)
            if user not in entry["users"]:
                entry["users"].append(user)
        elif entry is not None and user in entry["users"]:
            entry["users"].remove(user)
        if entry is not None:
            entry["count"] = len(entry["users"])
            if not entry["users"]:
                reactions.remove(entry)
        if not reactions:
            message.pop("reactions", None)
