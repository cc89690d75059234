"""Fixtures of the models' tests: one embedding model per session, small histories, the stand-in.

The local embedding model takes seconds to load and is the costliest thing here, so it is loaded
once (`shared_local_embedder`, the same instance the CLIs use) and every test embeds only a few
hundred short texts at most.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from devstack.openai_standin import OpenAIStandin
from scorer.embeddings import LocalEmbedder
from scorer.model_dir import shared_local_embedder

DATA = Path(__file__).resolve().parents[3] / "data"


@pytest.fixture(scope="session")
def embedder() -> LocalEmbedder:
    return shared_local_embedder()


@pytest.fixture(scope="session")
def small_history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example workspace's first 320 messages (a day and a half), with its users file."""
    table = pd.read_parquet(DATA / "slack-generation.parquet").sort_values("ts").head(320)
    directory = tmp_path_factory.mktemp("history")
    path = directory / "small.parquet"
    table.to_parquet(path)
    (directory / "small.users.json").write_text((DATA / "slack-generation.users.json").read_text())
    return path


@pytest.fixture
def standin() -> Iterator[OpenAIStandin]:
    with OpenAIStandin.running() as running:
        yield running
