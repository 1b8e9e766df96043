"""``docker-compose.yml``, Prometheus's scrape configuration and the Grafana dashboards,
checked against the services they run and watch.

No Docker engine is needed: the files are parsed and compared with the code (which
services have a ``__main__`` and migrations, which metrics the code defines).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources"

# DESIGN §4: the services and their ports (as in test_k8s_manifests.py).
PORTS: dict[str, int] = {"crm": 8000, "ingest": 8001, "notifier": 8002, "ai": 8003, "scheduler": 8004}
PYTHON_MODULE = re.compile(r"\bpython -m ([a-z_][a-z0-9_]*)((?: [a-z][a-z-]*)?)")


def compose_services() -> dict[str, dict[str, Any]]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    services = loaded.get("services")
    assert isinstance(services, dict)
    return services


def command_text(service: dict[str, Any]) -> str:
    command = service.get("command") or []
    return command if isinstance(command, str) else " ".join(str(part) for part in command)


def servers() -> dict[str, dict[str, Any]]:
    """Compose services that serve one of ours: ``python -m <service>`` and nothing else."""
    found = {}
    for name, service in compose_services().items():
        command = service.get("command")
        if isinstance(command, list) and command[:2] == ["python", "-m"] and len(command) == 3:
            found[command[2]] = service | {"compose_name": name}
    return found


LOOPBACK = "127.0.0.1"
VARIABLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::?([-?])([^}]*))?\}")


def published(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """``(host address, host port, container port)`` of every published port; an address
    given as ``${VAR:-default}`` is its default (what runs when the operator sets nothing)."""
    found = []
    for entry in service.get("ports") or []:
        text = VARIABLE.sub(lambda m: m.group(3) if m.group(2) == "-" else m.group(0), str(entry))
        parts = text.rsplit(":", 2)
        if len(parts) == 3:
            found.append((parts[0], int(parts[1]), int(parts[2])))
        else:
            found.append(("every interface", int(parts[-2] if len(parts) == 2 else parts[0]), int(parts[-1])))
    return found


def has_migrations(service: str) -> bool:
    return (ROOT / "services" / service / "src" / service / "migrations" / "env.py").is_file()


# --------------------------------------------------------------------------- compose


def test_compose_runs_crm_ingest_and_ai() -> None:
    assert {"crm", "ingest", "ai"} <= set(servers())


@pytest.mark.parametrize("name", sorted(compose_services()))
def test_every_python_command_runs_a_module_with_a_main(name: str) -> None:
    for module, _ in PYTHON_MODULE.findall(command_text(compose_services()[name])):
        assert importlib.util.find_spec(f"{module}.__main__") is not None, f"{name}: `python -m {module}` cannot run"


@pytest.mark.parametrize("service", sorted(servers()))
def test_server_publishes_its_port_and_starts_after_its_migrations(service: str) -> None:
    body = servers()[service]
    assert service in PORTS, f"{service} is not one of the design's services"
    assert (PORTS[service], PORTS[service]) in [(host, inside) for _, host, inside in published(body)]
    if not has_migrations(service):
        return
    services = compose_services()
    migrations = [
        dependency
        for dependency, condition in (body.get("depends_on") or {}).items()
        if (condition or {}).get("condition") == "service_completed_successfully"
        and (service, " migrate") in PYTHON_MODULE.findall(command_text(services[dependency]))
    ]
    assert migrations, f"{service} may start before `python -m {service} migrate` has run"
    assert all(services[m].get("restart") == "no" for m in migrations), "a migration runs once"


# --------------------------------------------------------------------------- closed by default

NATS_AUTH = ROOT / "deploy" / "nats" / "auth.conf"
NATS_CONF = ROOT / "deploy" / "nats" / "nats.conf"
ENV_EXAMPLE = ROOT / "deploy" / "compose.env.example"


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def required_variable(value: str) -> str | None:
    """The variable ``value`` is wholly taken from, when compose refuses to start without it
    (``${VAR:?why}``); None for a literal, a default or an optional variable."""
    found = VARIABLE.fullmatch(value.strip())
    return found.group(1) if found and found.group(2) == "?" else None


def auth_users() -> dict[str, str]:
    """The users of deploy/nats/auth.conf and the variable holding each one's bcrypt hash."""
    text = NATS_AUTH.read_text()
    return dict(re.findall(r"user:\s*(\w+)\s*\n\s*password:\s*\$(\w+)", text))


