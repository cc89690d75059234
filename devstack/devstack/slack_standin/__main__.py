"""`python -m devstack.slack_standin`: the stand-in as a process for the demo and manual runs.

Prints one JSON line with its URLs once it accepts connections (so a parent process can read the
port it got with `--port 0`), then serves until SIGINT/SIGTERM. Tokens and the signing secret come
from flags or the usual SLACK_* environment variables and are never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from .identity import DEFAULT_APP_TOKEN, DEFAULT_BOT_TOKEN, DEFAULT_SIGNING_SECRET
from .server import SlackStandin
from .workspace import Workspace


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devstack.slack_standin", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on stdout)")
    parser.add_argument("--users", type=Path, help="Slack-export style users.json")
    parser.add_argument("--channels", type=Path, help="Slack-export style channels.json")
    parser.add_argument("--export", type=Path, help="an unzipped Slack export (users, channels, history)")
    parser.add_argument("--team-id", help="override the team id")
    parser.add_argument("--bot-token", default=os.environ.get("SLACK_BOT_TOKEN", DEFAULT_BOT_TOKEN))
    parser.add_argument("--app-token", default=os.environ.get("SLACK_APP_TOKEN", DEFAULT_APP_TOKEN))
    parser.add_argument(
        "--signing-secret", default=os.environ.get("SLACK_SIGNING_SECRET", DEFAULT_SIGNING_SECRET)
    )
    parser.add_argument("--log-level", default="WARNING")
    return parser.parse_args(argv)


def build_workspace(args: argparse.Namespace) -> Workspace:
    options: dict[str, Any] = {
        "bot_token": args.bot_token,
        "app_token": args.app_token,
        "signing_secret": args.signing_secret,
    }
    if args.team_id:
        options["team_id"] = args.team_id
    if args.export:
        return Workspace.from_export_dir(args.export, **options)
    return Workspace.from_files(args.users, args.channels, **options)


async def serve(args: argparse.Namespace) -> None:
    standin = SlackStandin(build_workspace(args), host=args.host, port=args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with standin:
        ws = standin.workspace
        ready = {
            **standin.urls(),
            "team_id": ws.team_id,
            "bot_user_id": ws.bot_user_id,
            "app_id": ws.app_id,
            "pid": os.getpid(),
        }
        print(json.dumps(ready), flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        workspace_check = args.export or args.users or args.channels
        if workspace_check is not None and not Path(workspace_check).exists():
            raise ValueError(f"{workspace_check}: no such file or directory")
        asyncio.run(serve(args))
    except (ValueError, OSError) as e:
        print(f"slack stand-in: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
