"""A scorer service running in the test's event loop, with the deterministic keyword scorer.

This module imports nothing of `scorer` at its top on purpose: see `_use_the_installed_scorer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from beepgpt.settings import KafkaSettings

if TYPE_CHECKING:
    from scorer_service_helpers import Running, ServiceStarter

    from scorer.pipeline import Scorer
    from scorer.settings import ScorerSettings


def _use_the_installed_scorer() -> None:
    """Make `scorer` the installed package, not a namespace package of test directories.

    pytest puts `tests/` on sys.path (the root conftest's directory), and `tests/scorer/` has no
    `__init__.py`; the path scan then finds it before the editable install's finder is asked, so
    `scorer` becomes a namespace package of *test* directories and `scorer.service` resolves to
    `tests/scorer/service/`. Importing the package once with those entries hidden fixes it for the
    session; submodules already imported through the namespace are kept as they are (the same
    objects, so their Prometheus metrics are not registered twice).
    """
    loaded = sys.modules.get("scorer")
    if loaded is not None and getattr(loaded, "__file__", None):
        return
    shadowing = [
        p
        for p in sys.path
        if (Path(p) / "scorer").is_dir() and not (Path(p) / "scorer" / "__init__.py").exists()
    ]
    sys.modules.pop("scorer", None)
    saved = sys.path[:]
    sys.path[:] = [p for p in sys.path if p not in shadowing]
    try:
        importlib.import_module("scorer")
    finally:
        sys.path[:] = saved


_use_the_installed_scorer()


@pytest.fixture
def scorer_settings() -> ScorerSettings:
    from scorer.settings import ScorerSettings

    return ScorerSettings(
        group_id="scorer-test",
        batch_size=16,
        poll_ms=50,
        retry_backoff_s=0.01,
        retry_backoff_max_s=0.05,
    )


@pytest.fixture
def start_service(kafka_topics: KafkaSettings, scorer_settings: ScorerSettings) -> ServiceStarter:
    """Runs a ScorerService in the test's event loop until the block ends (then stops it cleanly)."""
    from keyword_scorer import KeywordScorer
    from scorer_service_helpers import Running

    from scorer.service import ScorerService

    @contextlib.asynccontextmanager
    async def start(scorer: Scorer | None = None, **overrides: Any) -> AsyncIterator[Running]:
        settings = scorer_settings.model_copy(update=overrides)
        used = scorer or KeywordScorer(frozenset(settings.bot_users))
        service = ScorerService(kafka_topics, settings, used)
        task = asyncio.create_task(service.run())
        started = asyncio.create_task(service.wait_started(60))
        await asyncio.wait([task, started], return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            started.cancel()
            task.result()  # raises what made run() fail
        await started
        try:
            yield Running(service, used, task)
        finally:
            service.stop()
            await asyncio.wait_for(task, 30)

    return start
