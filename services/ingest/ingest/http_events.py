"""HTTP Events API adapter: an aiohttp server in front of the Bolt app.

Bolt verifies the signing secret (401 otherwise), answers the `url_verification` handshake and
`ssl_check`, and dispatches events. Two cases never reach Bolt, because Bolt could not even
build its request from them: a body that is not UTF-8, and a body that is not JSON. For those
this adapter checks the signature itself (401 if wrong) and dead-letters the raw bytes; it
answers 200 (once the dead letter is in Kafka, within the ack budget) because Slack resending
the same bytes could not help. A full buffer is a 503, so Slack retries (with
`X-Slack-Retry-Num`; dedup makes the retry harmless).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest

from ingest.intake import Intake, Refused
from ingest.metrics import ACK_LATENCY, EVENTS
from ingest.normalize import Rejected

log = logging.getLogger(__name__)

# Slack's replay window for signed requests (the same one Bolt's verification applies).
MAX_REQUEST_AGE_S = 300


def signature_ok(
    secret: bytes, body: bytes, timestamp: str, signature: str, now: float | None = None
) -> bool:
    """Slack's v0 request signature over the raw bytes (slack_sdk's verifier wants valid UTF-8)."""
    if not timestamp.isdigit() or abs((now or time.time()) - int(timestamp)) > MAX_REQUEST_AGE_S:
        return False
    expected = "v0=" + hmac.new(secret, b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


class HttpEventsAdapter:
    """Serves POST `path` on host:port; `port` 0 picks a free port (see `.port` after start)."""

    mode = "http"

    def __init__(
        self,
        app: AsyncApp,
        intake: Intake,
        *,
        signing_secret: str,
        host: str,
        port: int,
        path: str = "/slack/events",
        max_body_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        self._app = app
        self._intake = intake
        self._signing_secret = signing_secret.encode()
        self._host = host
        self._port = port
        self._path = path
        self._max_body_bytes = max_body_bytes
        self._runner: web.AppRunner | None = None
        self._accepting = False
        self.port: int | None = None

    def web_app(self) -> web.Application:
        web_app = web.Application(client_max_size=self._max_body_bytes)
        web_app.router.add_post(self._path, self.handle)
        return web_app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.web_app(), access_log=None, shutdown_timeout=5.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self._port
        self._accepting = True
        log.info("http events listening", extra={"port": self.port, "path": self._path})

    async def stop(self) -> None:
        """Refuse new deliveries (503: Slack retries them elsewhere or later), then close."""
        self._accepting = False
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def ready(self) -> bool:
        return self._accepting

    async def handle(self, request: web.Request) -> web.Response:
        start = time.perf_counter()
        try:
            response = await self._respond(request)
        finally:
            ACK_LATENCY.labels("http").observe(time.perf_counter() - start)
        if response.status == 401:
            EVENTS.labels("unauthorized", "bad_signature").inc()
        return response

    async def _respond(self, request: web.Request) -> web.Response:
        if not self._accepting:
            return web.Response(status=503, text="shutting down")
        raw = await request.read()
        try:
            bolt_request = AsyncBoltRequest(
                body=raw.decode("utf-8"),
                query=request.query_string,
                headers=dict(request.headers),
            )
        except UnicodeDecodeError as error:
            return await self._unparseable(request, raw, Rejected("invalid_utf8", str(error)[:200]))
        except ValueError as error:  # json.JSONDecodeError and friends
            return await self._unparseable(request, raw, Rejected("invalid_json", str(error)[:200]))
        bolt_response = await self._app.async_dispatch(bolt_request)
        response: web.Response = await to_aiohttp_response(bolt_response)
        return response

    async def _unparseable(self, request: web.Request, raw: bytes, rejected: Rejected) -> web.Response:
        timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
        signature = request.headers.get("X-Slack-Signature", "")
        if not signature_ok(self._signing_secret, raw, timestamp, signature):
            return web.json_response({"error": "invalid request"}, status=401)
        try:
            await self._intake.settle(self._intake.reject(raw, rejected, None))
        except Refused as refused:
            return web.Response(status=503, text=f"{refused}, retry later")
        return web.Response(status=200)
