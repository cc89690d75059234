"""deploy/validate.sh passes: compose, kustomize overlays, Kubernetes schemas, CRDs, Prometheus
rules and config (with their unit tests), the Grafana dashboard. `make check` runs the same
script; this test makes `make test` fail on a broken deploy/ too."""

from __future__ import annotations

from deploy_helpers import VALIDATE, run


def test_every_deploy_validation_passes(deploy_tools: None) -> None:
    result = run(VALIDATE)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert "all deploy validations passed" in result.stdout
