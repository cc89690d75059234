"""Socket Mode adapter: Bolt's aiohttp AsyncSocketModeHandler, with the ack latency measured.

Slack sends each event as an envelope over a WebSocket and redelivers it (with `retry_attempt`)
when no ack with its `envelope_id` comes back within 3 seconds. slack_sdk runs each envelope's
listener as its own task, so many events wait for Kafka at once (and share its batches). Bolt
acks when the app answers 200 and sends nothing otherwise, so a refused event (buffer full) is
simply redelivered later.
"""

from __future__ import annotations

import json
import logging
import time

from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.web.async_client import AsyncWebClient

from beepgpt.shims.slack_bolt import run_async_bolt_app, send_async_response
from ingest.envelopes import body_problem, event_id_of
from ingest.intake import Intake, Refused
from ingest.metrics import ACK_LATENCY

log = logging.getLogger(__name__)


class _MeasuredHandler(AsyncSocketModeHandler):  # type: ignore[misc]
    intake: Intake | None = None

    async def handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:
        start = time.perf_counter()
        rejected = body_problem(req.payload)
        if rejected is not None:
            assert self.intake is not None, "SocketModeAdapter sets it"
            try:
                await self.intake.park(_raw(req.payload), rejected, event_id_of(req.payload))
            except Refused:
                return  # no ack: Slack redelivers it once the buffer has room
            response = BoltResponse(status=200, body="")
        else:
            response = await run_async_bolt_app(self.app, req)
        await send_async_response(client, req, response, start)
        ACK_LATENCY.labels("socket").observe(time.perf_counter() - start)


def _raw(payload: object) -> bytes:
    """The payload as JSON for the dead-letter topic (what slack_sdk parsed it from)."""
    try:
        return json.dumps(payload, ensure_ascii=False).encode("utf-8", "replace")
    except (RecursionError, TypeError, ValueError):
        return b""


class SocketModeAdapter:
    """Connects to Slack (apps.connections.open at the Web API base URL) and serves envelopes."""

    mode = "socket"

    def __init__(self, app: AsyncApp, intake: Intake, app_token: str, api_url: str) -> None:
        self._handler = _MeasuredHandler(
            app,
            app_token=app_token,
            logger=logging.getLogger("ingest.socket_mode"),
            web_client=AsyncWebClient(base_url=api_url),
        )
        self._handler.intake = intake
        self._connected = False

    async def start(self) -> None:
        await self._handler.connect_async()
        self._connected = True
        log.info("socket mode connected")

    async def stop(self) -> None:
        """Close the WebSocket: Slack routes new events to other connections (or retries them)."""
        self._connected = False
        await self._handler.close_async()

    @property
    def ready(self) -> bool:
        return self._connected and not self._handler.client.closed
