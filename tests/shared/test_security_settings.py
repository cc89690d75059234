"""Secured connections: Kafka TLS/SASL and Redis password/ACL user/TLS settings reach every client.

The local Tansu broker speaks PLAINTEXT only, so TLS to Kafka runs for real through stunnel in
front of a broker that advertises the TLS port (`devstack.local_stack.TlsProxy`); SASL, which no
local broker does, is proven by the settings being validated and carried by every client the
project builds (aiokafka's own objects, inspected before they connect; and no client is built
outside beepgpt.kafka.clients). Redis can do it all, so its side runs against real servers: the
shared test Redis (no password) and a redis-server of this module's own with TLS and a password.
"""

from __future__ import annotations

import ast
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaConnectionError
from pydantic import SecretStr, TypeAdapter, ValidationError
from redis.exceptions import AuthenticationError

from beepgpt.contracts import Feedback
from beepgpt.kafka import EventProducer, ensure_topics, make_consumer, new_admin, new_consumer, new_producer
from beepgpt.kafka.clients import security_options
from beepgpt.kafka.producer import make_producer
from beepgpt.redis_client import redis_client
from beepgpt.settings import KafkaSettings, RedisSettings
from beepgpt.topics import Topic
from devstack.local_stack import Broker, TlsProxy, dies_with_starter, free_port

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "s3cret-" + uuid.uuid4().hex[:8]


# ---- certificates (openssl, as an operator would make them) ----------------------------------


