"""Fixtures every integration test uses: a real Tansu broker per test and a real Redis server.

A fresh broker per test costs ~0.3 s and keeps tests independent (the broker keeps its data in
memory only). If the broker or Redis cannot be started the fixtures fail: tests never fall back
to fakes and are never skipped for that.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pandas as pd
import pytest

from beepgpt.kafka import ensure_topics
from beepgpt.settings import KafkaSettings, RedisSettings
from beepgpt.topics import ALL_TOPICS
from devstack.local_stack import Broker, RedisServer, forget_keys, redis_answers
from scorer.embeddings import LocalEmbedder
from scorer.model_dir import shared_local_embedder

pytest_plugins = ["devstack.slack_standin.pytest_plugin"]

SHARED_DATA = Path(__file__).resolve().parents[1] / "data"


def pytest_configure(config: pytest.Config) -> None:
    """The run's embedding vectors go to a cache of its own (the CLIs and the services' training
    subprocesses inherit it): a test embeds what it says it embeds, not what an earlier run on
    this machine left in `~/.cache`, and the developer's cache is left alone."""
    # The test Redis keeps nothing on disk: the notifier (and every service subprocess) accepts it
    # only when told to (beepgpt.redis_client.check_redis_safety).
    os.environ.setdefault("BEEPGPT_REDIS_ALLOW_EPHEMERAL", "true")
    if "BEEPGPT_EMBEDDING_CACHE" not in os.environ:
        directory = tempfile.mkdtemp(prefix="beepgpt-test-vectors-")
        os.environ["BEEPGPT_EMBEDDING_CACHE"] = directory
        config.add_cleanup(lambda: shutil.rmtree(directory, ignore_errors=True))


@pytest.fixture
def broker() -> Iterator[Broker]:
    running = Broker.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def kafka_settings(broker: Broker) -> KafkaSettings:
    """Settings for the test's broker: no idempotence (Tansu refuses it), short sessions."""
    return KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers,
        idempotence=False,
        partitions=3,
        session_timeout_ms=6_000,
        heartbeat_interval_ms=1_000,
    )


@pytest.fixture
async def kafka_topics(kafka_settings: KafkaSettings) -> KafkaSettings:
    """The broker with every product topic (and DLQ) created."""
    await ensure_topics(kafka_settings, ALL_TOPICS)
    return kafka_settings


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The machine's Redis when one answers, otherwise a redis-server started for the session."""
    url = os.environ.get("BEEPGPT_REDIS_URL", "redis://127.0.0.1:6379/0")
    if redis_answers(url):
        yield url
        return
    server = RedisServer.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
async def redis_settings(redis_url: str) -> AsyncIterator[RedisSettings]:
    """A key prefix of the test's own, deleted afterwards, on the shared Redis."""
    settings = RedisSettings(url=redis_url, key_prefix=f"test:{uuid.uuid4().hex[:12]}:")
    yield settings
    await asyncio.to_thread(forget_keys, redis_url, settings.key_prefix)


# ---- models: one embedding model per session, a small history ---------------------------------
# The local embedding model takes seconds to load, so it is loaded once (`shared_local_embedder`,
# the same instance the CLIs use); tests embed a few hundred short texts at most.


@pytest.fixture(scope="session")
def embedder() -> LocalEmbedder:
    return shared_local_embedder()


@pytest.fixture(scope="session")
def small_history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example workspace's first 320 messages (a day and a half), with its users file."""
    table = pd.read_parquet(SHARED_DATA / "slack-generation.parquet").sort_values("ts").head(320)
    directory = tmp_path_factory.mktemp("history")
    path = directory / "small.parquet"
    table.to_parquet(path)
    (directory / "small.users.json").write_text((SHARED_DATA / "slack-generation.users.json").read_text())
    return path
