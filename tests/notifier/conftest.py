"""Fixtures for the notifier's tests: the Slack stand-in, fast settings and a controllable clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from beepgpt.settings import SlackSettings
from devstack.slack_standin import SlackStandin
from notifier.settings import NotifierSettings


@pytest_asyncio.fixture
async def standin() -> AsyncIterator[SlackStandin]:
    async with SlackStandin() as slack:
        yield slack


@pytest.fixture
def slack_settings(standin: SlackStandin) -> SlackSettings:
    return SlackSettings(slack_bot_token=standin.bot_token, api_url=standin.api_url)


@pytest.fixture
def notifier_settings() -> NotifierSettings:
    """Short backoffs so retries take milliseconds; sweeps are driven by the tests themselves."""
    return NotifierSettings(
        group_id="notifier",
        max_batch=200,
        backoff_base_s=0.01,
        backoff_cap_s=0.05,
        slack_timeout_s=5,
        digest_poll_s=3_600,
        redis_probe_s=0.1,
        redis_timeout_s=0.5,
        rate_per_hour=3_600,
        burst=50,
    )
