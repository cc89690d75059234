"""Every metric the alert rules and the dashboard use is one the services really export.

The four services run as processes (`python -m <service>`, as in their images) against a real
broker, a real Redis and the Slack stand-in; their /metrics pages are scraped and the metric
families read from the `# TYPE` lines, which prometheus-client writes for every registered metric,
even a labelled one that has not counted anything yet. A rule or panel naming a metric that is not
there would be an alert that can never fire, or an empty panel.

Label names are checked too: labels in selectors (`{outcome="failed"}`) and groupings
(`by (reason)`) must be labels of the metrics in that query, or labels Prometheus adds to every
target (`service`, `instance`, ...). Those come from the services' metric objects (imported in a
fresh interpreter by service_facts.py), because a scrape shows a labelled metric's labels only
after it has counted something.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from deploy_helpers import DEPLOY, REPO

from beepgpt.settings import KafkaSettings, RedisSettings
from devstack.local_stack import free_port
from devstack.slack_standin import SlackStandin

SERVICES = ("ingest", "sessionizer", "scorer", "notifier")
START_TIMEOUT_S = 180.0  # the scorer loads torch and an embedding model on a shared 2-core box
# Labels every scraped series carries: compose relabels `service`, the Prometheus Operator sets it
# from the Service name; `le` belongs to every histogram's _bucket series.
TARGET_LABELS = {"service", "instance", "job", "namespace", "pod", "container", "endpoint", "le"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}


# ---- what the rules and the dashboard use -----------------------------------------------------------


def rule_expressions(yaml: Any) -> list[str]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "beepgpt.json").read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bbeepgpt_[a-z0-9_]+\b", expr))


def label_uses(expr: str) -> set[str]:
    """Label names in selectors and in by/without/on/ignoring groupings of one expression."""
    labels: set[str] = set()
    for selector in re.findall(r"\{([^}]*)\}", expr):
        labels.update(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", selector))
    for grouping in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        labels.update(name.strip() for name in grouping.split(",") if name.strip())
    return labels - PROMQL_WORDS


# ---- what the services export ----------------------------------------------------------------------


def sample_names(family: str, kind: str) -> set[str]:
    """The series names a metric family of a `# TYPE` line produces."""
    if kind == "counter":
        base = family.removesuffix("_total")
        return {f"{base}_total", f"{base}_created"}
    if kind == "histogram":
        return {family, *(f"{family}_{suffix}" for suffix in ("bucket", "sum", "count", "created"))}
    if kind == "summary":
        return {family, *(f"{family}_{suffix}" for suffix in ("sum", "count", "created"))}
    return {family}


def exported_names(metrics_page: str) -> set[str]:
    names: set[str] = set()
    for family, kind in re.findall(r"^# TYPE (\S+) (\S+)$", metrics_page, flags=re.MULTILINE):
        names |= sample_names(family, kind)
    return names


@contextlib.asynccontextmanager
async def running(service: str, env: dict[str, str], log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """`python -m <service>` until the block ends, then SIGTERM (as Kubernetes stops it)."""
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            service,
            env={**os.environ, **env},
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout=30)
            except TimeoutError:
                process.kill()
                await process.wait()


def _tail(log: Path) -> str:
    """The end of a service's log, for the failure message (read once, when failing)."""
    return log.read_text(errors="replace")[-4000:]


async def scrape(port: int, process: asyncio.subprocess.Process, log: Path) -> str:
    """The /metrics page, polled until the service serves it; a process that dies fails fast."""
    deadline = time.monotonic() + START_TIMEOUT_S
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while True:
            if process.returncode is not None:
                raise AssertionError(f"exited with {process.returncode}:\n{_tail(log)}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(f"http://127.0.0.1:{port}/metrics") as reply:
                    if reply.status == 200:
                        return await reply.text()
            if time.monotonic() > deadline:
                raise AssertionError(f"no /metrics within {START_TIMEOUT_S:.0f}s:\n{_tail(log)}")
            await asyncio.sleep(0.5)  # waiting for a process to come up, bounded by the deadline


# ---- the tests ------------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def slack() -> AsyncIterator[SlackStandin]:
    async with SlackStandin() as standin:
        yield standin


def service_env(
    service: str, port: int, kafka: KafkaSettings, redis: RedisSettings, slack: SlackStandin
) -> dict[str, str]:
    """The variables compose/Kubernetes set, pointed at the test's broker, Redis and stand-in."""
    env = {
        "BEEPGPT_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "BEEPGPT_KAFKA_IDEMPOTENCE": "false",  # Tansu has no idempotent producer
        "BEEPGPT_KAFKA_PARTITIONS": str(kafka.partitions),
        "BEEPGPT_KAFKA_SESSION_TIMEOUT_MS": str(kafka.session_timeout_ms),
        "BEEPGPT_KAFKA_HEARTBEAT_INTERVAL_MS": str(kafka.heartbeat_interval_ms),
        "BEEPGPT_REDIS_URL": redis.url,
        "BEEPGPT_REDIS_KEY_PREFIX": f"{redis.key_prefix}{service}:",
        "BEEPGPT_HTTP_HOST": "127.0.0.1",
        "BEEPGPT_HTTP_PORT": str(port),
        "BEEPGPT_SECRETS_DIR": str(REPO / "nonexistent-secrets-dir"),
        "BEEPGPT_SLACK_API_URL": slack.api_url,
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_APP_TOKEN": slack.app_token,
        "SLACK_SIGNING_SECRET": slack.signing_secret,
    }
    if service == "scorer":
        # The real service with the scorer tests' deterministic plug-in instead of trained models
        # (a fresh checkout has none; `beepgpt train` writes them). Every scorer metric is
        # registered by the service's own modules, so the exported names are the same.
        env["BEEPGPT_SCORER_FACTORY"] = "keyword_scorer:build"
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(REPO / "tests" / "scorer" / "service"), os.environ.get("PYTHONPATH")])
        )
    return env


