"""Real Prometheus and Alertmanager processes for integration tests, on free loopback ports.

Both are the Debian packages' binaries (installed by scripts/test.sh).  Each
is started with a generated config in a temporary directory, bound to
127.0.0.1 only (Alertmanager's gossip port is disabled), waited for until
ready, and always stopped by the context manager.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import answers_ok, free_port, wait_for

__all__ = [
    "Alertmanager",
    "Prometheus",
    "alertmanager",
    "alertmanager_of",
    "prometheus",
    "wait_for",
]


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _binary(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, f"{name} missing: scripts/test.sh installs the Debian packages"
    return path


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@dataclass
class Prometheus:
    url: str
    directory: Path

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the result vector."""
        data = _get_json(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert data["status"] == "success", data
        return list(data["data"]["result"])

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        params = {"query": expr, "start": start, "end": end, "step": step}
        data = _get_json(f"{self.url}/api/v1/query_range?" + urllib.parse.urlencode(params))
        assert data["status"] == "success", data
        return list(data["data"]["result"])

    def targets_up(self) -> bool:
        active = _get_json(f"{self.url}/api/v1/targets")["data"]["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)

    def alerts(self) -> list[dict[str, Any]]:
        return list(_get_json(f"{self.url}/api/v1/alerts")["data"]["alerts"])


@contextmanager
def prometheus(
    directory: Path,
    targets: Sequence[str],
    rule_files: Sequence[Path] = (),
    alertmanager_url: str | None = None,
    interval: str = "1s",
    job: str = "driftgauge",
) -> Iterator[Prometheus]:
    """Prometheus scraping ``targets`` (host:port) every ``interval`` and evaluating ``rule_files``."""
    directory.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(targets)}]}],
        "rule_files": [str(p) for p in rule_files],
    }
    if alertmanager_url:
        host = urllib.parse.urlsplit(alertmanager_url).netloc
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [host]}]}]}
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (directory / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            _binary("prometheus"),
            f"--config.file={directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--rules.alert.resend-delay=1s",
            "--rules.alert.for-grace-period=1s",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Prometheus(f"http://127.0.0.1:{port}", directory)
    try:
        wait_for(
            lambda: answers_ok(f"{server.url}/-/ready"),
            what="prometheus ready",
        )
        yield server
    finally:
        _stop(process)
        log.close()


@dataclass
class Alertmanager:
    url: str

    def alerts(self) -> list[dict[str, Any]]:
        return list(_get_json(f"{self.url}/api/v2/alerts"))


@contextmanager
def alertmanager(directory: Path, webhook_url: str) -> Iterator[Alertmanager]:
    """Alertmanager routing every alert to ``webhook_url`` quickly (short group waits)."""
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "route": {
            "receiver": "webhook",
            "group_by": ["alertname", "model", "feature"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {"name": "webhook", "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}
        ],
    }
    (directory / "alertmanager.yml").write_text(yaml.safe_dump(config))
    with alertmanager_of(directory, directory / "alertmanager.yml") as server:
        yield server


@contextmanager
def alertmanager_of(directory: Path, config_file: Path) -> Iterator[Alertmanager]:
    """Alertmanager running ``config_file``, its data and log in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = (directory / "alertmanager.log").open("wb")
    process = subprocess.Popen(
        [
            _binary("prometheus-alertmanager"),
            f"--config.file={config_file}",
            f"--storage.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Alertmanager(f"http://127.0.0.1:{port}")
    try:
        wait_for(
            lambda: answers_ok(f"{server.url}/-/ready"),
            what="alertmanager ready",
        )
        yield server
    finally:
        _stop(process)
        log.close()
