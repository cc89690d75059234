"""Operator endpoints and the `beepgpt` command index."""

from __future__ import annotations

import subprocess
import sys

import aiohttp

from beepgpt.cli import COMMANDS
from beepgpt.runtime import OpsServer


async def test_readiness_follows_the_service_and_metrics_are_served() -> None:
    ready = False
    server = OpsServer("test", "127.0.0.1", 0, lambda: ready)
    await server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/healthz") as response:
                assert response.status == 200
            async with http.get(f"{base}/readyz") as response:
                assert response.status == 503
            ready = True
            async with http.get(f"{base}/readyz") as response:
                assert response.status == 200
            async with http.get(f"{base}/metrics") as response:
                body = await response.text()
                assert 'beepgpt_ready{service="test"} 1.0' in body
    finally:
        await server.stop()


def test_beepgpt_help_lists_every_subcommand() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "beepgpt.cli", "--help"], capture_output=True, text=True, check=True
    )
    for name in COMMANDS:
        assert name in result.stdout
