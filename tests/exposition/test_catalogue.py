"""The metric catalogue: what /metrics serves, what the README lists and the declarations agree."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import pytest
import yaml
from prometheus_client import ProcessCollector
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)

from driftgauge.config import Role
from driftgauge.exposition import MonitorCollector, RenderedSnapshot, render_metrics
from driftgauge.exposition.catalogue import CATALOGUE, MetricSpec
from driftgauge.exposition.proxy import ProxyMetrics
from driftgauge.exposition.source import SourceCollector
from driftgauge.monitor.route import Router
from tests.exposition_support import busy_pipeline, registry_of
from tests.rules.support import promtool_test, series

README = Path(__file__).resolve().parents[2] / "README.md"
BY_NAME = {spec.name: spec for spec in CATALOGUE}


def _readme_table() -> dict[str, tuple[str, frozenset[str]]]:
    """README's metrics table: sample name (prefixed) -> its type and the labels the row names."""
    section = README.read_text(encoding="utf-8").split("\n## Metrics\n", 1)[1]
    rows = re.findall(r"^\| (.+?) \| (\w+) \|$", section.split("\n## ", 1)[0], re.MULTILINE)
    listed: dict[str, tuple[str, frozenset[str]]] = {}
    for names, kind in rows:
        if kind == "type":
            continue
        # Parentheses explain a row (and may quote label values); the names are outside them.
        for token in re.findall(r"`([^`]+)`", re.sub(r"\([^)]*\)", "", names)):
            name, _, labels = token.partition("{")
            assert f"driftgauge_{name}" not in listed, f"{name} listed twice"
            listed[f"driftgauge_{name}"] = (kind, frozenset(filter(None, labels[:-1].split(","))))
    return listed


def test_names_are_unique_and_follow_prometheus_naming() -> None:
    """One declaration per family; prefixed, no _total on a family name, base units on histograms."""
    assert len(BY_NAME) == len(CATALOGUE)
    samples = [spec.sample_name for spec in CATALOGUE]
    assert len(set(samples)) == len(samples)
    for spec in CATALOGUE:
        assert re.fullmatch(r"driftgauge_[a-z0-9_]+[a-z0-9]", spec.name), spec.name
        assert not spec.name.endswith(("_total", "_info", "_count", "_sum", "_bucket")), spec.name
        assert "quantile" not in spec.labels, f"{spec.name}: promtool reserves it for summaries"
        assert all(re.fullmatch(r"[a-z_]+", label) for label in spec.labels), spec.labels
        if spec.kind == "histogram":
            assert spec.name.endswith(("_seconds", "_bytes")), spec.name
            assert list(spec.buckets) == sorted(spec.buckets)


def test_readme_metrics_table_lists_exactly_the_catalogue() -> None:
    """Every metric in the catalogue is in README's table with its type, and nothing else is;
    the labels a row names are the metric's."""
    listed = _readme_table()
    declared = {spec.sample_name: spec for spec in CATALOGUE}
    assert sorted(set(declared) - set(listed)) == [], "in the catalogue, not in the README"
    assert sorted(set(listed) - set(declared)) == [], "in the README, not in the catalogue"
    for name, (kind, labels) in listed.items():
        spec = declared[name]
        assert kind == spec.kind, name
        assert labels <= set(spec.labels), (name, labels)


def test_readme_metrics_section_names_every_role() -> None:
    """The Metrics section's list of `role` values is every role a series can carry."""
    section = README.read_text(encoding="utf-8").split("\n## Metrics\n", 1)[1]
    listed = re.search(r"`role`\s+\(([^)]*)\)", section)
    assert listed is not None
    assert re.findall(r"`(\w+)`", listed.group(1)) == list(get_args(Role))