def nats_password_variable(user: str) -> str:
    """The variable of ``.env`` holding ``user``'s password itself (its service's alone)."""
    return auth_users()[user].removesuffix("_BCRYPT")


def variables_in(env: dict[str, str]) -> set[str]:
    """Every variable an environment holds or takes a value from."""
    return set(env) | {m.group(1) for value in env.values() for m in VARIABLE.finditer(value)}


@pytest.mark.parametrize("name", sorted(compose_services()))
def test_nothing_is_published_beyond_loopback_unless_asked(name: str) -> None:
    for address, host, _ in published(compose_services()[name]):
        assert address == LOOPBACK, f"{name} publishes port {host} on {address}, not only on loopback"


@pytest.mark.parametrize("name", ["postgres", "redis", "nats", "prometheus", "grafana"])
def test_infrastructure_and_monitoring_ports_are_loopback_only_whatever_is_set(name: str) -> None:
    for entry in compose_services()[name].get("ports") or []:
        assert str(entry).startswith(LOOPBACK + ":"), f"{name}: {entry} (no variable may widen it)"


def test_postgres_asks_for_a_password_from_the_environment() -> None:
    services = compose_services()
    variable = required_variable(environment(services["postgres"])["POSTGRES_PASSWORD"])
    assert variable == "POSTGRES_PASSWORD"
    for service, body in servers().items():
        if "DATABASE_URL" not in secrets_a_service_may_get(service):
            assert "DATABASE_URL" not in environment(body), f"{service} has no schema: it gets no database password"
            continue
        url = environment(body)["DATABASE_URL"]
        assert re.match(r"postgresql://postgres:\$\{POSTGRES_PASSWORD:\?[^}]*\}@postgres:5432/", url), (service, url)


def test_redis_asks_for_a_password_from_the_environment() -> None:
    redis = compose_services()["redis"]
    assert required_variable(environment(redis)["REDIS_PASSWORD"]) == "REDIS_PASSWORD"
    command = command_text(redis)
    assert "requirepass" in command
    assert '"$$REDIS_PASSWORD"' in command  # the container's variable, not a literal
    assert "--requirepass" not in command, "the password would be on the command line"
    assert "REDISCLI_AUTH" in str(redis["healthcheck"]["test"])
    for service, body in servers().items():
        if "REDIS_URL" not in secrets_a_service_may_get(service):
            assert "REDIS_URL" not in environment(body), f"{service} uses no Redis: it gets no Redis password"
            continue
        url = environment(body)["REDIS_URL"]
        assert re.match(r"redis://:\$\{REDIS_PASSWORD:\?[^}]*\}@redis:6379/", url), (service, url)


def test_grafana_has_no_anonymous_access() -> None:
    env = environment(compose_services()["grafana"])
    assert env.get("GF_AUTH_ANONYMOUS_ENABLED") == "false"
    assert env.get("GF_USERS_ALLOW_SIGN_UP") == "false"
    assert required_variable(env["GF_SECURITY_ADMIN_PASSWORD"]) == "GRAFANA_ADMIN_PASSWORD"


def test_nats_runs_with_the_users_and_permissions_of_auth_conf() -> None:
    nats = compose_services()["nats"]
    assert command_text(nats) == "-c /etc/nats/nats.conf"
    mounts = {str(v).split(":")[0]: str(v).split(":")[1] for v in nats["volumes"] if str(v).startswith("./")}
    assert mounts == {
        "./deploy/nats/nats.conf": "/etc/nats/nats.conf",
        "./deploy/nats/auth.conf": "/etc/nats/auth.conf",
    }
    assert re.search(r"^include \./auth\.conf$", NATS_CONF.read_text(), re.M)
    env = environment(nats)
    assert set(auth_users()) == set(PORTS)
    for user, variable in auth_users().items():
        assert variable.endswith("_PASSWORD_BCRYPT"), f"auth.conf reads {variable}, not a bcrypt hash"
        assert required_variable(env.get(variable, "")) == variable, f"nats gets no password hash for {user}"


def test_the_nats_server_holds_no_password() -> None:
    """Its environment takes the hashes only: nothing of any service's password."""
    env = environment(compose_services()["nats"])
    assert variables_in(env) == set(auth_users().values())
    assert not {nats_password_variable(user) for user in auth_users()} & variables_in(env)


