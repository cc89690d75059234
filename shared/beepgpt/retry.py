"""The one retry policy: capped exponential backoff with full jitter, built on tenacity.

Retry number n waits a uniform random time in [0, min(max_s, base_s·2^(n-1))] ("full jitter":
many instances never retry in lockstep). After `attempts` calls the last error is re-raised as
it is. Only `retry_on` errors are retried; cancellation (a `BaseException`) never is.

Slack's per-method 429 gate and the notifier's look-before-re-post check are not this: they live
in notifier.slack_sender, which knows what Slack's answers mean.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

OnRetry = Callable[[int, float, BaseException], None]
"""Called before each backoff with (attempt just failed, 1-based; seconds to wait; its error)."""


def retrying(
    what: str,
    attempts: int,
    base_s: float,
    max_s: float,
    *,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
    on_retry: OnRetry | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncRetrying:
    """The policy, for `async for attempt in retrying(...): with attempt: ...`.

    `on_retry` replaces the default warning log (logger `beepgpt.retry`); `sleep` is injectable so
    tests never wait for real.
    """
    if attempts < 1:
        raise ValueError(f"{what}: attempts must be at least 1, not {attempts}")

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        assert error is not None  # only failed attempts are retried
        if on_retry is not None:
            on_retry(state.attempt_number, delay, error)
        else:
            log.warning(
                "%s failed, retrying",
                what,
                extra={
                    "attempt": state.attempt_number,
                    "delay_s": round(delay, 3),
                    "error": f"{type(error).__name__}: {error}",
                },
            )

    return AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=wait_random_exponential(multiplier=base_s, max=max_s),
        retry=retry_if_exception_type(retry_on),
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )


async def retry_call(
    call: Callable[[], Awaitable[T]],
    what: str,
    attempts: int,
    base_s: float,
    max_s: float,
    *,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
    on_retry: OnRetry | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Await `call()` under the policy: its result, or the last error once `attempts` are used."""
    policy = retrying(what, attempts, base_s, max_s, retry_on=retry_on, on_retry=on_retry, sleep=sleep)
    async for attempt in policy:
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity re-raises the last error")
