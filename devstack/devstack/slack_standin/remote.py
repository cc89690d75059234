"""A client for a stand-in running as another process, through its `/_standin/` endpoints."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import aiohttp


class StandinError(RuntimeError):
    """The control endpoint said no (`no_socket_connection`, `ack_timeout`, `timeout`, ...)."""


class RemoteStandin:
    """The in-process `SlackStandin` conveniences, over HTTP, e.g.

    ``async with RemoteStandin(control_url) as slack: await slack.posts(wait=1)``
    """

    def __init__(self, control_url: str, *, timeout: float = 30.0) -> None:
        self.control_url = control_url if control_url.endswith("/") else control_url + "/"
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> RemoteStandin:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(
        self, verb: str, path: str, *, json: Any = None, params: dict[str, str] | None = None
    ) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        async with self._session.request(verb, self.control_url + path, json=json, params=params) as response:
            body = await response.json()
        if not body.get("ok"):
            raise StandinError(f"{verb} {path}: {body.get('error')} {body.get('detail', '')}".strip())
        return body

    async def info(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", "info")
        return result

    async def push_event(self, payload: dict[str, Any], *, timeout: float = 5.0) -> dict[str, Any]:
        """Returns the ack as a dict (`envelope_id`, `payload`, `latency`, ...)."""
        body = await self._call("POST", "events", json={"payload": payload, "timeout": timeout})
        ack: dict[str, Any] = body["ack"]
        return ack

    async def push_slash_command(self, payload: dict[str, str], *, timeout: float = 5.0) -> dict[str, Any]:
        body = await self._call("POST", "slash_commands", json={"payload": payload, "timeout": timeout})
        ack: dict[str, Any] = body["ack"]
        return ack

    async def push_interactive(self, payload: dict[str, Any], *, timeout: float = 5.0) -> dict[str, Any]:
        body = await self._call("POST", "interactive", json={"payload": payload, "timeout": timeout})
        ack: dict[str, Any] = body["ack"]
        return ack

    async def posts(
        self, *, wait: int = 0, timeout: float = 5.0, method: str | None = None, channel: str | None = None
    ) -> list[dict[str, Any]]:
        params = {"wait": str(wait), "timeout": str(timeout)}
        if method:
            params["method"] = method
        if channel:
            params["channel"] = channel
        body = await self._call("GET", "posts", params=params)
        posts: list[dict[str, Any]] = body["posts"]
        return posts

    async def call_counts(self) -> dict[str, int]:
        counts: dict[str, int] = (await self._call("GET", "calls"))["counts"]
        return counts

    async def add_fault(self, **fault: Any) -> dict[str, Any]:
        """Same arguments as `Faults.add` (method, status, error, retry_after, delay, times, args,
        after, every)."""
        added: dict[str, Any] = (await self._call("POST", "faults", json=fault))["fault"]
        return added

    async def clear_faults(self) -> None:
        await self._call("DELETE", "faults")

    async def disconnect(self, reason: str = "refresh_requested") -> None:
        await self._call("POST", "disconnect", json={"reason": reason})

    async def revoke_token(self, token: str | None = None) -> None:
        await self._call("POST", "tokens/revoke", json={"token": token} if token else {})

    async def reset(self) -> None:
        await self._call("POST", "reset")
