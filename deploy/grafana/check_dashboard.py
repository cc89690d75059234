"""Structural checks of the Grafana dashboard that Grafana itself would only show as broken panels.

Every panel queries through the dashboard's `datasource` variable, so the same JSON works with the
datasource compose provisions and with whatever Prometheus a cluster's Grafana has; panel ids are
unique; every query is non-empty. (Whether the metrics exist is tests/deploy's job.)

    python deploy/grafana/check_dashboard.py deploy/grafana/dashboards/beepgpt.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def problems(dashboard: dict) -> list[str]:  # type: ignore[type-arg]
    found: list[str] = []
    variables = {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}
    if variables.get("datasource", {}).get("query") != "prometheus":
        found.append("no `datasource` variable of type prometheus")
    ids = [panel["id"] for panel in dashboard["panels"]]
    if len(ids) != len(set(ids)):
        found.append(f"panel ids are not unique: {sorted(ids)}")
    for panel in dashboard["panels"]:
        if panel.get("type") == "row":
            continue
        for part in (panel, *panel.get("targets", [])):
            if part.get("datasource", {}).get("uid") != "${datasource}":
                found.append(f"{panel['title']!r} does not query through ${{datasource}}")
        if not panel.get("targets") or not all(t.get("expr", "").strip() for t in panel["targets"]):
            found.append(f"{panel['title']!r} has an empty query")
    return found


def main(argv: list[str]) -> int:
    for name in argv:
        dashboard = json.loads(Path(name).read_text())
        found = problems(dashboard)
        for problem in found:
            print(f"ERROR {name}: {problem}")
        panels = sum(1 for p in dashboard["panels"] if p.get("type") != "row")
        print(f"{name}: {panels} panels, {len(found)} problems")
        if found:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
