"""Start-up refuses a Redis that evicts keys, or (for the notifier) one that keeps nothing on disk.

Each test runs a redis-server of its own (the machine's Redis is never reconfigured); a user
without the CONFIG command stands for a managed Redis that forbids it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from beepgpt import redis_client as redis_client_module
from beepgpt.redis_client import REDIS_SAFETY, RedisUnsafe, check_redis_safety
from beepgpt.settings import RedisSettings
from devstack.local_stack import RedisServer, free_port

StartRedis = Callable[..., RedisSettings]


@pytest.fixture
def start_redis() -> Iterator[StartRedis]:
    """redis-server with the given arguments (`RedisServer.start`); returns settings for it."""
    running: list[RedisServer] = []

    def start(*args: str, allow_ephemeral: bool = False, **settings: object) -> RedisSettings:
        server = RedisServer.start(None, *args)
        running.append(server)
        return RedisSettings(
            _secrets_dir=None,
            url=server.url,
            allow_ephemeral=allow_ephemeral,
            **settings,  # type: ignore[arg-type]
        )

    yield start
    for server in running:
        server.stop()


@pytest.fixture(autouse=True)
def fresh_warnings() -> None:
    redis_client_module._warned.clear()


EPHEMERAL = ("--save", "", "--appendonly", "no")


def gauge(service: str, check: str) -> float | None:
    wanted = {"service": service, "check": check}
    return next((s.value for s in next(iter(REDIS_SAFETY.collect())).samples if s.labels == wanted), None)


async def test_an_evicting_policy_is_refused(start_redis: StartRedis) -> None:
    settings = start_redis("--maxmemory-policy", "allkeys-lru", *EPHEMERAL, allow_ephemeral=True)
    for needs_persistence in (True, False):
        with pytest.raises(RedisUnsafe, match=r"maxmemory-policy allkeys-lru.*noeviction"):
            await check_redis_safety(settings, service="t", needs_persistence=needs_persistence)
    # Even for a service whose keys all expire, allkeys-* evicts other services' keys too.
    with pytest.raises(RedisUnsafe, match="maxmemory-policy"):
        await check_redis_safety(settings, service="t", needs_persistence=False, all_keys_expire=True)


async def test_volatile_is_accepted_only_when_every_key_expires(start_redis: StartRedis) -> None:
    settings = start_redis("--maxmemory-policy", "volatile-lru", *EPHEMERAL)
    with pytest.raises(RedisUnsafe, match="volatile-lru"):
        await check_redis_safety(settings, service="t", needs_persistence=False)
    safety = await check_redis_safety(settings, service="t", needs_persistence=False, all_keys_expire=True)
    assert safety.eviction_policy == "volatile-lru"


async def test_no_persistence_is_refused_without_the_allowance(start_redis: StartRedis) -> None:
    settings = start_redis("--maxmemory-policy", "noeviction", *EPHEMERAL)
    with pytest.raises(RedisUnsafe, match=r"keeps nothing on disk.*BEEPGPT_REDIS_ALLOW_EPHEMERAL"):
        await check_redis_safety(settings, service="notifier-t", needs_persistence=True)
    # A service that holds nothing (ingest: dedup marks with a TTL) does not need persistence.
    safety = await check_redis_safety(settings, service="ingest-t", needs_persistence=False)
    assert safety == redis_client_module.RedisSafety("noeviction", False)


async def test_no_persistence_is_accepted_with_the_allowance(
    start_redis: StartRedis, caplog: pytest.LogCaptureFixture
) -> None:
    settings = start_redis("--maxmemory-policy", "noeviction", *EPHEMERAL, allow_ephemeral=True)
    with caplog.at_level(logging.WARNING, logger="beepgpt.redis_client"):
        safety = await check_redis_safety(settings, service="notifier-e", needs_persistence=True)
        await check_redis_safety(settings, service="notifier-e", needs_persistence=True)
    assert safety == redis_client_module.RedisSafety("noeviction", False)
    assert [r.getMessage() for r in caplog.records].count(caplog.records[0].getMessage()) == 1
    assert "held alerts" in caplog.records[0].getMessage()
    assert gauge("notifier-e", "eviction") == 1
    assert gauge("notifier-e", "persistence") == 0


def test_the_allowance_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEEPGPT_REDIS_ALLOW_EPHEMERAL", "true")
    assert RedisSettings(_secrets_dir=None).allow_ephemeral
    monkeypatch.setenv("BEEPGPT_REDIS_ALLOW_EPHEMERAL", "false")
    assert not RedisSettings(_secrets_dir=None).allow_ephemeral


async def test_append_only_is_accepted(start_redis: StartRedis) -> None:
    settings = start_redis("--maxmemory-policy", "noeviction", "--appendonly", "yes", "--save", "")
    safety = await check_redis_safety(settings, service="notifier-a", needs_persistence=True)
    assert safety == redis_client_module.RedisSafety("noeviction", True)
    assert gauge("notifier-a", "persistence") == 1
    # RDB snapshots alone count as persistence too.
    rdb = start_redis("--appendonly", "no", "--save", "60 1")
    assert (await check_redis_safety(rdb, service="n", needs_persistence=True)).persistent


async def test_config_forbidden_warns_once_and_goes_on(
    start_redis: StartRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """As on a managed Redis: CONFIG refused (NOPERM); INFO still gives the policy and AOF."""
    password = uuid.uuid4().hex
    acl = ["--user", "default", "off", "--user", "app", "on", f">{password}", "~*", "&*", "+@all", "-config"]
    settings = start_redis(*EPHEMERAL, *acl, username="app", password=password)
    with caplog.at_level(logging.WARNING, logger="beepgpt.redis_client"):
        for _ in range(2):
            safety = await check_redis_safety(settings, service="managed", needs_persistence=True)
    assert safety == redis_client_module.RedisSafety("noeviction", None)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["could not check whether Redis keeps its data on disk (CONFIG not permitted)"]
    assert gauge("managed", "persistence") == 0
    # The policy read through INFO is still enforced.
    evicting = start_redis("--maxmemory-policy", "allkeys-lru", *acl, username="app", password=password)
    with pytest.raises(RedisUnsafe, match="allkeys-lru"):
        await check_redis_safety(evicting, service="managed", needs_persistence=True)


async def test_unreachable_redis_warns_and_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    settings = RedisSettings(_secrets_dir=None, url=f"redis://127.0.0.1:{free_port()}/0")
    with caplog.at_level(logging.WARNING, logger="beepgpt.redis_client"):
        safety = await check_redis_safety(settings, service="gone", needs_persistence=True)
    assert safety == redis_client_module.RedisSafety(None, None)
    assert "could not check" in caplog.records[0].getMessage()


def test_the_services_register_the_check() -> None:
    root = Path(__file__).resolve().parents[2]
    notifier = (root / "services/notifier/notifier/service.py").read_text()
    ingest = (root / "services/ingest/ingest/service.py").read_text()
    assert "check_redis_safety(redis_settings, service=SERVICE, needs_persistence=True)" in notifier
    assert "needs_persistence=False, all_keys_expire=True" in ingest
