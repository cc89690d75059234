"""Fixtures for checking deploy/: the real tools (installed by deploy/validate.sh) and parsers.

The tools are never optional: when one is missing, validate.sh installs it, and when that fails
the tests fail with its output. Nothing here skips.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from deploy_helpers import DEPLOY, REPO, VALIDATE, run


@pytest.fixture(scope="session")
def deploy_tools() -> None:
    """docker-compose, kubectl, promtool and kubernetes-validate (+ PyYAML, jsonschema) present."""
    result = run(VALIDATE, "--install-only")
    assert result.returncode == 0, (
        f"deploy/validate.sh --install-only failed:\n{result.stdout}\n{result.stderr}"
    )


@pytest.fixture(scope="session")
def yaml(deploy_tools: None) -> ModuleType:
    """PyYAML, which kubernetes-validate brings along (imported after the install step)."""
    import yaml as module

    return module


@pytest.fixture(scope="session")
def compose_config(yaml: ModuleType) -> dict[str, Any]:
    """docker-compose.yml as Compose itself resolves it (anchors merged, defaults interpolated)."""
    result = run("docker-compose", "-f", "docker-compose.yml", "config")
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


@pytest.fixture(scope="session")
def rendered_overlays(
    yaml: ModuleType, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, list[dict[str, Any]]]:
    """Every overlay built by `kubectl kustomize`, from a copy with the example secrets."""
    work = tmp_path_factory.mktemp("k8s")
    shutil.copytree(DEPLOY / "k8s", work / "k8s")
    overlays: dict[str, list[dict[str, Any]]] = {}
    for overlay in sorted((work / "k8s" / "overlays").iterdir()):
        for example in overlay.glob("*.env.example"):
            shutil.copy(example, example.with_suffix(""))
        result = run("kubectl", "kustomize", overlay)
        assert result.returncode == 0, result.stderr
        overlays[overlay.name] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return overlays


@pytest.fixture(scope="session")
def service_facts() -> Callable[[str], dict[str, Any]]:
    """`service_facts("scorer")`: its settings variables, consumer group and metric labels.

    Read by service_facts.py in a fresh interpreter, once per service; a service that cannot be
    imported fails the tests that ask about it, and only those.
    """
    cache: dict[str, dict[str, Any]] = {}

    def facts(service: str) -> dict[str, Any]:
        if service not in cache:
            result = run(sys.executable, REPO / "tests" / "deploy" / "service_facts.py", service)
            assert result.returncode == 0, f"importing {service} failed:\n{result.stderr[-3000:]}"
            cache[service] = json.loads(result.stdout)
        return cache[service]

    return facts
