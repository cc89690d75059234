"""Configuration read from `BEEPGPT_*` environment variables, validated at start-up (docs/operations.md).

Secrets keep Slack's and OpenAI's usual names (`SLACK_BOT_TOKEN`, ...) and may also come from
files in a mounted secrets directory; they are `SecretStr`, so they never print in logs or reprs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from beepgpt.contracts import DEFAULT_DAILY_BUDGET, DEFAULT_DIGEST_TIMES, DigestTimes


def _secrets_dir() -> str | None:
    """Kubernetes/compose mount secrets as files; use the directory only when it exists."""
    path = Path(os.environ.get("BEEPGPT_SECRETS_DIR", "/run/secrets"))
    return str(path) if path.is_dir() else None


KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def _blank_is_none(value: Any) -> Any:
    """An optional Secret key arrives as an empty variable; empty means "not set", not "".

    Kubernetes `envFrom` an optional Secret, or `FOO=` in a `.env` file, gives "" rather than no
    variable; treating that as a password would make a client AUTH with an empty one.
    """
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _missing_files(**files: Path | None) -> list[str]:
    """The names of the settings whose file does not exist, for one start-up error naming all."""
    return [f"{name}={path}" for name, path in files.items() if path is not None and not path.is_file()]


class KafkaSettings(BaseSettings):
    """How to reach Kafka and how to create topics; never rely on broker defaults."""

    model_config = SettingsConfigDict(
        env_prefix="BEEPGPT_KAFKA_", secrets_dir=_secrets_dir(), hide_input_in_errors=True
    )

    bootstrap_servers: str = "localhost:9092"
    # Apache Kafka supports idempotent producers and we want them; the Tansu test broker refuses
    # InitProducerId, so local stacks set BEEPGPT_KAFKA_IDEMPOTENCE=false.
    idempotence: bool = True
    partitions: int = Field(default=6, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    session_timeout_ms: int = Field(default=10_000, ge=1_000)
    heartbeat_interval_ms: int = Field(default=3_000, ge=100)
    request_timeout_ms: int = Field(default=30_000, ge=1_000)
    linger_ms: int = Field(default=5, ge=0)
    max_request_size: int = Field(default=1_048_576, ge=1_024)
    # How long the broker may hold a fetch that has nothing to return. Kafka answers as soon as
    # data arrives, so this costs it only idle round trips (10/s per consumer); Tansu (the local
    # and test broker) answers only when the wait runs out, so with Kafka's default of 500 ms
    # every consumer hop added about 250 ms (measured: p50 115 ms vs 7 ms at 50 ms).
    fetch_max_wait_ms: int = Field(default=100, ge=0)

    # Security (docs/operations.md, "Securing a deployment"). PLAINTEXT is for the local broker
    # only; a managed Kafka (MSK, Confluent Cloud, Aiven) wants SASL_SSL. Every client is built
    # with these by beepgpt.kafka.clients, so none can connect without them.
    security_protocol: KafkaSecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    # A secret: from BEEPGPT_KAFKA_SASL_PASSWORD or the file of that name in the secrets dir.
    sasl_password: SecretStr | None = None
    # TLS (SSL, SASL_SSL): without a CA file the system's trust store is used, which is what a
    # managed Kafka with a public certificate needs. Cert + key only for mutual TLS.
    ssl_ca_file: Path | None = None
    ssl_cert_file: Path | None = None
    ssl_key_file: Path | None = None
    ssl_key_password: SecretStr | None = None

    _blank_secrets = field_validator(
        "sasl_mechanism",
        "sasl_username",
        "sasl_password",
        "ssl_ca_file",
        "ssl_cert_file",
        "ssl_key_file",
        "ssl_key_password",
        mode="before",
    )(_blank_is_none)

    @model_validator(mode="after")
    def _security_is_complete(self) -> KafkaSettings:
        """Refuse at start-up what would otherwise fail at the first connection, or worse, work.

        A half-configured SASL fails only once a client connects, with an error from deep inside
        aiokafka; a credential set beside PLAINTEXT would be silently ignored, so the operator
        believes the connection is authenticated when it is not.
        """
        sasl = self.security_protocol.startswith("SASL_")
        tls = self.security_protocol.endswith("SSL")
        if sasl:
            missing = [
                f"BEEPGPT_KAFKA_{name.upper()}"
                for name in ("sasl_mechanism", "sasl_username", "sasl_password")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(
                    f"BEEPGPT_KAFKA_SECURITY_PROTOCOL={self.security_protocol} needs {', '.join(missing)}"
                )
        elif self.sasl_mechanism or self.sasl_username or self.sasl_password:
            raise ValueError(
                "BEEPGPT_KAFKA_SASL_* is set but BEEPGPT_KAFKA_SECURITY_PROTOCOL="
                f"{self.security_protocol} does not authenticate: use SASL_SSL (or SASL_PLAINTEXT)"
            )
        files = {
            "ssl_ca_file": self.ssl_ca_file,
            "ssl_cert_file": self.ssl_cert_file,
            "ssl_key_file": self.ssl_key_file,
        }
        if not tls and any(files.values()):
            raise ValueError(
                "BEEPGPT_KAFKA_SSL_*_FILE is set but BEEPGPT_KAFKA_SECURITY_PROTOCOL="
                f"{self.security_protocol} does not use TLS: use SSL or SASL_SSL"
            )
        if (self.ssl_cert_file is None) != (self.ssl_key_file is None):
            raise ValueError(
                "BEEPGPT_KAFKA_SSL_CERT_FILE and BEEPGPT_KAFKA_SSL_KEY_FILE go together (mutual TLS)"
            )
        missing_files = _missing_files(**files)
        if missing_files:
            raise ValueError(f"Kafka TLS files not found: {', '.join(missing_files)}")
        return self


class RedisSettings(BaseSettings):
    """The Redis that holds dedup keys, rate-limit buckets and held alerts."""

    model_config = SettingsConfigDict(
        env_prefix="BEEPGPT_REDIS_", secrets_dir=_secrets_dir(), hide_input_in_errors=True
    )

    # Where Redis is, never who we are: the URL lives in a ConfigMap, so credentials go in the
    # settings below (the password from a Secret). Clients: beepgpt.redis_client.
    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "beepgpt:"
    # An ACL user (Redis 6+); without one, the password is that of the `default` user.
    username: str | None = None
    # A secret: from BEEPGPT_REDIS_PASSWORD or the file of that name in the secrets dir.
    password: SecretStr | None = None
    # TLS; a `rediss://` URL turns it on as well. Without a CA file the system's trust store is
    # used. Cert + key only for mutual TLS.
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    # A Redis that keeps nothing on disk loses held alerts and digests when it restarts (their
    # offsets are committed): the notifier refuses one at start unless this says to accept it
    # (local stacks, tests, CI). beepgpt.redis_client.check_redis_safety.
    allow_ephemeral: bool = False

    _blank_secrets = field_validator(
        "username", "password", "ca_file", "cert_file", "key_file", mode="before"
    )(_blank_is_none)

    @property
    def uses_tls(self) -> bool:
        return self.tls or urlsplit(self.url).scheme == "rediss"

    @model_validator(mode="after")
    def _security_is_complete(self) -> RedisSettings:
        """Refuse credentials in two places and TLS files that are not there, at start-up.

        A password in the URL and in BEEPGPT_REDIS_PASSWORD leaves which one wins to redis-py's
        parsing order; a TLS file that is missing would only fail at the first command.
        """
        parts = urlsplit(self.url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"BEEPGPT_REDIS_URL must be redis:// or rediss://, not {parts.scheme}://")
        if parts.password and self.password is not None:
            raise ValueError(
                "the Redis password is in BEEPGPT_REDIS_URL and in BEEPGPT_REDIS_PASSWORD: keep one"
            )
        if parts.username and self.username is not None:
            raise ValueError("the Redis user is in BEEPGPT_REDIS_URL and in BEEPGPT_REDIS_USERNAME: keep one")
        files = {"ca_file": self.ca_file, "cert_file": self.cert_file, "key_file": self.key_file}
        if not self.uses_tls and any(files.values()):
            raise ValueError(
                "BEEPGPT_REDIS_*_FILE is set without TLS: set BEEPGPT_REDIS_TLS=true or use rediss://"
            )
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("BEEPGPT_REDIS_CERT_FILE and BEEPGPT_REDIS_KEY_FILE go together (mutual TLS)")
        missing_files = _missing_files(**files)
        if missing_files:
            raise ValueError(f"Redis TLS files not found: {', '.join(missing_files)}")
        return self


class SlackSettings(BaseSettings):
    """Slack credentials and where the Slack Web API lives (a stand-in in tests and the demo)."""

    model_config = SettingsConfigDict(env_prefix="BEEPGPT_SLACK_", secrets_dir=_secrets_dir())

    bot_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SLACK_BOT_TOKEN", "slack_bot_token")
    )
    app_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SLACK_APP_TOKEN", "slack_app_token")
    )
    signing_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SLACK_SIGNING_SECRET", "slack_signing_secret")
    )
    api_url: str = "https://slack.com/api/"


class OpenAISettings(BaseSettings):
    """OpenAI credentials; only the optional fine-tuned model and embeddings use them."""

    model_config = SettingsConfigDict(env_prefix="BEEPGPT_OPENAI_", secrets_dir=_secrets_dir())

    api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_API_KEY", "openai_api_key")
    )
    base_url: str | None = None


class ServiceSettings(BaseSettings):
    """What every service process shares: its health/metrics port and log level."""

    model_config = SettingsConfigDict(env_prefix="BEEPGPT_")

    http_host: str = "0.0.0.0"
    http_port: int = Field(default=8000, ge=0, le=65535)
    log_level: str = "INFO"
    shutdown_timeout_s: float = Field(default=20.0, gt=0)


class AlertDefaults(BaseSettings):
    """The daily budget and digest schedule of everyone who has not chosen their own.

    The notifier applies them (`NotifierSettings` extends this class) and ingest shows them in
    `/beep` and App Home, so both read the same variables: `BEEPGPT_NOTIFIER_DAILY_BUDGET` (3) and
    `BEEPGPT_NOTIFIER_DIGEST_TIMES` ("09:00,13:00,17:00", in each person's time zone).
    """

    model_config = SettingsConfigDict(env_prefix="BEEPGPT_NOTIFIER_")

    # People choose from 0 to MAX_DAILY_BUDGET; a deployment may set more (a load test that wants
    # the budget out of the way).
    daily_budget: int = Field(default=DEFAULT_DAILY_BUDGET, ge=0)
    digest_times: Annotated[DigestTimes, NoDecode] = Field(default_factory=lambda: list(DEFAULT_DIGEST_TIMES))

    @field_validator("digest_times", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        """An environment variable lists the times as "09:00,13:00,17:00"."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value
