"""Calling Slack's Web API without losing or duplicating a DM.

- HTTP 429: wait for `Retry-After`, and make every concurrent caller of that method wait too
  (Slack's limits are per method and workspace, so hammering on is pointless).
- 5xx, timeouts, dropped connections: retry with exponential backoff and full jitter (the
  project's one policy, `beepgpt.retry`).
- A failure that may have reached Slack (timeout, 5xx) is ambiguous for a post: before trying
  again the caller's `before_retry` looks for the message, so a retry never posts twice.
- Everything else (`channel_not_found`, `user_not_found`, revoked tokens, ...) is definite:
  retrying cannot help, so it is raised at once and reported once per cause.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from beepgpt.retry import retrying
from notifier.metrics import SLACK_ERRORS, SLACK_RATE_LIMITED, SLACK_RETRIES
from notifier.settings import NotifierSettings

log = logging.getLogger(__name__)

TRANSIENT_ERRORS = frozenset(
    {"internal_error", "fatal_error", "service_unavailable", "request_timeout", "ratelimited"}
)
TOKEN_ERRORS = frozenset(
    {"token_revoked", "token_expired", "invalid_auth", "not_authed", "account_inactive", "org_login_required"}
)

Sleep = Callable[[float], Awaitable[None]]
Check = Callable[[], Awaitable[Mapping[str, Any] | None]]


class SlackCallError(Exception):
    """A Slack call that did not succeed; `definite` says whether trying again could help."""

    definite: bool = False

    def __init__(self, method: str, error: str, status: int | None = None) -> None:
        super().__init__(f"{method}: {error}")
        self.method = method
        self.error = error
        self.status = status

    @property
    def token_problem(self) -> bool:
        return self.error in TOKEN_ERRORS


class DefiniteSlackError(SlackCallError):
    definite = True


class TransientSlackError(SlackCallError):
    definite = False


class SlackSender:
    """Retries, backoff and rate-limit gates around an `AsyncWebClient` (which retries nothing)."""

    def __init__(
        self,
        client: AsyncWebClient,
        settings: NotifierSettings,
        *,
        sleep: Sleep = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._settings = settings
        self._sleep = sleep
        self._jitter = jitter
        self._monotonic = monotonic
        self._not_before: dict[str, float] = {}
        self._reported: set[tuple[str, str]] = set()

    async def call(
        self,
        method: str,
        params: Mapping[str, Any],
        *,
        verb: Literal["json", "get"] = "get",
        before_retry: Check | None = None,
    ) -> Mapping[str, Any]:
        """The response body of a successful call, or a `SlackCallError`.

        Transient failures are retried under the project's one policy (`beepgpt.retry`); each
        attempt waits at the method's 429 gate and, after a failure that may have reached Slack,
        looks for the earlier attempt's result first (`before_retry`)."""
        state = _CallState()

        def retriable(error: BaseException) -> bool:
            return isinstance(error, TransientSlackError) and not state.rate_limit_spent

        def on_retry(attempt: int, delay: float, error: BaseException) -> None:
            SLACK_RETRIES.labels(method).inc()

        settings = self._settings
        policy = retrying(
            f"slack {method}",
            settings.max_attempts,
            # Retry n waits up to backoff_base_s·2^n here: the first retry's ceiling is twice the base.
            2 * settings.backoff_base_s,
            settings.backoff_cap_s,
            retry_on=retriable,
            on_retry=on_retry,
            sleep=self._sleep,
            random=self._jitter,
        )
        async for attempt in policy:
            with attempt:
                return await self._attempt(method, params, verb, before_retry, state)
        raise AssertionError("unreachable: the policy re-raises the last error")

    async def _attempt(
        self,
        method: str,
        params: Mapping[str, Any],
        verb: str,
        before_retry: Check | None,
        state: _CallState,
    ) -> Mapping[str, Any]:
        """One attempt: through the 429 gate (as often as Slack asks, within the call's allowance
        for rate-limited waits), then the look-before-re-post check, then the call itself."""
        while True:
            await self._gate(method)
            try:
                if state.must_check and before_retry is not None:
                    found = await before_retry()
                    if found is not None:
                        log.info("earlier attempt had gone through", extra={"method": method})
                        return found
                    state.must_check = False
                return await self._once(method, params, verb)
            except _RateLimited as limited:
                SLACK_RATE_LIMITED.labels(method).inc()
                if state.rate_limited_wait + limited.retry_after > self._settings.max_rate_limited_wait_s:
                    state.rate_limit_spent = True
                    raise TransientSlackError(method, "ratelimited", 429) from None
                state.rate_limited_wait += limited.retry_after
                until = self._monotonic() + limited.retry_after
                self._not_before[method] = max(self._not_before.get(method, 0.0), until)
            except TransientSlackError as error:
                SLACK_ERRORS.labels(method, error.error).inc()
                state.must_check = state.must_check or error.status != 0  # status 0: never reached Slack
                raise
            except DefiniteSlackError as error:
                SLACK_ERRORS.labels(method, error.error).inc()
                raise

    async def _gate(self, method: str) -> None:
        while (wait := self._not_before.get(method, 0.0) - self._monotonic()) > 0:
            await self._sleep(wait)

    async def _once(self, method: str, params: Mapping[str, Any], verb: str) -> Mapping[str, Any]:
        try:
            if verb == "json":
                response = await self._client.api_call(method, json=dict(params))
            else:
                response = await self._client.api_call(method, http_verb="GET", params=dict(params))
        except SlackApiError as error:
            raise _classify(method, error) from None
        except aiohttp.ClientConnectorError as error:
            raise TransientSlackError(method, f"connect: {type(error).__name__}", 0) from None
        except (TimeoutError, aiohttp.ClientError) as error:
            raise TransientSlackError(method, f"network: {type(error).__name__}", None) from None
        data = response.data
        if not isinstance(data, dict):
            raise TransientSlackError(method, "unexpected_body", response.status_code)
        return data

    def report_once(self, error: SlackCallError, subject: str) -> bool:
        """Log a definite failure the first time it happens for this cause; True when logged."""
        cause = "token" if error.token_problem else subject
        if (error.error, cause) in self._reported:
            return False
        self._reported.add((error.error, cause))
        level = logging.ERROR if error.token_problem else logging.WARNING
        log.log(
            level,
            "slack refused a call; alerts it concerns are marked failed",
            extra={"method": error.method, "error": error.error, "subject": cause},
        )
        return True


@dataclass
class _CallState:
    """What one `call` carries across its attempts."""

    rate_limited_wait: float = 0.0  # seconds spent waiting at the 429 gate so far
    must_check: bool = False  # an earlier attempt may have reached Slack: look before re-posting
    rate_limit_spent: bool = False  # a 429 storm outlasted the allowance: give up, do not retry


class _RateLimited(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"retry after {retry_after}s")
        self.retry_after = retry_after


def _classify(method: str, error: SlackApiError) -> Exception:
    response = error.response
    status = int(getattr(response, "status_code", 0) or 0)
    data = getattr(response, "data", None)
    code = str(data.get("error", "")) if isinstance(data, dict) else ""
    if status == 429 or code == "ratelimited":
        headers = getattr(response, "headers", None) or {}
        raw = headers.get("Retry-After") or headers.get("retry-after") or "1"
        try:
            retry_after = max(0.0, float(raw))
        except ValueError:
            retry_after = 1.0
        return _RateLimited(retry_after)
    if status >= 500:
        return TransientSlackError(method, code or f"http_{status}", status)
    if code in TRANSIENT_ERRORS:
        return TransientSlackError(method, code, status)
    return DefiniteSlackError(method, code or f"http_{status}", status)
