"""`python -m scorer` (also `beepgpt serve scorer`): run one scorer instance until SIGTERM.

Start-up order follows readiness: models first (slowest, and useless to consume without), then
the preferences table, then the consumer group; /readyz says yes only once all three are in
place. SIGTERM finishes the batch in hand, commits it and leaves the group.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import cast

from beepgpt.observability.logs import configure_logging
from beepgpt.runtime import serve as serve_runtime
from beepgpt.settings import KafkaSettings, ServiceSettings
from scorer.pipeline import Scorer
from scorer.service import SERVICE, ScorerService
from scorer.settings import ScorerSettings

log = logging.getLogger("scorer")

ScorerFactory = Callable[[ScorerSettings], Awaitable[Scorer]]


def load_factory(path: str) -> ScorerFactory:
    """`module:callable` → the async callable that builds the service's Scorer."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"scorer factory must look like 'module:callable', got {path!r}")
    return cast(ScorerFactory, getattr(importlib.import_module(module_name), attribute))


async def serve(service_settings: ServiceSettings, kafka: KafkaSettings, settings: ScorerSettings) -> None:
    scorer = await load_factory(settings.factory)(settings)
    try:
        await serve_runtime(ScorerService(kafka, settings, scorer).runtime, service_settings)
    finally:
        await scorer.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scorer",
        description=__doc__,
        epilog="Configuration: BEEPGPT_SCORER_*, BEEPGPT_KAFKA_*, BEEPGPT_HTTP_PORT, BEEPGPT_LOG_LEVEL.",
    )
    parser.parse_args(sys.argv[1:] if argv is None else argv)
    service_settings = ServiceSettings()
    configure_logging(SERVICE, service_settings.log_level)
    try:
        asyncio.run(serve(service_settings, KafkaSettings(), ScorerSettings()))
    except Exception:
        log.exception("scorer failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
