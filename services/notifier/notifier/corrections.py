"""Quoted messages as they are now: edits applied and deletions honoured, before and after a DM.

A candidate carries the preview lines the scorer saw; an alert can wait days for a digest (a
pause lasts up to 30), and a sent DM stays in someone's Slack. Meanwhile its author may edit or
delete a quoted message. The notifier reads those changes from `slack.messages` (its own group,
`<group_id>-corrections`) and keeps, in Redis:

- `quoted:{channel}:<ts>` — the latest change to a message, if any: its new text, or that it is
  gone (`Change`), for `change_ttl_s` (longer than the longest pause, so a held alert still
  finds it);
- `dm:{channel}:<ts>` — what a sent DM quoted and how it was drawn (`SentDM`), and
  `quotes:{channel}:<ts>` — the DMs quoting a message, for `sent_ttl_s` (how long a sent DM is
  kept correct).

Every DM is drawn from `corrected` candidates (deleted lines gone, edits applied); when a quoted
message changes after a DM went out, the DM is drawn again and updated in place (`chat.update`).
Only what the notifier quoted is kept: the change of any other message expires unread.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict

from beepgpt.contracts import Candidate, PreviewLine, SlackMessage, Text
from notifier.delivery import Posted, SentDM

MessageRef = tuple[str, str]
"""(channel, ts): a message's identity."""


class Change(BaseModel):
    """What became of a quoted message: deleted, or its text now."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    deleted: bool = False
    text: Text | None = None


def refs(candidates: Iterable[Candidate]) -> list[MessageRef]:
    """The messages the candidates quote, each once."""
    seen: dict[MessageRef, None] = {}
    for candidate in candidates:
        for line in candidate.preview:
            seen.setdefault((candidate.channel, line.ts), None)
    return list(seen)


def corrected(candidate: Candidate, changes: Mapping[MessageRef, Change]) -> Candidate:
    """`candidate` with its preview as the conversation is now: deleted lines left out, edits in."""
    lines: list[PreviewLine] = []
    for line in candidate.preview:
        change = changes.get((candidate.channel, line.ts))
        if change is None:
            lines.append(line)
        elif not change.deleted:
            lines.append(line.model_copy(update={"text": change.text or ""}))
    if len(lines) == len(candidate.preview) and all(a is b for a, b in zip(lines, candidate.preview, strict=True)):
        return candidate
    return candidate.model_copy(update={"preview": lines})


def change_of(message: SlackMessage) -> Change | None:
    """The change a `slack.messages` record makes to a message that may be quoted; None for a new one."""
    if message.action == "deleted":
        return Change(deleted=True)
    if message.action == "edited":
        return Change(text=message.text)
    return None


class Corrections:
    """The Redis side: changes of quoted messages, and the DMs that quote them."""

    def __init__(self, client: aioredis.Redis, prefix: str, *, change_ttl_s: int, sent_ttl_s: int) -> None:
        self._redis = client
        self._prefix = prefix
        self._change_ttl_s = change_ttl_s
        self._sent_ttl_s = sent_ttl_s

    def change_key(self, ref: MessageRef) -> str:
        return f"{self._prefix}quoted:{{{ref[0]}}}:{ref[1]}"

    def quotes_key(self, ref: MessageRef) -> str:
        return f"{self._prefix}quotes:{{{ref[0]}}}:{ref[1]}"

    def dm_key(self, posted: Posted) -> str:
        return f"{self._prefix}dm:{{{posted.channel}}}:{posted.ts}"

    async def changes(self, refs: Sequence[MessageRef]) -> dict[MessageRef, Change]:
        """The known changes of these messages (one round trip)."""
        if not refs:
            return {}
        raw = await self._redis.mget([self.change_key(ref) for ref in refs])
        return {ref: Change.model_validate_json(value) for ref, value in zip(refs, raw, strict=True) if value}

    async def apply(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        """Each candidate as its conversation is now (`corrected`)."""
        found = await self.changes(refs(candidates))
        return [corrected(candidate, found) for candidate in candidates] if found else list(candidates)

    async def record(self, changes: Mapping[MessageRef, Change]) -> dict[str, Posted]:
        """Remember these changes; returns the sent DMs that quote any of them (by their key)."""
        if not changes:
            return {}
        items = list(changes.items())
        async with self._redis.pipeline(transaction=False) as pipe:
            for ref, change in items:
                pipe.set(self.change_key(ref), change.model_dump_json(), ex=self._change_ttl_s)
            for ref, _ in items:
                pipe.smembers(self.quotes_key(ref))
            replies = await pipe.execute()
        affected: dict[str, Posted] = {}
        for members in replies[len(items) :]:
            for member in members:
                channel, _, ts = (member.decode() if isinstance(member, bytes) else str(member)).partition("|")
                posted = Posted(channel, ts)
                affected[self.dm_key(posted)] = posted
        return affected

    async def remember(self, sent: Sequence[tuple[Posted, SentDM]]) -> None:
        """DMs went out: keep what each quoted, so a later change can redraw it (one round trip)."""
        if not sent:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for posted, dm in sent:
                member = f"{posted.channel}|{posted.ts}"
                pipe.set(self.dm_key(posted), dm.model_dump_json(), ex=self._sent_ttl_s)
                for ref in refs(candidate for candidate, _ in dm.entries):
                    pipe.sadd(self.quotes_key(ref), member)
                    pipe.expire(self.quotes_key(ref), self._sent_ttl_s)
            await pipe.execute()

    async def sent(self, posted: Posted) -> SentDM | None:
        raw = await self._redis.get(self.dm_key(posted))
        return None if raw is None else SentDM.model_validate_json(raw)

    async def forget_user(self, user: str) -> int:
        """Remove the DMs kept for `user` (for `beepgpt forget`); returns how many went."""
        removed = 0
        async for key in self._redis.scan_iter(match=f"{_glob(self._prefix)}dm:*", count=500):
            raw = await self._redis.get(key)
            if raw is not None and json.loads(raw).get("user") == user:
                removed += int(await self._redis.delete(key))
        return removed


def _glob(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)