def owner(metric: str) -> str | None:
    """The service whose metric this is (`beepgpt_<service>_...`); None for the shared ones."""
    return next((service for service in SERVICES if metric.startswith(f"beepgpt_{service}_")), None)


SHARED_PREFIXES = ("beepgpt_kafka_", "beepgpt_dlq_", "beepgpt_ready")


def queries(yaml: Any) -> list[tuple[str, str]]:
    """(where, PromQL) for every alert rule and dashboard panel query."""
    return [("rules.yml", e) for e in rule_expressions(yaml)] + [
        ("beepgpt.json", e) for e in dashboard_expressions()
    ]


def used_by(service: str, yaml: Any) -> dict[str, set[str]]:
    """Metric -> where it is used, for the metrics of `service` and the shared ones it exports."""
    uses: dict[str, set[str]] = {}
    for where, expr in queries(yaml):
        for name in metric_names(expr):
            if owner(name) in (service, None):
                uses.setdefault(name, set()).add(where)
    return uses


def test_every_metric_used_is_a_service_metric_or_a_shared_one(yaml: Any) -> None:
    names = {name for _, expr in queries(yaml) for name in metric_names(expr)}
    strays = sorted(n for n in names if owner(n) is None and not n.startswith(SHARED_PREFIXES))
    assert not strays, f"neither beepgpt_<service>_* nor shared (beepgpt/observability/metrics.py): {strays}"


@pytest.mark.slow
@pytest.mark.parametrize("service", SERVICES)
async def test_running_service_exports_what_rules_and_dashboard_use(
    yaml: Any,
    service: str,
    kafka_topics: KafkaSettings,
    redis_settings: RedisSettings,
    slack: SlackStandin,
    tmp_path: Path,
) -> None:
    """Its own metrics, and the shared ones (lag, DLQ, readiness) that every service exports."""
    port, log = free_port(), tmp_path / f"{service}.log"
    async with running(
        service, service_env(service, port, kafka_topics, redis_settings, slack), log
    ) as process:
        exported = exported_names(await scrape(port, process, log))
    wanted = used_by(service, yaml)
    missing = {name: sorted(where) for name, where in wanted.items() if name not in exported}
    assert not missing, f"{service} does not export metrics that rules/dashboard use: {missing}"
    assert any(owner(name) == service for name in wanted), f"no rule or panel watches {service}"


@pytest.mark.parametrize("service", SERVICES)
def test_queries_use_only_labels_the_metrics_have(
    yaml: Any, service_facts: Callable[[str], dict[str, Any]], service: str
) -> None:
    """Queries about `service`'s metrics (alone or with shared ones) name only their labels."""
    labels = {name: set(names) for name, names in service_facts(service)["metrics"].items()}
    problems: list[str] = []
    for where, expr in queries(yaml):
        names = metric_names(expr)
        owners = {owner(name) for name in names}
        if service not in owners and not (service == SERVICES[0] and owners == {None}):
            continue  # another service's query (queries on shared metrics only: checked once)
        unknown = sorted(name for name in names if name not in labels)
        if unknown:
            problems.append(f"{where}: {unknown} not registered by {service}: {expr!r}")
            continue
        available = set().union(TARGET_LABELS, *(labels[name] for name in names))
        for label in sorted(label_uses(expr) - available):
            problems.append(f"{where}: label {label!r} is not a label of {sorted(names)}: {expr!r}")
    assert not problems, "\n".join(problems)


def test_label_and_name_extraction() -> None:
    expr = 'sum by (service, topic) (rate(beepgpt_dlq_records_total{error=~"x|y", service!="a"}[5m])) > 0'
    assert metric_names(expr) == {"beepgpt_dlq_records_total"}
    assert label_uses(expr) == {"service", "topic", "error"}
    page = "# HELP a_total x\n# TYPE a_total counter\n# TYPE h_seconds histogram\n# TYPE g gauge\n"
    assert exported_names(page) == {
        "a_total", "a_created", "h_seconds", "h_seconds_bucket", "h_seconds_sum", "h_seconds_count",
        "h_seconds_created", "g",
    }  # fmt: skip
