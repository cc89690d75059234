"""History without an admin export: the public channels the bot is in, read through the Web API.

Only a workspace admin can make a Slack export, so most teams could not start the way an export
import does. `beepgpt import --from-slack` reads the same history the bot token may read:
`conversations.list` (public channels only, `types=public_channel`), `conversations.history`
(newest first) and `conversations.replies` for each thread, all paginated by cursor with the
official client (`AsyncWebClient`). Every line it gets is folded by the same `HistoryBuilder`
(and so `ingest.normalize`) as an export's, with the same channel kind and bot users, so the
message table is the one an export of the same workspace gives.

Which conversations are read is `ingest.normalize.channel_policy`, the rule of live ingest and
the export import: a conversation the listing says is private, a DM or a group DM is skipped
and counted, even if Slack were to list one. Channels the bot is not a member of are not read
(they are counted) unless `--join` joins them first (`conversations.join`, scope
`channels:join`); archived ones cannot be joined.

Rate limits: HTTP 429 is retried by slack_sdk's own `AsyncRateLimitErrorRetryHandler` rule,
waiting what `Retry-After` says (`beepgpt.retry.backoff_delay`, the project's one formula, when
it says nothing), and every wait is reported so a long pause does not look like a hang. 5xx
answers and dropped connections get the library's handlers too, a few times.

Resumable: everything read is appended to a spool beside the output (`<out>.from-slack.jsonl`)
and, after each page, a checkpoint (`<out>.from-slack.json`, written atomically) records how many
bytes of the spool count and, per channel, whether it is done, the cursor of its next page, the
oldest message read so far and the threads still to read. A rerun with the same arguments
truncates the spool to what the checkpoint counts (a page written after the last checkpoint is
read again, once) and goes on from the cursors, so no message is lost or repeated. The window
(`latest` = when the first run started, `oldest` = `--days` before it) is fixed by the first
run, so a resumed import is the snapshot the first run began. Both files are removed once the
table is written; a rerun after that starts a new import.

Limits: a thread is read when its parent is inside the window; replies inside the window to a
parent older than `--days` are not (the history API lists parents, not replies).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient

from beepgpt.retry import backoff_delay
from ingest.importer.export import bot_users_of
from ingest.importer.history import HistoryBuilder, reaction_count
from ingest.importer.sources import Imported, SourceError
from ingest.normalize import Rules, channel_policy, channel_type_of
from ingest.settings import SLACK_MAX_TEXT_CHARS

KIND = "Slack Web API"
CHECKPOINT_VERSION = 1
# Slack's advice for conversations.history is 200 a page at most; fewer pages would not be
# fewer rate-limit units (Tier 3 counts calls, and a page of 1,000 can still be cut short).
PAGE_SIZE = 200
# How long one request keeps waiting out 429s before the import stops (resumable): a storm that
# lasts this many answers in a row is not one a longer wait would get through.
MAX_RATE_LIMIT_RETRIES = 100
MAX_WAIT_S = 300.0  # a Retry-After above this is capped: the import stays responsive to Ctrl-C
SERVER_ERROR_RETRIES = 3
NOT_A_MEMBER = "not_a_member"
ARCHIVED_NOT_JOINED = "archived_not_joined"

Waited = Callable[[str, float], None]
"""Told (Slack method, seconds) before each wait for a rate limit."""


class RateLimitWait(AsyncRateLimitErrorRetryHandler):  # type: ignore[misc]  # slack_sdk is untyped here
    """slack_sdk's 429 handler (which requests it retries is the library's rule), waiting what
    `Retry-After` says, or the project's backoff when it says nothing, and telling `waited`.

    The library's own wait adds up to a second of jitter to every `Retry-After` and says nothing;
    one importer needs no jitter, and a person watching an import needs to see why it paused.
    """

    def __init__(
        self,
        max_retry_count: int = MAX_RATE_LIMIT_RETRIES,
        *,
        max_wait_s: float = MAX_WAIT_S,
        waited: Waited | None = None,
    ) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait_s = max_wait_s
        self.waited = waited

    async def prepare_for_next_attempt_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        if response is None:  # only answered requests are retried here (see _can_retry_async)
            raise error or RuntimeError("no response to retry")
        delay = backoff_delay(
            state.current_attempt + 1, 1.0, self.max_wait_s, retry_after=retry_after(response.headers)
        )
        if self.waited is not None:
            self.waited(request.url.rstrip("/").rsplit("/", 1)[-1], delay)
        state.next_attempt_requested = True
        await asyncio.sleep(delay)
        state.increment_current_attempt()


def retry_after(headers: Mapping[str, Any]) -> float | None:
    """Seconds in a `Retry-After` header (slack_sdk gives header values as lists), or None."""
    for name, value in headers.items():
        if name.lower() == "retry-after":
            first = value[0] if isinstance(value, list | tuple) and value else value
            try:
                return max(0.0, float(first))
            except (TypeError, ValueError):
                return None
    return None


def retry_handlers(waited: Waited | None = None) -> list[AsyncRetryHandler]:
    """What a client reading history retries: 429s (patiently), 5xx and lost connections (a few)."""
    return [
        RateLimitWait(waited=waited),
        AsyncServerErrorRetryHandler(max_retry_count=SERVER_ERROR_RETRIES),
        AsyncConnectionErrorRetryHandler(max_retry_count=SERVER_ERROR_RETRIES),
    ]


def slack_client(token: str, api_url: str, *, waited: Waited | None = None) -> AsyncWebClient:
    return AsyncWebClient(token=token, base_url=api_url, timeout=30, retry_handlers=retry_handlers(waited))


# ---- options and checkpoint -----------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """What was asked for; a checkpoint only resumes the import these options started."""

    days: float | None = None
    channels: tuple[str, ...] = ()  # names (with or without '#') or ids; empty: every one
    join: bool = False

    def wants(self, conversation: Mapping[str, Any]) -> bool:
        if not self.channels:
            return True
        return any(_names(ref, conversation) for ref in self.channels)


def _names(ref: str, conversation: Mapping[str, Any]) -> bool:
    """Whether `--channel ref` (an id, a name, or `#name`) names the conversation."""
    return ref.removeprefix("#") in (conversation.get("id"), conversation.get("name"))


@dataclass
class ChannelState:
    """One channel's progress: `history` (pages still to read), `threads`, then `done`."""

    id: str
    name: str
    channel_type: str  # Slack's, as `channel_policy` reads it
    shared: bool
    state: str = "history"
    cursor: str | None = None  # of the next history page
    fetched_to: str | None = None  # the oldest message read so far (history is newest first)
    threads: list[str] = field(default_factory=list)  # parents whose replies are still to read
    thread_cursor: str | None = None  # of the next replies page of threads[0]
    thread_from: str | None = None  # the newest reply of threads[0] read so far
    messages: int = 0
    pages: int = 0


