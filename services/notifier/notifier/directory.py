"""Who and where: display names for users and channels, and each person's DM channel.

Looked up with users.info / conversations.info / conversations.open and cached in memory
(names for `ttl_s`; a DM channel id never changes). A lookup that fails never fails an alert:
the DM then says "someone" or lets Slack render the channel link itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from notifier.slack_sender import SlackCallError, SlackSender

log = logging.getLogger(__name__)

_MAX_ENTRIES = 50_000


class Directory:
    """Cached Slack lookups shared by every DM an instance sends."""

    def __init__(
        self, sender: SlackSender, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._sender = sender
        self._ttl_s = ttl_s
        self._clock = clock
        self._users: dict[str, tuple[float, str | None]] = {}
        self._channels: dict[str, tuple[float, str | None]] = {}
        self._dms: dict[str, str] = {}

    async def user_names(self, ids: Iterable[str]) -> dict[str, str]:
        return await self._names(ids, self._users, self._user_name)

    async def channel_names(self, ids: Iterable[str]) -> dict[str, str]:
        return await self._names(ids, self._channels, self._channel_name)

    async def dm_channel(self, user: str) -> str:
        """The bot's DM channel with `user` (conversations.open is idempotent on Slack's side)."""
        channel = self._dms.get(user)
        if channel is None:
            body = await self._sender.call("conversations.open", {"users": user}, verb="json")
            channel = str(body["channel"]["id"])
            if len(self._dms) >= _MAX_ENTRIES:
                self._dms.clear()
            self._dms[user] = channel
        return channel

    async def _names(
        self,
        ids: Iterable[str],
        cache: dict[str, tuple[float, str | None]],
        lookup: Callable[[str], Any],
    ) -> dict[str, str]:
        now = self._clock()
        wanted = {i for i in ids if i}
        missing = [i for i in wanted if i not in cache or cache[i][0] <= now]
        if missing:
            found = await asyncio.gather(*(lookup(i) for i in missing))
            if len(cache) + len(missing) > _MAX_ENTRIES:
                cache.clear()
            for ident, name in zip(missing, found, strict=True):
                if name is not _UNKNOWN:
                    cache[ident] = (now + self._ttl_s, name)
        return {i: name for i in wanted if i in cache and (name := cache[i][1])}

    async def _user_name(self, user: str) -> str | object | None:
        try:
            body = await self._sender.call("users.info", {"user": user})
        except SlackCallError as error:
            return None if error.definite else _UNKNOWN
        return _display_name(body.get("user") or {})

    async def _channel_name(self, channel: str) -> str | object | None:
        try:
            body = await self._sender.call("conversations.info", {"channel": channel})
        except SlackCallError as error:
            return None if error.definite else _UNKNOWN
        name = (body.get("channel") or {}).get("name")
        return str(name) if name else None


_UNKNOWN = object()
"""A transient lookup failure: not cached, so the next DM asks again."""


def _display_name(user: Mapping[str, Any]) -> str | None:
    profile = user.get("profile") or {}
    for candidate in (
        profile.get("display_name"),
        profile.get("real_name"),
        user.get("real_name"),
        user.get("name"),
    ):
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()
    return None
