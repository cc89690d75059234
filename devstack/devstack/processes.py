"""The four services as separate OS processes, the way they run in production, for the demo, the
end-to-end tests and the pipeline benchmark.

Each service is `python -m <service>` with its own ops port; `start` returns once its /readyz
answers 200. Processes can be SIGKILLed and started again one at a time, which is how the
end-to-end tests prove that a crash loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from devstack.local_stack import free_port

SERVICES = ("ingest", "sessionizer", "scorer", "notifier")
READY_TIMEOUT_S = 120.0


@dataclass
class ServiceProcess:
    """One running service: its process, ops port and log file."""

    name: str
    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: asyncio.subprocess.Process | None = None

    @property
    def ops_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        env = {**os.environ, **self.env, "BEEPGPT_HTTP_PORT": str(self.port), "PYTHONUNBUFFERED": "1"}
        log = open(self.log_path, "ab")  # noqa: SIM115, ASYNC230 - a local file, handed to the child
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", self.name, env=env, stdout=log, stderr=asyncio.subprocess.STDOUT
            )
        finally:
            log.close()

    async def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Poll /readyz until it answers 200; a process that exits meanwhile fails at once."""
        deadline = time.monotonic() + timeout
        delay = 0.05
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while True:
                if self.process is not None and self.process.returncode is not None:
                    tail = self.log_path.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"{self.name} exited ({self.process.returncode}):\n{tail}")
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    async with http.get(f"{self.ops_url}/readyz") as response:
                        if response.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.name} not ready after {timeout:.0f}s; see {self.log_path}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)

    def kill(self) -> None:
        """SIGKILL: no chance to commit or flush, as in a crash or an OOM kill."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)

    async def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait for a clean exit; SIGKILL if it does not come."""
        if self.process is None or self.process.returncode is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            self.process.kill()
            return await self.process.wait()

    async def metrics(self) -> str:
        async with aiohttp.ClientSession() as http, http.get(f"{self.ops_url}/metrics") as response:
            return await response.text()


@dataclass
class Services:
    """The four services sharing one environment (broker, Redis, Slack stand-in, model dir)."""

    env: Mapping[str, str]
    log_dir: Path
    names: tuple[str, ...] = SERVICES
    running: dict[str, ServiceProcess] = field(default_factory=dict)

    async def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in self.names:
            self.running[name] = ServiceProcess(name, dict(self.env), self.log_dir / f"{name}.log")
        await asyncio.gather(*(service.start() for service in self.running.values()))
        await asyncio.gather(*(service.wait_ready() for service in self.running.values()))

    async def restart(self, name: str, *, kill: bool = True) -> None:
        """Kill (or stop) one service and start it again with the same environment and port."""
        service = self.running[name]
        if kill:
            service.kill()
            if service.process is not None:
                await service.process.wait()
        else:
            await service.stop()
        await service.start()
        await service.wait_ready()

    async def stop(self) -> dict[str, int | None]:
        codes = await asyncio.gather(*(service.stop() for service in self.running.values()))
        return dict(zip(self.running, codes, strict=True))

    def __getitem__(self, name: str) -> ServiceProcess:
        return self.running[name]
