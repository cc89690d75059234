"""beepgpt.retry: the one retry policy (capped exponential backoff, full jitter, on tenacity)."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from beepgpt.retry import backoff_delay, retry_call, retry_call_sync, retrying, retrying_sync


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


def test_backoff_grows_exponentially_under_a_cap_with_jitter() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(n, 0.5, 3.0, rng.random) for n in range(1, 6)]
    assert all(0 <= d <= min(3.0, 0.5 * 2 ** (n - 1)) for n, d in enumerate(delays, 1))
    assert backoff_delay(3, 0.0, 1.0) == 0.0
    assert [backoff_delay(n, 0.5, 3.0, lambda: 1.0) for n in range(1, 5)] == [0.5, 1.0, 2.0, 3.0]
    assert backoff_delay(10_000, 0.5, 3.0, lambda: 1.0) == 3.0  # no overflow, the cap
    assert backoff_delay(1, 0.5, 3.0, retry_after=7.0) == 3.0  # the server's word, capped
    assert backoff_delay(1, 0.5, 3.0, retry_after=-1.0) == 0.0


async def test_the_jitter_source_is_injectable_and_a_retry_after_wins() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    assert await retry_call(Flaky(3), "flaky", 4, 0.5, 8.0, sleep=sleep, random=lambda: 1.0) == "ok"
    assert slept == [0.5, 1.0, 2.0]
    slept.clear()
    hint = {"attempt 1": 4.0, "attempt 2": None}
    await retry_call(
        Flaky(2), "flaky", 3, 0.5, 8.0, sleep=sleep, random=lambda: 1.0, retry_after=lambda e: hint[str(e)]
    )
    assert slept == [4.0, 1.0]


async def test_a_predicate_chooses_what_is_retried_and_none_retries_forever() -> None:
    flaky = Flaky(50, error=ValueError)
    assert (
        await retry_call(flaky, "flaky", None, 0.0, 0.0, retry_on=lambda e: isinstance(e, ValueError)) == "ok"
    )
    assert flaky.calls == 51
    refused = Flaky(5, error=KeyError)
    with pytest.raises(KeyError):
        await retry_call(refused, "flaky", None, 0.0, 0.0, retry_on=lambda e: not isinstance(e, KeyError))
    assert refused.calls == 1


async def test_within_gives_up_before_an_attempt_that_would_start_too_late() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    flaky = Flaky(100)
    with pytest.raises(RuntimeError, match="attempt 1"):  # the first wait (60 s) is already too late
        await retry_call(flaky, "flaky", None, 60.0, 60.0, within_s=30.0, sleep=sleep, random=lambda: 1.0)
    assert (flaky.calls, slept) == (1, [])


def test_the_blocking_policy_is_the_same_policy() -> None:
    calls: list[int] = []
    slept: list[float] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError(f"attempt {len(calls)}")
        return "ok"

    assert retry_call_sync(flaky, "flaky", 3, 1.0, 8.0, sleep=slept.append, random=lambda: 1.0) == "ok"
    assert slept == [1.0, 2.0]
    calls.clear()
    with pytest.raises(ConnectionError, match="attempt 2"):
        retry_call_sync(flaky, "flaky", 2, 0.0, 0.0, sleep=slept.append)
    for attempt in retrying_sync("loop", 1, 0.0, 0.0):
        with attempt:
            result = "once"
    assert result == "once"
    with pytest.raises(ValueError, match="at least 1"):
        retrying_sync("none", 0, 0.0, 0.0)
