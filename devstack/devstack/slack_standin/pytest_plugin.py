"""pytest fixture `slack_standin`: a fresh stand-in per test, in the test's event loop.

Enable with `pytest_plugins = ["devstack.slack_standin.pytest_plugin"]` in a conftest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from .server import SlackStandin


@pytest_asyncio.fixture
async def slack_standin() -> AsyncIterator[SlackStandin]:
    async with SlackStandin() as standin:
        yield standin
