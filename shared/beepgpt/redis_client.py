"""The one place asyncio Redis clients are built: the URL says where, the settings say who.

`BEEPGPT_REDIS_URL` sits in a ConfigMap and in logs, so it carries no credentials; the user,
password (a `SecretStr`, from a Secret) and TLS files are separate settings, applied here to
every client. tests/shared/test_security_settings.py fails when a Redis client is built anywhere
else in services/ or shared/, so no client can miss them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis

from beepgpt.settings import RedisSettings

SECURITY_OPTIONS = frozenset(
    {"username", "password", "ssl", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs"}
)
"""The client options `security_options` owns: callers may not override them."""


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
