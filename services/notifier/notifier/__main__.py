"""`python -m notifier`: run the notifier until SIGTERM/SIGINT, then finish the batch and exit.

Configuration is the environment (docs/operations.md): `BEEPGPT_KAFKA_*`, `BEEPGPT_REDIS_*`,
`BEEPGPT_NOTIFIER_*`, `BEEPGPT_SLACK_API_URL` and the `SLACK_BOT_TOKEN` secret.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from beepgpt.observability.logs import configure_logging
from beepgpt.runtime import serve as serve_runtime
from beepgpt.settings import KafkaSettings, RedisSettings, ServiceSettings, SlackSettings
from notifier.service import SERVICE, Notifier
from notifier.settings import NotifierSettings

log = logging.getLogger("notifier")


async def serve(settings: ServiceSettings, slack: SlackSettings) -> None:
    """The ops server, signals and the grace period are the runtime's (`beepgpt.runtime.serve`)."""
    notifier = Notifier(KafkaSettings(), RedisSettings(), slack, NotifierSettings())
    await serve_runtime(notifier.runtime, settings)


def main(argv: list[str] | None = None) -> int:
    settings = ServiceSettings()
    configure_logging(SERVICE, settings.log_level)
    slack = SlackSettings()
    if slack.bot_token is None or not slack.bot_token.get_secret_value():
        log.error("configuration error", extra={"error": "SLACK_BOT_TOKEN is not set (needed to send DMs)"})
        return 2
    try:
        asyncio.run(serve(settings, slack))
    except Exception:
        log.exception("notifier failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
