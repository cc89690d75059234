"""Dedup keys, token buckets, daily budgets and held alerts on a real Redis (each test under its
own prefix)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest_asyncio
import redis.asyncio as aioredis

from beepgpt.contracts import Candidate
from beepgpt.settings import RedisSettings
from notifier.budget_counter import KEY_TTL_S, BudgetAsk, BudgetCounter
from notifier.dedup import ClaimState, DedupStore, Finish
from notifier.held import HeldAlert, HeldAlerts
from notifier.rate_limit import TokenBucket


@pytest_asyncio.fixture
async def client(redis_settings: RedisSettings) -> AsyncIterator[aioredis.Redis]:
    redis = aioredis.Redis.from_url(redis_settings.url)
    yield redis
    await redis.aclose()


def claim(record: str, owner: str = "me") -> ClaimState:
    return ClaimState("claim", record, owner=owner)


async def test_only_the_first_claim_wins_even_inside_one_batch(
    client: aioredis.Redis, redis_settings: RedisSettings
) -> None:
    dedup = DedupStore(client, redis_settings.key_prefix, ttl_s=3600)
    results = await dedup.claim_many(
        [("U1", "c1", claim("r1")), ("U1", "c1", claim("r2")), ("U2", "c1", claim("r3"))]
    )
    assert results[0] is None
    assert results[2] is None
    assert results[1] == claim("r1")
    assert 3590 < await client.ttl(dedup.key("U1", "c1")) <= 3600


async def test_finish_keeps_the_ttl_and_release_only_drops_own_claims(
    client: aioredis.Redis, redis_settings: RedisSettings
) -> None:
    dedup = DedupStore(client, redis_settings.key_prefix, ttl_s=3600)
    await dedup.claim_many([("U1", "c1", claim("r1")), ("U1", "c2", claim("r2"))])
    done = ClaimState("done", "r1", outcome="sent", dm_channel="D1", dm_ts="1.5")
    await dedup.finish_many([Finish("U1", "c1", done)])
    assert (await dedup.claim_many([("U1", "c1", claim("r9"))]))[0] == done
    assert await client.ttl(dedup.key("U1", "c1")) > 3500
    assert not await dedup.release("U1", "c1", "r1")  # finished: not a claim any more
    assert not await dedup.release("U1", "c2", "r-other")
    assert await dedup.release("U1", "c2", "r2")
    assert (await dedup.claim_many([("U1", "c2", claim("r3"))]))[0] is None


async def test_finish_recreates_a_key_lost_with_redis(
    client: aioredis.Redis, redis_settings: RedisSettings
) -> None:
    dedup = DedupStore(client, redis_settings.key_prefix, ttl_s=3600)
    done = ClaimState("done", "r1", outcome="sent", dm_channel="D1", dm_ts="1.5")
    await dedup.finish_many([Finish("U1", "c1", done)])
    assert (await dedup.claim_many([("U1", "c1", claim("r2"))]))[0] == done


async def test_owner_liveness(client: aioredis.Redis, redis_settings: RedisSettings) -> None:
    dedup = DedupStore(client, redis_settings.key_prefix, ttl_s=3600)
    await dedup.heartbeat("a", 10)
    assert await dedup.alive(["a", "b", "a"]) == {"a": True, "b": False}
    await dedup.retire("a")
    assert await dedup.alive(["a"]) == {"a": False}


async def test_token_bucket_bursts_then_refills_with_the_callers_clock(
    client: aioredis.Redis, redis_settings: RedisSettings
) -> None:
    bucket = TokenBucket(client, redis_settings.key_prefix, rate_per_s=0.5, burst=2)
    t = 1_700_000_000.0
    takes = await bucket.take_many(["U1", "U1", "U1", "U2"], t)
    assert [x.allowed for x in takes] == [True, True, False, True]
    assert abs(takes[2].wait_s - 2.0) < 1e-6
    assert not (await bucket.take("U1", t + 1.0)).allowed
    assert (await bucket.take("U1", t + 2.0)).allowed
    # A clock running behind does not refill (nor break) the bucket.
    assert not (await bucket.take("U1", t - 100)).allowed
    assert await client.pttl(bucket.key("U1")) > 0


async def test_two_instances_share_one_bucket(client: aioredis.Redis, redis_settings: RedisSettings) -> None:
    other = aioredis.Redis.from_url(redis_settings.url)
    try:
        a = TokenBucket(client, redis_settings.key_prefix, rate_per_s=0.001, burst=3)
        b = TokenBucket(other, redis_settings.key_prefix, rate_per_s=0.001, burst=3)
        t = 1_700_000_000.0
        results = [await (a if i % 2 else b).take("U1", t) for i in range(6)]
        assert sum(r.allowed for r in results) == 3
    finally:
        await other.aclose()


async def test_the_daily_budget_is_taken_in_order_and_counts_a_record_once(
    client: aioredis.Redis, redis_settings: RedisSettings
) -> None:
    budget = BudgetCounter(client, redis_settings.key_prefix)
    day, t = "2024-03-05", 1_700_000_000.0
    asks = [BudgetAsk("U1", day, f"r{i}", limit=3) for i in range(4)] + [BudgetAsk("U2", day, "r9", limit=3)]
    answers = await budget.take_many(asks, t)
    assert [(a.allowed, a.used) for a in answers] == [(True, 1), (True, 2), (True, 3), (False, 3), (True, 1)]
    # A batch redone asks again for the same records: already counted, not counted twice.
    again = await budget.take_many([BudgetAsk("U1", day, "r0", limit=3)], t)
    assert [(a.allowed, a.used) for a in again] == [(True, 3)]
    assert await budget.used("U1", day) == 3
    # Another local day is another count; a lower limit set meanwhile applies at once.
    assert (await budget.take_many([BudgetAsk("U1", "2024-03-06", "r5", limit=3)], t))[0].allowed
    assert not (await budget.take_many([BudgetAsk("U2", day, "r10", limit=1)], t))[0].allowed
    key = budget.key("U1", day)
    assert key.startswith(redis_settings.key_prefix)
    assert KEY_TTL_S - 10 < await client.ttl(key) <= KEY_TTL_S


async def test_asking_spends_nothing_and_a_refund_gives_the_dm_back(
    client: aioredis.Redis, redis_settings: RedisSettings
) -> None:
    budget = BudgetCounter(client, redis_settings.key_prefix)
    day, t = "2024-03-05", 1_700_000_000.0
    look = await budget.take_many([BudgetAsk("U1", day, "r0", limit=1, take=False)] * 3, t)
    assert [a.allowed for a in look] == [True, True, True]
    assert await budget.used("U1", day) == 0
    assert (await budget.take_many([BudgetAsk("U1", day, "r1", limit=1)], t))[0].allowed
    assert not (await budget.take_many([BudgetAsk("U1", day, "r2", limit=1, take=False)], t))[0].allowed
    await budget.refund_many([("U1", day, "r1"), ("U1", day, "never-taken")])
    assert await budget.used("U1", day) == 0
    assert (await budget.take_many([BudgetAsk("U1", day, "r2", limit=1)], t))[0].allowed


async def test_instances_share_one_budget_and_never_both_take_the_last_dm(
    client: aioredis.Redis, redis_settings: RedisSettings
) -> None:
    others = [aioredis.Redis.from_url(redis_settings.url) for _ in range(3)]
    try:
        counters = [BudgetCounter(c, redis_settings.key_prefix) for c in [client, *others]]
        t = 1_700_000_000.0
        rounds = await asyncio.gather(
            *(
                counter.take_many([BudgetAsk("U1", "2024-03-05", f"r{i}-{j}", limit=5) for j in range(4)], t)
                for i, counter in enumerate(counters)
            )
        )
        assert sum(a.allowed for answers in rounds for a in answers) == 5
        assert await counters[0].used("U1", "2024-03-05") == 5
    finally:
        for other in others:
            await other.aclose()


def alert(conversation: str, due: float, user: str = "U1") -> HeldAlert:
    candidate = Candidate(
        user=user,
        conversation_id=conversation,
        version=1,
        channel="C1",
        latest_ts="1.000001",
        score=0.5,
        reason="interest",
        explanation="why",
    )
    return HeldAlert(
        candidate=candidate,
        record=f"r-{conversation}",
        reason="held",
        why="quiet hours",
        due=due,
        held_at=1.0,
    )


async def test_held_alerts_become_one_inflight_digest_until_finished(
    client: aioredis.Redis, redis_settings: RedisSettings
) -> None:
    held = HeldAlerts(client, redis_settings.key_prefix)
    await held.hold_many(
        [alert("c1", 100.0), alert("c2", 50.0), alert("c1", 100.0), alert("c3", 70.0, user="U2")]
    )
    assert await held.due_users(60.0) == ["U1"]
    assert sorted(await held.due_users(100.0)) == ["U1", "U2"]
    first = await held.begin("U1", "d1", "me", 60.0)
    assert first is not None
    assert first.id == "d1"
    assert sorted(a.candidate.conversation_id for a in first.alerts) == ["c1", "c2"]
    assert first.alerts[0].candidate.preview == []  # lists survive the Lua step as lists
    # An alert held meanwhile waits for the next digest; a second begin resumes the first.
    await held.hold_many([alert("c4", 200.0)])
    again = await held.begin("U1", "d2", "other", 61.0)
    assert again is not None
    assert again.id == "d1"
    assert await held.finish("U1", "d1") == 1
    assert await held.due_users(150.0) == ["U2"]
    assert sorted(await held.due_users(200.0)) == ["U1", "U2"]
    nxt = await held.begin("U1", "d3", "me", 200.0)
    assert nxt is not None
    assert [a.candidate.conversation_id for a in nxt.alerts] == ["c4"]
    assert await held.finish("U1", "d3") == 0
    assert await held.begin("U1", "d4", "me", 300.0) is None
    assert await held.due_users(1e12) == ["U2"]


async def test_digest_lock_and_expedite(client: aioredis.Redis, redis_settings: RedisSettings) -> None:
    held = HeldAlerts(client, redis_settings.key_prefix)
    assert await held.lock("U1", "a", 30)
    assert not await held.lock("U1", "b", 30)
    await held.unlock("U1", "b")
    assert not await held.lock("U1", "b", 30)
    await held.unlock("U1", "a")
    assert await held.lock("U1", "b", 30)
    await held.expedite("U9", 5.0)  # nobody held: nothing scheduled
    assert await held.due_users(1e12) == []
    await held.hold_many([alert("c1", 1_000.0)])
    await held.expedite("U1", 5.0)
    assert await held.due_users(5.0) == ["U1"]