@pytest.fixture(scope="module")
def certs() -> Iterator[dict[str, Path]]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate it signed."""
    with tempfile.TemporaryDirectory(prefix="beepgpt-certs-") as tmp:
        d = Path(tmp)

        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

        openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        )
        for name, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"), ("client", "")):
            openssl(
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                f"/CN={name}",
                "-keyout",
                f"{name}.key",
                "-out",
                f"{name}.csr",
            )
            (d / f"{name}.ext").write_text(ext + "\n" if ext else "basicConstraints=CA:FALSE\n")
            openssl(
                "x509",
                "-req",
                "-in",
                f"{name}.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                f"{name}.ext",
                "-out",
                f"{name}.pem",
            )
        yield {
            "ca": d / "ca.pem",
            "server_cert": d / "server.pem",
            "server_key": d / "server.key",
            "client_cert": d / "client.pem",
            "client_key": d / "client.key",
        }


# ---- Kafka over TLS, for real --------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_kafka(certs: dict[str, Path]) -> Iterator[str]:
    """A Tansu broker reachable only over TLS (stunnel in front; it advertises the TLS port)."""
    port = free_port()
    broker = Broker.start(advertised_port=port)
    try:
        proxy = TlsProxy.start(broker.port, certs["server_cert"], certs["server_key"], port=port)
        try:
            yield f"127.0.0.1:{port}"
        finally:
            proxy.stop()
    finally:
        broker.stop()


async def test_kafka_over_tls_with_the_operators_ca(tls_kafka: str, certs: dict[str, Path]) -> None:
    settings = KafkaSettings(
        _secrets_dir=None,
        bootstrap_servers=tls_kafka,
        security_protocol="SSL",
        ssl_ca_file=certs["ca"],
        idempotence=False,  # Tansu refuses idempotent producers
    )
    topic = Topic(f"tls-{uuid.uuid4().hex[:8]}", "user", TypeAdapter(Feedback), partitions=1, retention=timedelta(days=1))
    await ensure_topics(settings, [topic])
    click = Feedback(user="U1", conversation_id="C1:1700000000.000100", useful=True)
    async with EventProducer(settings, "test") as producer:
        await (await producer.send_soon(topic, "U1", click))
    consumer = make_consumer(settings, None, topic.name)
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=10_000)
    finally:
        await consumer.stop()
    assert [topic.decode(r.value) for records in batch.values() for r in records] == [click]


async def test_kafka_over_tls_refuses_a_server_it_cannot_verify(tls_kafka: str) -> None:
    # No CA file: the system store, which has never heard of this server's CA.
    settings = KafkaSettings(
        _secrets_dir=None, bootstrap_servers=tls_kafka, security_protocol="SSL", idempotence=False
    )
    producer = make_producer(settings, "test")
    with pytest.raises(KafkaConnectionError):
        await producer.start()
    await producer.stop()


# ---- KafkaSettings ---------------------------------------------------------------------------


def _kafka(**values: Any) -> KafkaSettings:
    return KafkaSettings(_secrets_dir=None, **values)


def test_kafka_defaults_to_plaintext_without_credentials() -> None:
    settings = _kafka()
    assert settings.security_protocol == "PLAINTEXT"
    assert security_options(settings) == {"security_protocol": "PLAINTEXT"}


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"security_protocol": "SASL_SSL"}, ["SASL_MECHANISM", "SASL_USERNAME", "SASL_PASSWORD"]),
        (
            {"security_protocol": "SASL_PLAINTEXT", "sasl_username": "u", "sasl_password": "p"},
            ["SASL_MECHANISM"],
        ),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_username": "u"},
            ["SASL_PASSWORD"],
        ),
        # A credential beside a protocol that does not use it would be silently ignored.
        ({"sasl_username": "u", "sasl_password": "p", "sasl_mechanism": "PLAIN"}, ["SASL_SSL"]),
        (
            {
                "security_protocol": "SASL_PLAINTEXT",
                "ssl_ca_file": "/etc/hostname",
                "sasl_mechanism": "PLAIN",
                "sasl_username": "u",
                "sasl_password": "p",
            },
            ["does not use TLS"],
        ),
        (
            {"security_protocol": "SSL", "ssl_ca_file": "/nonexistent/ca.pem"},
            ["ssl_ca_file=/nonexistent/ca.pem"],
        ),
        ({"security_protocol": "SSL", "ssl_cert_file": "/etc/hostname"}, ["go together"]),
        (
            {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "GSSAPI",
                "sasl_username": "u",
                "sasl_password": "p",
            },
            ["sasl_mechanism"],
        ),
        ({"security_protocol": "TLS"}, ["security_protocol"]),
    ],
)
def test_kafka_security_is_refused_at_start_when_incomplete(values: dict[str, Any], named: list[str]) -> None:
    with pytest.raises(ValidationError) as raised:
        _kafka(**values)
    message = str(raised.value)
    for name in named:
        assert name in message
    assert "input_value" not in message  # the input (passwords among it) is never in the error


def test_kafka_sasl_password_comes_from_env_or_secrets_dir_and_never_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BEEPGPT_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("BEEPGPT_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("BEEPGPT_KAFKA_SASL_USERNAME", "beepgpt")
    (tmp_path / "BEEPGPT_KAFKA_SASL_PASSWORD").write_text(PASSWORD)
    settings = KafkaSettings(_secrets_dir=tmp_path)
    assert settings.sasl_password is not None
    assert settings.sasl_password.get_secret_value() == PASSWORD
    assert PASSWORD not in repr(settings)
    assert PASSWORD not in str(settings.model_dump())
    monkeypatch.setenv("BEEPGPT_KAFKA_SASL_PASSWORD", "from-env")
    assert KafkaSettings(_secrets_dir=None).sasl_password == SecretStr("from-env")


def test_kafka_blank_optional_secret_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """`envFrom` an optional Secret with an empty key must not become an empty password."""
    monkeypatch.setenv("BEEPGPT_KAFKA_SASL_PASSWORD", "")
    assert KafkaSettings(_secrets_dir=None).sasl_password is None


# ---- every Kafka client carries the settings --------------------------------------------------


def _client_of(client: AIOKafkaProducer | AIOKafkaConsumer | AIOKafkaAdminClient) -> AIOKafkaClient:
    inner = client.client if isinstance(client, AIOKafkaProducer) else client._client
    assert isinstance(inner, AIOKafkaClient)
    return inner


def _sasl_ssl(certs: dict[str, Path], mechanism: str = "SCRAM-SHA-512") -> KafkaSettings:
    return _kafka(
        bootstrap_servers="kafka.example.invalid:9096",
        security_protocol="SASL_SSL",
        sasl_mechanism=mechanism,
        sasl_username="beepgpt",
        sasl_password=PASSWORD,
        ssl_ca_file=certs["ca"],
        ssl_cert_file=certs["client_cert"],
        ssl_key_file=certs["client_key"],
    )


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_every_factory_builds_clients_with_the_security_settings(
    certs: dict[str, Path], mechanism: str
) -> None:
    """Built, not started: nothing connects, aiokafka's own client objects are inspected."""
    settings = _sasl_ssl(certs, mechanism)
    event_producer = EventProducer(settings, "test")
    built = {
        "new_producer": new_producer(settings),
        "new_consumer": new_consumer(settings, "some.topic", group_id="g"),
        "new_admin": new_admin(settings),
        "make_producer": make_producer(settings, "test"),
        "make_consumer": make_consumer(settings, "g", "some.topic"),
        "EventProducer": event_producer._producer,
    }
    for name, client in built.items():
        inner = _client_of(client)
        assert inner._bootstrap_servers == settings.bootstrap_servers, name
        assert inner._security_protocol == "SASL_SSL", name
        assert inner._sasl_mechanism == mechanism, name
        assert inner._sasl_plain_username == "beepgpt", name
        assert inner._sasl_plain_password == PASSWORD, name
        context = inner._ssl_context
        assert isinstance(context, ssl.SSLContext), name
        assert context.verify_mode == ssl.CERT_REQUIRED, name
        assert context.check_hostname, name
        assert any(cert["subject"] == ((("commonName", "test-ca"),),) for cert in context.get_ca_certs()), (
            name
        )


