"""The Dockerfile, the Kubernetes example and the docker-compose stack agree with the code.

Images cannot be built here (no registry for the base image), so the
Dockerfile is parsed: entrypoint, ports, user and health check are checked
against the code's defaults, the health check's own command is run against a
real sidecar, and the build context the ``.dockerignore`` leaves is checked
to hold what the Dockerfile copies.  The YAML files are loaded and their
ports, paths and files checked; Prometheus' and Alertmanager's own tools
check the compose configs; and the compose model server, its traffic
generator and its driftgauge config run together with a real sidecar.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

from driftgauge import __version__
from driftgauge.config import (
    DEFAULT_METRICS_PORT,
    DEFAULT_PROXY_PORT,
    Config,
    ProxyConfig,
    config_from_mapping,
)
from tests.e2e_support import (
    ROOT,
    driftgauge_command,
    sidecar,
    write_baseline,
    write_config,
)
from tests.helpers import base_config, free_port
from tests.servers import alertmanager_of, wait_for

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
K8S = ROOT / "deploy" / "kubernetes"
COMPOSE_DIR = ROOT / "deploy" / "compose"
COMPOSE = COMPOSE_DIR / "docker-compose.yml"
WINE_MODEL = COMPOSE_DIR / "model" / "wine_model.py"
CONFIG_PATH = "/etc/driftgauge/config.yaml"
BASELINE_PATH = "/var/lib/driftgauge/baseline.dgb"
IMAGE = f"driftgauge:{__version__}"


# -- Dockerfile -----------------------------------------------------------------------


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        pending += line
        keyword, _, rest = pending.partition(" ")
        result.append((keyword.upper(), rest.strip()))
        pending = ""
    return result


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, rest in _instructions(DOCKERFILE.read_text()):
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, rest))
    return stages


def _final(keyword: str) -> list[str]:
    return [rest for k, rest in _stages()[-1] if k == keyword]


def _global_args() -> dict[str, str]:
    args = {}
    for keyword, rest in _instructions(DOCKERFILE.read_text()):
        if keyword == "FROM":
            break
        if keyword == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args[name] = value
    return args


def _healthcheck() -> list[str]:
    (check,) = _final("HEALTHCHECK")
    _, _, command = check.partition("CMD ")
    argv = json.loads(command)
    assert isinstance(argv, list)
    return argv


def test_dockerfile_builds_in_a_stage_and_ships_only_the_venv_on_a_slim_base() -> None:
    """Two stages on a slim Python base; the final one copies the built venv and installs nothing."""
    stages = _stages()
    assert len(stages) >= 2
    bases = [stage[0][1].split()[0] for stage in stages]
    args = _global_args()
    images = [re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base) for base in bases]
    assert all(re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", image) for image in images), images
    final = stages[-1]
    copies = [rest for keyword, rest in final if keyword == "COPY"]
    assert copies == ["--from=build /opt/driftgauge /opt/driftgauge"]
    runs = " ".join(rest for keyword, rest in final if keyword == "RUN")
    assert "pip install" not in runs and "apt-get" not in runs
    assert "pip uninstall -y pip setuptools wheel" in runs
    env = " ".join(_final("ENV"))
    assert "PATH=/opt/driftgauge/bin:" in env


def test_dockerfile_entrypoint_is_driftgauge_serving_the_documented_config() -> None:
    """ENTRYPOINT is the package's console script and CMD serves /etc/driftgauge/config.yaml."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["driftgauge"] == "driftgauge.cli:main"
    assert [json.loads(e) for e in _final("ENTRYPOINT")] == [["driftgauge"]]
    assert [json.loads(c) for c in _final("CMD")] == [["serve", "-c", CONFIG_PATH]]


def test_dockerfile_exposes_the_default_proxy_and_metrics_ports() -> None:
    """EXPOSE names exactly the code's default proxy and metrics ports."""
    exposed = {int(port) for line in _final("EXPOSE") for port in line.split()}
    assert exposed == {DEFAULT_PROXY_PORT, DEFAULT_METRICS_PORT} == {8080, 10117}


