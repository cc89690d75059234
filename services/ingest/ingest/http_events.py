"""HTTP Events API adapter: an aiohttp server in front of the Bolt app.

What an HTTP request goes through, in this order, so that nobody without the signing secret can
make ingest parse, log or keep anything of theirs:

1. the size: a body over `max_body_bytes` (`BEEPGPT_INGEST_MAX_BODY_BYTES`) is refused (413)
   before it is read, when its Content-Length says so, or as soon as reading passes the limit;
2. the signature: Slack's v0 HMAC of the raw bytes with the timestamp window (slack_sdk's
   `SignatureVerifier`), before anything is decoded or parsed. A request without a valid one
   gets 401, and the log line says why and how big the body was, never what it held;
3. the body: not UTF-8, or not JSON, is dead-lettered and answered 200 (Slack resending the same
   bytes could not help). JSON that is not an object, nests deeper than `MAX_DEPTH`, or has
   fields of the wrong type where Bolt reads its routing ids (`{"team": 5}`), would break Bolt
   (500 with a traceback, and Slack's retries after it); it is dead-lettered too and answered
   400 with `X-Slack-No-Retry: 1` and one log line;
4. Bolt: it checks the signature again (cheap), answers `url_verification` and `ssl_check`, and
   dispatches events.

A full buffer is a 503, so Slack retries (with `X-Slack-Retry-Num`; dedup makes the retry
harmless).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Mapping

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.signature import SignatureVerifier

from beepgpt.shims.aiohttp import bound_port
from beepgpt.shims.slack_bolt import parse_body
from ingest.envelopes import body_problem, event_id_of
from ingest.intake import Intake, Refused
from ingest.metrics import ACK_LATENCY, EVENTS
from ingest.normalize import Rejected
from ingest.settings import MAX_BODY_BYTES

log = logging.getLogger(__name__)

# Slack's replay window for signed requests (the one slack_sdk's verifier and Bolt apply).
MAX_REQUEST_AGE_S = 300
_NO_RETRY = {"X-Slack-No-Retry": "1"}


class RawSignatureVerifier(SignatureVerifier):  # type: ignore[misc]
    """slack_sdk's verifier (timestamp window, constant-time compare) over the raw bytes: its own
    `generate_signature` decodes the body as UTF-8 first, which needs the body to be valid UTF-8
    and costs a copy before the request is known to be Slack's."""

    def generate_signature(self, *, timestamp: str, body: str | bytes) -> str | None:
        if timestamp is None:
            return None
        raw = body.encode() if isinstance(body, str) else (body or b"")
        mac = hmac.new(self.signing_secret.encode(), b"v0:" + timestamp.encode() + b":" + raw, hashlib.sha256)
        return "v0=" + mac.hexdigest()


def signature_problem(verifier: SignatureVerifier, body: bytes, headers: Mapping[str, str]) -> str | None:
    """Why this request is not signed by Slack (a short fixed reason), or None when it is."""
    timestamp = headers.get("X-Slack-Request-Timestamp")
    signature = headers.get("X-Slack-Signature")
    if not timestamp or not signature:
        return "missing_signature"
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return "bad_timestamp"
    if abs(verifier.clock.now() - int(timestamp)) > MAX_REQUEST_AGE_S:
        return "stale_timestamp"
    if not verifier.is_valid(body, timestamp, signature):
        return "bad_signature"
    return None


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
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self._app = app
        self._intake = intake
        self._verifier = RawSignatureVerifier(signing_secret)
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
        self.port = bound_port(site, self._port)
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
        if request.content_length is not None and request.content_length > self._max_body_bytes:
            return self._too_large(request.content_length)
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._too_large(None)
        problem = signature_problem(self._verifier, raw, request.headers)
        if problem is not None:
            # One bounded line: nothing of the body, which is nobody's we know.
            log.warning("request refused: not signed by Slack", extra={"reason": problem, "bytes": len(raw)})
            return web.json_response({"error": "invalid request"}, status=401)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            return await self._dead_letter(raw, Rejected("invalid_utf8", str(error)[:200]), None)
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip() or None
        try:
            body = parse_body(text, content_type)
        except RecursionError:
            return await self._malformed(raw, Rejected("too_deep", "body nests too deep to parse"), None)
        except ValueError as error:  # json.JSONDecodeError, an integer of over 4,300 digits
            return await self._dead_letter(raw, Rejected("invalid_json", str(error)[:200]), None)
        rejected = body_problem(body)
        if rejected is not None:
            return await self._malformed(raw, rejected, body)
        bolt_request = AsyncBoltRequest(body=text, query=request.query_string, headers=dict(request.headers))
        bolt_response = await self._app.async_dispatch(bolt_request)
        response: web.Response = await to_aiohttp_response(bolt_response)
        return response

    def _too_large(self, size: int | None) -> web.Response:
        log.warning("request refused: body too large", extra={"bytes": size, "limit": self._max_body_bytes})
        return web.Response(status=413, text="request body too large")

    async def _malformed(self, raw: bytes, rejected: Rejected, body: object) -> web.Response:
        """A signed body Bolt cannot take: dead-lettered (nothing is lost), then 400 and no retry."""
        refused = await self._park(raw, rejected, event_id_of(body))
        if refused is not None:
            return refused
        log.warning(
            "signed request refused: malformed body",
            extra={"reason": rejected.reason, "detail": rejected.detail, "bytes": len(raw)},
        )
        return web.json_response({"error": rejected.reason}, status=400, headers=_NO_RETRY)

    async def _dead_letter(self, raw: bytes, rejected: Rejected, event_id: str | None) -> web.Response:
        """A signed body that is not JSON text: dead-lettered, then 200 (resending cannot help)."""
        refused = await self._park(raw, rejected, event_id)
        return refused or web.Response(status=200)

    async def _park(self, raw: bytes, rejected: Rejected, event_id: str | None) -> web.Response | None:
        try:
            await self._intake.park(raw, rejected, event_id)
        except Refused as refused:
            return web.Response(status=503, text=f"{refused}, retry later")
        return None
