"""Retrying a model call with exponential backoff and jitter.

Model and OpenAI failures are mostly transient (a rate limit, a timeout, a reload in progress);
a few attempts spaced out absorb them, and what still fails is dead-lettered by the caller so
the stream keeps moving. Full jitter keeps many scorer instances from retrying in lockstep.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from beepgpt.retry import retry_call
from scorer.metrics import ERRORS

log = logging.getLogger(__name__)

T = TypeVar("T")


async def retrying(
    call: Callable[[], Awaitable[T]],
    *,
    attempts: int,
    base: float,
    cap: float,
    what: str = "call",
) -> T:
    """Await `call()` until it succeeds or `attempts` are used; re-raises the last error.

    The project's one policy (`beepgpt.retry`, on tenacity): its waits are `backoff_delay`'s.
    """

    def on_retry(attempt: int, delay: float, error: BaseException) -> None:
        ERRORS.labels("score_retry").inc()
        log.warning(
            "%s failed, retrying",
            what,
            extra={
                "attempt": attempt,
                "delay_s": round(delay, 3),
                "error": f"{type(error).__name__}: {error}",
            },
        )

    return await retry_call(call, what, attempts, base, cap, on_retry=on_retry)