async def test_plaintext_clients_carry_no_credentials() -> None:
    inner = _client_of(new_consumer(_kafka()))
    assert inner._security_protocol == "PLAINTEXT"
    assert inner._ssl_context is None
    assert inner._sasl_plain_password is None


async def test_ssl_without_a_ca_file_trusts_the_system_store() -> None:
    """A managed Kafka with a public certificate needs no CA file."""
    inner = _client_of(new_admin(_kafka(security_protocol="SSL")))
    assert inner._security_protocol == "SSL"
    assert isinstance(inner._ssl_context, ssl.SSLContext)
    assert inner._ssl_context.verify_mode == ssl.CERT_REQUIRED


async def test_a_caller_cannot_override_the_security_settings() -> None:
    with pytest.raises(TypeError, match="security_protocol"):
        new_consumer(_kafka(), security_protocol="PLAINTEXT")
    with pytest.raises(TypeError, match="password"):
        redis_client(RedisSettings(_secrets_dir=None), password="x")


def _constructions(names: set[str], allowed: set[Path]) -> list[str]:
    """`file:line` of every call to one of `names` in services/ and shared/, outside `allowed`."""
    found = []
    for path in sorted([*REPO.glob("services/*/*/**/*.py"), *REPO.glob("shared/beepgpt/**/*.py")]):
        if path in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in names:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    return found


def test_no_kafka_or_redis_client_is_built_outside_the_helpers() -> None:
    """The helpers are the only way in, so a new client cannot forget the security settings."""
    kafka = _constructions(
        {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient", "AIOKafkaClient"},
        {REPO / "shared/beepgpt/kafka/clients.py"},
    )
    assert not kafka, f"build Kafka clients with beepgpt.kafka.clients.new_*: {kafka}"
    redis = _constructions(
        {"from_url", "Redis", "StrictRedis", "ConnectionPool", "RedisCluster"},
        {REPO / "shared/beepgpt/redis_client.py"},
    )
    assert not redis, f"build Redis clients with beepgpt.redis_client.redis_client: {redis}"


# ---- RedisSettings and redis_client -------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"url": "redis://:inline@127.0.0.1:6379/0", "password": "p"}, "keep one"),
        ({"url": "redis://me@127.0.0.1:6379/0", "username": "me"}, "keep one"),
        ({"ca_file": "/etc/hostname"}, "without TLS"),
        ({"tls": True, "ca_file": "/nonexistent/ca.pem"}, "ca_file=/nonexistent/ca.pem"),
        ({"tls": True, "cert_file": "/etc/hostname"}, "go together"),
        ({"url": "http://127.0.0.1:6379"}, "redis:// or rediss://"),
    ],
)
def test_redis_security_is_refused_at_start_when_inconsistent(values: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError, match=named) as raised:
        RedisSettings(_secrets_dir=None, **values)
    assert "inline" not in str(raised.value)


def test_redis_password_comes_from_the_secrets_dir(tmp_path: Path) -> None:
    (tmp_path / "BEEPGPT_REDIS_PASSWORD").write_text(PASSWORD)
    settings = RedisSettings(_secrets_dir=tmp_path)
    assert settings.password == SecretStr(PASSWORD)
    assert PASSWORD not in repr(settings)


