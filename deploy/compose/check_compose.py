"""What docker-compose.yml exposes: ports on this machine only, no admin APIs, no default logins.

`docker-compose config` proves the file is valid; this proves it is not an open door on a laptop
on a shared network or a VM with a public address: Kafka has no authentication, the Slack
stand-in's control API can make the bot DM anyone, Prometheus' lifecycle API can stop it, and a
Grafana with a known admin password or an anonymous Editor can change what alerts say.

    docker-compose -f docker-compose.yml config | python deploy/compose/check_compose.py - docker-compose.yml
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

LOOPBACK = {"127.0.0.1", "::1", "localhost"}
# Prometheus flags that turn on HTTP endpoints able to stop it or delete its data.
PROMETHEUS_ADMIN_FLAGS = ("--web.enable-lifecycle", "--web.enable-admin-api")
ANONYMOUS_ROLES = {"Viewer"}
# `${VAR:-default}` / `${VAR-default}` with a non-empty default.
_DEFAULTED = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]+)\}")


def _host_ip(port: Any) -> str | None:
    """The address a published port binds to (None: all interfaces), in short or long syntax."""
    if isinstance(port, dict):
        if port.get("published") in (None, ""):
            return "unpublished"
        return port.get("host_ip") or None
    text = str(port)
    if text.startswith("["):  # [::1]:8080:8080
        return text[1 : text.index("]")]
    parts = text.split(":")
    return parts[0] if len(parts) == 3 else None  # "8080:8080" or "8080" bind every interface


def problems(config: dict[str, Any], raw: dict[str, Any]) -> list[str]:
    """Every exposure problem of the resolved `config` (and, for defaults, the `raw` file)."""
    found: list[str] = []
    for name, service in config.get("services", {}).items():
        for port in service.get("ports", []):
            host_ip = _host_ip(port)
            if host_ip != "unpublished" and host_ip not in LOOPBACK:
                found.append(f"{name}: port {port} is published on all interfaces: bind it to 127.0.0.1")
        command = service.get("command") or []
        command = command.split() if isinstance(command, str) else command
        if "prometheus" in str(service.get("image", "")):
            for flag in PROMETHEUS_ADMIN_FLAGS:
                if any(str(arg).startswith(flag) for arg in command):
                    found.append(f"{name}: {flag} lets anyone who reaches the port stop Prometheus")
        if "grafana" in str(service.get("image", "")):
            env = {k: str(v) for k, v in (service.get("environment") or {}).items()}
            if env.get("GF_AUTH_ANONYMOUS_ENABLED", "false").lower() == "true":
                role = env.get("GF_AUTH_ANONYMOUS_ORG_ROLE", "Viewer")
                if role not in ANONYMOUS_ROLES:
                    found.append(f"{name}: anonymous users are {role}: Viewer at most")
            if env.get("GF_AUTH_DISABLE_LOGIN_FORM", "false").lower() == "true":
                found.append(f"{name}: the login form is disabled (anonymous access only?)")
            if env.get("GF_SECURITY_ADMIN_PASSWORD") == "admin":
                found.append(f"{name}: the admin password is Grafana's default, admin")
            raw_env = (raw.get("services", {}).get(name, {}) or {}).get("environment") or {}
            default = _DEFAULTED.search(str(raw_env.get("GF_SECURITY_ADMIN_PASSWORD", "")))
            if default:
                found.append(f"{name}: GF_SECURITY_ADMIN_PASSWORD has a default ({default.group(1)!r}): none")
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    resolved = sys.stdin.read() if argv[0] == "-" else Path(argv[0]).read_text()
    config = yaml.safe_load(resolved)
    raw = yaml.safe_load(Path(argv[1]).read_text())
    found = problems(config, raw)
    for problem in found:
        print(f"ERROR docker-compose.yml: {problem}")
    published = sum(len(s.get("ports", [])) for s in config.get("services", {}).values())
    print(f"docker-compose.yml: {published} published ports, {len(found)} exposure problems")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
