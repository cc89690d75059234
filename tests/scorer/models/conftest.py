"""Fixtures of the models' tests: the OpenAI stand-in (the embedding model and the small history
are in tests/conftest.py, shared with the offline commands' tests)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.openai_standin import OpenAIStandin


@pytest.fixture
def standin() -> Iterator[OpenAIStandin]:
    with OpenAIStandin.running() as running:
        yield running
