"""slack_bolt internals used by the ingest (the only service that installs slack_bolt).

Bolt's `internals` modules are not part of its documented API; they are re-exported here so an
upgrade that moves or changes them breaks this module and its test, not the ingest's handlers.
"""

from __future__ import annotations

from typing import Any

from slack_bolt.adapter.socket_mode.async_internals import run_async_bolt_app as _run_async_bolt_app
from slack_bolt.adapter.socket_mode.async_internals import send_async_response as _send_async_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.internals import parse_body as _parse_body
from slack_bolt.response import BoltResponse
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest


def parse_body(body: str, content_type: str | None) -> dict[str, Any]:
    """A Slack request body (JSON, or form-encoded with a `payload` field) as Bolt reads it.

    Touches `slack_bolt.request.internals.parse_body`: the HTTP endpoint parses (and bounds) the
    body itself before handing Bolt a request, and must read it exactly as Bolt would.
    """
    parsed: dict[str, Any] = _parse_body(body, content_type)
    return parsed


async def run_async_bolt_app(app: AsyncApp, req: SocketModeRequest) -> BoltResponse:
    """Dispatch one Socket Mode envelope to the Bolt app.

    Touches `slack_bolt.adapter.socket_mode.async_internals.run_async_bolt_app`: the ingest
    overrides `AsyncSocketModeHandler.handle` (to measure the ack latency), and Bolt's own
    `handle` is just this call followed by `send_async_response`.
    """
    response: BoltResponse = await _run_async_bolt_app(app, req)
    return response


async def send_async_response(
    client: AsyncBaseSocketModeClient,
    req: SocketModeRequest,
    bolt_resp: BoltResponse,
    start_time: float,
) -> None:
    """Ack a Socket Mode envelope with Bolt's response.

    Touches `slack_bolt.adapter.socket_mode.async_internals.send_async_response`, for the same
    reason as `run_async_bolt_app`.
    """
    await _send_async_response(client, req, bolt_resp, start_time)