@pytest.mark.parametrize("service", sorted(PORTS))
def test_each_service_connects_as_its_own_nats_user(service: str) -> None:
    users = auth_users()
    assert service in users, f"deploy/nats/auth.conf has no user {service}"
    for name, body in compose_services().items():
        if PYTHON_MODULE.findall(command_text(body)) != [(service, "")]:
            continue  # a migration: it never connects to NATS
        env = environment(body)
        assert env.get("NATS_USER") == service, name
        assert required_variable(env.get("NATS_PASSWORD", "")) == nats_password_variable(service), name
        others = {nats_password_variable(user) for user in users if user != service} | set(users.values())
        assert not others & variables_in(env), f"{name} gets another service's NATS password or a hash"


def test_the_env_example_lists_every_variable_compose_requires_and_no_value() -> None:
    required = {m.group(1) for m in VARIABLE.finditer(COMPOSE.read_text()) if m.group(2) == "?"}
    example = dict(
        line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if line and not line.startswith("#")
    )
    assert required <= set(example), f"not in {ENV_EXAMPLE.name}: {sorted(required - set(example))}"
    assert {k: v for k, v in example.items() if k in required and v} == {}, "a secret has a value in the example"
    assert example.get("PUBLISH_ADDRESS") == LOOPBACK


def test_prometheus_scrapes_every_server() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        if job.get("metrics_path", "/metrics") == "/metrics"
        for group in job.get("static_configs") or []
        for target in group["targets"]
    }
    expected = {f"{body['compose_name']}:{PORTS[service]}" for service, body in servers().items()}
    assert expected <= targets, f"not scraped: {sorted(expected - targets)}"


# --------------------------------------------------------------------------- Grafana


def dashboards() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard.get("panels") or []:
        found.append(panel)
        found.extend(panel.get("panels") or [])  # panels of a collapsed row
    return found


METRIC_CLASSES = {"Counter", "Gauge", "Histogram", "Summary"}
# Labels Prometheus adds to every series it scrapes (prometheus.yml's static labels too).
TARGET_LABELS = frozenset({"instance", "job", "service"})


def literal_labels(node: ast.expr | None) -> frozenset[str] | None:
    """The label names a metric's definition spells out (none given: no labels; None: not a literal)."""
    if node is None:
        return frozenset()
    if not isinstance(node, ast.List | ast.Tuple):
        return None
    names = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return frozenset(names) if len(names) == len(node.elts) else None


def metric_definitions() -> dict[str, frozenset[str] | None]:
    """Every series the code's prometheus_client metrics expose, with its label names (None
    when the code does not spell them out as a literal list)."""
    series: dict[str, frozenset[str] | None] = {}
    sources = [*ROOT.glob("services/*/src/**/*.py"), *ROOT.glob("libs/*/src/**/*.py")]
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            kind = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if kind not in METRIC_CLASSES or not node.args:
                continue
            first = node.args[0]
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                continue
            name = first.value
            given = node.args[2] if len(node.args) > 2 else None
            labels = literal_labels(next((k.value for k in node.keywords if k.arg == "labelnames"), given))
            if kind == "Counter":
                series[name if name.endswith("_total") else f"{name}_total"] = labels
            elif kind in {"Histogram", "Summary"}:
                series.update({f"{name}_sum": labels, f"{name}_count": labels})
                if kind == "Histogram":
                    series[f"{name}_bucket"] = None if labels is None else labels | {"le"}
            else:
                series[name] = labels
    assert series
    return series


def defined_metrics() -> set[str]:
    """Every series name the code's prometheus_client metrics expose."""
    return set(metric_definitions())


def referenced_metrics(expr: str) -> set[str]:
    """Our series names in a PromQL expression (labels, functions and numbers left out)."""
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\b(by|without)\s*\([^)]*\)", "", expr)  # grouping labels
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    prefixes = (*PORTS, "jggl")
    return {
        name for name in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr) if name.split("_")[0] in prefixes and "_" in name
    }


@pytest.mark.parametrize("path", dashboards(), ids=lambda p: p.name)
def test_dashboard_is_valid_and_consistent(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    assert dashboard.get("uid")
    assert dashboard.get("title")
    found = panels(dashboard)
    ids = [p["id"] for p in found]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    uids = {d["uid"] for f in DATASOURCES.glob("*.yml") for d in yaml.safe_load(f.read_text())["datasources"]}
    cells: dict[tuple[int, int], str] = {}
    for panel in found:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, f"{panel['title']}: wider than the grid"
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] in uids, f"{panel['title']}: unknown datasource"
        assert panel.get("targets"), f"{panel['title']}: no query"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), f"{panel['title']}: refIds repeat"


