"""The Grafana overview's Readiness row: what its queries show, evaluated by ``promtool``
(as ``test_alert_rules`` runs it) on the series the services export — a dependency
switched off on purpose shows "disabled", not "down", and leaves its service "ready"."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
OVERVIEW = ROOT / "deploy" / "grafana" / "dashboards" / "overview.json"

# ai runs without a Gemini key; the notifier's Telegram is down on one replica and switched
# off on the other (the worst replica: down); crm's Redis is up.
SERIES = {
    ("ai", "ai:8003", "postgres", "true"): (1, 1),
    ("ai", "ai:8003", "gemini", "false"): (0, None),
    ("notifier", "notifier:8002", "postgres", "true"): (1, 1),
    ("notifier", "notifier:8002", "telegram", "false"): (1, 0),
    ("notifier", "notifier-2:8002", "postgres", "true"): (1, 1),
    ("notifier", "notifier-2:8002", "telegram", "false"): (0, None),
    ("crm", "crm:8000", "postgres", "true"): (1, 1),
    ("crm", "crm:8000", "redis", "false"): (1, 1),
}
"""(service, instance, dependency, required) → (jggl_dependency_enabled, jggl_dependency_up
or None: no sample, as a disabled dependency has none)."""


def readiness_row() -> dict[str, dict[str, Any]]:
    """The panels below the "Readiness" row (and above the next row), by title."""
    panels = json.loads(OVERVIEW.read_text())["panels"]
    rows = sorted((p["gridPos"]["y"], p["title"]) for p in panels if p["type"] == "row")
    (top,) = [y for y, title in rows if title == "Readiness"]
    bottom = min((y for y, _ in rows if y > top), default=10**6)
    return {p["title"]: p for p in panels if p["type"] != "row" and top < p["gridPos"]["y"] < bottom}


def panel(prefix: str) -> dict[str, Any]:
    (found,) = [p for title, p in readiness_row().items() if title.startswith(prefix)]
    return found


def mapped(found: dict[str, Any]) -> dict[float, str]:
    """The panel's value mappings: value → the text shown."""
    return {
        float(value): option["text"]
        for mapping in found["fieldConfig"]["defaults"]["mappings"]
        for value, option in mapping["options"].items()
    }


def evaluate(expr: str, expected: dict[str, float], tmp_path: Path) -> None:
    """``promtool`` evaluates ``expr`` over :data:`SERIES`; it must answer ``expected``
    (label set → value) exactly."""
    series = []
    for (service, instance, dependency, required), (enabled, up) in SERIES.items():
        labels = f'service="{service}", instance="{instance}", dependency="{dependency}", required="{required}"'
        series.append({"series": f"jggl_dependency_enabled{{{labels}}}", "values": f"{enabled}x10"})
        if up is not None:
            series.append({"series": f"jggl_dependency_up{{{labels}}}", "values": f"{up}x10"})
    test = {
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    {
                        "expr": expr,
                        "eval_time": "5m",
                        "exp_samples": [{"labels": labels, "value": value} for labels, value in expected.items()],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "readiness_test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    done = subprocess.run(
        ["promtool", "test", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_dependencies_panel_shows_up_down_and_disabled(tmp_path: Path) -> None:
    dependencies = panel("Dependencies by service")
    assert mapped(dependencies) == {-1.0: "disabled", 0.0: "down", 1.0: "up"}
    (target,) = dependencies["targets"]
    evaluate(
        target["expr"],
        {
            '{service="ai", dependency="postgres", required="true"}': 1,
            '{service="ai", dependency="gemini", required="false"}': -1,
            '{service="notifier", dependency="postgres", required="true"}': 1,
            '{service="notifier", dependency="telegram", required="false"}': 0,
            '{service="crm", dependency="postgres", required="true"}': 1,
            '{service="crm", dependency="redis", required="false"}': 1,
        },
        tmp_path,
    )


def test_a_disabled_dependency_leaves_its_service_ready_on_the_readiness_panel(tmp_path: Path) -> None:
    readiness = panel("Readiness by service")
    assert mapped(readiness) == {0.0: "not ready", 1.0: "degraded", 2.0: "ready"}
    (target,) = readiness["targets"]
    evaluate(target["expr"], {'{service="ai"}': 2, '{service="notifier"}': 1, '{service="crm"}': 2}, tmp_path)
