"""The stand-in as one object: Web API, Socket Mode, response URLs and control endpoints on one port.

Start it in the test's own event loop (`async with SlackStandin() as slack:`) on port 0, point
slack_sdk / slack_bolt at `slack.api_url`, push events with `await slack.push_event(...)`, and read
back what the app posted with `await slack.wait_for_posts(...)`. `python -m devstack.slack_standin`
runs the same server as a process driven through `/_standin/`.
"""

from __future__ import annotations

import json
import logging
import socket
from dataclasses import replace
from types import TracebackType
from typing import Any

from aiohttp import web

from . import control
from .errors import SlackError
from .events import EventBuilder
from .faults import Faults
from .http_events import HttpEventsSender
from .recorder import Ack, Post, Recorder
from .socket_mode import DEFAULT_ACK_TIMEOUT, RESPONSE_PAYLOAD_INTERACTIONS, SocketModeHub
from .web_api import WebApi, read_args
from .workspace import Workspace

log = logging.getLogger(__name__)


class SlackStandin:
    def __init__(self, workspace: Workspace | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.workspace = workspace or Workspace.default()
        self.host = host
        self.port = port
        self.faults = Faults()
        self.recorder = Recorder()
        self.socket = SocketModeHub(self.workspace.app_id, self.recorder)
        self.web_api = WebApi(self.workspace, self.faults, self.recorder, self.socket.issue_url)
        self.events = EventBuilder(self.workspace.identity)
        self._runner: web.AppRunner | None = None
        self._retries: dict[str, int] = {}

    # ---- lifecycle ------------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024**2)
        app.router.add_route("*", "/api/{method}", self.web_api.handle)
        app.router.add_get("/link/", self.socket.handle)
        app.router.add_post("/hooks/{kind}/{team}/{id}/{secret}", self._response_url)
        control.add_routes(app, self)
        return app

    async def start(self) -> SlackStandin:
        if self._runner is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self.socket.ws_base_url = f"ws://{self.host}:{self.port}/"
        self.events = EventBuilder(replace(self.workspace.identity, hooks_url=f"{self.http_url}hooks/"))
        self._runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.SockSite(self._runner, sock, shutdown_timeout=1.0).start()
        log.info("slack stand-in listening on %s", self.http_url)
        return self

    async def stop(self) -> None:
        if self._runner is None:
            return
        await self.socket.close()
        await self._runner.cleanup()
        self._runner = None

    async def __aenter__(self) -> SlackStandin:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # ---- addresses and credentials ---------------------------------------------------------------

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def api_url(self) -> str:
        """The `base_url` for slack_sdk clients (ends with `/api/`)."""
        return f"{self.http_url}api/"

    @property
    def control_url(self) -> str:
        return f"{self.http_url}_standin/"

    @property
    def bot_token(self) -> str:
        return self.workspace.bot_token

    @property
    def app_token(self) -> str:
        return self.workspace.app_token

    @property
    def signing_secret(self) -> str:
        return self.workspace.signing_secret

    def urls(self) -> dict[str, str]:
        return {
            "http_url": self.http_url,
            "api_url": self.api_url,
            "control_url": self.control_url,
            "socket_mode_url": self.socket.ws_base_url + "link/",
        }

    # ---- Socket Mode ----------------------------------------------------------------------------

    async def push_event(
        self,
        payload: dict[str, Any],
        *,
        timeout: float = DEFAULT_ACK_TIMEOUT,
        retry_attempt: int = 0,
        retry_reason: str = "",
    ) -> Ack:
        """Deliver an Events API payload over Socket Mode and wait for the ack. A bare event
        (`{"type": "message", ...}`) is wrapped in an `event_callback` first."""
        if payload.get("type") != "event_callback":
            payload = self.events.callback(payload)
        if isinstance(payload.get("event"), dict):
            self.workspace.apply_event(payload["event"])
        event_id = str(payload.get("event_id", ""))
        self._retries[event_id] = max(self._retries.get(event_id, 0), retry_attempt)
        return await self.socket.deliver(
            "events_api", payload, retry_attempt=retry_attempt, retry_reason=retry_reason, timeout=timeout
        )

    async def redeliver(
        self,
        delivered: Ack | dict[str, Any],
        *,
        reason: str = "timeout",
        timeout: float = DEFAULT_ACK_TIMEOUT,
    ) -> Ack:
        """Slack's retry of an event: same payload and `event_id`, next `retry_attempt`."""
        payload = delivered.envelope["payload"] if isinstance(delivered, Ack) else delivered
        attempt = self._retries.get(str(payload.get("event_id", "")), 0) + 1
        return await self.push_event(payload, timeout=timeout, retry_attempt=attempt, retry_reason=reason)

    async def push_slash_command(
        self, payload: dict[str, str], *, timeout: float = DEFAULT_ACK_TIMEOUT
    ) -> Ack:
        """Deliver a slash command; the ack's payload is the reply Slack would show the user."""
        return await self.socket.deliver(
            "slash_commands", payload, accepts_response_payload=True, timeout=timeout
        )

    async def push_interactive(self, payload: dict[str, Any], *, timeout: float = DEFAULT_ACK_TIMEOUT) -> Ack:
        """Deliver a block_actions / view_submission / shortcut payload."""
        accepts = payload.get("type") in RESPONSE_PAYLOAD_INTERACTIONS
        return await self.socket.deliver(
            "interactive", payload, accepts_response_payload=accepts, timeout=timeout
        )

    async def disconnect(self, reason: str = "refresh_requested") -> int:
        """Send Slack's `disconnect` envelope to every connection; the app should reconnect."""
        return await self.socket.disconnect(reason)

    async def wait_for_socket(
        self, n: int = 1, *, opened_total: int | None = None, timeout: float = 5.0
    ) -> None:
        await self.socket.wait_connected(n, opened_total=opened_total, timeout=timeout)

    # ---- HTTP Events API ------------------------------------------------------------------------

    def http_sender(self, request_url: str) -> HttpEventsSender:
        """A signer/sender for an app's Request URL, using this workspace's signing secret."""
        return HttpEventsSender(request_url, self.signing_secret)

    # ---- reading back ---------------------------------------------------------------------------

    @property
    def posts(self) -> list[Post]:
        return self.recorder.posts

    @property
    def acks(self) -> list[Ack]:
        return self.recorder.acks

    def call_count(self, method: str) -> int:
        return self.recorder.call_count(method)

    async def wait_for_posts(
        self, n: int = 1, timeout: float = 5.0, *, method: str | None = None, channel: str | None = None
    ) -> list[Post]:
        return await self.recorder.wait_for_posts(n, timeout, method=method, channel=channel)

    async def wait_for_calls(self, method: str, n: int = 1, timeout: float = 5.0) -> int:
        return await self.recorder.wait_for_calls(method, n, timeout)

    # ---- faults and state -----------------------------------------------------------------------

    def revoke_token(self, token: str | None = None) -> None:
        """Revoke a token (the bot token by default): later calls get `token_revoked`."""
        self.workspace.revoke(token or self.bot_token)

    def reset(self) -> None:
        """Forget recordings and faults and restore revoked tokens; people, channels and
        message history stay."""
        self.recorder.reset()
        self.faults.clear()
        self.workspace.restore_tokens()
        self._retries.clear()

    # ---- response_url ---------------------------------------------------------------------------

    async def _response_url(self, request: web.Request) -> web.Response:
        """What an app posts to a slash command's or button's `response_url`."""
        try:
            args, _, _ = await read_args(request)
        except SlackError:
            return web.Response(status=400, text="invalid_payload")
        blocks = args.get("blocks")
        if isinstance(blocks, str):
            try:
                blocks = json.loads(blocks)
            except ValueError:
                return web.Response(status=400, text="invalid_blocks")
        await self.recorder.record_post(
            method="response_url",
            channel=None,
            ts=None,
            text=str(args.get("text", "")),
            blocks=blocks if isinstance(blocks, list) else None,
            args={k: v for k, v in args.items() if k != "token"},
        )
        return web.Response(text="ok")
