"""``deploy/prometheus/alerts.yml``: Prometheus loads it, it names only metrics (and labels)
the code defines, and every scheduler job has one "not succeeded for too long" threshold
that fits its schedule.

The metric discovery is the Grafana dashboard test's (``test_compose_and_monitoring``),
loaded from its file; ``promtool`` (installed by the bootstrap) checks the rules and the configuration
(Debian's ``prometheus`` package has it).
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from scheduler.jobs.definitions import JobDefinition, builtin_jobs


def _monitoring() -> ModuleType:
    path = Path(__file__).with_name("test_compose_and_monitoring.py")
    spec = importlib.util.spec_from_file_location("jggl_deploy_monitoring_checks", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


monitoring = _monitoring()
ROOT: Path = monitoring.ROOT
PROMETHEUS: Path = monitoring.PROMETHEUS
ALERTS = PROMETHEUS.with_name("alerts.yml")
NOT_SUCCEEDING = "JgglJobNotSucceeding"
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(ALERTS.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def test_prometheus_loads_the_rules_and_keeps_the_scheduler_s_job_label() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    assert ALERTS in {(PROMETHEUS.parent / name).resolve() for name in config.get("rule_files") or []}
    # The rules group the scheduler's metrics by their own `job` label: without
    # honor_labels Prometheus would rename it to exported_job.
    (jggl,) = [job for job in config["scrape_configs"] if job["job_name"] == "jggl"]
    assert jggl.get("honor_labels") is True
    # docker-compose mounts the rules beside the configuration that names them.
    (prometheus,) = [s for s in monitoring.compose_services().values() if "prometheus" in str(s.get("image"))]
    mounts = {str(v).split(":")[0]: str(v).split(":")[1] for v in prometheus["volumes"]}
    assert (
        Path(mounts["./deploy/prometheus/alerts.yml"]).parent
        == Path(mounts["./deploy/prometheus/prometheus.yml"]).parent
    )


def test_every_rule_is_complete() -> None:
    loaded = yaml.safe_load(ALERTS.read_text())
    names = [group["name"] for group in loaded["groups"]]
    assert len(names) == len(set(names)), "group names repeat"
    for rule in rules():
        assert rule.get("alert"), rule
        assert rule.get("expr"), rule
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


def test_rules_name_only_metrics_and_labels_the_code_defines() -> None:
    definitions = monitoring.metric_definitions()
    problems = []
    named: set[str] = set()
    for rule in rules():
        expr = rule["expr"]
        metrics = monitoring.referenced_metrics(expr)
        named |= metrics
        problems += [f"{rule['alert']}: unknown metric {m}" for m in metrics - set(definitions)]
        known = [definitions[m] for m in metrics if definitions.get(m) is not None]
        if len(known) < len(metrics):
            continue
        has = set(monitoring.TARGET_LABELS).union(*known)
        used = {name for name, _, _ in MATCHER.findall(expr)} | set().union(*monitoring.grouping_labels(expr))
        problems += [f"{rule['alert']}: label {label!r} on none of {sorted(metrics)}" for label in used - has]
    assert not problems, "\n".join(problems)
    # What issue 10 asks to be alerted on, by the metrics that show it.
    assert {
        "jggl_scheduler_job_last_success_timestamp_seconds",
        "jggl_scheduler_job_outcomes_total",
        "crm_channels_with_problems",
        "jggl_messages_consumed_total",
        "jggl_notifier_telegram_retry_after_total",
        "ai_breaker_state",
        "jggl_dependency_up",  # not ready (a required dependency down) and degraded (an optional one)
    } <= named


def _job_matches(expr: str, job: str) -> bool:
    """Whether the ``job`` matchers of ``expr`` select the scheduler job ``job``."""
    found = [(op, value.replace("\\\\", "\\")) for name, op, value in MATCHER.findall(expr) if name == "job"]
    assert found, f"no job matcher in {expr}"
    checks = {
        "=": lambda v: job == v,
        "!=": lambda v: job != v,
        "=~": lambda v: re.fullmatch(v, job) is not None,
        "!~": lambda v: re.fullmatch(v, job) is None,
    }
    return all(checks[op](value) for op, value in found)


def _period_seconds(job: JobDefinition) -> float:
    schedule = job.schedule("UTC")
    first = schedule.next_after(datetime(2026, 12, 7, 12, 0, tzinfo=UTC))
    return (schedule.next_after(first) - first).total_seconds()


@pytest.mark.parametrize("job", builtin_jobs(), ids=lambda job: job.name)
def test_each_job_has_one_not_succeeding_threshold_that_fits_its_schedule(job: Any) -> None:
    matching = [rule for rule in rules() if rule["alert"] == NOT_SUCCEEDING and _job_matches(rule["expr"], job.name)]
    assert len(matching) == 1, f"{job.name}: {len(matching)} thresholds"
    (threshold,) = re.findall(r">\s*([0-9.]+)\s*$", matching[0]["expr"])
    period = _period_seconds(job)
    if period >= 24 * 3600:
        assert float(threshold) >= 26 * 3600, f"{job.name}: a daily job gets at least 26 h"
    else:
        assert 3 * period <= float(threshold) <= max(3 * period, 600), f"{job.name}: about 3x its interval"


def test_promtool_accepts_the_rules_and_the_configuration_and_the_rules_fire_as_meant() -> None:
    checks = (
        ["check", "rules", str(ALERTS)],
        ["check", "config", str(PROMETHEUS)],
        # alerts_test.yml: series in, the alerts that must (and must not yet) fire out.
        ["test", "rules", str(ALERTS.with_name("alerts_test.yml"))],
    )
    for args in checks:
        done = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
