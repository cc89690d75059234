#!/usr/bin/env bash
# Validates everything in deploy/ and docker-compose.yml with the real tools; no cluster and no
# Docker engine needed. Installs what is missing first (Debian packages, a pinned PyPI package in
# the repository's .venv), so a fresh CI machine passes or fails on the files, not on the setup.
#
#   deploy/validate.sh                # install missing tools, then validate (make check runs this)
#   deploy/validate.sh --install-only # only make sure the tools are there (tests/deploy uses it)
#   deploy/validate.sh --lock         # remake services/*/requirements*.lock with uv (the pinned
#                                     # uv of requirements-dev.txt; UV=... for another); the locks'
#                                     # agreement with requirements.txt is tests/deploy/test_locks.py
#
# What runs:
#   docker-compose config -q          Debian's docker-compose 1.29: schema and interpolation
#   check_compose.py                  published ports on 127.0.0.1, no admin APIs or default logins
#   render_monitoring.py --check      the Kubernetes copies of rules/dashboard are up to date
#   kubectl kustomize <overlay>       each overlay builds (secrets from the *.env.example files)
#   check_manifests.py                CRDs (KEDA, Prometheus Operator, Strimzi) against their
#                                     schemas + cross-checks (probes, PDBs, lag triggers, topics,
#                                     NetworkPolicies: every Deployment default-denied)
#   kubernetes-validate --strict      built-in kinds against Kubernetes' OpenAPI schemas
#   promtool check rules / config     Debian's prometheus package
#   promtool test rules               the alert rules' unit tests
#   check_dashboard.py                the Grafana dashboard's structure (datasource variable, ids)
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
KUBERNETES_VALIDATE_VERSION=1.37.0
# The Kubernetes API version the manifests must be valid for.
KUBE_VERSION=${KUBE_VERSION:-1.30.0}

log() { printf '\n== %s\n' "$*"; }