@pytest.mark.parametrize("path", dashboards(), ids=lambda p: p.name)
def test_dashboard_queries_only_metrics_the_code_defines(path: Path) -> None:
    known = defined_metrics()
    unknown = {
        f"{panel['title']}: {name}"
        for panel in panels(json.loads(path.read_text()))
        for target in panel.get("targets") or []
        for name in referenced_metrics(target["expr"])
        if name not in known
    }
    assert not unknown, sorted(unknown)


AGGREGATION = re.compile(r"\b(sum|min|max|avg|count|stddev|topk|bottomk|group)\b")


def grouping_labels(expr: str) -> list[set[str]]:
    """The label lists of every ``by (...)`` in a PromQL expression."""
    return [
        {label.strip() for label in found.split(",") if label.strip()}
        for found in re.findall(r"\bby\s*\(([^)]*)\)", expr)
    ]


@pytest.mark.parametrize("path", dashboards(), ids=lambda p: p.name)
def test_dashboard_groups_and_names_series_by_labels_the_metrics_have(path: Path) -> None:
    definitions = metric_definitions()
    problems = []
    for panel in panels(json.loads(path.read_text())):
        for target in panel.get("targets") or []:
            expr, where = target["expr"], f"{panel['title']} ({target['refId']})"
            metrics = referenced_metrics(expr)
            if not metrics <= set(definitions):
                continue  # an unknown metric: test_dashboard_queries_only_metrics_the_code_defines says which
            known = [labels for m in metrics if (labels := definitions[m]) is not None]
            if len(known) < len(metrics):
                continue  # labels the code does not spell out
            has = set(TARGET_LABELS).union(*known) if known else set(TARGET_LABELS)
            groups = grouping_labels(expr)
            for group in groups:
                problems += [
                    f"{where}: grouped by {label!r}, a label of none of {sorted(metrics)}" for label in group - has
                ]
            # What the legend may name: the outermost grouping's labels (le is gone after
            # histogram_quantile); none after an aggregation without "by"; else the series' own.
            if groups:
                shown = groups[0] - {"le"}
            elif AGGREGATION.search(expr):
                shown = set()
            else:
                shown = has
            legend = set(re.findall(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}", target.get("legendFormat", "")))
            problems += [
                f"{where}: the legend names {label!r}, which the query does not keep" for label in legend - shown
            ]
    assert not problems, "\n".join(problems)


def row_panels(dashboard: dict[str, Any], title: str) -> list[dict[str, Any]]:
    """The panels of the row ``title``: below it and above the next row."""
    rows = sorted((p for p in dashboard["panels"] if p["type"] == "row"), key=lambda p: p["gridPos"]["y"])
    (row,) = [r for r in rows if r["title"] == title]
    later = [r["gridPos"]["y"] for r in rows if r["gridPos"]["y"] > row["gridPos"]["y"]]
    top, bottom = row["gridPos"]["y"], min(later, default=10**6)
    return [p for p in panels(dashboard) if p["type"] != "row" and top < p["gridPos"]["y"] < bottom]


@pytest.mark.parametrize(
    ("row", "prefix", "metrics"),
    [
        (
            "AI",
            "ai_",
            {
                "ai_analyses_total",
                "ai_gemini_calls_total",
                "ai_analysis_seconds_bucket",
                "ai_gemini_tokens_total",
                "ai_breaker_state",
                "ai_conversations_waiting",
                "ai_analyses_in_progress",
            },
        ),
        (
            "Notifier",
            "jggl_notifier_",
            {
                "jggl_notifier_notifications_total",
                "jggl_notifier_delivery_seconds_bucket",
                "jggl_notifier_telegram_retry_after_total",
                "jggl_notifier_pacing_waiting",
                "jggl_notifier_pacing_longest_chat_queue",
                "jggl_notifier_pacing_wait_seconds_bucket",
            },
        ),
    ],
)
def test_overview_has_the_row_of_a_service(row: str, prefix: str, metrics: set[str]) -> None:
    dashboard = json.loads((DASHBOARDS / "overview.json").read_text())
    found = row_panels(dashboard, row)
    queried = {name for p in found for t in p.get("targets") or [] for name in referenced_metrics(t["expr"])}
    assert metrics <= queried, f"the {row} row does not show {sorted(metrics - queried)}"
    assert all(name.startswith(prefix) for name in queried), f"the {row} row shows metrics not named {prefix}*"


# --------------------------------------------------------------------------- secrets per service

# Names whose values are secrets (as in test_k8s_manifests.py); a variable whose value
# interpolates one (DATABASE_URL, REDIS_URL carry the passwords) is a secret too.
SECRET_NAME = re.compile(r"(^|_)(KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIALS?)($|_)")

# Each service's settings class: what ``python -m <service> ...`` reads from its environment.
SETTINGS_CLASS: dict[str, str] = {
    "crm": "crm.config:CrmSettings",
    "ingest": "ingest.config:IngestSettings",
    "ai": "ai.config:AiSettings",
    "notifier": "notifier.config:NotifierSettings",
    "scheduler": "scheduler.config:SchedulerSettings",
}

# Secret variables a service reads by name outside its settings class: crm takes the
# default of the live setting meta.app_secret from its environment (crm.settings.catalog).
READ_BY_NAME: dict[str, set[str]] = {"crm": {"META_APP_SECRET"}}


def secret_variables(env: dict[str, str]) -> set[str]:
    return {
        name
        for name, value in env.items()
        if SECRET_NAME.search(name) or any(SECRET_NAME.search(m.group(1)) for m in VARIABLE.finditer(value))
    }


def secrets_a_service_may_get(service: str) -> set[str]:
    module, _, name = SETTINGS_CLASS[service].partition(":")
    settings = getattr(importlib.import_module(module), name)
    return {field.upper() for field in settings.model_fields} | READ_BY_NAME.get(service, set())


def ours() -> dict[str, tuple[set[str], dict[str, str]]]:
    """Compose services running one of ours: the services their commands run, their environment."""
    found = {}
    for name, body in compose_services().items():
        modules = {module for module, _ in PYTHON_MODULE.findall(command_text(body))}
        if modules:
            found[name] = (modules, environment(body))
    return found


def unused_secrets(services: set[str], env: dict[str, str]) -> set[str]:
    allowed = set().union(*(secrets_a_service_may_get(service) for service in services))
    return secret_variables(env) - allowed


def test_every_service_of_ours_is_known() -> None:
    assert set().union(*(modules for modules, _ in ours().values())) == set(SETTINGS_CLASS)


@pytest.mark.parametrize("name", sorted(ours()))
def test_no_service_gets_a_secret_it_does_not_use(name: str) -> None:
    services, env = ours()[name]
    assert not unused_secrets(services, env), f"{name} gets secrets it never reads"


def test_the_check_sees_a_secret_given_to_the_wrong_service() -> None:
    _, ingest = ours()["ingest"]
    assert unused_secrets({"ingest"}, ingest) == set()
    wrong = {
        **ingest,
        "GEMINI_API_KEY": "${GEMINI_API_KEY:-}",
        "DATABASE_URL": "postgresql://postgres:${POSTGRES_PASSWORD:?}@postgres:5432/jggl",
        "AUTH_SIGNING_KEY": "${AUTH_SIGNING_KEY:?}",
    }
    assert unused_secrets({"ingest"}, wrong) == {"GEMINI_API_KEY", "DATABASE_URL", "AUTH_SIGNING_KEY"}


def test_the_signing_key_reaches_crm_alone_and_is_required() -> None:
    holders = {
        name
        for name, (_, env) in ours().items()
        if {"AUTH_SIGNING_KEY", "AUTH_SIGNING_KEY_PREVIOUS"} & set(env)
        or any(m.group(1).startswith("AUTH_SIGNING_KEY") for v in env.values() for m in VARIABLE.finditer(v))
    }
    assert holders == {name for name, (services, _) in ours().items() if services == {"crm"}}
    _, crm = ours()["crm"]
    assert required_variable(crm["AUTH_SIGNING_KEY"]) == "AUTH_SIGNING_KEY"
    assert crm["AUTH_SIGNING_KEY_PREVIOUS"] == "${AUTH_SIGNING_KEY_PREVIOUS:-}"


@pytest.mark.parametrize("name", sorted(ours()))
def test_every_service_may_read_the_app_keys_before_a_rotation(name: str) -> None:
    _, env = ours()[name]
    assert required_variable(env["APP_KEY"]) == "APP_KEY"
    assert env["APP_KEY_PREVIOUS"] == "${APP_KEY_PREVIOUS:-}", "optional: set only during a rotation"
