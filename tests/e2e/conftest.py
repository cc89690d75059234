"""The whole pipeline for end-to-end tests: the real broker and Redis, the Slack stand-in in the
test's event loop, and the four services as separate `python -m <service>` processes.

Ingest takes Slack's events over Socket Mode unless a test parametrizes `ingest_mode` to
`"http"`: then it serves the signed HTTP Events API on the port in its BEEPGPT_INGEST_HTTP_PORT.

The scorer runs the real models of a model directory trained once per session on the bundled
example workspace, with only the topic matcher enabled so the expected DMs follow from the
script alone. The sessionizer's time is driven by the messages' own times (`clock=events`), so a
service restart in the middle of a script does not split a conversation.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from beepgpt.settings import KafkaSettings, RedisSettings
from devstack.example_workspace import MESSAGES
from devstack.local_stack import free_port
from devstack.processes import Services
from devstack.slack_standin import SlackStandin


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model") / "e2e"
    subprocess.run(
        [sys.executable, "-m", "beepgpt.cli", "train", str(MESSAGES), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    return out


def pipeline_env(
    kafka: KafkaSettings,
    redis: RedisSettings,
    slack: SlackStandin,
    model_dir: Path,
    ingest_mode: str = "socket",
) -> dict[str, str]:
    env = {
        "BEEPGPT_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "BEEPGPT_KAFKA_IDEMPOTENCE": "false",
        "BEEPGPT_KAFKA_PARTITIONS": str(kafka.partitions),
        "BEEPGPT_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "BEEPGPT_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
        "BEEPGPT_REDIS_URL": redis.url,
        "BEEPGPT_REDIS_KEY_PREFIX": redis.key_prefix,
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_APP_TOKEN": slack.app_token,
        "SLACK_SIGNING_SECRET": slack.signing_secret,
        "BEEPGPT_SLACK_API_URL": slack.api_url,
        "BEEPGPT_SESSIONIZER_CLOCK": "events",
        "BEEPGPT_SESSIONIZER_GAP_S": "60",
        "BEEPGPT_SESSIONIZER_COMMIT_INTERVAL_S": "0.5",
        "BEEPGPT_SCORER_MODEL_DIR": str(model_dir),
        "BEEPGPT_SCORER_SCORERS": '["topic"]',
        "BEEPGPT_NOTIFIER_RATE_PER_HOUR": "3600",
        "BEEPGPT_NOTIFIER_BURST": "50",
        "BEEPGPT_LOG_LEVEL": "INFO",
    }
    if ingest_mode == "http":
        env |= {
            "BEEPGPT_INGEST_MODE": "http",
            "BEEPGPT_INGEST_HTTP_HOST": "127.0.0.1",
            "BEEPGPT_INGEST_HTTP_PORT": str(free_port()),
        }
    return env


@pytest.fixture
def ingest_mode() -> str:
    """How Slack reaches ingest: Socket Mode, as most installs run it. A test that must go
    through the HTTP Events API (signatures, raw bodies) parametrizes this to "http"."""
    return "socket"


@pytest.fixture
async def pipeline(
    kafka_topics: KafkaSettings,
    redis_settings: RedisSettings,
    slack_standin: SlackStandin,
    model_dir: Path,
    tmp_path: Path,
    ingest_mode: str,
) -> AsyncIterator[Services]:
    services = Services(
        pipeline_env(kafka_topics, redis_settings, slack_standin, model_dir, ingest_mode), tmp_path / "logs"
    )
    try:
        await services.start()
        yield services
    finally:
        await services.stop()
