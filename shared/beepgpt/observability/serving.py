"""Running a consumer service as a process: ops server up, SIGTERM drains, a grace period bounds it.

The sessionizer and the scorer stop the same way: SIGTERM (or Ctrl-C) asks the service to finish
the work in hand, publish and commit it, and leave its group; past the grace period the run is
cancelled and whatever was in hand stays uncommitted, for the next owner of its partitions to
redo. Either way the ops server (/metrics, /healthz, /readyz) answers until the very end.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Protocol

from beepgpt.observability.http import OpsServer
from beepgpt.settings import ServiceSettings

log = logging.getLogger(__name__)


class StoppableService(Protocol):
    """What `serve_until_stopped` needs of a service."""

    @property
    def ready(self) -> bool: ...

    def stop(self) -> None:
        """Ask `run` to finish the work in hand and return."""

    async def run(self) -> None: ...


async def serve_until_stopped(name: str, service: StoppableService, settings: ServiceSettings) -> None:
    """Run `service` beside its ops server until it returns, after SIGTERM/SIGINT or on its own."""
    ops = OpsServer(name, settings.http_host, settings.http_port, lambda: service.ready)
    await ops.start()
    loop = asyncio.get_running_loop()
    running = asyncio.create_task(service.run(), name=f"{name}-run")

    def shut_down() -> None:
        service.stop()
        loop.call_later(settings.shutdown_timeout_s, running.cancel)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, shut_down)
    try:
        await running
    except asyncio.CancelledError:
        log.warning(
            "shutdown grace period over: the work in hand is left uncommitted for the next owner",
            extra={"grace_s": settings.shutdown_timeout_s},
        )
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await ops.stop()
