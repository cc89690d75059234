"""The one retry policy: capped exponential backoff with full jitter, built on tenacity.

Retry number n waits `random() · min(max_s, base_s·2^(n-1))` seconds ("full jitter": many
instances never retry in lockstep); `backoff_delay` is that formula, the only one the project
uses. When the failure says how long to wait (an HTTP `Retry-After`), a `retry_after` hook lets
the server's word win, capped at `max_s`. The policy gives up after `attempts` calls, or before
an attempt that would start more than `within_s` after the first, or never (both `None`); the
last error is then re-raised as it is. Only `retry_on` errors are retried; cancellation (a
`BaseException`) never is.

Async callers use `retrying` / `retry_call`, blocking ones `retrying_sync` / `retry_call_sync`;
`sleep` and `random` are injectable so tests neither wait nor guess.

Slack's per-method 429 gate and the notifier's look-before-re-post check are not this: they live
in notifier.slack_sender, which knows what Slack's answers mean.
"""

from __future__ import annotations

import asyncio
import logging
import random as _random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypedDict, TypeVar, Unpack

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_any,
    stop_before_delay,
    stop_never,
)
from tenacity.stop import stop_base
from tenacity.wait import wait_base

log = logging.getLogger(__name__)

T = TypeVar("T")

OnRetry = Callable[[int, float, BaseException], None]
"""Called before each backoff with (attempt just failed, 1-based; seconds to wait; its error)."""

RetryOn = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
"""Which errors are retried: exception types, or a predicate over the error."""

RetryAfter = Callable[[BaseException], float | None]
"""Seconds the failure itself asks to wait (an HTTP `Retry-After`), or None to back off."""

Random = Callable[[], float]
"""A uniform draw in [0, 1): `random.random`, a seeded `Random().random`, or a constant in tests."""


def backoff_delay(
    attempt: int,
    base_s: float,
    max_s: float,
    random: Random = _random.random,
    *,
    retry_after: float | None = None,
) -> float:
    """Seconds before retry number `attempt` (1-based): `retry_after` (capped at `max_s`) when the
    server named a wait, else full jitter over `min(max_s, base_s·2^(attempt-1))`."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), max_s)
    try:
        ceiling = min(max_s, base_s * 2 ** (attempt - 1))
    except OverflowError:  # absurd attempt numbers: the cap applies long before
        ceiling = max_s
    return random() * ceiling if ceiling > 0 else 0.0


class _FullJitter(wait_base):
    def __init__(self, base_s: float, max_s: float, random: Random, retry_after: RetryAfter | None) -> None:
        self.base_s = base_s
        self.max_s = max_s
        self.random = random
        self.retry_after = retry_after

    def __call__(self, retry_state: RetryCallState) -> float:
        hint = None
        outcome = retry_state.outcome
        if self.retry_after is not None and outcome is not None and outcome.failed:
            error = outcome.exception()
            hint = self.retry_after(error) if error is not None else None
        return backoff_delay(
            retry_state.attempt_number, self.base_s, self.max_s, self.random, retry_after=hint
        )


class Options(TypedDict, total=False):
    """What shapes the policy beyond its attempts and delays (every entry optional)."""

    within_s: float | None
    """give up before an attempt that would start later than this after the first"""
    retry_on: RetryOn
    """which errors are retried (default: every `Exception`)"""
    on_retry: OnRetry | None
    """replaces the default warning log (logger `beepgpt.retry`)"""
    random: Random
    retry_after: RetryAfter | None


def _policy(what: str, attempts: int | None, base_s: float, max_s: float, options: Options) -> dict[str, Any]:
    """The keyword arguments of `Retrying` / `AsyncRetrying` that make the policy."""
    if attempts is not None and attempts < 1:
        raise ValueError(f"{what}: attempts must be at least 1, not {attempts}")
    within_s = options.get("within_s")
    retry_on: RetryOn = options.get("retry_on", Exception)
    on_retry = options.get("on_retry")
    random = options.get("random", _random.random)
    retry_after = options.get("retry_after")
    stops: list[stop_base] = []
    if attempts is not None:
        stops.append(stop_after_attempt(attempts))
    if within_s is not None:
        stops.append(stop_before_delay(within_s))
    stop: stop_base = stop_never if not stops else stops[0] if len(stops) == 1 else stop_any(*stops)

    if isinstance(retry_on, type | tuple):
        types = retry_on

        def retriable(error: BaseException) -> bool:
            return isinstance(error, Exception) and isinstance(error, types)
    else:
        predicate = retry_on

        def retriable(error: BaseException) -> bool:
            return isinstance(error, Exception) and predicate(error)

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

    return {
        "stop": stop,
        "wait": _FullJitter(base_s, max_s, random, retry_after),
        "retry": retry_if_exception(retriable),
        "before_sleep": before_sleep,
        "reraise": True,
    }


def retrying(
    what: str,
    attempts: int | None,
    base_s: float,
    max_s: float,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    **options: Unpack[Options],
) -> AsyncRetrying:
    """The policy, for `async for attempt in retrying(...): with attempt: ...`."""
    return AsyncRetrying(sleep=sleep, **_policy(what, attempts, base_s, max_s, options))


def retrying_sync(
    what: str,
    attempts: int | None,
    base_s: float,
    max_s: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    **options: Unpack[Options],
) -> Retrying:
    """`retrying` for blocking code: `for attempt in retrying_sync(...): with attempt: ...`."""
    return Retrying(sleep=sleep, **_policy(what, attempts, base_s, max_s, options))


async def retry_call(
    call: Callable[[], Awaitable[T]],
    what: str,
    attempts: int | None,
    base_s: float,
    max_s: float,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    **options: Unpack[Options],
) -> T:
    """Await `call()` under the policy: its result, or the last error once the policy gives up."""
    async for attempt in retrying(what, attempts, base_s, max_s, sleep=sleep, **options):
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity re-raises the last error")


def retry_call_sync(
    call: Callable[[], T],
    what: str,
    attempts: int | None,
    base_s: float,
    max_s: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    **options: Unpack[Options],
) -> T:
    """`retry_call` for blocking code."""
    for attempt in retrying_sync(what, attempts, base_s, max_s, sleep=sleep, **options):
        with attempt:
            return call()
    raise AssertionError("unreachable: tenacity re-raises the last error")
