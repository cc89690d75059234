"""The thin adapter around the official `openai` client: how it is built and how it is retried.

The client's own retries are switched off (`max_retries=0`) so that there is one retry policy,
the project's (`beepgpt.retry`), which is visible in metrics and tests: rate limits (HTTP 429)
wait for the server's `Retry-After` when it sends one, otherwise an exponential backoff with
full jitter; connection errors, timeouts and 5xx answers are retried the same way; anything else
(a 400, a 401, a 404) is a bug or a configuration error and is raised at once.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from prometheus_client import Counter

from beepgpt.retry import backoff_delay, retry_call_sync
from beepgpt.settings import OpenAISettings

if TYPE_CHECKING:
    from openai import OpenAI

log = logging.getLogger(__name__)

T = TypeVar("T")

OPENAI_RETRIES = Counter(
    "beepgpt_scorer_openai_retries_total", "OpenAI calls retried, by what and why", ["what", "why"]
)


class OpenAIUnavailable(RuntimeError):
    """OpenAI is not configured (no API key) or kept failing after every retry."""


def make_client(settings: OpenAISettings | None = None, *, timeout_s: float = 60.0) -> OpenAI:
    """An `openai.OpenAI` client from `OPENAI_API_KEY` (and `BEEPGPT_OPENAI_BASE_URL` for a
    stand-in or a proxy). The key is read here and nowhere else, and never logged."""
    from openai import OpenAI

    config = settings or OpenAISettings()
    if config.api_key is None:
        raise OpenAIUnavailable("OPENAI_API_KEY is not set; the OpenAI models need it")
    return OpenAI(
        api_key=config.api_key.get_secret_value(),
        base_url=config.base_url,
        max_retries=0,
        timeout=timeout_s,
    )


@dataclass
class Backoff:
    """Retry policy for OpenAI calls: the project's one policy (`beepgpt.retry`) with the
    server's `Retry-After` honoured on 429s; `sleep` is injectable so tests never wait for real."""

    attempts: int = 6
    base_s: float = 1.0
    cap_s: float = 60.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before retry number `attempt` (1-based): the server's word wins when given."""
        return backoff_delay(attempt, self.base_s, self.cap_s, self.rng.random, retry_after=retry_after)

    def call(self, fn: Callable[[], T], *, what: str) -> T:
        import openai

        retriable = (openai.RateLimitError, openai.APIConnectionError, openai.InternalServerError)

        def server_wait(error: BaseException) -> float | None:
            return _retry_after(error) if isinstance(error, openai.RateLimitError) else None

        def on_retry(attempt: int, wait: float, error: BaseException) -> None:
            why = "rate_limited" if isinstance(error, openai.RateLimitError) else "unavailable"
            OPENAI_RETRIES.labels(what, why).inc()
            log.warning(
                "openai %s failed (%s), retrying",
                what,
                why,
                extra={"attempt": attempt, "delay_s": round(wait, 3)},
            )

        try:
            return retry_call_sync(
                fn,
                f"openai {what}",
                self.attempts,
                self.base_s,
                self.cap_s,
                retry_on=retriable,
                retry_after=server_wait,
                on_retry=on_retry,
                sleep=self.sleep,
                random=self.rng.random,
            )
        except retriable as failure:  # only once every attempt is spent
            raise OpenAIUnavailable(f"{what}: gave up after {self.attempts} attempts: {failure}") from failure


def _retry_after(error: BaseException) -> float | None:
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    for name in ("retry-after-ms", "retry-after"):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value)
        except ValueError:
            continue
        return seconds / 1000 if name == "retry-after-ms" else seconds
    return None
