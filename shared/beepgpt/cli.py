"""`beepgpt`: the one command people run. Each subcommand lives with the code it drives.

The table below is the index; a subcommand's module is imported only when it runs, so this
package needs none of the services' dependencies (the scorer's ML stack stays in the scorer).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    module: str
    help: str
    package: str

    def run(self, argv: list[str]) -> int:
        try:
            module = importlib.import_module(self.module)
        except ModuleNotFoundError as error:
            print(
                f"beepgpt: this command needs the '{self.package}' package ({error.name} is missing);"
                " run `make setup` or install it with pip",
                file=sys.stderr,
            )
            return 2
        result: int = module.main(argv)
        return result


COMMANDS: dict[str, Command] = {
    "import": Command(
        "ingest.importer.cli",
        "normalize a Slack export (zip/dir/table) or, with --from-slack, read Slack; write Parquet and/or publish",
        "services/ingest",
    ),
    "conversations": Command(
        "offline.conversations",
        "build the conversations of a message table with the shared Kaskada query",
        "offline",
    ),
    "train": Command(
        "offline.training.cli",
        "train the interest model (local, or --openai fine-tuned)",
        "offline",
    ),
    "eval": Command(
        "offline.evaluation.cli",
        "measure the interest model or the topic matcher on held-out data (also: eval conversations)",
        "offline",
    ),
    "suggest": Command(
        "offline.suggestions",
        "topics suggested from a person's conversations (--publish: for /beep suggest and App Home)",
        "offline",
    ),
    "forget": Command(
        "offline.forget",
        "remove a person's preferences, feedback, held alerts, Redis state and model profile",
        "offline",
    ),
    "serve": Command(
        "devstack.serve", "run one service: ingest, sessionizer, scorer or notifier", "devstack"
    ),
    "stack": Command(
        "devstack.local_stack",
        "start a local Kafka-protocol broker (Tansu) and Redis for development",
        "devstack",
    ),
    "slack-standin": Command(
        "devstack.slack_standin.__main__", "run the local Slack stand-in server", "devstack"
    ),
    "demo": Command(
        "devstack.demo", "the whole pipeline on one machine, replaying the example workspace", "devstack"
    ),
}


SUBCOMMANDS: dict[tuple[str, str], Command] = {
    ("eval", "conversations"): Command(
        "offline.evaluation.conversations.cli",
        "conversation modes against known conversations (ARI, VI, one-to-one, exact match)",
        "offline",
    ),
    ("eval", "suggestions"): Command(
        "offline.evaluation.suggestions",
        "suggested topics against the generator's schedule: projects recovered, unmatched suggestions",
        "offline",
    ),
}
"""Subcommands in a module of their own: `beepgpt eval conversations` measures the sessionizer and
loads none of the scorer's ML stack that the rest of `beepgpt eval` imports."""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="beepgpt",
        description="BeepGPT: DMs people when an important Slack conversation happens without them.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {name:<14} {cmd.help}" for name, cmd in COMMANDS.items()),
    )
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="command", help="see below")
    parser.add_argument(
        "args", nargs=argparse.REMAINDER, help="arguments of the command (--help for its own)"
    )
    if not args:
        parser.print_help()
        return 0
    parsed = parser.parse_args(args[:1])
    routed = SUBCOMMANDS.get((parsed.command, args[1])) if len(args) > 1 else None
    if routed is not None:
        return routed.run(args[2:])
    return COMMANDS[parsed.command].run(args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
