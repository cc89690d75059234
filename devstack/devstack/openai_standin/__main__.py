"""`python -m devstack.openai_standin [--port 8089]`: the OpenAI stand-in as a process.

Point BeepGPT at it with `BEEPGPT_OPENAI_BASE_URL=http://127.0.0.1:8089/v1 OPENAI_API_KEY=local`.
Faults: `curl -X POST localhost:8089/_standin/faults -d '{"path": "/v1/chat/completions", "times": 3}'`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from .server import OpenAIStandin


async def serve(host: str, port: int, job_steps: int) -> None:
    standin = OpenAIStandin(host=host, port=port, job_steps=job_steps)
    await standin.start()
    print(
        f"OpenAI stand-in on {standin.base_url} (control: http://{host}:{standin.port}/_standin/info)",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await standin.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.openai_standin", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument(
        "--job-steps", type=int, default=3, help="training steps a job reports before it succeeds"
    )
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.job_steps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