@dataclass
class Checkpoint:
    team: str
    options: dict[str, Any]
    latest: str
    oldest: str | None
    spool_bytes: int = 0
    listed: bool = False
    channels: dict[str, ChannelState] = field(default_factory=dict)  # in reading order
    skipped_channels: dict[str, int] = field(default_factory=dict)
    joined: list[str] = field(default_factory=list)
    version: int = CHECKPOINT_VERSION

    @classmethod
    def load(cls, path: Path) -> Checkpoint | None:
        if not path.exists():
            return None
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            if raw.get("version") != CHECKPOINT_VERSION:
                raise ValueError(f"version {raw.get('version')!r}, not {CHECKPOINT_VERSION}")
            raw["channels"] = {cid: ChannelState(**state) for cid, state in raw["channels"].items()}
            return cls(**raw)
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
            raise SourceError(
                f"{path}: not a readable checkpoint ({error}); delete it to start over"
            ) from error

    def save(self, path: Path) -> None:
        """Atomically: a crash leaves the previous checkpoint or this one, never half of one."""
        body = json.dumps(asdict(self), indent=1)
        temporary = path.with_name(path.name + ".tmp")
        with temporary.open("w", encoding="utf-8") as out:
            out.write(body)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a power cut
        finally:
            os.close(directory)


