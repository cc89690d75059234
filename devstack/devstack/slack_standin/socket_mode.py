"""Socket Mode: the WebSocket Slack pushes envelopes over and the app acks on.

Mirrors what slack_sdk's clients rely on: apps.connections.open hands out a ticketed URL, the
socket greets with `hello`, each envelope carries an `envelope_id` the app must ack (optionally
with a response payload), `disconnect` asks the app to reconnect, and with several connections
open each envelope goes to exactly one of them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from .identity import new_envelope_id
from .recorder import Ack, Recorder

log = logging.getLogger(__name__)

DEFAULT_ACK_TIMEOUT = 5.0
# The envelope types for which Slack shows the app's ack payload to the user.
RESPONSE_PAYLOAD_INTERACTIONS = {"view_submission", "block_suggestion"}


class AckTimeout(TimeoutError):
    """The app did not ack an envelope in time (Slack would retry or show an error)."""

    def __init__(self, envelope: dict[str, Any], timeout: float) -> None:
        super().__init__(
            f"no ack for {envelope['type']} envelope {envelope['envelope_id']} within {timeout}s"
        )
        self.envelope = envelope


class NoConnection(TimeoutError):
    """No app had a Socket Mode connection open in time."""


@dataclass
class Connection:
    id: int
    ws: web.WebSocketResponse
    opened_at: float
    draining: bool = False  # told to reconnect: gets no new envelopes
    delivered: int = 0


@dataclass
class _Pending:
    envelope: dict[str, Any]
    connection_id: int
    sent_at: float
    future: asyncio.Future[Ack] = field(repr=False)


class SocketModeHub:
    def __init__(self, app_id: str, recorder: Recorder) -> None:
        self.app_id = app_id
        self.recorder = recorder
        self.ws_base_url = ""  # set by the server once it knows its port
        self.opened_total = 0
        self._tickets: set[str] = set()
        self._connections: dict[int, Connection] = {}
        self._ids = itertools.count(1)
        self._rotation = itertools.count()
        self._pending: dict[str, _Pending] = {}
        self._changed = asyncio.Condition()
        self._closing = False

    # ---- connections ----------------------------------------------------------------------------

    def issue_url(self) -> str:
        """What apps.connections.open returns: a fresh ticket on our WebSocket path. Tickets stay
        valid until shutdown, since slack_sdk may reconnect with the URL it already holds."""
        ticket = secrets.token_urlsafe(16)
        self._tickets.add(ticket)
        return f"{self.ws_base_url}link/?ticket={ticket}&app_id={self.app_id}"

    @property
    def connections(self) -> list[Connection]:
        return list(self._connections.values())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _wait(self, predicate: Callable[[], bool], timeout: float) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(predicate), timeout)

    async def wait_connected(
        self, n: int = 1, *, opened_total: int | None = None, timeout: float = 5.0
    ) -> None:
        """Until at least `n` usable connections are open (and `opened_total` were ever opened,
        which is how a test sees that a reconnect happened)."""

        def ready() -> bool:
            usable = sum(1 for c in self._connections.values() if not c.draining)
            return usable >= n and (opened_total is None or self.opened_total >= opened_total)

        try:
            await self._wait(ready, timeout)
        except TimeoutError:
            raise NoConnection(
                f"wanted {n} Socket Mode connection(s) (opened_total>={opened_total}), "
                f"have {len(self._connections)} (opened_total={self.opened_total}) after {timeout}s"
            ) from None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets or self._closing:
            return web.Response(status=401, text="invalid or expired ticket")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        connection = Connection(id=next(self._ids), ws=ws, opened_at=time.monotonic())
        self.opened_total += 1
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": len(self._connections) + 1,
                "debug_info": {
                    "host": "applink-standin",
                    "build_number": 1,
                    "approximate_connection_time": 18060,
                },
                "connection_info": {"app_id": self.app_id},
            }
        )
        self._connections[connection.id] = connection
        log.info("socket mode connection %d opened", connection.id)
        await self._notify()
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    await self._on_text(connection, message.data)
                elif message.type == WSMsgType.ERROR:
                    break
        finally:
            self._connections.pop(connection.id, None)
            log.info("socket mode connection %d closed", connection.id)
            await self._notify()
        return ws

    async def _on_text(self, connection: Connection, data: str) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            log.warning("connection %d sent a non-JSON frame; ignored", connection.id)
            return
        envelope_id = message.get("envelope_id") if isinstance(message, dict) else None
        pending = self._pending.pop(str(envelope_id), None) if envelope_id else None
        if pending is None:
            log.warning("connection %d acked an unknown envelope", connection.id)
            return
        payload = message.get("payload")
        ack = Ack(
            envelope_id=str(envelope_id),
            type=str(pending.envelope["type"]),
            payload=payload if isinstance(payload, dict) else None,
            connection_id=connection.id,
            latency=time.monotonic() - pending.sent_at,
            envelope=pending.envelope,
        )
        await self.recorder.record_ack(ack)
        if not pending.future.done():
            pending.future.set_result(ack)

    # ---- delivery ---------------------------------------------------------------------------------

    def _pick(self) -> Connection | None:
        """Round-robin over connections not told to reconnect, as Slack spreads envelopes."""
        for connection in self._connections.values():
            if connection.ws.closed:
                connection.draining = True
        usable = [c for c in self._connections.values() if not c.draining]
        if not usable:
            return None
        return usable[next(self._rotation) % len(usable)]

    async def deliver(
        self,
        envelope_type: str,
        payload: dict[str, Any],
        *,
        accepts_response_payload: bool = False,
        retry_attempt: int | None = None,
        retry_reason: str | None = None,
        timeout: float = DEFAULT_ACK_TIMEOUT,
    ) -> Ack:
        """Send one envelope to one connection and wait for its ack (`AckTimeout` if none)."""
        envelope: dict[str, Any] = {
            "envelope_id": new_envelope_id(),
            "payload": payload,
            "type": envelope_type,
            "accepts_response_payload": accepts_response_payload,
        }
        if retry_attempt is not None:
            envelope["retry_attempt"] = retry_attempt
            envelope["retry_reason"] = retry_reason or ""
        deadline = time.monotonic() + timeout
        while True:
            await self.wait_connected(1, timeout=max(0.0, deadline - time.monotonic()))
            connection = self._pick()
            if connection is None:
                continue
            future: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
            pending = _Pending(envelope, connection.id, time.monotonic(), future)
            self._pending[envelope["envelope_id"]] = pending
            try:
                await connection.ws.send_json(envelope)
            except (ConnectionError, RuntimeError):
                self._pending.pop(envelope["envelope_id"], None)
                connection.draining = True  # broken: try another one
                continue
            connection.delivered += 1
            break
        try:
            return await asyncio.wait_for(future, max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            self._pending.pop(envelope["envelope_id"], None)
            raise AckTimeout(envelope, timeout) from None

    async def disconnect(self, reason: str = "refresh_requested", *, connection_id: int | None = None) -> int:
        """Ask connections to reconnect (Slack's periodic refresh); returns how many were asked."""
        targets = [c for c in self._connections.values() if connection_id in (None, c.id)]
        for connection in targets:
            connection.draining = True
            await connection.ws.send_json(
                {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-standin"}}
            )
        await self._notify()
        return len(targets)

    async def drop(self, *, connection_id: int | None = None) -> int:
        """Close connections abruptly from the server side, like a network cut."""
        targets = [c for c in self._connections.values() if connection_id in (None, c.id)]
        for connection in targets:
            connection.draining = True
            await connection.ws.close(code=1011, message=b"standin dropped the connection")
        return len(targets)

    async def close(self) -> None:
        self._closing = True
        for connection in list(self._connections.values()):
            await connection.ws.close(code=1001, message=b"standin shutting down")
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.cancel()
        self._pending.clear()
