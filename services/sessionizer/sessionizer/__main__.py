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
import os
import sys
from typing import NoReturn

from beepgpt.observability.logs import configure_logging
from beepgpt.runtime import serve as serve_runtime
from beepgpt.settings import KafkaSettings, ServiceSettings
from sessionizer.service import SERVICE, SessionizerService
from sessionizer.settings import SessionizerSettings

log = logging.getLogger("sessionizer")


async def serve(
    service_settings: ServiceSettings, kafka: KafkaSettings, settings: SessionizerSettings
) -> None:
    await serve_runtime(SessionizerService(kafka, settings).runtime, service_settings)


def main(argv: list[str] | None = None) -> NoReturn:
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
    code = 0
    try:
        asyncio.run(serve(service_settings, KafkaSettings(), settings))
    except Exception:
        log.exception("sessionizer failed")
        code = 1
    exit_without_finalizing(code)


def exit_without_finalizing(code: int) -> NoReturn:
    """End the process now that everything is published, committed and logged.

    Kaskada 0.6.1's engine threads outlive its queries (the session has no shutdown), and one
    that takes the GIL while the interpreter finalizes aborts the process: "FATAL: exception not
    rethrown", SIGABRT, in about one demo stop of two (measured; the faulthandler showed an
    engine thread garbage-collecting after `main` had returned). Nothing is left to do by then,
    so the process leaves without finalizing, and its exit code says how the run went.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