def test_dockerfile_runs_as_the_non_root_user_it_creates() -> None:
    """The final USER is a numeric non-root uid:gid, created in the image and owning its state dir."""
    (user,) = _final("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) >= 1000 and gid.isdigit() and int(gid) >= 1000
    runs = " ".join(_final("RUN"))
    assert f"--uid {uid}" in runs and f"--gid {gid}" in runs
    assert f"chown {uid}:{gid} /var/lib/driftgauge" in runs


def test_dockerfile_healthcheck_is_python_probing_healthz_on_the_metrics_port() -> None:
    """The health check needs no curl and asks /healthz on the default metrics port."""
    argv = _healthcheck()
    assert argv[:2] == ["python", "-c"]
    assert not {"curl", "wget"} & set(" ".join(argv).split())
    urls = re.findall(r"http://[^'\"]+", argv[2])
    assert urls == [f"http://127.0.0.1:{DEFAULT_METRICS_PORT}/healthz"]


def test_dockerfile_healthcheck_passes_on_a_live_sidecar_and_fails_without_one(
    tmp_path: Path,
) -> None:
    """The health check's own command exits 0 against a running sidecar and non-zero once it is gone."""
    config = write_config(tmp_path / "config.yaml", base_config(tmp_path))
    write_baseline(config, 2_000)
    argv = _healthcheck()

    def check(port: int) -> int:
        code = argv[2].replace(f":{DEFAULT_METRICS_PORT}/", f":{port}/")
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, timeout=30, check=False
        )
        return result.returncode

    with sidecar(config, tmp_path / "driftgauge.log") as running:
        assert check(running.metrics_port) == 0
    assert check(running.metrics_port) != 0


def _ignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """(exclude?, regex) per .dockerignore line, with Docker's `*`, `?` and `**` meanings."""
    patterns = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = str(PurePosixPath(line.lstrip("!").strip("/")))
        regex = ""
        index = 0
        while index < len(pattern):
            if pattern.startswith("**/", index):
                regex, index = regex + "(?:.*/)?", index + 3
            elif pattern.startswith("**", index):
                regex, index = regex + ".*", index + 2
            elif pattern[index] == "*":
                regex, index = regex + "[^/]*", index + 1
            elif pattern[index] == "?":
                regex, index = regex + "[^/]", index + 1
            else:
                regex, index = regex + re.escape(pattern[index]), index + 1
        patterns.append((not negated, re.compile(regex + r"\Z")))
    return patterns


