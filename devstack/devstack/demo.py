"""`make demo` / `beepgpt demo`: the whole product on one machine, with no Slack or OpenAI account.

It starts a real Kafka-protocol broker (Tansu) and Redis, the Slack stand-in, trains a model on
the bundled example workspace if there is none, starts the four services as separate processes,
lets the example people follow a few topics, replays the workspace through Socket Mode with time
compressed, and prints each DM as the notifier sends it, then a summary. Ctrl-C stops everything.

With SLACK_BOT_TOKEN and SLACK_APP_TOKEN set it runs the services against that real workspace
instead (no stand-in, no replay) until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from beepgpt import topics
from beepgpt.contracts import (
    DEFAULT_DAILY_BUDGET,
    MAX_DAILY_BUDGET,
    Candidate,
    ConversationEvent,
    Notification,
    split_conversation_id,
)
from beepgpt.kafka import EventProducer, ensure_topics
from beepgpt.settings import KafkaSettings
from devstack.demo_controls import DemoControls, builder
from devstack.example_workspace import EXAMPLE_FOLLOWS, MESSAGES, ExampleWorkspace
from devstack.local_stack import LocalStack
from devstack.processes import Services
from devstack.replay import message_event, paced, plan
from devstack.slack_standin.remote import RemoteStandin

ROOT = Path(__file__).resolve().parents[2]
# The stand-in and the services share these made-up credentials; real ones never get here.
DEMO_TOKENS = {
    "SLACK_BOT_TOKEN": "xoxb-beepgpt-demo",
    "SLACK_APP_TOKEN": "xapp-beepgpt-demo",
    "SLACK_SIGNING_SECRET": "beepgpt-demo-signing-secret",
}
STANDIN_TOKEN_FLAGS = {
    "bot-token": "SLACK_BOT_TOKEN",
    "app-token": "SLACK_APP_TOKEN",
    "signing-secret": "SLACK_SIGNING_SECRET",
}
GAP_S = 600.0
THREAD_IDLE_S = 1800.0
CONTROL_OUTCOMES = ("muted", "snoozed", "down_weighted")


@dataclass
class Tally:
    """What the demo saw on the topics, for the live lines and the summary."""

    names: dict[str, str]
    outcomes: Counter[str] = field(default_factory=Counter)
    conversations_closed: set[str] = field(default_factory=set)
    conversations_updated: int = 0
    candidates: int = 0
    latencies: list[float] = field(default_factory=list)
    explanations: dict[tuple[str, str], str] = field(default_factory=dict)
    waiting: dict[tuple[str, str], Notification] = field(default_factory=dict)
    """DMs whose candidate (and so explanation) has not been read yet."""
    last_change: float = field(default_factory=time.monotonic)
    alerted: dict[str, set[str]] = field(default_factory=dict)
    """conversation id → who got a real-time DM about it"""
    joined_after_dm: set[tuple[str, str]] = field(default_factory=set)
    """(person, conversation) pairs where the person posted in it after their DM"""
    listeners: list[Callable[[Notification], None]] = field(default_factory=list)
    """Also told of every decision (the demo's controls click on real-time DMs)."""
    controls_used: list[str] = field(default_factory=list)
    """What the demo's people did with the controls, for the summary."""

    def name(self, user: str) -> str:
        return self.names.get(user, user)

    def on_notification(self, note: Notification) -> None:
        self.outcomes[note.outcome] += 1
        self.last_change = time.monotonic()
        for listener in self.listeners:
            listener(note)
        if note.outcome in CONTROL_OUTCOMES:
            print(f"  {note.outcome} → {self.name(note.user):<8} {note.conversation_id}  {note.detail[:140]}", flush=True)
        if note.outcome == "sent":
            self.alerted.setdefault(note.conversation_id, set()).add(note.user)
        if note.outcome in ("sent", "digest"):
            if note.latest_ts:
                # Until Slack has the DM: its ts is Slack's clock at chat.postMessage (the
                # notifier's decided_at is taken before the post).
                delivered = float(note.dm_ts) if note.dm_ts else note.decided_at
                self.latencies.append(max(0.0, delivered - float(note.latest_ts)))
            key = (note.user, note.conversation_id)
            if key in self.explanations:
                self._print(note, self.explanations[key])
            else:  # its candidate is on another topic, not read yet: print once it is
                self.waiting[key] = note

    def on_conversation(self, event: ConversationEvent) -> None:
        """A DM went only to someone not in the conversation: if they are in it now, they joined."""
        if event.kind == "closed":
            self.conversations_closed.add(event.conversation_id)
        else:
            self.conversations_updated += 1
        for user in self.alerted.get(event.conversation_id, set()) & set(event.participants):
            self.joined_after_dm.add((user, event.conversation_id))

    def on_candidate(self, candidate: Candidate) -> None:
        key = (candidate.user, candidate.conversation_id)
        self.explanations[key] = candidate.explanation
        self.candidates += 1
        waiting = self.waiting.pop(key, None)
        if waiting is not None:
            self._print(waiting, candidate.explanation)

    def _print(self, note: Notification, why: str) -> None:
        channel, first, thread = split_conversation_id(note.conversation_id)
        started = datetime.fromtimestamp(float(first), UTC).strftime("%H:%M:%S")
        print(
            f"  DM → {self.name(note.user):<8} #{channel} {'thread' if thread else 'conversation'} from {started}"
            f"  [{note.reason}] {(why or note.detail)[:160]}",
            flush=True,
        )

    def summary(self, messages: int) -> str:
        for note in self.waiting.values():  # candidates never read (the topic was cut short)
            self._print(note, note.detail)
        self.waiting.clear()
        lat = sorted(self.latencies)

        def pct(p: float) -> str:
            return f"{lat[min(len(lat) - 1, int(p * len(lat)))]:.2f}s" if lat else "n/a"

        lines = [
            "",
            "summary",
            f"  messages replayed      {messages}",
            f"  conversation updates   {self.conversations_updated}",
            f"  conversations closed   {len(self.conversations_closed)}",
            f"  candidates             {self.candidates}",
            f"  DMs sent               {self.outcomes['sent']}",
            f"  ... then joined        {len(self.joined_after_dm)} (the person posted in that conversation after the DM)",
            f"  deduplicated           {self.outcomes['deduplicated']}",
            f"  held / rate limited    {self.outcomes['held']} / {self.outcomes['rate_limited']}",
            # Waiting for the person's digest time (09:00, 13:00, 17:00 in their zone by default).
            f"  held by the budget     {self.outcomes['over_budget']}",
            f"  not opted in / failed  {self.outcomes['not_opted_in']} / {self.outcomes['failed']}",
            # The person's own controls (the demo uses each once, below), as the notifier audited them.
            f"  muted / snoozed        {self.outcomes['muted']} / {self.outcomes['snoozed']}",
            f"  fewer like this        {self.outcomes['down_weighted']} (below the bar a click raised)",
            f"  in digests             {self.outcomes['digest']}",
            f"  latency message → DM   p50 {pct(0.5)}  p99 {pct(0.99)}",
        ]
        if self.controls_used:
            lines += ["  controls used", *(f"    {line}" for line in self.controls_used)]
        return "\n".join(lines)


async def follow_topics(kafka: KafkaSettings, tally: Tally) -> None:
    """Tail conversations, candidates and decisions from the start, updating the tally."""
    consumer = AIOKafkaConsumer(
        topics.CONVERSATIONS.name,
        topics.CANDIDATES.name,
        topics.SENT.name,
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=kafka.fetch_max_wait_ms,
    )
    await consumer.start()
    try:
        async for record in consumer:
            if record.value is None:
                continue
            if record.topic == topics.SENT.name:
                tally.on_notification(topics.SENT.decode(record.value))
            elif record.topic == topics.CANDIDATES.name:
                tally.on_candidate(topics.CANDIDATES.decode(record.value))
            else:
                tally.on_conversation(topics.CONVERSATIONS.decode(record.value))
            tally.last_change = time.monotonic()
    finally:
        await consumer.stop()


@contextlib.asynccontextmanager
async def slack_standin(workspace: ExampleWorkspace, folder: Path) -> AsyncIterator[dict[str, str]]:
    """The stand-in as its own process, loaded with the example people and channels."""
    users, channels = workspace.write_standin_files(folder)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "devstack.slack_standin",
        "--users",
        str(users),
        "--channels",
        str(channels),
        *(f"--{name}={DEMO_TOKENS[var]}" for name, var in STANDIN_TOKEN_FLAGS.items()),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        if not line:
            raise RuntimeError("the Slack stand-in did not start")
        yield json.loads(line)
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()


def ensure_model(model_dir: Path) -> None:
    """Train on the example workspace once; later demos reuse the model directory, unless an
    earlier version wrote it with features this scorer no longer computes."""
    from scorer.interest.pairs import FEATURES, trained_features

    trained = trained_features(model_dir)
    current = trained is None or trained == FEATURES
    if current and ((model_dir / "model.json").exists() or (model_dir / "manifest.json").exists()):
        return
    why = "" if current else " (the one there was trained on other features)"
    print(f"training the interest model on the example workspace → {model_dir}{why}", flush=True)
    subprocess.run(
        [sys.executable, "-m", "beepgpt.cli", "train", str(MESSAGES), "--out", str(model_dir)], check=True
    )


def demo_daily_budget(days: int) -> int:
    """The notifier counts real days, and the replay puts `days` example days into one: each
    replayed day gets the default budget (as the rate limit is scaled to the replay's speed too);
    the whole workspace (`--days 0`) gets the highest budget there is."""
    if days <= 0:
        return MAX_DAILY_BUDGET
    return min(MAX_DAILY_BUDGET, DEFAULT_DAILY_BUDGET * days)


def service_env(
    stack: LocalStack, slack: dict[str, str] | None, model_dir: Path, speed: float, days: int = 2
) -> dict[str, str]:
    env = {
        **stack.env(),
        "BEEPGPT_KAFKA_PARTITIONS": "3",
        "BEEPGPT_SCORER_MODEL_DIR": str(model_dir),
        # The replay compresses time by `speed`, so the conversation rules are compressed alike.
        "BEEPGPT_SESSIONIZER_GAP_S": f"{GAP_S / speed:.3f}",
        "BEEPGPT_SESSIONIZER_THREAD_IDLE_S": f"{THREAD_IDLE_S / speed:.3f}",
        "BEEPGPT_NOTIFIER_RATE_PER_HOUR": "3600",
        "BEEPGPT_NOTIFIER_BURST": "20",
        "BEEPGPT_NOTIFIER_DAILY_BUDGET": str(demo_daily_budget(days)),
        # Quiet services by default, so the demo's own lines stand out; BEEPGPT_LOG_LEVEL=INFO
        # in the environment fills build/demo/logs/ for a closer look.
        "BEEPGPT_LOG_LEVEL": os.environ.get("BEEPGPT_LOG_LEVEL", "WARNING"),
    }
    if slack is not None:
        env |= {**DEMO_TOKENS, "BEEPGPT_SLACK_API_URL": slack["api_url"]}
    return env


async def run(args: argparse.Namespace) -> int:
    real_slack = bool(os.environ.get("SLACK_BOT_TOKEN") and os.environ.get("SLACK_APP_TOKEN"))
    workspace = ExampleWorkspace.load()
    work = ROOT / "build" / "demo"
    work.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    ensure_model(args.model_dir)
    print("starting the Tansu broker and Redis ...", flush=True)
    with LocalStack(broker_log=work / "broker.log") as stack:
        kafka = KafkaSettings(bootstrap_servers=stack.bootstrap_servers, idempotence=False, partitions=3)
        await ensure_topics(kafka, topics.ALL_TOPICS)
        tally = Tally(workspace.user_names)
        async with contextlib.AsyncExitStack() as resources:
            slack = (
                None if real_slack else await resources.enter_async_context(slack_standin(workspace, work))
            )
            # A real workspace runs in real time: its conversations close after the real gaps.
            speed = 1.0 if real_slack else args.speed
            env = service_env(stack, slack, args.model_dir.resolve(), speed, args.days)
            if real_slack:
                # Slack's tokens and address come from the environment the services inherit, and
                # real people get the notifier's own rate limits, not the replay's generous ones.
                env = {
                    k: v
                    for k, v in env.items()
                    if not k.startswith(("SLACK_", "BEEPGPT_SLACK_", "BEEPGPT_NOTIFIER_"))
                }
            else:
                # The example people follow topics; in a real workspace people use `/beep follow`.
                await follow_example_topics(kafka, workspace, tally)
            services = Services(env, work / "logs")
            print("starting ingest, sessionizer, scorer and notifier ...", flush=True)
            await services.start()
            resources.push_async_callback(stop_services, services)
            watcher = asyncio.create_task(follow_topics(kafka, tally))
            resources.callback(watcher.cancel)
            if real_slack:
                print("running against your Slack workspace; Ctrl-C stops", flush=True)
                await stop.wait()
                return 0
            assert slack is not None
            clicking = await use_controls(resources, workspace, slack, tally)
            replay = asyncio.create_task(replay_workspace(workspace, slack, args, stop))
            messages = await replay
            if not stop.is_set():
                await settle(tally, quiet_for=max(3.0, 2 * THREAD_IDLE_S / args.speed), stop=stop)
            clicking.cancel()
            if watcher.done():
                watcher.result()  # the tally stopped early: its error, rather than a short summary
            print(tally.summary(messages), flush=True)
    return 0


async def stop_services(services: Services) -> None:
    """Stop the services and say which did not exit cleanly (a crash on the way out would
    otherwise only show in its log)."""
    for name, code in (await services.stop()).items():
        if code not in (0, None):
            print(f"{name} exited with code {code} when stopped; see {services[name].log_path}", flush=True)


async def follow_example_topics(kafka: KafkaSettings, workspace: ExampleWorkspace, tally: Tally) -> None:
    async with EventProducer(kafka, "demo") as producer:
        for prefs in workspace.preferences(time.time()):
            await producer.send(topics.PREFERENCES, prefs.user, prefs)
    for user, follows in ((p.user, p.topics) for p in workspace.preferences(0)):
        for topic in follows:
            print(f"  {tally.name(user)} follows: “{topic.text}”", flush=True)


async def use_controls(
    resources: contextlib.AsyncExitStack, workspace: ExampleWorkspace, slack: dict[str, str], tally: Tally
) -> asyncio.Task[None]:
    """Each control once (`demo_controls`): two commands now, three DM buttons as DMs come."""
    remote = await resources.enter_async_context(RemoteStandin(slack["control_url"]))
    controls = DemoControls(remote, builder(await remote.info()), tally.names)
    controls.used = tally.controls_used
    people = [str(u["id"]) for u in workspace.users]
    muter = next(u for u in people if u not in EXAMPLE_FOLLOWS)  # alerts by interest only
    scheduler = list(EXAMPLE_FOLLOWS)[1]
    await controls.commands(muter, "General", scheduler)
    tally.listeners.append(controls.on_notification)
    task = asyncio.create_task(controls.click_first_dms())
    resources.callback(task.cancel)
    return task


async def replay_workspace(
    workspace: ExampleWorkspace, slack: dict[str, str], args: argparse.Namespace, stop: asyncio.Event
) -> int:
    table = workspace.days(args.days)
    planned = plan(table, start=time.time() + 1.0, speed=args.speed, max_silence=args.max_silence)
    span = planned[-1].at - planned[0].at if planned else 0.0
    print(
        f"replaying {len(planned)} messages of {args.days or 'all'} day(s) in ~{span:.0f}s "
        f"(speed ×{args.speed:g}); DMs appear below as they are sent",
        flush=True,
    )
    sent = 0
    async with RemoteStandin(slack["control_url"]) as remote:
        team = str((await remote.info()).get("team_id", "T0"))
        async for message in paced(planned):
            if stop.is_set():
                break
            await remote.push_event(message_event(message, team))
            sent += 1
    return sent


async def settle(tally: Tally, quiet_for: float, stop: asyncio.Event) -> None:
    """Wait until nothing has happened on the topics for `quiet_for` seconds (or Ctrl-C)."""
    while not stop.is_set() and time.monotonic() - tally.last_change < quiet_for:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="beepgpt demo", description=__doc__)
    parser.add_argument(
        "--speed", type=float, default=600.0, help="replay speed-up (600: a 9-hour day in 54 s)"
    )
    parser.add_argument("--days", type=int, default=2, help="how many days of the example to replay (0: all)")
    parser.add_argument(
        "--max-silence", type=float, default=3.0, help="longest pause between messages, seconds"
    )
    parser.add_argument("--model-dir", type=Path, default=ROOT / "models" / "demo")
    args = parser.parse_args(argv)
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
