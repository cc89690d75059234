"""`python -m sessionizer` (also `beepgpt serve sessionizer`): run one instance until SIGTERM.

SIGTERM finishes the batch in hand, lets the live queries emit what they owe, waits for the
broker to acknowledge it, commits, and leaves the group, so the next owner replays only what
open conversations need.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys

from beepgpt.observability.logs import configure_logging
from beepgpt.observability.serving import serve_until_stopped
from beepgpt.settings import KafkaSettings, ServiceSettings
from sessionizer.service import SERVICE, SessionizerService
from sessionizer.settings import SessionizerSettings

log = logging.getLogger("sessionizer")


async def serve(
    service_settings: ServiceSettings, kafka: KafkaSettings, settings: SessionizerSettings
) -> None:
    await serve_until_stopped(SERVICE, SessionizerService(kafka, settings), service_settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sessionizer",
        description=__doc__,
        epilog="Configuration: BEEPGPT_SESSIONIZER_*, BEEPGPT_KAFKA_*, BEEPGPT_HTTP_PORT, BEEPGPT_LOG_LEVEL.",
    )
    parser.parse_args(sys.argv[1:] if argv is None else argv)
    service_settings = ServiceSettings()
    settings = SessionizerSettings()
    configure_logging(SERVICE, service_settings.log_level)
    gc.set_threshold(*settings.gc_thresholds)
    try:
        asyncio.run(serve(service_settings, KafkaSettings(), settings))
    except Exception:
        log.exception("sessionizer failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
