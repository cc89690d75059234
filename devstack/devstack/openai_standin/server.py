"""The stand-in's HTTP side: OpenAI's routes, faults, auth, and the `/_standin/` control routes.

Two ways to run it: in the caller's event loop (`async with OpenAIStandin() as api:`, for async
code and `AsyncOpenAI`), or in a thread of its own (`with OpenAIStandin.running() as api:`), which
the synchronous `openai.OpenAI` client needs: a blocking client in the server's own loop would
wait for an answer that loop can never produce.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiohttp import web

from .faults import Faults
from .state import ApiError, Store

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    status: int


class OpenAIStandin:
    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, job_steps: int = 3) -> None:
        self.host = host
        self.port = port
        self.store = Store(job_steps=job_steps)
        self.faults = Faults()
        self.requests: list[Request] = []
        self._runner: web.AppRunner | None = None
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        """What `OpenAI(base_url=...)` wants."""
        return f"http://{self.host}:{self.port}/v1"

    def count(self, path: str, status: int | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.path == path and (status is None or r.status == status))

    # --- lifecycle -------------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024**2, middlewares=[self._middleware])
        r = app.router
        r.add_post("/v1/files", self._create_file)
        r.add_get("/v1/files/{id}", self._get_file)
        r.add_get("/v1/files", self._list_files)
        r.add_post("/v1/fine_tuning/jobs", self._create_job)
        r.add_get("/v1/fine_tuning/jobs", self._list_jobs)
        r.add_get("/v1/fine_tuning/jobs/{id}", self._get_job)
        r.add_get("/v1/fine_tuning/jobs/{id}/events", self._job_events)
        r.add_post("/v1/chat/completions", self._chat)
        r.add_post("/v1/embeddings", self._embeddings)
        r.add_get("/_standin/info", self._info)
        r.add_post("/_standin/faults", self._add_fault)
        r.add_delete("/_standin/faults", self._clear_faults)
        return app

    async def start(self) -> OpenAIStandin:
        if self._runner is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        runner = web.AppRunner(self.build_app(), access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        self._runner = runner
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> OpenAIStandin:
        return await self.start()

    async def __aexit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @classmethod
    @contextmanager
    def running(cls, **kwargs: Any) -> Iterator[OpenAIStandin]:
        """The stand-in serving from a thread of its own until the block ends."""
        standin = cls(**kwargs)
        loop = asyncio.new_event_loop()
        started = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(standin.start())
            except BaseException as error:  # reported to the caller below
                failure.append(error)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(standin.stop())
            loop.close()

        thread = threading.Thread(target=serve, name="openai-standin", daemon=True)
        thread.start()
        started.wait()
        if failure:
            raise failure[0]
        try:
            yield standin
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()

    # --- plumbing --------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path.startswith("/_standin/"):
            return await handler(request)
        try:
            if not request.headers.get("Authorization", "").startswith("Bearer ") or len(
                request.headers["Authorization"]
            ) <= len("Bearer "):
                raise ApiError(401, "You didn't provide an API key.", code="invalid_api_key")
            fault = self.faults.take(path)
            if fault is not None:
                status, body, headers = fault.response()
                response: web.StreamResponse = web.json_response(body, status=status, headers=headers)
            else:
                response = await handler(request)
        except ApiError as error:
            response = web.json_response(error.body(), status=error.status)
        with self._lock:
            self.requests.append(Request(request.method, path, response.status))
        return response

    @staticmethod
    async def _json(request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            raise ApiError(400, "the request body is not JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        return body

    # --- routes ----------------------------------------------------------------------------------

    async def _create_file(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload, purpose = form.get("file"), form.get("purpose")
        if not isinstance(upload, web.FileField) or not isinstance(purpose, str):
            raise ApiError(400, "multipart fields 'file' and 'purpose' are required")
        stored = self.store.add_file(upload.filename, purpose, upload.file.read())
        return web.json_response(stored.to_json())

    async def _get_file(self, request: web.Request) -> web.Response:
        return web.json_response(self.store.file(request.match_info["id"]).to_json())

    async def _list_files(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [f.to_json() for f in self.store.files.values()], "has_more": False}
        )

    async def _create_job(self, request: web.Request) -> web.Response:
        return web.json_response(self.store.create_job(await self._json(request)).to_json())

    async def _list_jobs(self, request: web.Request) -> web.Response:
        jobs = [j.to_json() for j in reversed(list(self.store.jobs.values()))]
        return web.json_response({"object": "list", "data": jobs, "has_more": False})

    async def _get_job(self, request: web.Request) -> web.Response:
        return web.json_response(self.store.advance(request.match_info["id"]).to_json())

    async def _job_events(self, request: web.Request) -> web.Response:
        limit = int(request.query.get("limit", "20"))
        events, more = self.store.events(request.match_info["id"], request.query.get("after"), limit)
        return web.json_response({"object": "list", "data": [e.to_json() for e in events], "has_more": more})

    async def _chat(self, request: web.Request) -> web.Response:
        return web.json_response(self.store.complete(await self._json(request)))

    async def _embeddings(self, request: web.Request) -> web.Response:
        return web.json_response(self.store.embed(await self._json(request)))

    async def _info(self, request: web.Request) -> web.Response:
        with self._lock:
            counts: dict[str, int] = {}
            for r in self.requests:
                counts[r.path] = counts.get(r.path, 0) + 1
        return web.json_response(
            {
                "base_url": self.base_url,
                "requests": counts,
                "faults": self.faults.to_list(),
                "jobs": {j.id: j.status for j in self.store.jobs.values()},
            }
        )

    async def _add_fault(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        fault = self.faults.add(
            str(body.get("path", "*")),
            status=int(body.get("status", 429)),
            retry_after=body.get("retry_after", 0.0),
            times=body.get("times", 1),
        )
        return web.json_response(fault.to_dict())

    async def _clear_faults(self, request: web.Request) -> web.Response:
        self.faults.clear()
        return web.json_response({"ok": True})
