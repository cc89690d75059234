"""The operator endpoints every service process serves: /metrics, /healthz (alive), /readyz (working).

Part of the runtime because a process serves them from before its service starts until after it
has stopped (`beepgpt.runtime.serve`): a pod that is starting or draining still answers its probes
and its last metrics can still be scraped.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from beepgpt.observability.metrics import READY
from beepgpt.shims.aiohttp import bound_port


class OpsServer:
    """A tiny aiohttp server; `ready` says whether Kubernetes should route work to this pod.

    Liveness is "the event loop answers", readiness is the service's own judgement (connected to
    Kafka and Redis, model loaded, ...), so a broker outage takes a pod out of rotation without
    restarting it.
    """

    def __init__(self, service: str, host: str, port: int, ready: Callable[[], bool]) -> None:
        self.service = service
        self._host = host
        self._port = port
        self._ready = ready
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        self.port = bound_port(site, self._port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _metrics(self, _: web.Request) -> web.Response:
        READY.labels(self.service).set(1 if self._ready() else 0)
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "service": self.service})

    async def _readyz(self, _: web.Request) -> web.Response:
        ready = self._ready()
        return web.json_response(
            {"status": "ready" if ready else "not ready", "service": self.service},
            status=200 if ready else 503,
        )