def test_metrics_endpoint_serves_exactly_the_catalogue(tmp_path: Path) -> None:
    """A sidecar with segments, feedback and the proxy serves every declared family, with its
    declared type, help and label names, and no family of driftgauge's that is not declared."""
    pipeline = busy_pipeline("wine", tmp_path)
    monitor = pipeline.monitor
    registry = registry_of(MonitorCollector(monitor, "live"))
    router = Router([pipeline.batcher], source_reasons=["x"], source_drops=["y"])
    registry.register(SourceCollector(router))
    ProcessCollector(registry=registry)
    proxy = ProxyMetrics(registry)
    proxy.request_done(200, 1.0, 1.002, 1.01, 120, 80)
    proxy.client_error("bad_request")
    proxy.queue_depth.set(2)
    BY_NAME["driftgauge_state_save_failures"].counter(registry).labels("wine")  # state.directory
    rendered = RenderedSnapshot(registry_of(MonitorCollector(monitor, "snapshot")))
    rendered.refresh()
    body, _ = render_metrics(registry, "application/openmetrics-text; version=1.0.0", rendered)
    served = {
        family.name: family
        for family in openmetrics_families(body.decode())
        if family.name.startswith("driftgauge_")
    }
    assert sorted(served) == sorted(BY_NAME)
    for name, family in served.items():
        spec: MetricSpec = BY_NAME[name]
        assert (family.type, family.documentation) == (spec.kind, spec.documentation), name
        for sample in family.samples:
            names = set(sample.labels) - ({"le"} if spec.kind == "histogram" else set())
            assert names == set(spec.labels), (sample.name, sample.labels)


@pytest.mark.parametrize("spec", CATALOGUE, ids=lambda spec: spec.name)
def test_prometheus_client_forms_match_the_declaration(spec: MetricSpec) -> None:
    """A spec's empty family and its direct writer's header carry its name, type and help."""
    family = spec.metric()
    assert (family.name, family.type, family.documentation) == (
        spec.name,
        spec.kind,
        spec.documentation,
    )
    assert (
        spec.text.header(True)
        == f"# HELP {spec.name} {spec.documentation}\n# TYPE {spec.name} {spec.kind}\n"
    )


def test_an_instrument_of_the_wrong_kind_is_refused() -> None:
    """Asking a gauge's declaration for a counter is a bug and raises."""
    gauge = BY_NAME["driftgauge_queue_depth"]
    with pytest.raises(TypeError, match="is a gauge, not a counter"):
        gauge.counter(registry_of())


def test_buckets_are_only_for_histograms() -> None:
    """A declaration with buckets on a gauge, or a histogram without them, raises."""
    with pytest.raises(ValueError, match="buckets are for histograms"):
        MetricSpec("driftgauge_x", "gauge", "x", (), (1.0,))
    with pytest.raises(ValueError, match="buckets are for histograms"):
        MetricSpec("driftgauge_x_seconds", "histogram", "x", ())


def test_readme_share_of_rows_lacking_a_field_is_each_sidecars_own(tmp_path: Path) -> None:
    """README's missing-field share reads 0.5 for each of two replicas that each lack the field in half their rows."""
    section = README.read_text(encoding="utf-8").split("\nRates in PromQL", 1)[1]
    block = section.split("```promql\n", 1)[1].split("```", 1)[0]
    query = block.split("# share of rows whose request lacked the field", 1)[1]
    query = query.split("\n#", 1)[0].split("\n", 1)[1].strip()
    (tmp_path / "share.yml").write_text(
        yaml.safe_dump(
            {"groups": [{"name": "readme", "rules": [{"record": "share", "expr": query}]}]}
        ),
        encoding="utf-8",
    )
    field = {"model": "wine", "feature": "alcohol", "role": "input"}
    replicas = [{"job": "driftgauge", "instance": f"10.0.0.{i}:10117"} for i in (1, 2)]
    promtool_test(
        tmp_path,
        ["share.yml"],
        [
            {
                "interval": "1m",
                "input_series": [
                    series("driftgauge_missing_fields_total", field | replica, "0+30x10")
                    for replica in replicas
                ]
                + [
                    series("driftgauge_rows_total", {"model": "wine"} | replica, "0+60x10")
                    for replica in replicas
                ],
                "promql_expr_test": [
                    {
                        "expr": "share",
                        "eval_time": "5m",
                        "exp_samples": [
                            {"labels": series("share", field | replica, "")["series"], "value": 0.5}
                            for replica in replicas
                        ],
                    }
                ],
            }
        ],
    )
