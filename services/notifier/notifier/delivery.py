"""Posting a DM once: names and permalinks looked up, Block Kit built, the post retried safely.

`alert` and `digest` return where the message landed. When the previous attempt's fate is
unknown (a crash or Redis outage between the post and recording it, or a timeout), the DM's
recent history is searched for the message's block id before posting again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cachetools import LRUCache
from pydantic import BaseModel, ConfigDict, Field

from beepgpt.contracts import Candidate
from notifier import dm
from notifier.directory import Directory
from notifier.slack_sender import SlackCallError, SlackSender

log = logging.getLogger(__name__)

_HISTORY_SLACK_S = 120.0  # clock differences between us and Slack
LOOKBACK_S = 24 * 3600.0  # how far back an interrupted send is searched for
_MAX_PERMALINKS = 20_000


@dataclass(frozen=True)
class Posted:
    """Where a DM landed."""

    channel: str
    ts: str


class SentDM(BaseModel):
    """Enough to draw a sent DM again: its alerts (candidate, marker) and how it was framed."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    user: str
    entries: list[tuple[Candidate, str]]
    digest_id: str | None = None
    """a digest's id (its block id); None for a real-time alert"""
    why: str | None = None
    title: str | None = None
    note: str | None = None
    max_items: int = Field(default=10, ge=1)



class Delivery:
    """Sends alerts and digests through one `SlackSender` and one `Directory`."""

    def __init__(self, sender: SlackSender, directory: Directory, *, preview_lines: int = 4) -> None:
        self._sender = sender
        self._directory = directory
        self._preview_lines = preview_lines
        # A message's permalink never changes, and one conversation update alerts many people.
        self._permalinks: LRUCache[tuple[str, str], str] = LRUCache(_MAX_PERMALINKS)  # full: LRU goes

    @property
    def sender(self) -> SlackSender:
        return self._sender

    async def names(self, candidates: Sequence[Candidate]) -> dm.Names:
        users, channels = dm.mentioned(candidates)
        user_names, channel_names = await asyncio.gather(
            self._directory.user_names(users), self._directory.channel_names(channels)
        )
        return dm.Names(user_names, channel_names)

    async def permalink(self, candidate: Candidate) -> str | None:
        """Link to the latest message (Slack adds the thread to replies' links); None if unknown."""
        key = (candidate.channel, candidate.latest_ts)
        if key in self._permalinks:
            return self._permalinks[key]
        try:
            body = await self._sender.call(
                "chat.getPermalink", {"channel": candidate.channel, "message_ts": candidate.latest_ts}
            )
        except SlackCallError as error:
            log.info("no permalink", extra={"channel": candidate.channel, "error": error.error})
            return None
        link = body.get("permalink")
        if not link:
            return None
        self._permalinks[key] = str(link)
        return str(link)

    async def alert(
        self,
        candidate: Candidate,
        marker: str,
        *,
        look_first: bool = False,
        note: str | None = None,
    ) -> tuple[Posted, SentDM]:
        """DM one alert; with `look_first`, first look for a copy an interrupted attempt posted.
        Returns where it landed and how it was drawn (to draw it again after a correction)."""
        sent = SentDM(user=candidate.user, entries=[(candidate, marker)], note=note)
        channel = await self._directory.dm_channel(candidate.user)
        block_id = dm.marker_block_id(marker)
        if look_first:
            found = await self.find(channel, block_id, time.time() - LOOKBACK_S)
            if found is not None:
                return found, sent
        return await self._post(channel, await self.draw(sent), block_id), sent

    async def digest(
        self,
        user: str,
        entries: Sequence[tuple[Candidate, str]],
        digest_id: str,
        why: str,
        *,
        max_items: int,
        title: str = dm.AWAY_TITLE,
        look_first: bool = False,
    ) -> tuple[Posted, SentDM]:
        """DM one digest of held alerts (candidate, marker), idempotent on `digest_id`."""
        sent = SentDM(
            user=user, entries=list(entries), digest_id=digest_id, why=why, title=title, max_items=max_items
        )
        channel = await self._directory.dm_channel(user)
        block_id = dm.digest_block_id(digest_id)
        if look_first:
            found = await self.find(channel, block_id, time.time() - LOOKBACK_S)
            if found is not None:
                return found, sent
        return await self._post(channel, await self.draw(sent), block_id), sent

    async def draw(self, sent: SentDM) -> dm.Message:
        """The Block Kit of an alert or a digest, names and permalinks looked up."""
        candidates = [candidate for candidate, _ in sent.entries]
        names, links = await asyncio.gather(
            self.names(candidates), asyncio.gather(*(self.permalink(c) for c in candidates))
        )
        if sent.digest_id is None or len(candidates) == 1:
            (candidate, marker), link = sent.entries[0], links[0]
            return dm.alert(
                candidate,
                names,
                link,
                marker,
                preview_lines=self._preview_lines,
                note=sent.note if sent.digest_id is None else sent.why,
                context_block_id=None if sent.digest_id is None else dm.digest_block_id(sent.digest_id),
            )
        digest_entries = [
            dm.DigestEntry(candidate, link, marker)
            for (candidate, marker), link in zip(sent.entries, links, strict=True)
        ]
        return dm.digest(
            digest_entries,
            sent.digest_id,
            names,
            sent.why or "",
            max_items=sent.max_items,
            title=sent.title or dm.AWAY_TITLE,
        )

    async def update(self, posted: Posted, message: dm.Message) -> None:
        """Replace a sent DM's content (a quoted message was edited or deleted)."""
        await self._sender.call(
            "chat.update",
            {"channel": posted.channel, "ts": posted.ts, "text": message.text, "blocks": message.blocks},
            verb="json",
        )

    async def _post(self, channel: str, message: dm.Message, block_id: str) -> Posted:
        started = time.time()

        async def already_posted() -> Mapping[str, Any] | None:
            found = await self.find(channel, block_id, started)
            return None if found is None else {"channel": found.channel, "ts": found.ts}

        body = await self._sender.call(
            "chat.postMessage",
            {
                "channel": channel,
                "text": message.text,
                "blocks": message.blocks,
                "unfurl_links": False,
                "unfurl_media": False,
            },
            verb="json",
            before_retry=already_posted,
        )
        return Posted(str(body.get("channel") or channel), str(body["ts"]))

    async def find(self, channel: str, block_id: str, since: float) -> Posted | None:
        """Our message with `block_id` in the DM's history since `since`, if Slack has it."""
        try:
            body = await self._sender.call(
                "conversations.history",
                {"channel": channel, "oldest": f"{since - _HISTORY_SLACK_S:.6f}", "limit": 200},
            )
        except SlackCallError as error:
            if not error.definite:
                raise
            # Without history access (missing im:history) we cannot look; posting again is the
            # lesser evil than losing the alert, and it is logged.
            self._sender.report_once(error, "conversations.history")
            return None
        message = dm.find_block(body.get("messages") or [], block_id)
        if message is None:
            return None
        return Posted(channel, str(message.get("ts")))
