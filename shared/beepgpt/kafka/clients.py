"""The one place aiokafka clients are built, so none connects without the security settings.

Every producer, consumer and admin client of the project comes from `new_producer`,
`new_consumer` or `new_admin`; tests/shared/test_security_settings.py fails when an
`AIOKafka*(...)` construction appears anywhere else in services/ or shared/. Why a choke point:
a client built by hand with only `bootstrap_servers` would connect in PLAINTEXT to a broker that
wants SASL_SSL — and fail only in production, or, against a broker with an open listener,
silently skip authentication.
"""

from __future__ import annotations

import ssl
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.helpers import create_ssl_context

from beepgpt.settings import KafkaSettings

SECURITY_OPTIONS = frozenset(
    {"security_protocol", "ssl_context", "sasl_mechanism", "sasl_plain_username", "sasl_plain_password"}
)
"""The client options `security_options` owns: callers may not override them."""


def ssl_context(settings: KafkaSettings) -> ssl.SSLContext:
    """Verifying TLS: the configured CA file, or the system's trust store when there is none.

    Hostname checking stays on (create_ssl_context's default); there is deliberately no setting
    to turn verification off — a broker whose certificate does not verify is a broker we do not
    know we are talking to.
    """
    context: ssl.SSLContext = create_ssl_context(
        cafile=settings.ssl_ca_file,
        certfile=settings.ssl_cert_file,
        keyfile=settings.ssl_key_file,
        password=settings.ssl_key_password.get_secret_value() if settings.ssl_key_password else None,
    )
    return context


def security_options(settings: KafkaSettings) -> dict[str, Any]:
    """aiokafka's keyword arguments for the configured protocol (validated by KafkaSettings).

    The password is unwrapped only here, into the client's own config; it is never in a value
    this module returns for logging.
    """
    options: dict[str, Any] = {"security_protocol": settings.security_protocol}
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl_context(settings)
    if settings.security_protocol.startswith("SASL_"):
        assert settings.sasl_password is not None  # KafkaSettings refuses SASL_* without one
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    return options


def connection_options(settings: KafkaSettings, options: dict[str, Any]) -> dict[str, Any]:
    """The caller's options plus where the brokers are and how to authenticate to them.

    A caller that passes a security option itself is a mistake (it would bypass the settings),
    so it raises rather than letting either side win quietly.
    """
    clash = SECURITY_OPTIONS & options.keys()
    if clash:
        raise TypeError(f"security options come from KafkaSettings, not the caller: {sorted(clash)}")
    merged: dict[str, Any] = {"bootstrap_servers": settings.bootstrap_servers}
    merged.update(options)
    merged.update(security_options(settings))
    return merged


def new_producer(settings: KafkaSettings, **options: Any) -> AIOKafkaProducer:
    """An AIOKafkaProducer with the security settings; durability is make_producer's business."""
    return AIOKafkaProducer(**connection_options(settings, options))


def new_consumer(settings: KafkaSettings, *topics: str, **options: Any) -> AIOKafkaConsumer:
    """An AIOKafkaConsumer with the security settings (subscribed to `topics`, if any)."""
    return AIOKafkaConsumer(*topics, **connection_options(settings, options))


def new_admin(settings: KafkaSettings, **options: Any) -> AIOKafkaAdminClient:
    """An AIOKafkaAdminClient with the security settings."""
    return AIOKafkaAdminClient(**connection_options(settings, options))
