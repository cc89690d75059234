"""Who may read what: the Slack lookups behind `stages.permission_stage`, cached with a TTL.

Before a DM quotes a conversation, the notifier asks Slack about the recipient (`users.info`: a
deactivated account or a bot may not; a guest — `is_restricted` / `is_ultra_restricted` — only
where they are a channel member, as Slack shows guests no other channel) and
the channel (`conversations.info`: `is_private`, `is_ext_shared`, `is_im`, `is_mpim`); for a
channel that is not public, its members (`conversations.members`, every page). The candidate does
not carry the channel's kind, so Slack's answer is what tells a public channel from the others.

Answers are kept `ttl_s` (`BEEPGPT_NOTIFIER_PERMISSION_TTL_S`) in small bounded caches, Slack's
answers that are facts about the person or channel (`user_not_found`, `channel_not_found`) too.
Any other definite error (a revoked token, a missing scope) refuses as well — the check failed,
so nothing is shown — but is not remembered, and is logged once. A transient failure (Slack
unreachable, rate limited past the sender's patience) is not cached and raises
`PermissionUnknown`: the notifier then redoes the batch rather than guess.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from cachetools import FIFOCache

from notifier.slack_sender import SlackCallError, SlackSender

log = logging.getLogger(__name__)

K = TypeVar("K")
V = TypeVar("V")

MAX_ENTRIES = 10_000
"""Per cache; the oldest entry goes first when one is full."""
MEMBERS_PAGE = 1000  # conversations.members' largest page
FACTS = frozenset({"user_not_found", "user_not_visible", "channel_not_found"})
"""Definite answers that describe the person or channel, cached like a successful lookup."""
LOOKUP_CONCURRENCY = 16  # lookups in flight per instance (a batch of new people asks many)


class PermissionUnknown(Exception):
    """Slack could not say whether someone may read a channel (transient): nothing is decided."""

    def __init__(self, method: str, error: str) -> None:
        super().__init__(f"{method}: {error}")
        self.method = method
        self.error = error


@dataclass(frozen=True)
class UserAccess:
    """What users.info says about a recipient; `refusal` is why they may not be shown anything;
    `guest` names a guest account, who may be shown only channels they are a member of."""

    refusal: str | None = None
    guest: str | None = None

    @property
    def full_member(self) -> bool:
        return self.refusal is None


@dataclass(frozen=True)
class ChannelAccess:
    """What conversations.info says about a channel: public (any full member reads it), or
    needing membership (`private`, `shared`, `im`, `mpim`); `refusal` when Slack would not say."""

    kind: str = "public"
    refusal: str | None = None

    @property
    def needs_membership(self) -> bool:
        return self.kind != "public"


def user_access(user: Mapping[str, Any]) -> UserAccess:
    """A users.info `user` object read for permission: full, active, human members pass; guests
    pass only in channels they are a member of (Slack shows them no others)."""
    if user.get("deleted"):
        return UserAccess("a deactivated account")
    if user.get("is_bot") or user.get("is_app_user"):
        return UserAccess("a bot")
    if user.get("is_ultra_restricted"):
        return UserAccess(guest="a single-channel guest")
    if user.get("is_restricted"):
        return UserAccess(guest="a guest")
    return UserAccess()


def channel_access(channel: Mapping[str, Any]) -> ChannelAccess:
    """A conversations.info `channel` object: who may read it. Private wins over shared."""
    if channel.get("is_im"):
        return ChannelAccess("im")
    if channel.get("is_mpim"):
        return ChannelAccess("mpim")
    if channel.get("is_private") or channel.get("is_group"):
        return ChannelAccess("private")
    if channel.get("is_ext_shared") or channel.get("is_shared"):
        return ChannelAccess("shared")
    return ChannelAccess("public")


class TtlCache(Generic[K, V]):
    """At most `max_entries` values, each for `ttl_s` (insertion order: the oldest goes first).

    Bounded by `cachetools.FIFOCache`, each value stored with its deadline. Not
    `cachetools.TTLCache`: that one evicts the least recently *read* entry, and these caches are
    meant to forget in the order Slack answered (a re-put moves the key to the back).
    """

    def __init__(
        self, ttl_s: float, max_entries: int = MAX_ENTRIES, clock: Callable[[], float] = time.monotonic
    ):
        self._ttl_s = ttl_s
        self._clock = clock
        self._items: FIFOCache[K, tuple[float, V]] = FIFOCache(maxsize=max_entries)

    def get(self, key: K) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] <= self._clock():
            del self._items[key]
            return None
        return item[1]

    def put(self, key: K, value: V) -> None:
        self._items.pop(key, None)
        self._items[key] = (self._clock() + self._ttl_s, value)

    def __len__(self) -> int:
        return len(self._items)


class Permissions:
    """Cached users.info / conversations.info / conversations.members for permission checks."""

    def __init__(
        self,
        sender: SlackSender,
        ttl_s: float,
        *,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sender = sender
        self._users: TtlCache[str, UserAccess] = TtlCache(ttl_s, max_entries, clock)
        self._channels: TtlCache[str, ChannelAccess] = TtlCache(ttl_s, max_entries, clock)
        self._members: TtlCache[str, frozenset[str]] = TtlCache(ttl_s, max(1, max_entries // 10), clock)
        self._gate = asyncio.Semaphore(LOOKUP_CONCURRENCY)
        self._reported: set[tuple[str, str]] = set()

    async def users(self, ids: Iterable[str]) -> dict[str, UserAccess]:
        """Each recipient's standing; raises `PermissionUnknown` if Slack could not say."""
        return await _cached(set(ids), self._users, self._gated(self._user))

    async def channels(self, ids: Iterable[str]) -> dict[str, ChannelAccess]:
        """Each channel's kind; raises `PermissionUnknown` if Slack could not say."""
        return await _cached(set(ids), self._channels, self._gated(self._channel))

    async def members(self, ids: Iterable[str]) -> dict[str, frozenset[str]]:
        """Each channel's members; raises `PermissionUnknown` if Slack could not say."""
        return await _cached(set(ids), self._members, self._gated(self._channel_members))

    def _gated(self, lookup: Callable[[str], Awaitable[tuple[V, bool]]]) -> Lookup[V]:
        async def one(key: str) -> tuple[V, bool]:
            async with self._gate:
                return await lookup(key)

        return one

    def _refused(self, error: SlackCallError) -> bool:
        """A definite error: whether it is a fact to cache; raises `PermissionUnknown` when the
        error is transient; logs other definite errors once per cause."""
        if not error.definite:
            raise PermissionUnknown(error.method, error.error) from error
        if error.error in FACTS:
            return True
        if (error.method, error.error) not in self._reported:
            self._reported.add((error.method, error.error))
            log.error(
                "slack refused a permission lookup; the alerts it concerns are not permitted",
                extra={"method": error.method, "error": error.error},
            )
        return False

    async def _user(self, user: str) -> tuple[UserAccess, bool]:
        try:
            body = await self._sender.call("users.info", {"user": user})
        except SlackCallError as error:
            return UserAccess(f"slack: {error.error}"), self._refused(error)
        return user_access(body.get("user") or {}), True

    async def _channel(self, channel: str) -> tuple[ChannelAccess, bool]:
        try:
            body = await self._sender.call("conversations.info", {"channel": channel})
        except SlackCallError as error:
            return ChannelAccess("unknown", f"slack: {error.error}"), self._refused(error)
        return channel_access(body.get("channel") or {}), True

    async def _channel_members(self, channel: str) -> tuple[frozenset[str], bool]:
        members: set[str] = set()
        cursor = ""
        while True:
            params: dict[str, Any] = {"channel": channel, "limit": MEMBERS_PAGE}
            if cursor:
                params["cursor"] = cursor
            try:
                body = await self._sender.call("conversations.members", params)
            except SlackCallError as error:
                # Slack will not list them (not found, the bot not in it): nobody may read it.
                return frozenset(), self._refused(error)
            members.update(str(m) for m in body.get("members") or [])
            cursor = str((body.get("response_metadata") or {}).get("next_cursor") or "")
            if not cursor:
                return frozenset(members), True


Lookup = Callable[[str], Awaitable[tuple[V, bool]]]
"""One key's answer and whether to cache it."""


async def _cached(wanted: set[str], cache: TtlCache[str, V], lookup: Lookup[V]) -> dict[str, V]:
    found: dict[str, V] = {}
    missing: list[str] = []
    for key in wanted:
        value = cache.get(key)
        if value is None:
            missing.append(key)
        else:
            found[key] = value
    answers = await asyncio.gather(*(lookup(key) for key in missing), return_exceptions=True)
    failure: BaseException | None = None
    for key, answer in zip(missing, answers, strict=True):
        if isinstance(answer, BaseException):
            failure = failure or answer
        else:
            value, keep = answer
            if keep:
                cache.put(key, value)
            found[key] = value
    if failure is not None:
        raise failure
    return found