install_missing() {
  local packages=()
  command -v docker-compose >/dev/null || packages+=(docker-compose)
  # Debian ships kubectl in `kubernetes-client` (1.20, kustomize v2.0.3: the overlays stay
  # compatible with it; see deploy/k8s/base/kustomization.yaml).
  command -v kubectl >/dev/null || packages+=(kubernetes-client)
  command -v promtool >/dev/null || packages+=(prometheus)
  if ((${#packages[@]})); then
    log "installing Debian packages: ${packages[*]}"
    local sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    $sudo apt-get update -q
    # --no-install-recommends: promtool is all we need from `prometheus`, not its exporters.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${packages[@]}"
  fi
  if [[ ! -x $PY ]]; then
    echo "no $PY: run 'make setup' first (validate.sh installs into the repository's venv)" >&2
    exit 1
  fi
  if [[ $("$PY" -m pip show kubernetes-validate 2>/dev/null | sed -n 's/^Version: //p') != "$KUBERNETES_VALIDATE_VERSION" ]]; then
    log "installing kubernetes-validate==$KUBERNETES_VALIDATE_VERSION into $PY"
    "$PY" -m pip install -q "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  fi
}

validate_compose() {
  log "docker-compose config ($(docker-compose version --short))"
  docker-compose -f docker-compose.yml config -q
  # Exposure: ports on 127.0.0.1 only, no Prometheus lifecycle API, Grafana without a default
  # admin password or an anonymous role above Viewer.
  docker-compose -f docker-compose.yml config | "$PY" deploy/compose/check_compose.py - docker-compose.yml
}

validate_kubernetes() {
  log "kubernetes manifests ($(kubectl version --client 2>/dev/null | head -1))"
  "$PY" deploy/k8s/render_monitoring.py --check
  local work=$WORK
  # Build from a copy with the example secrets: validation never reads real secret files, and
  # a fresh checkout (which has none) builds the same way.
  cp -r deploy/k8s "$work/k8s"
  local overlay name
  for overlay in "$work"/k8s/overlays/*/; do
    name=$(basename "$overlay")
    for example in "$overlay"*.env.example; do
      cp "$example" "${example%.example}"
    done
    echo "-- overlay $name"
    # kubectl >= 1.21 warns about the kustomize v2-compatible keys on stderr; keep the output.
    kubectl kustomize "$overlay" >"$work/$name.yaml" 2>"$work/$name.stderr" || {
      cat "$work/$name.stderr" >&2
      return 1
    }
    "$PY" deploy/k8s/check_manifests.py "$work/$name.yaml" --builtin-out "$work/$name.builtin.yaml"
    local report
    report=$("$PY" -m kubernetes_validate --strict --kubernetes-version "$KUBE_VERSION" "$work/$name.builtin.yaml") || {
      grep -v '^INFO' <<<"$report" >&2
      return 1
    }
    # A built-in kind without a schema is a misspelt apiVersion/kind: fail rather than skip it.
    if grep -q "Couldn't find schema" <<<"$report"; then
      grep "Couldn't find schema" <<<"$report" >&2
      return 1
    fi
    echo "$(grep -c '^INFO.*passed' <<<"$report") built-in resources valid for Kubernetes $KUBE_VERSION"
  done
}

validate_prometheus() {
  log "prometheus ($(promtool --version 2>&1 | head -1))"
  promtool check rules deploy/prometheus/rules.yml
  promtool check config deploy/prometheus/prometheus.yml
  promtool test rules deploy/prometheus/rules.test.yml
}

validate_grafana() {
  log "grafana dashboard"
  "$PY" deploy/grafana/check_dashboard.py deploy/grafana/dashboards/beepgpt.json
}

# Every service image installs one lock: shared/ and the service's requirements resolved together,
# every package pinned with its hashes, for CPython 3.11 on any platform (docs/operations.md).
# The scorer's torch comes from PyTorch's CPU index in its Dockerfile, so torch and the CUDA
# packages PyPI's torch would bring stay out of its locks (their own dependencies stay in).
make_locks() {
  local uv=${UV:-.venv/bin/uv}
  [[ -x $uv ]] || { echo "no $uv: run 'make setup' (uv is pinned in requirements-dev.txt)" >&2; exit 1; }
  local compile=("$uv" pip compile --quiet --universal --python-version 3.11 --generate-hashes
    --index-url https://pypi.org/simple --custom-compile-command "deploy/validate.sh --lock")
  local service
  for service in ingest sessionizer notifier; do
    log "services/$service/requirements.lock"
    "${compile[@]}" shared/requirements.txt "services/$service/requirements.txt" \
      -o "services/$service/requirements.lock"
  done
  local no_cuda=(--no-emit-package torch --no-emit-package triton)
  local package
  # The CUDA packages of PyPI's torch (named by resolving it once; excluded with what they need).
  for package in $("${compile[@]}" --no-annotate shared/requirements.txt services/scorer/requirements.txt \
    | sed -n -E 's/^((nvidia|cuda)-[A-Za-z0-9_.-]+)==.*/\1/p'); do
    no_cuda+=(--no-emit-package "$package")
  done
  log "services/scorer/requirements.lock (without torch and CUDA)"
  "${compile[@]}" "${no_cuda[@]}" shared/requirements.txt services/scorer/requirements.txt \
    -o services/scorer/requirements.lock
  log "offline/requirements.lock (the scorer runtime lock's versions + what the trainer image adds)"
  "${compile[@]}" "${no_cuda[@]}" -c services/scorer/requirements.lock shared/requirements.txt \
    services/scorer/requirements.txt services/ingest/requirements.txt \
    services/sessionizer/requirements.txt services/notifier/requirements.txt offline/requirements.txt \
    -o offline/requirements.lock
}

if [[ ${1:-} == --lock ]]; then
  make_locks
  exit 0
fi
install_missing
[[ ${1:-} == --install-only ]] && exit 0
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
validate_compose
validate_kubernetes
validate_prometheus
validate_grafana
log "all deploy validations passed"