class Spool:
    """The lines read so far, one JSON object a line (`{"channel": id, "message": {...}}`)."""

    def __init__(self, path: Path, counted: int) -> None:
        self.path = path
        size = path.stat().st_size if path.exists() else 0
        if size < counted:
            raise SourceError(
                f"{path} holds {size} bytes, the checkpoint counts {counted}: delete both to start over"
            )
        with path.open("ab") as spool:  # a page written after the last checkpoint is read again
            spool.truncate(counted)
        self.size = counted

    def append(self, channel: str, messages: Sequence[Mapping[str, Any]]) -> None:
        if not messages:
            return
        data = b"".join(
            json.dumps({"channel": channel, "message": m}, ensure_ascii=False).encode() + b"\n"
            for m in messages
        )
        with self.path.open("ab") as spool:
            spool.write(data)
            spool.flush()
            os.fsync(spool.fileno())
        self.size += len(data)

    def lines(self) -> list[tuple[str, Any]]:
        with self.path.open("rb") as spool:
            return [
                (row["channel"], row["message"])
                for row in map(json.loads, spool.read(self.size).splitlines())
            ]


def checkpoint_paths(out: Path) -> tuple[Path, Path]:
    """(checkpoint, spool) beside the output table."""
    return out.with_name(out.name + ".from-slack.json"), out.with_name(out.name + ".from-slack.jsonl")


# ---- progress -------------------------------------------------------------------------------------


class Progress:
    """What the import tells a person while it runs (stderr): silent by default, for library use."""

    def started(self, resumed: bool, channels: int) -> None: ...

    def page(self, channel: str, messages: int) -> None: ...

    def channel_done(self, state: ChannelState) -> None: ...

    def waited(self, method: str, seconds: float) -> None: ...

    def close(self) -> None: ...


# ---- the import -------------------------------------------------------------------------------------