def _excluded(path: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for exclude, regex in patterns:
        if any(regex.match(prefix) for prefix in prefixes):
            excluded = exclude
    return excluded


def _build_context() -> set[str]:
    """Files the Docker build context holds (relative POSIX paths)."""
    patterns = _ignore_patterns()
    reincluded = [regex.pattern for exclude, regex in patterns if not exclude]
    files = set()
    for directory, dirs, names in os.walk(ROOT):
        relative = Path(directory).relative_to(ROOT).as_posix()
        prefix = "" if relative == "." else relative + "/"
        # Prune excluded directories no exception can reach into (.venv, .git, ...).
        dirs[:] = [
            d
            for d in dirs
            if not _excluded(prefix + d, patterns)
            or any(p.startswith(re.escape(prefix + d)) for p in reincluded)
        ]
        files.update(prefix + name for name in names if not _excluded(prefix + name, patterns))
    return files


def test_docker_build_context_holds_what_the_dockerfile_copies_and_nothing_more() -> None:
    """After .dockerignore the context has pyproject, setup.py (the native core's build), README
    and the package, but no venv, tests, caches or a core compiled in place."""
    context = _build_context()
    sources = []
    for stage in _stages():
        for keyword, rest in stage:
            if keyword == "COPY" and not rest.startswith("--from"):
                sources.extend(rest.split()[:-1])
    assert sources == ["pyproject.toml", "setup.py", "README.md", "src"]
    for source in sources:
        assert source in context or any(f.startswith(source + "/") for f in context), source
    readme = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["readme"]
    assert readme in context
    assert {"src/driftgauge/__init__.py", "src/driftgauge/cli.py", "src/driftgauge/py.typed"} <= (
        context
    )
    tops = {f.split("/")[0] for f in context}
    assert tops == {"pyproject.toml", "setup.py", "README.md", "src"}, tops
    assert not [f for f in context if "__pycache__" in f or f.endswith(".pyc")]
    assert not [f for f in context if ".egg-info/" in f]
    assert not [f for f in context if f.endswith(".so")]


def test_the_declared_build_backend_can_read_the_spdx_license() -> None:
    """pip install . (the Dockerfile's) builds with any setuptools the build-system allows."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert isinstance(pyproject["project"]["license"], str)  # an SPDX expression (PEP 639)
    (backend,) = [
        Requirement(r)
        for r in pyproject["build-system"]["requires"]
        if Requirement(r).name == "setuptools"
    ]
    # setuptools before 77.0.3 refuses a string license ("must be valid exactly by one
    # definition"), so a lower bound below it lets pip pick a setuptools that cannot build.
    assert not backend.specifier.contains("77.0.2"), backend
    assert backend.specifier.contains("77.0.3"), backend


def test_the_documented_image_tag_is_the_package_version() -> None:
    """The build command in the Dockerfile and the images in the examples use driftgauge:<version>."""
    assert f"docker build -t {IMAGE} ." in DOCKERFILE.read_text()
    pod = _pod_spec()
    assert _container(pod, "driftgauge")["image"] == IMAGE
    services = _compose()["services"]
    assert {services[name]["image"] for name in ("driftgauge", "baseline")} == {IMAGE}
    assert f"docker build -t {IMAGE} ." in (COMPOSE_DIR / "README.md").read_text()


# -- Kubernetes -----------------------------------------------------------------------


def _k8s_documents() -> list[dict[str, Any]]:
    documents = []
    for path in sorted(K8S.glob("*.yaml")):
        documents.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return documents


def _k8s(kind: str) -> list[dict[str, Any]]:
    return [d for d in _k8s_documents() if d["kind"] == kind]


def _pod_spec() -> dict[str, Any]:
    (deployment,) = _k8s("Deployment")
    return dict(deployment["spec"]["template"]["spec"])


def _container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    found = [c for c in pod.get("initContainers", []) + pod["containers"] if c["name"] == name]
    assert len(found) == 1, name
    return found[0]


def _port(container: dict[str, Any], port: int | str) -> int:
    """A container port by number or name."""
    for item in container["ports"]:
        if port in (item["containerPort"], item.get("name")):
            return int(item["containerPort"])
    raise AssertionError(f"{container['name']} has no port {port!r}")


def _k8s_config() -> tuple[Config, dict[str, Any]]:
    (configmap,) = _k8s("ConfigMap")
    raw = yaml.safe_load(configmap["data"]["config.yaml"])
    return config_from_mapping(raw, base=Path("/etc/driftgauge")), raw


def test_kubernetes_configmap_holds_a_config_driftgauge_accepts() -> None:
    """The ConfigMap's config.yaml validates, proxies to the model container and uses the default ports."""
    config, _ = _k8s_config()
    assert isinstance(config.source, ProxyConfig)
    assert config.source.listen == ("0.0.0.0", DEFAULT_PROXY_PORT)
    assert config.metrics.listen == ("0.0.0.0", DEFAULT_METRICS_PORT)
    assert str(config.baseline) == BASELINE_PATH
    model = _container(_pod_spec(), "model")
    assert config.source.upstream == f"http://127.0.0.1:{_port(model, 'model-http')}"
    assert config.source.readiness_path == model["readinessProbe"]["httpGet"]["path"]
    assert {w.label for w in config.windows} == {"5m", "1h"}  # the default windows


def test_kubernetes_driftgauge_is_a_native_sidecar_with_config_and_baseline_mounted() -> None:
    """driftgauge is an init container with restartPolicy Always, mounting the ConfigMap and the baseline."""
    pod = _pod_spec()
    driftgauge = _container(pod, "driftgauge")
    assert driftgauge in pod["initContainers"]
    assert driftgauge["restartPolicy"] == "Always"
    assert driftgauge["args"] == json.loads(_final("CMD")[0])
    assert driftgauge["securityContext"]["runAsNonRoot"] is True
    assert (
        f"{driftgauge['securityContext']['runAsUser']}:{driftgauge['securityContext']['runAsGroup']}"
        == _final("USER")[0]
    )
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in driftgauge["volumeMounts"]}
    (configmap,) = _k8s("ConfigMap")
    config_mount = mounts[str(PurePosixPath(CONFIG_PATH).parent)]
    assert volumes[config_mount["name"]]["configMap"]["name"] == configmap["metadata"]["name"]
    assert PurePosixPath(CONFIG_PATH).name in configmap["data"]
    baseline_mount = mounts[str(PurePosixPath(BASELINE_PATH).parent)]
    items = volumes[baseline_mount["name"]]["configMap"]["items"]
    assert [i["path"] for i in items] == [PurePosixPath(BASELINE_PATH).name]
    assert all(m.get("readOnly") for m in (config_mount, baseline_mount))


