"""Prints, as JSON, what one service reads and exports: run as a script, in a fresh interpreter.

    python tests/deploy/service_facts.py scorer

A separate process imports the service the way its container does (`python -m <service>`
imports `<service>.__main__`), with nothing of the test session on sys.path (where tests/<service>/
would shadow the package) and nothing else registered in prometheus-client's registry:

- `env`: every environment variable its settings classes read (prefix + field, or alias);
- `group_env` / `group_default`: the variable naming its consumer group and the default group;
- `metrics`: series name -> label names of every metric registered once it is imported.
"""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase
from pydantic_settings import BaseSettings


def settings_classes(module_name: str) -> list[type[BaseSettings]]:
    module = importlib.import_module(module_name)
    return [
        value
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, BaseSettings) and value.__module__ == module_name
    ]


def env_names(classes: list[type[BaseSettings]]) -> set[str]:
    names: set[str] = set()
    for cls in classes:
        prefix = str(cls.model_config.get("env_prefix", ""))
        for name, field in cls.model_fields.items():
            names.add(f"{prefix}{name}".upper())
            alias = field.validation_alias
            choices = getattr(alias, "choices", [alias] if isinstance(alias, str) else [])
            names.update(str(choice).upper() for choice in choices)
    return names


def sample_names(family: str, kind: str) -> set[str]:
    """The series a metric produces (kept identical to test_deploy_metrics.sample_names)."""
    if kind == "counter":
        base = family.removesuffix("_total")
        return {f"{base}_total", f"{base}_created"}
    if kind == "histogram":
        return {family, *(f"{family}_{suffix}" for suffix in ("bucket", "sum", "count", "created"))}
    if kind == "summary":
        return {family, *(f"{family}_{suffix}" for suffix in ("sum", "count", "created"))}
    return {family}


def metric_labels() -> dict[str, list[str]]:
    # `_labelnames`, `_name`, `_type`: prometheus-client's own record (no public accessor).
    labels: dict[str, list[str]] = {}
    for collector in set(REGISTRY._names_to_collectors.values()):
        if isinstance(collector, MetricWrapperBase):
            for name in sample_names(collector._name, collector._type):
                labels[name] = sorted(collector._labelnames)
    return labels


def facts(service: str) -> dict[str, Any]:
    importlib.import_module(f"{service}.__main__")
    shared = settings_classes("beepgpt.settings")
    own = settings_classes(f"{service}.settings")
    group = next((cls for cls in own if "group_id" in cls.model_fields), None)
    return {
        "env": sorted(env_names(shared + own)),
        "group_env": f"{group.model_config['env_prefix']}GROUP_ID".upper() if group else None,
        "group_default": group.model_fields["group_id"].default if group else None,
        "metrics": metric_labels(),
    }


if __name__ == "__main__":
    json.dump(facts(sys.argv[1]), sys.stdout)
