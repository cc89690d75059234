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

from cachetools import LRUCache, TTLCache

from notifier.slack_sender import SlackCallError, SlackSender

log = logging.getLogger(__name__)

_MAX_ENTRIES = 50_000


class Directory:
    """Cached Slack lookups shared by every DM an instance sends."""

    def __init__(
        self, sender: SlackSender, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._sender = sender
        # Full caches evict their least recently used entry (they used to empty themselves).
        self._users: TTLCache[str, str | None, float] = TTLCache(_MAX_ENTRIES, ttl_s, timer=clock)
        self._channels: TTLCache[str, str | None, float] = TTLCache(_MAX_ENTRIES, ttl_s, timer=clock)
        self._dms: LRUCache[str, str] = LRUCache(_MAX_ENTRIES)

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
            self._dms[user] = channel
        return channel

    async def _names(
        self,
        ids: Iterable[str],
        cache: TTLCache[str, str | None, float],
        lookup: Callable[[str], Any],
    ) -> dict[str, str]:
        wanted = {i for i in ids if i}
        known: dict[str, str | None] = {}
        missing: list[str] = []
        for ident in wanted:
            try:  # one lookup: an entry may expire between `in` and `[]`
                known[ident] = cache[ident]
            except KeyError:  # absent or expired
                missing.append(ident)
        if missing:
            found = await asyncio.gather(*(lookup(i) for i in missing))
            for ident, name in zip(missing, found, strict=True):
                if name is not _UNKNOWN:
                    cache[ident] = name
                    known[ident] = name
        return {i: name for i, name in known.items() if name}

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
