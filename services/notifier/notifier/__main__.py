"""`python -m notifier`: run the notifier until SIGTERM/SIGINT, then finish the batch and exit.

Configuration is the environment (DESIGN.md §7): `BEEPGPT_KAFKA_*`, `BEEPGPT_REDIS_*`,
`BEEPGPT_NOTIFIER_*`, `BEEPGPT_SLACK_API_URL` and the `SLACK_BOT_TOKEN` secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

from beepgpt.observability.http import OpsServer
from beepgpt.observability.logs import configure_logging
from beepgpt.settings import KafkaSettings, RedisSettings, ServiceSettings, SlackSettings
from notifier.service import SERVICE, Notifier
from notifier.settings import NotifierSettings

log = logging.getLogger("notifier")


async def serve(settings: ServiceSettings, notifier: Notifier) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ops = OpsServer(SERVICE, settings.http_host, settings.http_port, lambda: notifier.ready)
    await ops.start()
    code = 0
    try:
        await notifier.start()
        consuming = asyncio.create_task(notifier.wait())
        stopping = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({consuming, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if consuming in done and consuming.exception() is not None:
            log.error("consumer stopped", exc_info=consuming.exception())
            code = 1
        else:
            log.info("signal received; finishing the batch in hand")
        stopping.cancel()
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(notifier.stop(), settings.shutdown_timeout_s)
        await ops.stop()
    return code


def main(argv: list[str] | None = None) -> int:
    settings = ServiceSettings()
    configure_logging(SERVICE, settings.log_level)
    slack = SlackSettings()
    if slack.bot_token is None or not slack.bot_token.get_secret_value():
        log.error("configuration error", extra={"error": "SLACK_BOT_TOKEN is not set (needed to send DMs)"})
        return 2
    notifier = Notifier(KafkaSettings(), RedisSettings(), slack, NotifierSettings())
    return asyncio.run(serve(settings, notifier))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