def test_kubernetes_probes_hit_healthz_and_readyz_on_the_metrics_port() -> None:
    """Liveness and startup probe /healthz, readiness /readyz, all on the configured metrics port."""
    config, _ = _k8s_config()
    driftgauge = _container(_pod_spec(), "driftgauge")
    paths = {}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = driftgauge[probe]["httpGet"]
        assert _port(driftgauge, get["port"]) == config.metrics.listen[1], probe
        paths[probe] = get["path"]
    assert paths == {
        "startupProbe": "/healthz",
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }


def test_kubernetes_service_sends_traffic_to_the_proxy_port() -> None:
    """The Service selects the pods and targets driftgauge's proxy port, not the model."""
    config, _ = _k8s_config()
    assert isinstance(config.source, ProxyConfig)
    (service,) = _k8s("Service")
    (deployment,) = _k8s("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    driftgauge = _container(_pod_spec(), "driftgauge")
    assert _port(driftgauge, port["targetPort"]) == config.source.listen[1]


def test_kubernetes_service_targets_the_native_sidecar_by_port_number() -> None:
    """The Service's targetPort is a number: a native sidecar's named port resolves only from Kubernetes 1.32."""
    (service,) = _k8s("Service")
    (port,) = service["spec"]["ports"]
    assert isinstance(port["targetPort"], int), port


def test_kubernetes_scraping_names_the_metrics_port_as_job_driftgauge() -> None:
    """Pod annotations and the PodMonitor point at the metrics port; the PodMonitor sets job="driftgauge"."""
    config, _ = _k8s_config()
    (deployment,) = _k8s("Deployment")
    template = deployment["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(config.metrics.listen[1])
    assert annotations["prometheus.io/path"] == "/metrics"
    (monitor,) = _k8s("PodMonitor")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert (
        _port(_container(_pod_spec(), "driftgauge"), endpoint["port"]) == config.metrics.listen[1]
    )
    assert endpoint["path"] == "/metrics"
    assert {"targetLabel": "job", "replacement": "driftgauge"} in endpoint["relabelings"]


def test_kubernetes_and_compose_configs_differ_only_in_the_upstream() -> None:
    """The two examples monitor the same model with the same settings."""
    _, k8s = _k8s_config()
    compose = yaml.safe_load((COMPOSE_DIR / "driftgauge.yaml").read_text())
    assert k8s["source"]["proxy"].pop("upstream") == "http://127.0.0.1:9000"
    assert compose["source"]["proxy"].pop("upstream") == "http://model:9000"
    assert k8s == compose


# -- docker-compose -------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source, for short-syntax volumes."""
    result = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        result[target] = source
    return result


def _compose_config() -> Config:
    raw = yaml.safe_load((COMPOSE_DIR / "driftgauge.yaml").read_text())
    return config_from_mapping(raw, base=Path("/etc/driftgauge"))


def test_compose_publishes_the_proxy_metrics_and_ui_ports() -> None:
    """driftgauge publishes its configured proxy and metrics ports; Prometheus, Alertmanager and Grafana theirs."""
    config = _compose_config()
    assert isinstance(config.source, ProxyConfig)
    services = _compose()["services"]
    proxy, metrics = config.source.listen[1], config.metrics.listen[1]
    assert services["driftgauge"]["ports"] == [f"{proxy}:{proxy}", f"{metrics}:{metrics}"]
    assert services["prometheus"]["ports"] == ["9090:9090"]
    assert services["alertmanager"]["ports"] == ["9093:9093"]
    assert services["grafana"]["ports"] == ["3000:3000"]
    model_port = int(config.source.upstream.rsplit(":", 1)[1])
    assert config.source.upstream == f"http://model:{model_port}"
    assert services["model"]["expose"] == [str(model_port)]
    assert str(model_port) in services["model"]["command"]
    assert "ports" not in services["model"]  # clients go through driftgauge


def test_compose_volume_sources_and_build_context_exist_in_the_repository() -> None:
    """Every bind-mounted path and the build context exist; named volumes are declared."""
    compose = _compose()
    named = set(compose.get("volumes", {}))
    for name, service in compose["services"].items():
        for target, source in _mounts(service).items():
            if source.startswith((".", "/")):
                assert (COMPOSE_DIR / source).resolve().exists(), (name, source)
            else:
                assert source in named, (name, source)
            assert target.startswith("/"), (name, target)
        if "build" in service:
            context = (COMPOSE_DIR / service["build"]["context"]).resolve()
            assert context == ROOT
            assert (context / service["build"]["dockerfile"]).resolve() == DOCKERFILE


def _seconds(duration: str) -> float:
    """A compose or Kubernetes duration ("30s", "1m30s") in seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(float(n) * units[u] for n, u in re.findall(r"([\d.]+)([hms])", duration))


def test_the_sidecars_get_longer_to_stop_than_their_shutdown_grace() -> None:
    """Docker and Kubernetes wait past source.proxy.shutdown_grace before they kill the sidecar,
    so in-flight requests finish and the queue is monitored (docs/reliability.md)."""
    config, _ = _k8s_config()
    assert isinstance(config.source, ProxyConfig)
    assert _pod_spec()["terminationGracePeriodSeconds"] > config.source.shutdown_grace + 2
    compose = _compose_config()
    assert isinstance(compose.source, ProxyConfig)
    # Docker's default, without stop_grace_period, is 10s.
    stop = _seconds(_compose()["services"]["driftgauge"].get("stop_grace_period", "10s"))
    assert stop > compose.source.shutdown_grace + 2, stop


def test_compose_driftgauge_mounts_config_and_baseline_where_image_and_config_expect() -> None:
    """Config at the image's CMD path, the baseline volume where config.baseline points, filled by `baseline`."""
    config = _compose_config()
    assert str(config.baseline) == BASELINE_PATH
    assert config.metrics.listen == ("0.0.0.0", DEFAULT_METRICS_PORT)
    services = _compose()["services"]
    driftgauge, baseline = services["driftgauge"], services["baseline"]
    assert driftgauge["command"] == json.loads(_final("CMD")[0])
    assert _mounts(driftgauge)[CONFIG_PATH] == "./driftgauge.yaml"
    state = str(PurePosixPath(BASELINE_PATH).parent)
    assert _mounts(driftgauge)[state] == _mounts(baseline)[state] == "baseline"
    assert _mounts(baseline)[CONFIG_PATH] == "./driftgauge.yaml"
    script = " ".join(baseline["command"])
    assert f"driftgauge baseline -c {CONFIG_PATH}" in script and f"-o {BASELINE_PATH}" in script
    assert driftgauge["depends_on"]["baseline"]["condition"] == "service_completed_successfully"
    assert driftgauge["depends_on"]["model"]["condition"] == "service_healthy"


def test_compose_prometheus_scrapes_driftgauge_as_job_driftgauge_and_loads_the_rules() -> None:
    """prometheus.yml loads the mounted rules file, scrapes driftgauge:10117 as job driftgauge, alerts to Alertmanager."""
    services = _compose()["services"]
    mounts = _mounts(services["prometheus"])
    config = yaml.safe_load((COMPOSE_DIR / mounts["/etc/prometheus/prometheus.yml"]).read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules/driftgauge.rules.yml"]
    assert (COMPOSE_DIR / mounts["/etc/prometheus/rules"]).resolve() == ROOT / "alert_rules"
    assert (ROOT / "alert_rules" / "driftgauge.rules.yml").is_file()
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    metrics_port = _compose_config().metrics.listen[1]
    assert jobs["driftgauge"]["static_configs"] == [{"targets": [f"driftgauge:{metrics_port}"]}]
    rules = yaml.safe_load((ROOT / "alert_rules" / "driftgauge.rules.yml").read_text())
    down = [
        r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "DriftgaugeSidecarDown"
    ]
    assert 'job="driftgauge"' in down[0]["expr"]
    (alertmanagers,) = config["alerting"]["alertmanagers"]
    assert alertmanagers["static_configs"] == [{"targets": ["alertmanager:9093"]}]
    mounted = _mounts(services["alertmanager"])
    assert "/etc/alertmanager/alertmanager.yml" in mounted


def test_compose_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    """`promtool check config` accepts prometheus.yml with the rule path pointed into the repository."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: scripts/test.sh installs the Debian prometheus package"
    text = (COMPOSE_DIR / "prometheus.yml").read_text()
    adjusted = text.replace("/etc/prometheus/rules/", f"{ROOT / 'alert_rules'}/")
    assert adjusted != text
    (tmp_path / "prometheus.yml").write_text(adjusted)
    result = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_compose_alertmanager_config_passes_amtool() -> None:
    """`amtool check-config` accepts alertmanager.yml."""
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip(
            "amtool is not installed (it ships with the Debian prometheus-alertmanager package)"
        )
    result = subprocess.run(
        [amtool, "check-config", str(COMPOSE_DIR / "alertmanager.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.integration
def test_compose_alertmanager_inhibits_a_warning_only_by_its_own_critical(tmp_path: Path) -> None:
    """A critical drift alert silences the warning of the same field, role and version, no other."""
    field = {"model": "wine", "feature": "alcohol", "instance": "10.0.0.1:10117"}

    def alert(name: str, severity: str, **labels: str) -> dict[str, Any]:
        return {"labels": {"alertname": name, "severity": severity} | field | labels}

    critical = alert("DriftgaugeFeatureDriftCritical", "critical", role="input", version="2")
    warnings = {
        "same": alert("DriftgaugeFeatureDriftWarning", "warning", role="input", version="2"),
        "other version": alert(
            "DriftgaugeFeatureDriftWarning", "warning", role="input", version="1"
        ),
        "other role": alert(
            "DriftgaugeFeatureDriftWarning", "warning", role="prediction", version="2"
        ),
    }
    with alertmanager_of(tmp_path, COMPOSE_DIR / "alertmanager.yml") as server:
        request = urllib.request.Request(
            f"{server.url}/api/v2/alerts",
            json.dumps([critical, *warnings.values()]).encode(),
            {"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5):
            pass

        def states() -> dict[str, str]:
            by_labels = {
                json.dumps(a["labels"], sort_keys=True): a["status"]["state"]
                for a in server.alerts()
            }
            found = {
                name: by_labels.get(json.dumps(a["labels"], sort_keys=True), "")
                for name, a in warnings.items()
            }
            return found if found["same"] == "suppressed" else {}

        assert wait_for(states, what="the critical alert inhibiting its warning") == {
            "same": "suppressed",
            "other version": "active",
            "other role": "active",
        }


def test_compose_grafana_provisioning_points_at_prometheus_and_the_mounted_dashboards() -> None:
    """The mounted datasource uses http://prometheus:9090 and the dashboard provider reads the mounted folder."""
    mounts = _mounts(_compose()["services"]["grafana"])
    provisioning = (COMPOSE_DIR / mounts["/etc/grafana/provisioning"]).resolve()
    dashboards = (COMPOSE_DIR / mounts["/var/lib/grafana/dashboards"]).resolve()
    assert provisioning == ROOT / "grafana" / "provisioning"
    assert dashboards == ROOT / "grafana" / "dashboards"
    assert list(dashboards.glob("*.json"))
    datasources = [
        source
        for path in sorted((provisioning / "datasources").glob("*.y*ml"))
        for source in yaml.safe_load(path.read_text()).get("datasources", [])
    ]
    assert any(
        s["type"] == "prometheus" and s["url"].rstrip("/") == "http://prometheus:9090"
        for s in datasources
    ), datasources
    providers = [
        provider
        for path in sorted((provisioning / "dashboards").glob("*.y*ml"))
        for provider in yaml.safe_load(path.read_text()).get("providers", [])
    ]
    assert providers
    for provider in providers:
        folder = PurePosixPath(provider["options"]["path"])
        assert folder == PurePosixPath("/var/lib/grafana/dashboards") or (
            PurePosixPath("/var/lib/grafana/dashboards") in folder.parents
        ), provider


@pytest.fixture
def wine_model(tmp_path: Path) -> Iterator[int]:
    """The compose model server (deploy/compose/model/wine_model.py) on a free loopback port."""
    port = free_port()
    log = (tmp_path / "model.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, str(WINE_MODEL), "serve", "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(
            lambda: scrape_json(f"http://127.0.0.1:{port}/v1/models/wine")["ready"],
            what="wine model ready",
        )
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def scrape_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as response:
        return json.loads(response.read())


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_compose_model_baseline_traffic_and_sidecar_work_together(
    tmp_path: Path, wine_model: int
) -> None:
    """The compose config builds a baseline from the model's training data and monitors its traffic cleanly."""
    raw = yaml.safe_load((COMPOSE_DIR / "driftgauge.yaml").read_text())
    proxy_port = free_port()
    raw["source"]["proxy"] |= {
        "listen": f"127.0.0.1:{proxy_port}",
        "upstream": f"http://127.0.0.1:{wine_model}",
        "shutdown_grace": 1,
    }
    raw["metrics"] = {"listen": f"127.0.0.1:{free_port()}", "recompute_interval": "1s"}
    raw["baseline"] = str(tmp_path / "baseline.dgb")
    config = write_config(tmp_path / "config.yaml", raw)
    train = tmp_path / "train.csv"
    run = [sys.executable, str(WINE_MODEL)]
    subprocess.run([*run, "training-data", str(train), "--rows", "5000"], check=True, timeout=60)
    built = subprocess.run(
        [
            *driftgauge_command(),
            "baseline",
            "-c",
            str(config),
            "--data",
            str(train),
            "-o",
            raw["baseline"],
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    with sidecar(config, tmp_path / "driftgauge.log") as running:
        url = f"http://127.0.0.1:{proxy_port}/v1/models/wine:predict"
        sent = subprocess.run(
            [*run, "traffic", "--url", url, "--rate", "50", "--batch", "8", "--duration", "2"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        match = re.search(r"sent (\d+) rows, 0 failed requests", sent.stdout)
        assert match, sent.stdout
        rows = int(match.group(1))
        assert rows > 0

        def observed() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
            samples = running.scrape()
            seen = [v for (n, _), v in samples.items() if n == "driftgauge_observations_total"]
            return samples if seen and all(v == rows for v in seen) else {}

        samples = wait_for(observed, timeout=20, what="every row monitored")
    fields = {
        dict(labels)["feature"]
        for name, labels in samples
        if name == "driftgauge_observations_total"
    }
    assert fields == {spec.name for spec in _compose_config().fields}
    errors = ("driftgauge_parse_errors_total", "driftgauge_source_parse_errors_total")
    assert [k for k, v in samples.items() if k[0] in errors and v] == []
    nonzero_invalid = {
        dict(labels)["reason"]
        for (name, labels), v in samples.items()
        if name == "driftgauge_invalid_total" and v
    }
    assert "unseen_category" not in nonzero_invalid and "wrong_type" not in nonzero_invalid
    codes = {
        dict(labels)["code"]: v
        for (name, labels), v in samples.items()
        if name == "driftgauge_requests_total"
    }
    assert codes == {"200": rows / 8}
