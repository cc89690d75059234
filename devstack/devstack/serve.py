"""`beepgpt serve <service>`: run one service in this process, as its container would."""

from __future__ import annotations

import argparse
import importlib

SERVICES = ("ingest", "sessionizer", "scorer", "notifier")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="beepgpt serve", description=__doc__)
    parser.add_argument("service", choices=SERVICES)
    args, rest = parser.parse_known_args(argv)
    module = importlib.import_module(f"{args.service}.__main__")
    result: int = module.main(rest)
    return result
