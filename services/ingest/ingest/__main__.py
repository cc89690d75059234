"""`python -m ingest`: run the ingest service until SIGTERM/SIGINT, then drain and exit."""

from __future__ import annotations

import asyncio
import logging
import sys

from beepgpt.observability.logs import configure_logging
from beepgpt.runtime import serve as serve_runtime
from beepgpt.settings import AlertDefaults, KafkaSettings, ServiceSettings
from ingest.service import ConfigurationError, IngestService, tune_garbage_collector
from ingest.slack_app import SlackExperience

log = logging.getLogger("ingest")


async def serve(settings: ServiceSettings) -> int:
    """Run ingest as this process; 1 when the drain at shutdown lost events.

    The Slack experience (/beep, App Home, buttons) starts first: its listeners need the
    preferences table loaded before the app takes its first command. The runtime's grace period
    is off (`grace=False`): each of ingest's shutdown steps bounds itself and the drain counts
    what it could not deliver, which decides the exit code.
    """
    # The budget and digest times people see as "the default" are the notifier's settings.
    experience = SlackExperience(KafkaSettings(), defaults=AlertDefaults())
    service = IngestService(service=settings, extra_listeners=[experience.register], companions=[experience])

    async def tune() -> None:
        tune_garbage_collector()

    service.runtime.step("gc", tune)  # after start-up: what it allocated is never garbage
    await serve_runtime(service.runtime, settings, grace=False)
    return 0 if service.lost == 0 else 1


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
