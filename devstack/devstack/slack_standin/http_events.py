"""Slack's side of the HTTP Events API: signed POSTs to an app's Request URL.

Sends exactly what Slack sends — JSON for events and url_verification, a form for slash
commands, a form with a `payload` JSON field for interactivity — signed with the app's signing
secret, with switches for the failures an app must reject (bad signature, stale timestamp) and
Slack's retry headers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

import aiohttp

from .identity import DEFAULT_SIGNING_SECRET
from .signing import signed_headers

USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"


@dataclass(frozen=True)
class HttpReply:
    status: int
    headers: Mapping[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


class HttpEventsSender:
    """Posts signed Slack requests to one Request URL, e.g.

    ``async with HttpEventsSender(url, secret) as slack: await slack.send_event(payload)``
    """

    def __init__(
        self, url: str, signing_secret: str = DEFAULT_SIGNING_SECRET, *, timeout: float = 10.0
    ) -> None:
        self.url = url
        self._secret = signing_secret
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HttpEventsSender:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send_raw(
        self,
        body: bytes | str,
        content_type: str,
        *,
        retry_num: int | None = None,
        retry_reason: str | None = None,
        bad_signature: bool = False,
        stale_timestamp: bool = False,
        timestamp: int | None = None,
        signed: bool = True,
    ) -> HttpReply:
        raw = body.encode() if isinstance(body, str) else body
        headers = {"Content-Type": content_type, "User-Agent": USER_AGENT, "Accept": "*/*"}
        if signed:
            headers.update(
                signed_headers(
                    self._secret, raw, timestamp=timestamp, bad_signature=bad_signature, stale=stale_timestamp
                )
            )
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = retry_reason or "http_timeout"
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        async with self._session.post(self.url, data=raw, headers=headers) as response:
            return HttpReply(response.status, dict(response.headers), await response.text())

    async def send_event(self, payload: Mapping[str, Any], **options: Any) -> HttpReply:
        """An `event_callback` (or any JSON payload Slack posts: app_rate_limited, ...)."""
        return await self.send_raw(json.dumps(payload), "application/json", **options)

    async def url_verification(self, payload: Mapping[str, Any], **options: Any) -> HttpReply:
        """The handshake Slack does when the Request URL is saved; the app echoes `challenge`."""
        return await self.send_raw(json.dumps(payload), "application/json", **options)

    async def send_slash_command(self, form: Mapping[str, str], **options: Any) -> HttpReply:
        return await self.send_raw(urlencode(dict(form)), "application/x-www-form-urlencoded", **options)

    async def send_interactive(self, payload: Mapping[str, Any], **options: Any) -> HttpReply:
        """block_actions, view_submission, shortcuts: `payload=<json>` as a form."""
        body = urlencode({"payload": json.dumps(payload)})
        return await self.send_raw(body, "application/x-www-form-urlencoded", **options)
