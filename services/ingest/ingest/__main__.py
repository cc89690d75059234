"""`python -m ingest`: run the ingest service until SIGTERM/SIGINT, then drain and exit."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from beepgpt.observability.logs import configure_logging
from beepgpt.settings import AlertDefaults, KafkaSettings, ServiceSettings
from ingest.commands import SlackExperience
from ingest.service import ConfigurationError, IngestService, tune_garbage_collector

log = logging.getLogger("ingest")


async def serve(settings: ServiceSettings) -> int:
    """Start the Slack experience (/beep, App Home, buttons) first: its listeners need the
    preferences table loaded before the app takes its first command."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # The budget and digest times people see as "the default" are the notifier's settings.
    experience = SlackExperience(KafkaSettings(), defaults=AlertDefaults())
    await experience.start()
    service = IngestService(service=settings, extra_listeners=[experience.register])
    try:
        await service.start()
        tune_garbage_collector()
        await stop.wait()
        log.info("signal received; shutting down")
        lost = await service.stop()
    finally:
        await experience.stop()
    return 0 if lost == 0 else 1


def main(argv: list[str] | None = None) -> int:
    settings = ServiceSettings()
    configure_logging("ingest", settings.log_level)
    try:
        return asyncio.run(serve(settings))
    except ConfigurationError as error:
        log.error("configuration error", extra={"error": str(error)})
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
