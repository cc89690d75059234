"""What the app did to Slack, kept for tests to read back and wait on.

Every Web API attempt is counted when it arrives (so 5 injected 429s plus the success read as 6
attempts), every message the app showed someone is a `Post`, and every Socket Mode ack is an
`Ack`. Waiting is driven by an asyncio.Condition notified on each record: tests never poll.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class ApiCall:
    """One finished Web API request. `args` never holds the token."""

    seq: int
    method: str
    args: dict[str, Any]
    status: int
    ok: bool
    error: str | None
    fault_id: int | None
    at: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Post:
    """A message the app put in front of someone: chat.postMessage / postEphemeral / update,
    views.publish, or a `response_url` reply."""

    seq: int
    method: str
    channel: str | None
    ts: str | None
    text: str
    blocks: list[dict[str, Any]] | None
    thread_ts: str | None = None
    user: str | None = None  # ephemeral recipient, or whose App Home was published
    view: dict[str, Any] | None = None
    args: dict[str, Any] = field(default_factory=dict)
    at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def block_text(self) -> str:
        """All text inside the blocks, for assertions that do not care about layout."""
        parts: list[str] = []

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                if isinstance(node.get("text"), str):
                    parts.append(node["text"])
                for key, value in node.items():
                    if key != "text" or not isinstance(value, str):
                        walk(value)
            elif isinstance(node, list):
                for item in node:
                    walk(item)

        walk(self.blocks or [])
        return "\n".join(parts)


@dataclass(frozen=True)
class Ack:
    """The app's answer to one Socket Mode envelope."""

    envelope_id: str
    type: str
    payload: dict[str, Any] | None
    connection_id: int
    latency: float
    envelope: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Recorder:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.calls: list[ApiCall] = []
        self.posts: list[Post] = []
        self.acks: list[Ack] = []
        self._seq = 0
        self._changed = asyncio.Condition()

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def count_attempt(self, method: str) -> None:
        self.counts[method] += 1
        await self._notify()

    async def record_call(
        self, method: str, args: dict[str, Any], status: int, body: dict[str, Any], fault_id: int | None
    ) -> ApiCall:
        call = ApiCall(
            seq=self._next_seq(),
            method=method,
            args={k: v for k, v in args.items() if k != "token"},
            status=status,
            ok=bool(body.get("ok")),
            error=body.get("error"),
            fault_id=fault_id,
            at=time.time(),
        )
        self.calls.append(call)
        await self._notify()
        return call

    async def record_post(self, **fields: Any) -> Post:
        post = Post(seq=self._next_seq(), at=time.time(), **fields)
        self.posts.append(post)
        await self._notify()
        return post

    async def record_ack(self, ack: Ack) -> None:
        self.acks.append(ack)
        await self._notify()

    def call_count(self, method: str) -> int:
        """Attempts that reached the stand-in, faulted ones included."""
        return self.counts[method]

    def find_posts(self, *, method: str | None = None, channel: str | None = None) -> list[Post]:
        return [
            p
            for p in self.posts
            if (method is None or p.method == method) and (channel is None or p.channel == channel)
        ]

    async def wait_until(self, probe: Callable[[], T | None], timeout: float, what: str) -> T:
        """Wait until `probe()` returns something other than None, re-checking on every record."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: probe() is not None), timeout)
            except TimeoutError:
                raise TimeoutError(f"{what} not seen within {timeout}s") from None
        result = probe()
        assert result is not None
        return result

    async def wait_for_posts(
        self, n: int = 1, timeout: float = 5.0, *, method: str | None = None, channel: str | None = None
    ) -> list[Post]:
        """At least `n` posts (optionally of one method / in one channel), oldest first."""

        def probe() -> list[Post] | None:
            found = self.find_posts(method=method, channel=channel)
            return found if len(found) >= n else None

        try:
            return await self.wait_until(probe, timeout, f"{n} post(s)")
        except TimeoutError as e:
            seen = [(p.method, p.channel, p.text[:40]) for p in self.posts]
            raise TimeoutError(f"{e}; posts so far: {seen}") from None

    async def wait_for_calls(self, method: str, n: int = 1, timeout: float = 5.0) -> int:
        """Until `method` has been attempted `n` times; returns the attempt count."""
        return await self.wait_until(
            lambda: self.counts[method] if self.counts[method] >= n else None,
            timeout,
            f"{n} {method} call(s)",
        )

    def reset(self) -> None:
        self.counts.clear()
        self.calls.clear()
        self.posts.clear()
        self.acks.clear()
