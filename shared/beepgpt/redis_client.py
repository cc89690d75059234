"""The one place asyncio Redis clients are built: the URL says where, the settings say who.

`BEEPGPT_REDIS_URL` sits in a ConfigMap and in logs, so it carries no credentials; the user,
password (a `SecretStr`, from a Secret) and TLS files are separate settings, applied here to
every client. tests/shared/test_security_settings.py fails when a Redis client is built anywhere
else in services/ or shared/, so no client can miss them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from prometheus_client import Gauge
from redis.exceptions import ClusterDownError, NoPermissionError, ReadOnlyError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from beepgpt.settings import RedisSettings

SECURITY_OPTIONS = frozenset(
    {"username", "password", "ssl", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs"}
)
"""The client options `security_options` owns: callers may not override them."""

log = logging.getLogger(__name__)


REDIS_OUTAGES: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    ClusterDownError,
    TryAgainError,
    OSError,
)
"""Redis cannot take this service's writes for now, and will again: unreachable or timing out,
still loading its data after a restart (LOADING: `BusyLoadingError` is a `ConnectionError`), a
replica during a failover (READONLY), a cluster or master down, a slot migrating (TRYAGAIN).
A service waits these out and redoes the work; any other Redis error is a bug to surface."""


def client_url(settings: RedisSettings) -> str:
    """The URL with `rediss://` when TLS is asked for by setting: redis-py picks its TLS
    connection class from the scheme alone."""
    parts = urlsplit(settings.url)
    if settings.uses_tls and parts.scheme == "redis":
        parts = parts._replace(scheme="rediss")
    return urlunsplit(parts)


def security_options(settings: RedisSettings) -> dict[str, Any]:
    """redis-py's keyword arguments for the user, password and TLS of the settings.

    Certificates are always verified (`ssl_cert_reqs="required"`, hostname checked): a Redis we
    cannot verify could hand any notifier forged dedup marks or held alerts.
    """
    options: dict[str, Any] = {}
    if settings.username is not None:
        options["username"] = settings.username
    if settings.password is not None:
        options["password"] = settings.password.get_secret_value()
    if settings.uses_tls:
        options["ssl_cert_reqs"] = "required"
        if settings.ca_file is not None:
            options["ssl_ca_certs"] = str(settings.ca_file)
        if settings.cert_file is not None and settings.key_file is not None:
            options["ssl_certfile"] = str(settings.cert_file)
            options["ssl_keyfile"] = str(settings.key_file)
    return options


def redis_client(settings: RedisSettings, **options: Any) -> aioredis.Redis:
    """An asyncio Redis client for `settings.url` with its credentials and TLS applied.

    `options` are the caller's timeouts, retries and the like; a security option among them is
    refused, since it would bypass the settings.
    """
    clash = SECURITY_OPTIONS & options.keys()
    if clash:
        raise TypeError(f"security options come from RedisSettings, not the caller: {sorted(clash)}")
    client: aioredis.Redis = aioredis.Redis.from_url(
        client_url(settings), **options, **security_options(settings)
    )
    return client


# ---- start-up safety check: eviction policy and persistence ----------------------------------

REDIS_SAFETY = Gauge(
    "beepgpt_redis_safety_checked",
    "1 when start-up confirmed the Redis setting is safe, 0 when it could not be checked or "
    "an unsafe setting was explicitly allowed",
    ["service", "check"],
)
_warned: set[str] = set()


class RedisUnsafe(RuntimeError):
    """Redis is configured so that BeepGPT would lose or repeat work; the message says the fix."""


@dataclass(frozen=True)
class RedisSafety:
    """What start-up learnt about Redis; None where Redis would not say (CONFIG forbidden)."""

    eviction_policy: str | None
    persistent: bool | None


def _warn_once(message: str, **extra: Any) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning(message, extra=extra)


def _where(settings: RedisSettings) -> str:
    parts = urlsplit(settings.url)
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}"


def _forbidden(error: aioredis.ResponseError) -> bool:
    """NOPERM (an ACL without +config) or CONFIG renamed/disabled, as managed Redis does."""
    text = str(error).lower()
    return isinstance(error, NoPermissionError) or "noperm" in text or "unknown command" in text


async def _config(client: aioredis.Redis, name: str) -> str | None:
    try:
        reply = await client.config_get(name)
    except aioredis.ResponseError as error:
        if _forbidden(error):
            return None
        raise
    value = reply.get(name)
    return None if value is None else str(value.decode() if isinstance(value, bytes) else value)


async def _info(client: aioredis.Redis, section: str) -> dict[str, Any]:
    try:
        info: dict[str, Any] = await client.info(section)
    except aioredis.ResponseError as error:
        if _forbidden(error):
            return {}
        raise
    return info


async def check_redis_safety(
    settings: RedisSettings,
    *,
    service: str,
    needs_persistence: bool,
    all_keys_expire: bool = False,
    client: aioredis.Redis | None = None,
) -> RedisSafety:
    """Refuse to start on a Redis that evicts keys or (for `needs_persistence`) keeps nothing.

    An evicted dedup mark sends a DM twice and an evicted held alert is lost, so
    `maxmemory-policy` must be `noeviction`; a `volatile-*` policy (evicts only keys with a
    TTL) is accepted when `all_keys_expire` says every key the service writes has one anyway.
    A Redis that keeps nothing on disk loses held alerts and digests (their offsets are
    committed) when it restarts: refused for `needs_persistence` unless
    `BEEPGPT_REDIS_ALLOW_EPHEMERAL=true`. Where Redis will not say (CONFIG forbidden, as on
    managed Redis, or Redis unreachable at start) a warning names what went unchecked and
    start-up goes on. Raises `RedisUnsafe` with the setting and its fix.
    """
    own = client is None
    if client is None:
        client = redis_client(settings, socket_timeout=3, socket_connect_timeout=3)
    where = _where(settings)
    try:
        policy = await _config(client, "maxmemory-policy")
        if policy is None:
            policy = _info_str(await _info(client, "memory"), "maxmemory_policy")
        appendonly = await _config(client, "appendonly")
        save = await _config(client, "save") if appendonly is not None else None
        persistent: bool | None
        if appendonly is not None:
            persistent = appendonly == "yes" or bool(save and save.strip())
        else:
            aof = _info_str(await _info(client, "persistence"), "aof_enabled")
            persistent = True if aof == "1" else None  # RDB snapshots are not visible in INFO
    except (aioredis.RedisError, OSError) as error:
        _warn_once(
            "could not check Redis's eviction policy and persistence at start",
            service=service, redis=where, error=type(error).__name__,
        )  # fmt: skip
        REDIS_SAFETY.labels(service, "eviction").set(0)
        REDIS_SAFETY.labels(service, "persistence").set(0)
        return RedisSafety(None, None)
    finally:
        if own:
            await client.aclose()

    if policy is None:
        _warn_once(
            "could not read Redis's maxmemory-policy (CONFIG not permitted); it must be noeviction",
            service=service, redis=where,
        )  # fmt: skip
        REDIS_SAFETY.labels(service, "eviction").set(0)
    elif policy == "noeviction" or (all_keys_expire and policy.startswith("volatile-")):
        REDIS_SAFETY.labels(service, "eviction").set(1)
    else:
        raise RedisUnsafe(
            f"Redis at {where} has maxmemory-policy {policy}: it may evict keys, and an evicted "
            "dedup mark sends a DM twice, an evicted held alert is lost. Set maxmemory-policy "
            "to noeviction (redis.conf `maxmemory-policy noeviction`, `CONFIG SET "
            "maxmemory-policy noeviction`, or the managed Redis's parameter group)."
        )

    if persistent:
        REDIS_SAFETY.labels(service, "persistence").set(1)
    elif persistent is None:
        _warn_once(
            "could not check whether Redis keeps its data on disk (CONFIG not permitted)",
            service=service, redis=where,
        )  # fmt: skip
        REDIS_SAFETY.labels(service, "persistence").set(0)
    elif not needs_persistence:
        REDIS_SAFETY.labels(service, "persistence").set(1)
    elif settings.allow_ephemeral:
        _warn_once(
            "Redis keeps nothing on disk (BEEPGPT_REDIS_ALLOW_EPHEMERAL=true): held alerts and "
            "digests are lost if it restarts",
            service=service, redis=where,
        )  # fmt: skip
        REDIS_SAFETY.labels(service, "persistence").set(0)
    else:
        raise RedisUnsafe(
            f'Redis at {where} keeps nothing on disk (appendonly no, save ""): held alerts and '
            "digests would be lost when it restarts, their Kafka offsets already committed. Turn "
            "on persistence (`appendonly yes`, or RDB `save` points), or set "
            "BEEPGPT_REDIS_ALLOW_EPHEMERAL=true to accept the loss (local stacks and tests)."
        )
    return RedisSafety(policy, persistent)


def _info_str(info: dict[str, Any], field: str) -> str | None:
    value = info.get(field)
    return None if value is None else str(value)
