"""The replay's delivery rules (`offline.evaluation.policy`) against the notifier's own, in Redis.

`beepgpt eval alerts` cannot run Redis per threshold, so it re-states the notifier's token bucket
and daily budget in Python. These tests run one sequence of alerts through the notifier's Redis
scripts, composed as `notifier.service` composes them (bucket, then the day's budget: taking
when the bucket allowed, only asking when it refused), and through the replay's model, and
require the same decision for every alert.
"""

from __future__ import annotations

import random

import redis.asyncio as aioredis

from beepgpt.settings import RedisSettings
from notifier.budget import allowance, budget_day
from notifier.budget_counter import BudgetAsk, BudgetCounter
from notifier.rate_limit import TokenBucket
from notifier.settings import NotifierSettings
from offline.evaluation.policy import DeliveryPolicy, PolicySettings

T0 = 1_700_000_000.0


def alerts(seed: int, count: int = 400) -> list[tuple[str, str, float]]:
    """(user, conversation, time): bursts and quiet spells over five days, some repeats."""
    rng = random.Random(seed)
    now, out = T0, []
    for _ in range(count):
        now += rng.choice([5, 30, 120, 600, 1800, 4 * 3600])
        user = rng.choice(["UANA", "UBO", "UCY"])
        out.append((user, f"C{rng.randrange(60)}", now))
    return out


async def notifier_decisions(
    sequence: list[tuple[str, str, float]], redis_settings: RedisSettings, settings: NotifierSettings
) -> list[str]:
    client = aioredis.from_url(redis_settings.url)
    try:
        bucket = TokenBucket(client, redis_settings.key_prefix, settings.rate_per_hour / 3600, settings.burst)
        budget = BudgetCounter(client, redis_settings.key_prefix)
        told: set[tuple[str, str]] = set()
        out = []
        for index, (user, subject, now) in enumerate(sequence):
            if (user, subject) in told:  # the dedup key, taken before any limit
                out.append("deduplicated")
                continue
            told.add((user, subject))
            take = await bucket.take(user, now)
            allowed = allowance(None, settings)
            ask = BudgetAsk(
                user, budget_day(allowed, now), f"r{index}", allowed.daily_budget, take=take.allowed
            )
            answer = (await budget.take_many([ask], now))[0]
            out.append("over_budget" if not answer.allowed else "sent" if take.allowed else "rate_limited")
        return out
    finally:
        await client.aclose()


async def test_the_replay_decides_as_the_notifier_does(redis_settings: RedisSettings) -> None:
    paths: set[str] = set()
    for seed, (budget, burst, rate) in enumerate([(3, 3, 6.0), (1, 2, 2.0), (8, 2, 2.0)]):
        settings = NotifierSettings(daily_budget=budget, burst=burst, rate_per_hour=rate)
        sequence = alerts(seed)
        replayed = DeliveryPolicy(PolicySettings(rate_per_hour=rate, burst=burst, daily_budget=budget))
        expected = await notifier_decisions(
            sequence,
            redis_settings.model_copy(update={"key_prefix": f"{redis_settings.key_prefix}{seed}:"}),
            settings,
        )
        assert [replayed.decide(u, c, t) for u, c, t in sequence] == expected, (budget, burst, rate)
        paths |= set(expected)
    assert paths == {"sent", "deduplicated", "rate_limited", "over_budget"}  # every path was compared


def test_the_replay_uses_the_notifier_defaults() -> None:
    settings, replay = NotifierSettings(), PolicySettings()
    assert (replay.rate_per_hour, replay.burst, replay.daily_budget) == (
        settings.rate_per_hour,
        settings.burst,
        settings.daily_budget,
    )
