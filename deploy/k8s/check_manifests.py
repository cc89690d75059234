"""Checks a rendered overlay (`kubectl kustomize ...`) beyond what kubernetes-validate can.

kubernetes-validate knows the built-in kinds only. This script
  1. writes the built-in documents to a file for kubernetes-validate (validate.sh runs it next);
  2. validates the custom resources we use (KEDA ScaledObject, Prometheus Operator ServiceMonitor
     and PrometheusRule, Strimzi KafkaTopic) against the subset of their CRD schemas that these
     manifests use, written down below from the projects' API references, strict about unknown
     fields so a misspelt key fails instead of being silently ignored by the operator;
  3. checks how the pieces fit together: every service has probes, resources, a PDB, exactly one
     autoscaler, a scraped Service; every KEDA Kafka trigger reads env vars the pod really has,
     watches a topic that exists, and cannot scale past that topic's partitions; the topics are
     those of shared/beepgpt/topics.py, each with its DLQ, with its retention or compaction and
     no more partitions than it says.

    python deploy/k8s/check_manifests.py rendered.yaml --builtin-out builtin.yaml
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import jsonschema
import yaml

if TYPE_CHECKING:
    from beepgpt.topics import TopicSettings

Doc = dict[str, Any]

# ---- schemas of the custom resources (the parts we use) -------------------------------------------

_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_LABEL_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"matchLabels": _STR_MAP, "matchExpressions": {"type": "array"}},
}


def _resource(spec: dict[str, Any], metadata_required: tuple[str, ...] = ("name",)) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {
                "type": "object",
                "required": list(metadata_required),
                "properties": {"name": {"type": "string"}, "labels": _STR_MAP, "annotations": _STR_MAP},
            },
            "spec": spec,
        },
        "additionalProperties": False,
    }


# https://keda.sh/docs/latest/reference/scaledobject-spec/ and .../scalers/apache-kafka/, .../cpu/
_KAFKA_TRIGGER_KEYS = [
    "bootstrapServers", "bootstrapServersFromEnv", "consumerGroup", "consumerGroupFromEnv", "topic",
    "topicFromEnv", "lagThreshold", "activationLagThreshold", "offsetResetPolicy", "allowIdleConsumers",
    "scaleToZeroOnInvalidOffset", "excludePersistentLag", "limitToPartitionsWithLag",
    "partitionLimitation", "version", "sasl", "tls", "unsafeSsl", "ensureEvenDistributionOfPartitions",
]  # fmt: skip
_TRIGGER = {
    "type": "object",
    "required": ["type", "metadata"],
    "additionalProperties": False,
    "properties": {
        "type": {"enum": ["kafka", "cpu", "memory", "prometheus"]},
        "name": {"type": "string"},
        "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
        "useCachedMetrics": {"type": "boolean"},
        "authenticationRef": {"type": "object", "required": ["name"]},
        "metadata": _STR_MAP,
    },
    "allOf": [
        {
            "if": {"properties": {"type": {"const": "kafka"}}},
            "then": {
                "properties": {
                    "metadata": {
                        "propertyNames": {"enum": _KAFKA_TRIGGER_KEYS},
                        "properties": {"offsetResetPolicy": {"enum": ["earliest", "latest"]}},
                        "anyOf": [
                            {"required": ["bootstrapServers"]},
                            {"required": ["bootstrapServersFromEnv"]},
                        ],
                    }
                }
            },
        },
        {
            "if": {"properties": {"type": {"const": "cpu"}}},
            "then": {
                "required": ["metricType"],
                "properties": {
                    "metricType": {"enum": ["Utilization", "AverageValue"]},
                    "metadata": {
                        "propertyNames": {"enum": ["value", "containerName"]},
                        "required": ["value"],
                    },
                },
            },
        },
    ],
}
SCALED_OBJECT = _resource(
    {
        "type": "object",
        "required": ["scaleTargetRef", "triggers"],
        "additionalProperties": False,
        "properties": {
            "scaleTargetRef": {
                "type": "object",
                "required": ["name"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string"},
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "envSourceContainerName": {"type": "string"},
                },
            },
            "pollingInterval": {"type": "integer", "minimum": 1},
            "cooldownPeriod": {"type": "integer", "minimum": 0},
            "initialCooldownPeriod": {"type": "integer", "minimum": 0},
            "idleReplicaCount": {"type": "integer", "minimum": 0},
            "minReplicaCount": {"type": "integer", "minimum": 0},
            "maxReplicaCount": {"type": "integer", "minimum": 1},
            "fallback": {"type": "object", "required": ["failureThreshold", "replicas"]},
            "advanced": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "restoreToOriginalReplicaCount": {"type": "boolean"},
                    "horizontalPodAutoscalerConfig": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"name": {"type": "string"}, "behavior": {"type": "object"}},
                    },
                    "scalingModifiers": {"type": "object"},
                },
            },
            "triggers": {"type": "array", "minItems": 1, "items": _TRIGGER},
        },
    }
)

# https://prometheus-operator.dev/docs/api-reference/api/#monitoring.coreos.com/v1.ServiceMonitor
SERVICE_MONITOR = _resource(
    {
        "type": "object",
        "required": ["selector", "endpoints"],
        "additionalProperties": False,
        "properties": {
            "selector": _LABEL_SELECTOR,
            "namespaceSelector": {"type": "object"},
            "jobLabel": {"type": "string"},
            "targetLabels": {"type": "array", "items": {"type": "string"}},
            "podTargetLabels": {"type": "array", "items": {"type": "string"}},
            "endpoints": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "port": {"type": "string"},
                        "path": {"type": "string"},
                        "scheme": {"enum": ["http", "https"]},
                        "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                        "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                        "honorLabels": {"type": "boolean"},
                        "relabelings": {"type": "array"},
                        "metricRelabelings": {"type": "array"},
                    },
                },
            },
        },
    }
)

PROMETHEUS_RULE = _resource(
    {
        "type": "object",
        "required": ["groups"],
        "additionalProperties": False,
        "properties": {
            "groups": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "rules"],
                    "properties": {
                        "name": {"type": "string"},
                        "interval": {"type": "string"},
                        "rules": {"type": "array"},
                    },
                },
            }
        },
    }
)

# https://strimzi.io/docs/operators/latest/configuring.html#type-KafkaTopic-reference
KAFKA_TOPIC = _resource(
    {
        "type": "object",
        "required": ["partitions", "replicas"],
        "additionalProperties": False,
        "properties": {
            "topicName": {"type": "string"},
            "partitions": {"type": "integer", "minimum": 1},
            "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
            "config": {"type": "object", "additionalProperties": {"type": ["string", "integer", "boolean"]}},
        },
    }
)

CUSTOM_KINDS: dict[tuple[str, str], dict[str, Any]] = {
    ("keda.sh/v1alpha1", "ScaledObject"): SCALED_OBJECT,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR,
    ("monitoring.coreos.com/v1", "PrometheusRule"): PROMETHEUS_RULE,
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): KAFKA_TOPIC,
}


# ---- checks -------------------------------------------------------------------------------------


class Manifests:
    def __init__(self, docs: list[Doc]) -> None:
        self.docs = docs
        self.errors: list[str] = []

    def of(self, kind: str) -> Iterator[Doc]:
        return (doc for doc in self.docs if doc.get("kind") == kind)

    def named(self, kind: str, name: str) -> Doc | None:
        return next((doc for doc in self.of(kind) if doc["metadata"]["name"] == name), None)

    def fail(self, where: str, message: str) -> None:
        self.errors.append(f"{where}: {message}")

    # custom resources against their schemas
    def check_custom_resources(self) -> None:
        for doc in self.docs:
            schema = CUSTOM_KINDS.get((doc.get("apiVersion", ""), doc.get("kind", "")))
            if schema is None:
                continue
            for error in jsonschema.Draft202012Validator(schema).iter_errors(doc):
                path = ".".join(str(p) for p in error.absolute_path) or "(document)"
                self.fail(f"{doc['kind']}/{doc['metadata']['name']}", f"{path}: {error.message}")
            if doc["kind"] == "KafkaTopic" and "strimzi.io/cluster" not in doc["metadata"].get("labels", {}):
                self.fail(f"KafkaTopic/{doc['metadata']['name']}", "no strimzi.io/cluster label")

    # every service is deployable, observable and scalable
    def check_services(self) -> None:
        for deployment in self.of("Deployment"):
            name = deployment["metadata"]["name"]
            if not name.startswith(("ingest", "sessionizer", "scorer", "notifier")):
                continue  # supporting pieces (the dev overlay's Redis)
            where = f"Deployment/{name}"
            pod = deployment["spec"]["template"]["spec"]
            if not pod.get("securityContext", {}).get("runAsNonRoot"):
                self.fail(where, "pod must set securityContext.runAsNonRoot")
            for container in pod["containers"]:
                probes = {
                    "livenessProbe": "/healthz",
                    "readinessProbe": "/readyz",
                }
                for probe, path in probes.items():
                    got = container.get(probe, {}).get("httpGet", {}).get("path")
                    if got != path:
                        self.fail(where, f"{container['name']}.{probe} must GET {path}, has {got}")
                resources = container.get("resources", {})
                for bound in ("requests", "limits"):
                    for resource in ("cpu", "memory"):
                        if resource not in resources.get(bound, {}):
                            self.fail(where, f"{container['name']} has no {bound}.{resource}")
            self._check_pdb(deployment)
            self._check_autoscaler(deployment)
            self._check_scraped(deployment)

    def _selects(self, selector: dict[str, Any], labels: dict[str, str]) -> bool:
        wanted = selector.get("matchLabels", {})
        return bool(wanted) and all(labels.get(k) == v for k, v in wanted.items())

    def _check_pdb(self, deployment: Doc) -> None:
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        if not any(self._selects(pdb["spec"]["selector"], labels) for pdb in self.of("PodDisruptionBudget")):
            self.fail(
                f"Deployment/{deployment['metadata']['name']}", "no PodDisruptionBudget selects its pods"
            )

    def _check_autoscaler(self, deployment: Doc) -> None:
        name = deployment["metadata"]["name"]
        hpas = [h for h in self.of("HorizontalPodAutoscaler") if h["spec"]["scaleTargetRef"]["name"] == name]
        scaled = [s for s in self.of("ScaledObject") if s["spec"]["scaleTargetRef"]["name"] == name]
        # KEDA creates its own HPA for a ScaledObject; a second HPA on the same target would fight it.
        if len(hpas) + len(scaled) != 1:
            self.fail(
                f"Deployment/{name}",
                f"needs exactly one autoscaler, has {len(hpas)} HPA + {len(scaled)} ScaledObject",
            )
        for scaled_object in scaled:
            self._check_scaled_object(scaled_object, deployment)

    def _container_env(self, deployment: Doc) -> dict[str, str]:
        """What KEDA's *FromEnv resolves against: the container's env and envFrom ConfigMaps."""
        env: dict[str, str] = {}
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        for source in container.get("envFrom", []):
            if "secretRef" in source:  # credentials (optional ones may be absent): not config
                secret = source["secretRef"]
                if not secret.get("optional") and self.named("Secret", secret["name"]) is None:
                    self.fail(
                        f"Deployment/{deployment['metadata']['name']}",
                        f"envFrom Secret {secret['name']} does not exist",
                    )
                continue
            ref = source.get("configMapRef", {}).get("name")
            config_map = self.named("ConfigMap", ref) if ref else None
            if config_map is None:
                self.fail(
                    f"Deployment/{deployment['metadata']['name']}", f"envFrom ConfigMap {ref} does not exist"
                )
                continue
            env.update(config_map.get("data", {}))
        env.update({e["name"]: e.get("value", "") for e in container.get("env", [])})
        return env

    def _check_scaled_object(self, scaled_object: Doc, deployment: Doc) -> None:
        where = f"ScaledObject/{scaled_object['metadata']['name']}"
        spec = scaled_object["spec"]
        env = self._container_env(deployment)
        partitions = {
            t["spec"].get("topicName", t["metadata"]["name"]): t["spec"]["partitions"]
            for t in self.of("KafkaTopic")
        }
        types = [t["type"] for t in spec["triggers"]]
        if "kafka" not in types or "cpu" not in types:
            self.fail(where, f"wants a kafka trigger with a cpu fallback, has {types}")
        if spec.get("minReplicaCount", 0) > spec.get("maxReplicaCount", 100):
            self.fail(where, "minReplicaCount above maxReplicaCount")
        for trigger in spec["triggers"]:
            meta = trigger["metadata"]
            if trigger["type"] == "cpu":
                container = deployment["spec"]["template"]["spec"]["containers"][0]
                if "cpu" not in container.get("resources", {}).get("requests", {}):
                    self.fail(where, "a cpu trigger needs the container's cpu request")
            if trigger["type"] != "kafka":
                continue
            for key in ("bootstrapServersFromEnv", "consumerGroupFromEnv", "topicFromEnv"):
                if key in meta and not env.get(meta[key]):
                    self.fail(where, f"{key}: {meta[key]} is not set in the pod's environment")
            topic = meta.get("topic") or env.get(meta.get("topicFromEnv", ""), "")
            if topic not in partitions:
                self.fail(where, f"watches topic {topic!r}, which no KafkaTopic defines")
            elif spec.get("maxReplicaCount", 100) > partitions[topic]:
                self.fail(
                    where,
                    f"maxReplicaCount {spec.get('maxReplicaCount')} > {partitions[topic]} partitions of {topic}",
                )

    def _check_scraped(self, deployment: Doc) -> None:
        name = deployment["metadata"]["name"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        services = [
            s
            for s in self.of("Service")
            if s["spec"].get("selector") and all(labels.get(k) == v for k, v in s["spec"]["selector"].items())
        ]
        if not services:
            self.fail(f"Deployment/{name}", "no Service selects its pods")
            return
        for service in services:
            monitors = [
                m
                for m in self.of("ServiceMonitor")
                if self._selects(m["spec"]["selector"], service["metadata"].get("labels", {}))
            ]
            if not monitors:
                self.fail(f"Service/{service['metadata']['name']}", "no ServiceMonitor scrapes it")
            ports = {p.get("name") for p in service["spec"]["ports"]}
            for monitor in monitors:
                for endpoint in monitor["spec"]["endpoints"]:
                    if endpoint.get("port") not in ports:
                        self.fail(
                            f"ServiceMonitor/{monitor['metadata']['name']}",
                            f"port {endpoint.get('port')} not in Service {sorted(ports)}",
                        )

    # nothing reaches a pod that it does not need: every Deployment is selected by an Ingress
    # NetworkPolicy (so only what policies allow gets in), BeepGPT's own by one that allows nothing
    # (the default deny), and what is allowed names its peers and ports: the ops port for
    # Prometheus, and ingest's HTTP events port
    ALLOWED_PORTS: ClassVar[dict[str, set[int | str]]] = {"": {"http", 8000}, "ingest": {"http", 8000, 3000}}

    def _matches(self, selector: dict[str, Any], labels: dict[str, str]) -> bool:
        """Kubernetes label-selector semantics (matchLabels and matchExpressions; {} is all)."""
        if not all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items()):
            return False
        for expression in selector.get("matchExpressions", []):
            key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
            present = key in labels
            if (
                (operator == "In" and labels.get(key) not in values)
                or (operator == "NotIn" and present and labels[key] in values)
                or (operator == "Exists" and not present)
                or (operator == "DoesNotExist" and present)
            ):
                return False
        return True

    def check_network_policies(self) -> None:
        policies = [
            p for p in self.of("NetworkPolicy") if "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
        ]
        for policy in policies:
            for rule in policy["spec"].get("ingress", []):
                where = f"NetworkPolicy/{policy['metadata']['name']}"
                if not rule.get("from"):
                    self.fail(where, "an ingress rule without `from` admits every source")
                if not rule.get("ports"):
                    self.fail(where, "an ingress rule without `ports` admits every port")
        for deployment in self.of("Deployment"):
            name = deployment["metadata"]["name"]
            where = f"Deployment/{name}"
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            selecting = [p for p in policies if self._matches(p["spec"].get("podSelector", {}), labels)]
            if not selecting:
                self.fail(where, "no NetworkPolicy selects its pods: any pod in the cluster can reach it")
                continue
            service = next(
                (s for s in ("ingest", "sessionizer", "scorer", "notifier") if name.startswith(s)), None
            )
            if service is None:
                continue  # supporting pieces: covered, with their own rules
            if not any(not p["spec"].get("ingress") for p in selecting):
                self.fail(where, "no default-deny NetworkPolicy (one without ingress rules) selects its pods")
            allowed = self.ALLOWED_PORTS.get(service, self.ALLOWED_PORTS[""])
            for policy in selecting:
                for rule in policy["spec"].get("ingress", []):
                    for port in rule.get("ports", []):
                        if port.get("port") not in allowed:
                            self.fail(
                                f"NetworkPolicy/{policy['metadata']['name']}",
                                f"admits port {port.get('port')} to {name}; allowed: {sorted(map(str, allowed))}",
                            )

    # secrets and config maps the pods mount exist (kustomize renamed them consistently)
    def check_references(self) -> None:
        for deployment in self.of("Deployment"):
            for volume in deployment["spec"]["template"]["spec"].get("volumes", []):
                secret = volume.get("secret")
                if (
                    secret
                    and not secret.get("optional")
                    and self.named("Secret", secret["secretName"]) is None
                ):
                    self.fail(
                        f"Deployment/{deployment['metadata']['name']}",
                        f"mounts missing Secret {secret['secretName']}",
                    )
                claim = volume.get("persistentVolumeClaim")
                if claim and self.named("PersistentVolumeClaim", claim["claimName"]) is None:
                    self.fail(
                        f"Deployment/{deployment['metadata']['name']}",
                        f"mounts missing PVC {claim['claimName']}",
                    )

    # the topics are the product's topics (shared/beepgpt/topics.py), each with its dead-letter topic,
    # created as topics.py says: the same retention or compaction, never more partitions
    def check_topics(self) -> None:
        try:
            from beepgpt.topics import all_topic_settings
        except ImportError:
            self.fail("KafkaTopic", "cannot import beepgpt.topics: run with the repository's .venv python")
            return
        defined = {t["spec"].get("topicName", t["metadata"]["name"]): t for t in self.of("KafkaTopic")}
        wanted = all_topic_settings()
        for missing in sorted(set(wanted) - set(defined)):
            self.fail("KafkaTopic", f"{missing} (shared/beepgpt/topics.py) has no KafkaTopic")
        for extra in sorted(set(defined) - set(wanted)):
            self.fail("KafkaTopic", f"{extra} is not a topic of shared/beepgpt/topics.py")
        for name, settings in wanted.items():
            if name in defined:
                self._check_topic(defined[name], settings)

    def _check_topic(self, doc: Doc, settings: TopicSettings) -> None:
        """One KafkaTopic against its `beepgpt.topics.TopicSettings`."""
        where = f"KafkaTopic/{settings.name}"
        spec = doc["spec"]
        config = {k: str(v) for k, v in (spec.get("config") or {}).items()}
        # Partitions only grow (and growing moves keys): above topics.py's size is a mistake;
        # below is a smaller environment's choice (the dev overlay).
        if spec.get("partitions", 0) > settings.partitions:
            self.fail(
                where, f"{spec['partitions']} partitions, more than the {settings.partitions} of topics.py"
            )
        for key, value in settings.configs().items():
            if config.get(key) != value:
                self.fail(where, f"{key} is {config.get(key)!r}, topics.py says {value!r}")
        # What topics.py leaves unset must stay unset: a retention on a compacted topic would
        # delete preferences, a compaction on another would keep only each key's latest record.
        if settings.compacted and "retention.ms" in config:
            self.fail(where, "is compacted in topics.py: no retention.ms")
        if not settings.compacted and config.get("cleanup.policy", "delete") != "delete":
            self.fail(
                where, f"cleanup.policy {config['cleanup.policy']!r}, topics.py deletes after retention"
            )
        insync = config.get("min.insync.replicas")
        if insync is not None and int(insync) > spec.get("replicas", 1):
            self.fail(
                where,
                f"min.insync.replicas {insync} > {spec.get('replicas')} replicas: no write would succeed",
            )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Check a rendered kustomize overlay.")
    parser.add_argument("rendered", type=Path)
    parser.add_argument(
        "--builtin-out", type=Path, help="write the built-in kinds here for kubernetes-validate"
    )
    args = parser.parse_args(argv)
    docs = [doc for doc in yaml.safe_load_all(args.rendered.read_text()) if doc]
    manifests = Manifests(docs)
    manifests.check_custom_resources()
    manifests.check_services()
    manifests.check_references()
    manifests.check_network_policies()
    manifests.check_topics()
    if args.builtin_out:
        builtin = [d for d in docs if (d.get("apiVersion"), d.get("kind")) not in CUSTOM_KINDS]
        args.builtin_out.write_text(yaml.safe_dump_all(builtin, sort_keys=False))
    custom = sum(1 for d in docs if (d.get("apiVersion"), d.get("kind")) in CUSTOM_KINDS)
    for error in manifests.errors:
        print(f"ERROR {args.rendered.name}: {error}")
    print(
        f"{args.rendered.name}: {len(docs)} resources, {custom} custom resources checked, {len(manifests.errors)} errors"
    )
    return 1 if manifests.errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
