"""`/_standin/` endpoints: drive a stand-in running as a separate process (the demo, scripts).

Everything a test does in-process is available here as JSON over HTTP: push events, slash
commands and clicks over Socket Mode (answering with the ack), read posts and call counts (with an
optional wait), add and clear faults, revoke tokens, reset. Tokens are never returned.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from .socket_mode import AckTimeout, NoConnection

if TYPE_CHECKING:
    from .server import SlackStandin


def add_routes(app: web.Application, standin: SlackStandin) -> None:
    routes = _Routes(standin)
    app.router.add_get("/_standin/info", routes.info)
    app.router.add_get("/_standin/workspace", routes.workspace)
    app.router.add_get("/_standin/posts", routes.posts)
    app.router.add_get("/_standin/calls", routes.calls)
    app.router.add_get("/_standin/acks", routes.acks)
    app.router.add_get("/_standin/faults", routes.list_faults)
    app.router.add_post("/_standin/faults", routes.add_fault)
    app.router.add_delete("/_standin/faults", routes.clear_faults)
    app.router.add_post("/_standin/events", routes.push_event)
    app.router.add_post("/_standin/slash_commands", routes.push_slash_command)
    app.router.add_post("/_standin/interactive", routes.push_interactive)
    app.router.add_post("/_standin/disconnect", routes.disconnect)
    app.router.add_post("/_standin/tokens/revoke", routes.revoke)
    app.router.add_post("/_standin/reset", routes.reset)


def _ok(**body: Any) -> web.Response:
    return web.json_response({"ok": True, **body})


def _fail(status: int, error: str, detail: str = "") -> web.Response:
    return web.json_response({"ok": False, "error": error, "detail": detail}, status=status)


async def _json(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(
            text='{"ok": false, "error": "invalid_json"}', content_type="application/json"
        ) from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text='{"ok": false, "error": "invalid_json"}', content_type="application/json"
        )
    return body


def _float(value: Any, default: float) -> float:
    try:
        return float(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        raise web.HTTPBadRequest(text=f"not a number: {value!r}") from None


class _Routes:
    def __init__(self, standin: SlackStandin) -> None:
        self.standin = standin

    async def info(self, request: web.Request) -> web.Response:
        ws = self.standin.workspace
        return _ok(
            **self.standin.urls(),
            team_id=ws.team_id,
            team_domain=ws.domain,
            app_id=ws.app_id,
            bot_user_id=ws.bot_user_id,
            bot_id=ws.bot_id,
            socket_connections=len(self.standin.socket.connections),
        )

    async def workspace(self, request: web.Request) -> web.Response:
        ws = self.standin.workspace
        return _ok(
            team={"id": ws.team_id, "name": ws.team_name, "domain": ws.domain},
            users=[u.to_api() for u in ws.users.values()],
            channels=[c.to_api(ws.bot_user_id) for c in ws.channels.values()],
        )

    async def posts(self, request: web.Request) -> web.Response:
        """`?method=&channel=` filter; `?wait=N&timeout=S` waits for at least N matching posts."""
        method = request.query.get("method") or None
        channel = request.query.get("channel") or None
        wait = int(request.query.get("wait", "0") or 0)
        if wait > 0:
            timeout = _float(request.query.get("timeout"), 5.0)
            try:
                await self.standin.wait_for_posts(wait, timeout, method=method, channel=channel)
            except TimeoutError as e:
                return _fail(504, "timeout", str(e))
        posts = self.standin.recorder.find_posts(method=method, channel=channel)
        return _ok(posts=[p.to_dict() for p in posts])

    async def calls(self, request: web.Request) -> web.Response:
        recorder = self.standin.recorder
        return _ok(counts=dict(recorder.counts), calls=[c.to_dict() for c in recorder.calls])

    async def acks(self, request: web.Request) -> web.Response:
        return _ok(acks=[a.to_dict() for a in self.standin.recorder.acks])

    async def list_faults(self, request: web.Request) -> web.Response:
        return _ok(faults=[f.to_dict() for f in self.standin.faults.active])

    async def add_fault(self, request: web.Request) -> web.Response:
        """Body: `{"method": "chat.postMessage", "status": 429, "retry_after": 1, "times": 5}`;
        also `error`, `delay`, `args` (only requests with these argument values), `after` (let
        that many matching calls through first) and `every` (fire on every n-th matching call)."""
        body = await _json(request)
        allowed = {"method", "status", "error", "retry_after", "delay", "times", "args", "after", "every"}
        unknown = set(body) - allowed
        if unknown:
            return _fail(400, "invalid_arguments", f"unknown fields: {sorted(unknown)}")
        try:
            fault = self.standin.faults.add(**body)
        except (TypeError, ValueError) as e:
            return _fail(400, "invalid_arguments", str(e))
        return _ok(fault=fault.to_dict())

    async def clear_faults(self, request: web.Request) -> web.Response:
        self.standin.faults.clear()
        return _ok()

    async def _deliver(self, request: web.Request, kind: str) -> web.Response:
        body = await _json(request)
        payload = body.get("payload")
        if not isinstance(payload, dict):
            return _fail(400, "invalid_arguments", "`payload` must be an object")
        timeout = _float(body.get("timeout"), 5.0)
        try:
            if kind == "events_api":
                ack = await self.standin.push_event(
                    payload,
                    timeout=timeout,
                    retry_attempt=int(body.get("retry_attempt", 0)),
                    retry_reason=str(body.get("retry_reason", "")),
                )
            elif kind == "slash_commands":
                ack = await self.standin.push_slash_command(
                    {k: str(v) for k, v in payload.items()}, timeout=timeout
                )
            else:
                ack = await self.standin.push_interactive(payload, timeout=timeout)
        except NoConnection as e:
            return _fail(503, "no_socket_connection", str(e))
        except AckTimeout as e:
            return _fail(504, "ack_timeout", str(e))
        return _ok(ack=ack.to_dict())

    async def push_event(self, request: web.Request) -> web.Response:
        """Body: `{"payload": <event_callback or bare event>, "timeout": 5}`; answers with the ack."""
        return await self._deliver(request, "events_api")

    async def push_slash_command(self, request: web.Request) -> web.Response:
        return await self._deliver(request, "slash_commands")

    async def push_interactive(self, request: web.Request) -> web.Response:
        return await self._deliver(request, "interactive")

    async def disconnect(self, request: web.Request) -> web.Response:
        body = await _json(request)
        asked = await self.standin.disconnect(str(body.get("reason", "refresh_requested")))
        return _ok(connections=asked)

    async def revoke(self, request: web.Request) -> web.Response:
        """Body: `{"token": "..."}`, or `{}` for the bot token."""
        body = await _json(request)
        self.standin.revoke_token(body.get("token") or None)
        return _ok()

    async def reset(self, request: web.Request) -> web.Response:
        self.standin.reset()
        return _ok()