@dataclass
class SlackHistory:
    """`await run()` reads (or goes on reading) the history into the spool and returns the folded
    `Imported`; `discard()` removes checkpoint and spool once the table is safely written."""

    client: AsyncWebClient
    out: Path
    options: Options = field(default_factory=Options)
    page_size: int = PAGE_SIZE
    max_text_chars: int = SLACK_MAX_TEXT_CHARS
    progress: Progress = field(default_factory=Progress)
    clock: Callable[[], float] = time.time
    resumed: bool = False  # after run(): whether it went on from a checkpoint
    joined: list[str] = field(default_factory=list)  # after run(): channels joined (names)

    def __post_init__(self) -> None:
        self.checkpoint_path, self.spool_path = checkpoint_paths(self.out)

    async def run(self) -> Imported:
        """Read, or go on reading, under a lock: two imports writing one spool would repeat lines."""
        self.out.parent.mkdir(parents=True, exist_ok=True)
        with self.checkpoint_path.with_suffix(".lock").open("a") as lock:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SourceError(f"another import is writing {self.spool_path}: let it finish") from None
            try:
                return await self._run()
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    async def _run(self) -> Imported:
        auth = await self.client.auth_test()
        team, bot_user = str(auth["team_id"]), str(auth["user_id"])
        checkpoint = Checkpoint.load(self.checkpoint_path)
        options = _options_dict(self.options)
        if checkpoint is None:
            now = self.clock()
            oldest = None if self.options.days is None else _ts(now - self.options.days * 86400)
            checkpoint = Checkpoint(team=team, options=options, latest=_ts(now), oldest=oldest)
        else:
            if checkpoint.team != team:
                raise SourceError(
                    f"{self.checkpoint_path} is an import of workspace {checkpoint.team}, this token is "
                    f"of {team}: delete it to start over"
                )
            if checkpoint.options != options:
                raise SourceError(
                    f"{self.checkpoint_path} was made with {checkpoint.options}, not {options}: rerun with "
                    "those options to resume, or delete it to start over"
                )
            self.resumed = True
        spool = Spool(self.spool_path, checkpoint.spool_bytes)
        if not checkpoint.listed:
            await self._list(checkpoint)
            checkpoint.save(self.checkpoint_path)
        users = [
            m async for page in await self.client.users_list(limit=self.page_size) for m in page["members"]
        ]
        self.joined = list(checkpoint.joined)
        self.progress.started(self.resumed, len(checkpoint.channels))
        for state in checkpoint.channels.values():
            if state.state == "history":
                await self._history(checkpoint, state, spool)
            if state.state == "threads":
                await self._threads(checkpoint, state, spool)
        self.progress.close()
        return self._fold(checkpoint, spool, bot_users_of(users) | {bot_user}, len(users))

    def discard(self) -> None:
        self.checkpoint_path.unlink(missing_ok=True)
        self.spool_path.unlink(missing_ok=True)
        self.checkpoint_path.with_suffix(".lock").unlink(missing_ok=True)

    # ---- reading ----

    async def _list(self, checkpoint: Checkpoint) -> None:
        """Which channels are read, in name order; joins them first when asked to."""
        skipped: Counter[str] = Counter()
        found: set[str] = set()
        listed = []
        async for page in await self.client.conversations_list(
            types="public_channel", limit=self.page_size, exclude_archived=False
        ):
            listed.extend(page["channels"])
        for conversation in sorted(listed, key=lambda c: (str(c.get("name", "")), str(c["id"]))):
            channel_type = channel_type_of(conversation)
            shared = conversation.get("is_ext_shared") is True
            _, reason = channel_policy(
                channel_type, ext_shared=shared, rules=Rules(), channel=conversation["id"]
            )
            if not self.options.wants(conversation):
                continue
            found.update(ref for ref in self.options.channels if _names(ref, conversation))
            if reason is not None:  # Slack listed a conversation that is not public: never read
                skipped[reason] += 1
                continue
            if not conversation.get("is_member"):
                if not self.options.join:
                    skipped[NOT_A_MEMBER] += 1
                    continue
                if conversation.get("is_archived"):
                    skipped[ARCHIVED_NOT_JOINED] += 1
                    continue
                await self.client.conversations_join(channel=conversation["id"])
                checkpoint.joined.append(str(conversation.get("name") or conversation["id"]))
            checkpoint.channels[conversation["id"]] = ChannelState(
                id=conversation["id"],
                name=str(conversation.get("name") or conversation["id"]),
                channel_type=channel_type,
                shared=shared,
            )
        missing = [ref for ref in self.options.channels if ref not in found]
        if missing:
            raise SourceError(
                f"not a public channel of this workspace: {', '.join(missing)} (private channels, DMs "
                "and group DMs are never read)"
            )
        if self.options.channels and skipped[NOT_A_MEMBER]:
            raise SourceError(
                "the bot is not a member of the channels asked for: invite it (/invite @BeepGPT), or "
                "use --join (scope channels:join)"
            )
        checkpoint.skipped_channels = dict(sorted(skipped.items()))
        checkpoint.listed = True

    async def _history(self, checkpoint: Checkpoint, state: ChannelState, spool: Spool) -> None:
        while state.state == "history":
            window: dict[str, Any] = {"latest": checkpoint.latest, "inclusive": True}
            if checkpoint.oldest is not None:
                window["oldest"] = checkpoint.oldest
            try:
                page = await self.client.conversations_history(
                    channel=state.id, limit=self.page_size, cursor=state.cursor, **window
                )
            except SlackApiError as error:
                if error.response.get("error") != "invalid_cursor" or state.fetched_to is None:
                    raise
                # An expired cursor: the same next page is the one just older than what was read.
                window["latest"] = state.fetched_to
                state.cursor = None
                page = await self.client.conversations_history(
                    channel=state.id, limit=self.page_size, **window
                )
            messages = [m for m in page["messages"] if m.get("ts") != state.fetched_to]
            for message in messages:
                if _is_thread_parent(message):
                    state.threads.append(str(message["ts"]))
            if messages:
                state.fetched_to = min((str(m["ts"]) for m in messages), key=_ts_key)
            state.cursor = _next_cursor(page)
            if state.cursor is None:
                state.state = "threads"
            self._commit(checkpoint, state, spool, messages)

    async def _threads(self, checkpoint: Checkpoint, state: ChannelState, spool: Spool) -> None:
        while state.threads:
            parent = state.threads[0]
            window: dict[str, Any] = {"latest": checkpoint.latest, "inclusive": True}
            try:
                page = await self.client.conversations_replies(
                    channel=state.id, ts=parent, limit=self.page_size, cursor=state.thread_cursor, **window
                )
            except SlackApiError as error:
                code = error.response.get("error")
                if code == "thread_not_found":  # deleted since the history page listed it
                    page = {"messages": []}
                elif code == "invalid_cursor" and state.thread_from is not None:
                    window["oldest"] = state.thread_from
                    state.thread_cursor = None
                    page = await self.client.conversations_replies(
                        channel=state.id, ts=parent, limit=self.page_size, **window
                    )
                else:
                    raise
            # The parent is in the history already, and so are replies also sent to the channel.
            messages = [
                m
                for m in page["messages"]
                if m.get("ts") != parent
                and m.get("subtype") != "thread_broadcast"
                and (state.thread_from is None or _ts_key(str(m.get("ts"))) > _ts_key(state.thread_from))
            ]
            if messages:
                state.thread_from = max((str(m["ts"]) for m in messages), key=_ts_key)
            state.thread_cursor = _next_cursor(page)
            if state.thread_cursor is None:
                state.threads.pop(0)
                state.thread_from = None
            if not state.threads:
                state.state = "done"
            self._commit(checkpoint, state, spool, messages)
        if state.state != "done":  # a channel without threads
            state.state = "done"
            checkpoint.save(self.checkpoint_path)
        self.progress.channel_done(state)

    def _commit(
        self, checkpoint: Checkpoint, state: ChannelState, spool: Spool, messages: Sequence[Mapping[str, Any]]
    ) -> None:
        """The page's messages into the spool, then the checkpoint that counts them: a crash in
        between leaves bytes the next run truncates and reads again."""
        spool.append(state.id, messages)
        state.messages += len(messages)
        state.pages += 1
        checkpoint.spool_bytes = spool.size
        checkpoint.save(self.checkpoint_path)
        self.progress.page(state.name, len(messages))

    # ---- folding ----

    def _fold(self, checkpoint: Checkpoint, spool: Spool, bot_users: frozenset[str], users: int) -> Imported:
        """Every line through the fold an export import uses, with what the listing said of its
        channel (kind, shared), as an export's listing says it of a folder."""
        history = HistoryBuilder(Rules(bot_users=bot_users, max_text_chars=self.max_text_chars))
        counters: Counter[str] = Counter()
        for channel, message in spool.lines():
            state = checkpoint.channels[channel]
            history.add(
                message,
                where=f"{state.name}[{counters[channel]}]",
                channel=channel,
                channel_type=state.channel_type,
                shared=state.shared,
                reactions=reaction_count(message),
            )
            counters[channel] += 1
        return Imported(
            source=str(self.client.base_url),
            kind=KIND,
            history=history,
            problems=list(history.problems),
            channels=len(checkpoint.channels),
            users=users,
            files=sum(s.pages for s in checkpoint.channels.values()),
            skipped_channels=dict(checkpoint.skipped_channels),
        )


def _options_dict(options: Options) -> dict[str, Any]:
    return {"days": options.days, "channels": list(options.channels), "join": options.join}


def _is_thread_parent(message: Mapping[str, Any]) -> bool:
    replies = message.get("reply_count")
    return message.get("thread_ts") == message.get("ts") and isinstance(replies, int) and replies > 0


def _next_cursor(page: Any) -> str | None:
    metadata = page.get("response_metadata") or {}
    cursor = metadata.get("next_cursor") if isinstance(metadata, Mapping) else None
    return str(cursor) if cursor else None


def _ts(seconds: float) -> str:
    return f"{seconds:.6f}"


def _ts_key(ts: str) -> tuple[int, int]:
    seconds, _, fraction = ts.partition(".")
    return int(seconds or 0), int((fraction or "0").ljust(6, "0")[:6])
