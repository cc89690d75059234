"""`python -m ingest`: run the ingest service until SIGTERM/SIGINT, then drain and exit."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from beepgpt.observability.logs import configure_logging
from beepgpt.settings import ServiceSettings
from ingest.service import ConfigurationError, IngestService

log = logging.getLogger("ingest")


async def serve(service: IngestService) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await service.start()
    await stop.wait()
    log.info("signal received; shutting down")
    lost = await service.stop()
    return 0 if lost == 0 else 1


def main(argv: list[str] | None = None) -> int:
    settings = ServiceSettings()
    configure_logging("ingest", settings.log_level)
    try:
        return asyncio.run(serve(IngestService(service=settings)))
    except ConfigurationError as error:
        log.error("configuration error", extra={"error": str(error)})
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