async def test_redis_client_applies_tls_and_credentials_outside_the_url(certs: dict[str, Path]) -> None:
    settings = RedisSettings(
        _secrets_dir=None,
        url="redis://cache.example.invalid:6380/2",
        username="beepgpt",
        password=PASSWORD,
        tls=True,
        ca_file=certs["ca"],
        cert_file=certs["client_cert"],
        key_file=certs["client_key"],
    )
    client = redis_client(settings, socket_timeout=3)
    pool = client.connection_pool
    assert issubclass(pool.connection_class, aioredis.SSLConnection)
    kwargs = pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("cache.example.invalid", 6380, 2)
    assert kwargs["username"] == "beepgpt"
    assert kwargs["password"] == PASSWORD
    assert kwargs["ssl_ca_certs"] == str(certs["ca"])
    assert kwargs["ssl_cert_reqs"] == "required"
    assert kwargs["ssl_certfile"] == str(certs["client_cert"])
    assert kwargs["socket_timeout"] == 3
    await client.aclose()


async def test_an_acl_user_and_password_outside_the_url_authenticate(redis_url: str) -> None:
    """A throwaway ACL user on the shared Redis, allowed only its own keys, then deleted."""
    admin = aioredis.Redis.from_url(redis_url)  # the test's own admin connection, not the product's
    user = f"beepgpt-test-{uuid.uuid4().hex[:8]}"
    await admin.acl_setuser(
        user, enabled=True, passwords=[f"+{PASSWORD}"], keys=[f"{user}:*"], commands=["+ping", "+set", "+get"]
    )
    try:
        good = redis_client(RedisSettings(_secrets_dir=None, url=redis_url, username=user, password=PASSWORD))
        assert await good.ping()
        await good.set(f"{user}:k", "v", ex=60)
        assert await good.get(f"{user}:k") == b"v"
        await good.aclose()
        bad = redis_client(RedisSettings(_secrets_dir=None, url=redis_url, username=user, password="wrong"))
        with pytest.raises(AuthenticationError):
            await bad.ping()
        await bad.aclose()
    finally:
        await admin.delete(f"{user}:k")
        await admin.acl_deluser(user)
        await admin.aclose()


@pytest.fixture(scope="module")
def tls_redis(certs: dict[str, Path]) -> Iterator[int]:
    """A redis-server of this module's own: TLS only (no plaintext port), password required."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="beepgpt-tls-redis-") as workdir:
        args = [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--tls-cert-file",
            str(certs["server_cert"]),
            "--tls-key-file",
            str(certs["server_key"]),
            "--tls-ca-cert-file",
            str(certs["ca"]),
            "--tls-auth-clients",
            "no",
            "--requirepass",
            PASSWORD,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ]
        process = subprocess.Popen(dies_with_starter(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            context = ssl.create_default_context(cafile=str(certs["ca"]))
            for _ in range(100):
                try:
                    with (
                        socket.create_connection(("127.0.0.1", port), timeout=0.2) as raw,
                        context.wrap_socket(raw, server_hostname="127.0.0.1"),
                    ):
                        break
                except OSError:
                    if process.poll() is not None:
                        output = process.stdout.read().decode() if process.stdout else ""
                        pytest.fail(f"redis-server with TLS did not start:\n{output[-2000:]}")
                    time.sleep(0.1)
            yield port
        finally:
            process.terminate()
            process.wait(timeout=10)


@pytest.fixture
def tls_settings(tls_redis: int, certs: dict[str, Path]) -> RedisSettings:
    return RedisSettings(
        _secrets_dir=None,
        url=f"redis://127.0.0.1:{tls_redis}/0",
        tls=True,
        ca_file=certs["ca"],
        password=PASSWORD,
    )


async def test_redis_over_tls_with_a_password(tls_settings: RedisSettings) -> None:
    client = redis_client(tls_settings, socket_timeout=5)
    try:
        assert await client.ping()
        await client.set("k", "v")
        assert await client.get("k") == b"v"
    finally:
        await client.aclose()


async def test_redis_tls_refuses_an_unknown_ca_and_a_missing_password(tls_settings: RedisSettings) -> None:
    system_store = tls_settings.model_copy(update={"ca_file": None})  # the test CA is not in it
    client = redis_client(system_store, socket_timeout=5)
    with pytest.raises(Exception, match=r"(?i)certificate verify failed"):
        await client.ping()
    await client.aclose()
    anonymous = redis_client(tls_settings.model_copy(update={"password": None}), socket_timeout=5)
    with pytest.raises(Exception, match=r"(?i)auth"):
        await anonymous.ping()
    await anonymous.aclose()
