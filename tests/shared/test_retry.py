"""beepgpt.retry: the one retry policy (capped exponential backoff, full jitter, on tenacity)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from beepgpt.retry import retry_call, retrying


class Flaky:
    def __init__(self, failures: int, error: type[Exception] = RuntimeError) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error(f"attempt {self.calls}")
        return "ok"


async def test_waits_grow_exponentially_under_the_cap_with_full_jitter() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    for _ in range(20):
        assert await retry_call(Flaky(5), "flaky", 6, 0.5, 3.0, sleep=sleep) == "ok"
    assert len(slept) == 100
    for n, delay in enumerate(slept, 0):
        attempt = n % 5 + 1
        assert 0 <= delay <= min(3.0, 0.5 * 2 ** (attempt - 1))
    assert len(set(slept)) > 50  # jittered, not a fixed schedule


async def test_gives_up_after_the_attempts_and_raises_the_last_error_itself() -> None:
    flaky = Flaky(10)
    with pytest.raises(RuntimeError, match="attempt 3"):
        await retry_call(flaky, "flaky", 3, 0.0, 0.0)
    assert flaky.calls == 3


async def test_only_the_given_errors_are_retried() -> None:
    flaky = Flaky(1, error=KeyError)
    with pytest.raises(KeyError):
        await retry_call(flaky, "flaky", 5, 0.0, 0.0, retry_on=(ConnectionError, TimeoutError))
    assert flaky.calls == 1
    assert await retry_call(Flaky(2, ConnectionError), "flaky", 5, 0.0, 0.0, retry_on=ConnectionError) == "ok"


async def test_cancellation_is_never_retried() -> None:
    calls = 0

    async def cancelled() -> None:
        nonlocal calls
        calls += 1
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await retry_call(cancelled, "cancelled", 5, 0.0, 0.0)
    assert calls == 1


async def test_each_retry_is_reported_or_logged(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[tuple[int, float, str]] = []
    await retry_call(Flaky(2), "flaky", 3, 0.0, 0.0, on_retry=lambda n, d, e: seen.append((n, d, str(e))))
    assert seen == [(1, 0.0, "attempt 1"), (2, 0.0, "attempt 2")]
    with caplog.at_level(logging.WARNING, logger="beepgpt.retry"):
        await retry_call(Flaky(1), "flaky thing", 2, 0.0, 0.0)
    assert [r.getMessage() for r in caplog.records] == ["flaky thing failed, retrying"]


async def test_the_policy_drives_an_async_for_loop_and_refuses_zero_attempts() -> None:
    flaky = Flaky(1)
    async for attempt in retrying("loop", 2, 0.0, 0.0):
        with attempt:
            result = await flaky()
    assert (result, flaky.calls) == ("ok", 2)
    with pytest.raises(ValueError, match="at least 1"):
        retrying("none", 0, 0.0, 0.0)
