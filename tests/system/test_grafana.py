"""The Grafana assets: dashboard structure, provisioning, and every panel query on real data.

The module fixture runs the real thing once: a small KServe v1 model server,
``driftgauge serve`` as a proxy in front of it with 10s and 30s windows,
traffic whose ``alcohol``, ``color_intensity`` and ``region`` drift after a
few seconds (with missing and invalid values, a route the model answers 500,
requests that time out, an unreadable body and an oversized one), and the
Debian Prometheus scraping the sidecar every second with the project's rules.
Every target of every panel, its variables resolved as Grafana would, must
then parse and return data, both as an instant and as a range query.

A second Prometheus scrapes the same sidecar through a proxy that renames the
model and two fields to names holding quotes, a backslash, a slash, regex
metacharacters, spaces and non-ASCII letters, and every query must return data
there too, its variables formatted exactly as Grafana formats them.
"""

from __future__ import annotations

import re
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from driftgauge.rules.tables import SERVICE
from tests.helpers import wait_for
from tests.rules.support import promtool_test, series
from tests.system.grafana_support import (
    BOARDS,
    DATASOURCE_REF,
    DATASOURCES,
    GRAFANA,
    NAME_VARIABLES,
    ODD,
    ODD_PREFERRED,
    PREFERRED,
    PROVIDERS,
    RULES,
    UNIT_PANELS,
    AllValue,
    Scraped,
    Value,
    _api,
    _panels,
    _query_panels,
    _targets,
    _variables,
    assert_returns_data,
    substitute,
)

# The live module fixture (a real sidecar and Prometheus), shared with test_grafana_generated.py.
from tests.system.grafana_support import scraped as scraped

# -- dashboard structure ------------------------------------------------------------


def test_dashboards_have_stable_unique_uids() -> None:
    """Both dashboards exist with their fixed uids, a current schema and the driftgauge tag."""
    uids = [board["uid"] for board in BOARDS.values()]
    assert sorted(uids) == ["driftgauge-model", "driftgauge-overview"]
    for name, board in BOARDS.items():
        assert board["uid"] == name, "file name and uid agree"
        assert board["schemaVersion"] >= 39
        assert board["id"] is None, "exported for provisioning, without a database id"
        assert "driftgauge" in board["tags"]


def test_panel_ids_are_unique_and_panels_fit_the_grid() -> None:
    """Panel ids are unique per dashboard and every panel lies within the 24-column grid."""
    for board in BOARDS.values():
        panels = list(_panels(board))
        ids = [panel["id"] for panel in panels]
        assert len(ids) == len(set(ids)), board["uid"]
        for panel in panels:
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]


def test_every_query_uses_the_datasource_variable() -> None:
    """Panels, targets, query variables and annotations all read the ${datasource} variable."""
    for board in BOARDS.values():
        variable = next(v for v in _variables(board) if v["name"] == "datasource")
        assert variable["type"] == "datasource" and variable["query"] == "prometheus"
        for panel in _query_panels(board):
            assert panel["datasource"] == DATASOURCE_REF, panel["title"]
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"] == DATASOURCE_REF, panel["title"]
        for other in _variables(board):
            if other["type"] == "query":
                assert other["datasource"] == DATASOURCE_REF, other["name"]
        for annotation in board["annotations"]["list"]:
            if not annotation.get("builtIn"):
                assert annotation["datasource"] == DATASOURCE_REF, annotation["name"]


def test_panels_drawing_each_series_tell_instances_and_versions_apart() -> None:
    """A target drawing a metric's series one by one (a bare selector) names the labels that
    tell them apart beyond the dashboard's variables: the sidecar and, with ``versions:`` on,
    the model version (canary and stable lines had one legend)."""
    bare = re.compile(r"driftgauge_[a-z0-9_]+\{")
    seen = 0
    for board in BOARDS.values():
        for panel in _query_panels(board):
            for target in panel["targets"]:
                if bare.match(target["expr"]):
                    seen += 1
                    legend = target["legendFormat"]
                    assert "{{instance}}" in legend and "{{version}}" in legend, panel["title"]
    assert seen >= 8


def test_model_dashboard_offers_model_feature_and_window_variables() -> None:
    """The drill-down selects datasource, model, feature and window from label values."""
    variables = {v["name"]: v for v in _variables(BOARDS["driftgauge-model"])}
    assert {"datasource", "model", "feature", "window", "categorical"} <= set(variables)
    assert variables["model"]["query"]["query"].startswith("label_values(")
    assert "{model=~`${model:regex}`}" in variables["feature"]["query"]["query"]


def _queries(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every target, query variable and annotation of ``board``."""
    for panel in _query_panels(board):
        for target in panel["targets"]:
            yield panel["title"], target["expr"]
    for variable in _variables(board):
        if variable["type"] == "query":
            yield f"${variable['name']}", variable["query"]["query"]
            yield f"${variable['name']}", variable["definition"]
    for annotation in board["annotations"]["list"]:
        if "expr" in annotation:
            yield annotation["name"], annotation["expr"]


def test_names_are_matched_through_grafanas_regex_format_only() -> None:
    """A model or field variable appears only as label=~`${var:regex}`.

    Grafana's Prometheus datasource escapes a plain "$var" for neither a quote nor (by
    default) correctly for an apostrophe, and ``:doublequote``, ``:singlequote`` and
    ``:json`` leave backslashes as they are; ``:regex`` escapes every metacharacter and
    backslash, and a raw string keeps the result as it is.
    """
    reference = re.compile(r"\$\{?(\w+)[^\w]?")
    for board in BOARDS.values():
        for where, query in _queries(board):
            for match in reference.finditer(query):
                if match.group(1) in NAME_VARIABLES:
                    start = query.rfind("=~`", 0, match.start())
                    assert start == match.start() - 3, (where, query)
                    assert query[match.start() :].startswith(f"${{{match.group(1)}:regex}}`")


def test_drill_down_links_percent_encode_names() -> None:
    """Links into the drill-down carry a clicked name percent-encoded (a name may hold & or #)."""
    links = [
        link["url"]
        for board in BOARDS.values()
        for panel in _query_panels(board)
        for config in [panel["fieldConfig"]["defaults"], *panel["fieldConfig"]["overrides"]]
        for link in _links(config)
    ]
    assert len(links) == 3
    for url in links:
        for match in re.finditer(r"\$\{(__[^}:]+)(?::(\w+))?\}", url):
            assert match.group(1) == "__url_time_range" or match.group(2) == "percentencode", url


def _links(config: Any) -> Iterator[dict[str, Any]]:
    """Every data link (a mapping with a url) anywhere in ``config``."""
    if isinstance(config, dict):
        if isinstance(config.get("url"), str) and "title" in config:
            yield config
        for value in config.values():
            yield from _links(value)
    elif isinstance(config, list):
        for value in config:
            yield from _links(value)


def test_multi_value_variables_are_only_matched_as_regex() -> None:
    """A variable that can hold several values (or All) only appears after =~."""
    for board in BOARDS.values():
        multi = [v["name"] for v in _variables(board) if v.get("multi") or v.get("includeAll")]
        for panel in _query_panels(board):
            for target in panel["targets"]:
                for name in multi:
                    assert not re.search(rf'[^=~!]=\s*"\${name}"', target["expr"]), panel["title"]


def _alert_threshold(alert: str, metric: str) -> float:
    """The number ``metric`` is compared with (``>`` or ``<``) in the expression of ``alert``."""
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    rules = {r["alert"]: r["expr"] for g in groups for r in g["rules"] if "alert" in r}
    return float(re.findall(rf"{metric}\{{[^}}]*\}} [<>] ([0-9.]+)", rules[alert])[0])


def _shown_thresholds(panel: dict[str, Any], name: str) -> Iterator[tuple[str, list[float]]]:
    """Threshold values of a panel titled with ``name``, and of its columns named with it."""
    if re.search(rf"\b{name}\b", panel["title"]):
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        yield panel["title"], [step["value"] for step in steps[1:]]
    for override in panel["fieldConfig"]["overrides"]:
        column = str(override["matcher"].get("options"))
        if re.search(rf"\b{name}\b", column):
            for item in override["properties"]:
                if item["id"] == "thresholds":
                    values = [step["value"] for step in item["value"]["steps"][1:]]
                    yield f"{panel['title']} / {column}", values


def test_psi_panels_have_the_alert_rule_thresholds() -> None:
    """Every panel or table column showing PSI is coloured at the drift alerts' effect-size floors 0.02 and 0.25."""
    expected = [
        _alert_threshold("DriftgaugeFeatureDriftWarning", "driftgauge:psi_ready"),
        _alert_threshold("DriftgaugeFeatureDriftCritical", "driftgauge:psi_ready"),
    ]
    assert expected == [0.02, 0.25]
    for board in BOARDS.values():
        shown = [item for panel in _query_panels(board) for item in _shown_thresholds(panel, "PSI")]
        assert len(shown) >= 4, board["uid"]
        for where, values in shown:
            assert values == expected, where


def test_the_readme_states_the_psi_colours() -> None:
    """grafana/README.md names the PSI thresholds the panels are coloured at."""
    readme = " ".join((GRAFANA / "README.md").read_text(encoding="utf-8").split())
    found = re.search(
        r"PSI is coloured at ([0-9.]+) \(warning\) and ([0-9.]+) \(critical\)", readme
    )
    assert found, "the README no longer says how PSI is coloured"
    shown = {
        tuple(values)
        for board in BOARDS.values()
        for panel in _query_panels(board)
        for _where, values in _shown_thresholds(panel, "PSI")
    }
    assert shown == {(float(found.group(1)), float(found.group(2)))}


def test_ks_panels_have_the_ks_alert_threshold() -> None:
    """Every panel or column showing the KS statistic is coloured at the KS alert's 0.1."""
    expected = [_alert_threshold("DriftgaugeFeatureKSDrift", "driftgauge_ks_statistic")]
    for board in BOARDS.values():
        shown = [item for panel in _query_panels(board) for item in _shown_thresholds(panel, "KS")]
        assert shown, board["uid"]
        for where, values in shown:
            assert values == expected, where


def test_invalid_value_panels_read_the_share_the_invalid_values_alert_reads(
    tmp_path: Path,
) -> None:
    """Half of alcohol's values wrong-typed reads 50%, as DriftgaugeInvalidValuesHigh's ratio does;
    an unseen category's share of region stays its share of observations."""
    values: dict[str, Value] = PREFERRED | {"__rate_interval": "5m", "datasource": "prometheus"}
    panels = [
        (board["uid"], panel)
        for board in BOARDS.values()
        for panel in _query_panels(board)
        if panel["title"].startswith("Invalid values")
    ]
    assert {uid for uid, _ in panels} == {"driftgauge-overview", "driftgauge-model"}
    rules = [
        {"record": f"panel_{i}", "expr": substitute(panel["targets"][0]["expr"], values)}
        for i, (_, panel) in enumerate(panels)
    ]
    (tmp_path / "panels.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}), encoding="utf-8"
    )
    sidecar = {"job": "driftgauge", "instance": "10.0.0.1:10117", "model": "wine"}
    alcohol, region = sidecar | {"feature": "alcohol"}, sidecar | {"feature": "region"}
    numeric_reasons = {
        "wrong_type": "0+30x10",
        "nan": "0x10",
        "inf": "0x10",
        "out_of_range": "0x10",
    }
    inputs = [
        series("driftgauge_observations_total", alcohol | {"role": "input"}, "0+30x10"),
        series("driftgauge_observations_total", region | {"role": "input"}, "0+60x10"),
        series(
            "driftgauge_invalid_total",
            region | {"role": "input", "reason": "unseen_category"},
            "0+6x10",
        ),
    ] + [
        series("driftgauge_invalid_total", alcohol | {"role": "input", "reason": reason}, values)
        for reason, values in numeric_reasons.items()
    ]
    shares = {"wrong_type": 0.5, "nan": 0.0, "inf": 0.0, "out_of_range": 0.0}
    expected = {
        "driftgauge-model": [({"reason": r}, v) for r, v in shares.items()],
        "driftgauge-overview": [
            ({"model": "wine", "feature": "alcohol", "reason": r}, v) for r, v in shares.items()
        ]
        + [({"model": "wine", "feature": "region", "reason": "unseen_category"}, 0.1)],
    }
    promtool_test(
        tmp_path,
        ["panels.yml"],
        [
            {
                "interval": "1m",
                "input_series": inputs,
                "promql_expr_test": [
                    {
                        "expr": f"panel_{i}",
                        "eval_time": "5m",
                        "exp_samples": [
                            {"labels": series(f"panel_{i}", labels, "")["series"], "value": v}
                            for labels, v in expected[uid]
                        ],
                    }
                    for i, (uid, _) in enumerate(panels)
                ],
            }
        ],
    )


# The proxy's own metrics: a sidecar exports them once, under no model label.
SERVICE_METRICS = (
    "driftgauge_requests_total",
    "driftgauge_upstream_errors_total",
    "driftgauge_upstream_latency_seconds_bucket",
    "driftgauge_overhead_seconds_bucket",
    "driftgauge_request_size_bytes_bucket",
    "driftgauge_response_size_bytes_bucket",
    "driftgauge_queue_depth",
)


@pytest.mark.parametrize("selected", [["iris"], ["wine", "iris"], AllValue(".*")])
def test_overview_service_panels_follow_the_selected_models(
    tmp_path: Path, selected: Value
) -> None:
    """Each service target of the overview reads the sidecars serving the selected models: the
    second model of a two-model sidecar (whose service series carry no model label) shows that
    sidecar's requests, once however many of its models are selected, and a sidecar serving
    another model only is left out unless All is selected."""
    board = BOARDS["driftgauge-overview"]
    targets = [
        (panel["title"], target["legendFormat"], target["expr"])
        for panel in _query_panels(board)
        for target in panel["targets"]
        if any(metric in target["expr"] for metric in SERVICE_METRICS)
    ]
    assert len(targets) == 14
    values: dict[str, Value] = {"model": selected, "window": "5m", "__rate_interval": "5m"}
    rules = [
        {"record": f"panel_{i}", "expr": substitute(e, values)} for i, (*_, e) in enumerate(targets)
    ]
    (tmp_path / "panels.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}), encoding="utf-8"
    )
    both = {"job": "driftgauge", "instance": "10.0.0.1:10117"}  # serves wine, then iris
    alone = {"job": "driftgauge", "instance": "10.0.0.2:10117"}  # serves wine2 alone
    inputs = [
        series("driftgauge_baseline_info", both | {"model": "wine"}, "1x10"),
        series("driftgauge_baseline_info", both | {"model": "iris"}, "1x10"),
        series("driftgauge_baseline_info", alone | {"model": "wine2"}, "1x10"),
    ]
    for sidecar, per_minute in ((both, 60), (alone, 600)):
        inputs += [
            series("driftgauge_requests_total", sidecar | {"code": "200"}, f"0+{per_minute}x10"),
            series("driftgauge_upstream_errors_total", sidecar | {"reason": "timeout"}, "0+6x10"),
            series("driftgauge_queue_depth", sidecar, "3x10"),
        ]
        for metric in SERVICE_METRICS[2:6]:
            for le, count in (("0.001", per_minute // 2), ("+Inf", per_minute)):
                inputs.append(series(metric, sidecar | {"le": le}, f"0+{count}x10"))
    sidecars = 2 if isinstance(selected, AllValue) else 1
    tests = [
        {
            "expr": f"count(panel_{i})",
            "eval_time": "5m",
            "exp_samples": [
                {
                    "labels": "{}",
                    "value": sidecars if re.search(r"by \((model|instance)", expr) else 1,
                }
            ],
        }
        for i, (*_, expr) in enumerate(targets)
    ]
    rate = next(i for i, (title, *_) in enumerate(targets) if title == "Request rate")
    tests.append(
        {
            "expr": f"panel_{rate}",
            "eval_time": "5m",
            "exp_samples": [{"labels": f"panel_{rate}", "value": 11.0 if sidecars == 2 else 1.0}],
        }
    )
    promtool_test(
        tmp_path,
        ["panels.yml"],
        [{"interval": "1m", "input_series": inputs, "promql_expr_test": tests}],
    )


# Names of a two-model sidecar's models, with every character the odd-names tests cover.
FIRST, SECOND = ODD["wine"], "iris \"v2\" 'ü' \\ /x (cm)"


def _firing(alertname: str, instance: str) -> str:
    return series("", {"alertname": alertname, "instance": instance}, "")["series"]


def _alert_inputs() -> list[dict[str, str]]:
    """Series on which the shipped rules raise, at 20m: the proxy's DriftgaugeUpstreamErrors on
    10.0.0.1 (serving FIRST then SECOND, under no model label) and on 10.0.0.2 (wine2 alone),
    FIRST's own DriftgaugeMissingValuesHigh on 10.0.0.1, and DriftgaugeSidecarDown for
    10.0.0.3 (serving SECOND alone, down since 3m)."""
    both = {"job": "driftgauge", "instance": "10.0.0.1:10117"}
    alone = {"job": "driftgauge", "instance": "10.0.0.2:10117"}
    down = {"job": "driftgauge", "instance": "10.0.0.3:10117"}
    inputs = [
        series("driftgauge_baseline_info", both | {"model": FIRST}, "1x30"),
        series("driftgauge_baseline_info", both | {"model": SECOND}, "1x30"),
        series("driftgauge_baseline_info", alone | {"model": "wine2"}, "1x30"),
        series("driftgauge_baseline_info", down | {"model": SECOND}, "1x3 stale"),
        series("up", down, "1x3 0x27"),
    ]
    for sidecar in (both, alone):  # half the requests fail
        inputs += [
            series("driftgauge_requests_total", sidecar | {"code": code}, "0+60x30")
            for code in ("200", "502")
        ]
    field = both | {"model": FIRST, "feature": "alcohol", "role": "input"}
    inputs += [
        series("driftgauge_missing_total", field, "0+10x30"),
        series("driftgauge_observations_total", field, "0+90x30"),
    ]
    return inputs


def test_the_alert_queries_single_out_the_rules_service_alerts() -> None:
    """The alerts the Firing alerts panel and the annotations find through the sidecar are the
    service alerts of the shipped and the generated rules, less DriftgaugeSidecarDown."""
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    (service,) = [g["rules"] for g in groups if g["name"] == "driftgauge-service"]
    shipped = {r["alert"] for r in service} - {"DriftgaugeSidecarDown"}
    assert shipped == {name for name, *_ in SERVICE}
    overview = BOARDS["driftgauge-overview"]
    (stat,) = [p for p in _query_panels(overview) if p["title"] == "Firing alerts"]
    queries = [stat["targets"][0]["expr"]] + [
        a["expr"] for board in BOARDS.values() for a in board["annotations"]["list"] if "expr" in a
    ]
    for query in queries:
        lists = re.findall(r'alertname[=!]~"(Driftgauge\w+(?:\|Driftgauge\w+)*)"', query)
        assert [set(names.split("|")) for names in lists] == [shipped, shipped], query


@pytest.mark.parametrize(
    ("selected", "expected"),
    [
        ([SECOND], {("DriftgaugeUpstreamErrors", "1"), ("DriftgaugeSidecarDown", "3")}),
        ([FIRST], {("DriftgaugeUpstreamErrors", "1"), ("DriftgaugeMissingValuesHigh", "1")}),
        (
            [FIRST, SECOND],
            {
                ("DriftgaugeUpstreamErrors", "1"),
                ("DriftgaugeMissingValuesHigh", "1"),
                ("DriftgaugeSidecarDown", "3"),
            },
        ),
        (["wine2"], {("DriftgaugeUpstreamErrors", "2")}),
        (
            AllValue(".*"),
            {
                ("DriftgaugeUpstreamErrors", "1"),
                ("DriftgaugeMissingValuesHigh", "1"),
                ("DriftgaugeUpstreamErrors", "2"),
                ("DriftgaugeSidecarDown", "3"),
            },
        ),
    ],
)
def test_firing_alerts_follow_the_selected_models(
    tmp_path: Path, selected: Value, expected: set[tuple[str, str]]
) -> None:
    """The overview's Firing alerts and both dashboards' alert annotations, on the alerts the
    shipped rules raise, count a sidecar's service alerts (raised on its proxy's series, under
    no model label) and its DriftgaugeSidecarDown for every model it serves, and a
    model's own alerts for that model only."""
    overview = BOARDS["driftgauge-overview"]
    (stat,) = [p for p in _query_panels(overview) if p["title"] == "Firing alerts"]
    values: dict[str, Value] = {"model": selected}
    tests: list[dict[str, Any]] = [
        {
            "expr": substitute(stat["targets"][0]["expr"], values),
            "eval_time": "20m",
            "exp_samples": [{"labels": "{}", "value": len(expected)}],
        }
    ]
    boards = [overview]
    if isinstance(selected, list) and len(selected) == 1:  # the model dashboard picks one
        boards.append(BOARDS["driftgauge-model"])
    for board in boards:
        (annotation,) = [a for a in board["annotations"]["list"] if "expr" in a]
        model: Value = selected if board is overview else selected[0]
        query = substitute(annotation["expr"], {"model": model})
        tests.append(
            {
                "expr": f"count by (alertname, instance) ({query})",
                "eval_time": "20m",
                "exp_samples": [
                    {"labels": _firing(name, f"10.0.0.{host}:10117"), "value": 1}
                    for name, host in sorted(expected)
                ],
            }
        )
    (tmp_path / RULES.name).write_bytes(RULES.read_bytes())
    promtool_test(
        tmp_path,
        [RULES.name],
        [{"interval": "1m", "input_series": _alert_inputs(), "promql_expr_test": tests}],
    )


@pytest.mark.parametrize(
    ("selected", "queue_full", "feedback_expired"),
    [
        ([SECOND], 0.1, 2.0),
        ([FIRST], 0.1, 1.0),
        ([FIRST, SECOND], 0.1, 3.0),
        (["wine2"], 10.0, 10.0),
        (AllValue(".*"), 10.1, 13.0),
    ],
)
def test_drop_panels_show_the_sidecars_drops_and_the_models_own(
    tmp_path: Path, selected: Value, queue_full: float, feedback_expired: float
) -> None:
    """What a sidecar's source dropped before routing (no model label) shows for every model it
    serves, once however many are selected, and a model's expired unlabelled predictions (its
    own) for that model only; on the overview and the model dashboard."""
    both = {"job": "driftgauge", "instance": "10.0.0.1:10117"}
    alone = {"job": "driftgauge", "instance": "10.0.0.2:10117"}
    per_minute = [  # every model exports its reasons, and every source its own, from 0
        (both, FIRST, "feedback_expired", 60),
        (both, SECOND, "feedback_expired", 120),
        (alone, "wine2", "feedback_expired", 600),
    ]
    inputs = (
        [
            series(
                "driftgauge_dropped_total",
                sidecar | {"model": model, "reason": reason},
                f"0+{n}x10",
            )
            for sidecar, model, reason, n in per_minute
        ]
        + [
            series(
                "driftgauge_source_dropped_total", sidecar | {"reason": "queue_full"}, f"0+{n}x10"
            )
            for sidecar, n in ((both, 6), (alone, 600))
        ]
        + [
            series("driftgauge_baseline_info", sidecar | {"model": model}, "1x10")
            for sidecar, model in ((both, FIRST), (both, SECOND), (alone, "wine2"))
        ]
    )
    boards = [BOARDS["driftgauge-overview"]]
    if isinstance(selected, list) and len(selected) == 1:  # the model dashboard picks one
        boards.append(BOARDS["driftgauge-model"])
    tests = []
    for board in boards:
        (own, source) = [
            t["expr"]
            for family in ("driftgauge_dropped_total", "driftgauge_source_dropped_total")
            for panel in _query_panels(board)
            for t in panel["targets"]
            if f"{family}{{" in t["expr"] or f"{family}[" in t["expr"]
        ]
        model: Value = selected if board is boards[0] else selected[0]
        for target, reason, value in (
            (own, "feedback_expired", feedback_expired),
            (source, "queue_full", queue_full),
        ):
            query = substitute(target, {"model": model, "__rate_interval": "5m"})
            tests.append(
                {
                    "expr": f"sum by (reason) ({query})",
                    "eval_time": "5m",
                    "exp_samples": [{"labels": f'{{reason="{reason}"}}', "value": value}],
                }
            )
    promtool_test(
        tmp_path,
        [],
        [{"interval": "1m", "input_series": inputs, "promql_expr_test": tests}],
    )


@pytest.mark.parametrize(
    ("selected", "sidecars"),
    [([SECOND], 1), ([FIRST, SECOND], 1), (["wine2"], 1), (AllValue(".*"), 2)],
)
def test_the_sidecars_stat_counts_a_multi_model_sidecar_once(
    tmp_path: Path, selected: Value, sidecars: int
) -> None:
    """A sidecar serving two selected models (a driftgauge_baseline_info series each) is one."""
    both = {"job": "driftgauge", "instance": "10.0.0.1:10117"}
    alone = {"job": "driftgauge", "instance": "10.0.0.2:10117"}
    inputs = [
        series("driftgauge_baseline_info", sidecar | {"model": model}, "1x10")
        for sidecar, model in ((both, FIRST), (both, SECOND), (alone, "wine2"))
    ]
    (stat,) = [p for p in _query_panels(BOARDS["driftgauge-overview"]) if p["title"] == "Sidecars"]
    test = {
        "expr": substitute(stat["targets"][0]["expr"], {"model": selected}),
        "eval_time": "5m",
        "exp_samples": [{"labels": "{}", "value": sidecars}],
    }
    promtool_test(
        tmp_path, [], [{"interval": "1m", "input_series": inputs, "promql_expr_test": [test]}]
    )


def test_psi_heat_map_and_top_features_cover_the_overview() -> None:
    """The overview has a PSI-by-feature heat map over time and a topk of drifting features."""
    panels = list(_query_panels(BOARDS["driftgauge-overview"]))
    heat = [p for p in panels if p["type"] in {"status-history", "state-timeline", "heatmap"}]
    assert any("by (model, feature)" in t["expr"] for p in heat for t in p["targets"])
    top = [p for p in panels if p["type"] in {"bargauge", "table"}]
    assert any(t["expr"].startswith("topk(") for p in top for t in p["targets"])


def test_every_visual_panel_has_a_unit() -> None:
    """Timeseries, stat, bar and status panels all set a unit."""
    for board in BOARDS.values():
        for panel in _query_panels(board):
            if panel["type"] in UNIT_PANELS:
                assert panel["fieldConfig"]["defaults"].get("unit"), panel["title"]


def test_dashboards_link_to_each_other() -> None:
    """The overview links to the drill-down and back, keeping the time range."""
    pairs = {"driftgauge-overview": "driftgauge-model", "driftgauge-model": "driftgauge-overview"}
    for name, other in pairs.items():
        links = [link for link in BOARDS[name]["links"] if f"/d/{other}" in link.get("url", "")]
        assert links, name
        assert all(link["keepTime"] for link in links)


# -- provisioning -------------------------------------------------------------------


def test_datasource_provisioning_matches_the_dashboards() -> None:
    """The provisioned Prometheus has the uid the dashboards' datasource variable defaults to."""
    document = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))
    assert document["apiVersion"] == 1
    (source,) = document["datasources"]
    assert source["type"] == "prometheus" and source["uid"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    for board in BOARDS.values():
        variable = next(v for v in _variables(board) if v["type"] == "datasource")
        assert variable["current"]["value"] == source["uid"]


def test_dashboard_provisioning_loads_the_mounted_folder() -> None:
    """The provider reads /var/lib/grafana/dashboards, where the README mounts grafana/dashboards."""
    document = yaml.safe_load(PROVIDERS.read_text(encoding="utf-8"))
    assert document["apiVersion"] == 1
    (provider,) = document["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    readme = (GRAFANA / "README.md").read_text(encoding="utf-8")
    assert "grafana/dashboards:/var/lib/grafana/dashboards" in readme
    assert "/etc/grafana/provisioning" in readme


# -- against a real Prometheus --------------------------------------------------------


@pytest.mark.integration
def test_variable_queries_return_values(scraped: Scraped) -> None:
    """Each query variable resolves to values, including the test's model, feature and window."""
    for board in BOARDS.values():
        values = scraped.values(board)
        for name in ("model", "window"):
            assert values[name] in {PREFERRED[name], ".*"}, (board["uid"], name)
    model = scraped.values(BOARDS["driftgauge-model"])
    assert {k: model[k] for k in PREFERRED} == PREFERRED
    feature = next(v for v in _variables(BOARDS["driftgauge-model"]) if v["name"] == "feature")
    features = scraped.label_values(substitute(feature["query"]["query"], model))
    assert features == sorted(["alcohol", "ash", "color_intensity", "region", "class", "score"])


@pytest.mark.integration
@pytest.mark.parametrize(("dashboard", "title", "expr"), list(_targets()))
def test_panel_query_returns_data(scraped: Scraped, dashboard: str, title: str, expr: str) -> None:
    """The target parses and returns data as an instant query and over the test's time span."""
    assert_returns_data(scraped, title, substitute(expr, scraped.values(BOARDS[dashboard])))


def _odd(scraped: Scraped) -> Scraped:
    assert scraped.odd is not None
    return scraped.odd


@pytest.mark.integration
def test_variable_queries_offer_odd_names(scraped: Scraped) -> None:
    """With quotes, backslash, slash, metacharacters and non-ASCII in the names, the variables resolve to them."""
    odd = _odd(scraped)
    for board in BOARDS.values():
        assert odd.values(board)["model"] in (ODD["wine"], [ODD["wine"]]), board["uid"]
    model = odd.values(BOARDS["driftgauge-model"])
    assert {k: model[k] for k in ODD_PREFERRED} == ODD_PREFERRED
    feature = next(v for v in _variables(BOARDS["driftgauge-model"]) if v["name"] == "feature")
    features = odd.label_values(substitute(feature["query"]["query"], model))
    assert features == sorted(
        [ODD["alcohol"], "ash", "color_intensity", ODD["region"], "class", "score"]
    )


@pytest.mark.integration
@pytest.mark.parametrize(("dashboard", "title", "expr"), list(_targets()))
def test_panel_query_returns_data_for_odd_names(
    scraped: Scraped, dashboard: str, title: str, expr: str
) -> None:
    """Each target returns data when the model and fields have odd names, formatted as Grafana does."""
    odd = _odd(scraped)
    assert_returns_data(odd, title, substitute(expr, odd.values(BOARDS[dashboard])))


@pytest.mark.integration
def test_a_plain_quoted_variable_breaks_on_odd_names(scraped: Scraped) -> None:
    """Why the regex format: Grafana's default escaping of model="$model" yields invalid PromQL."""
    odd = _odd(scraped)
    query = substitute('driftgauge_baseline_info{model="$model"}', {"model": ODD["wine"]})
    url = f"{odd.server.url}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=10)
    refused.value.close()
    assert refused.value.code == 400
    escaped = substitute(
        "driftgauge_baseline_info{model=~`${model:regex}`}", {"model": ODD["wine"]}
    )
    assert _api(odd.server, "query", {"query": escaped})["result"]


@pytest.mark.integration
def test_annotation_queries_parse(scraped: Scraped) -> None:
    """The alert annotations' queries are valid PromQL with the variables filled in, odd names too."""
    for view in (scraped, _odd(scraped)):
        for board in BOARDS.values():
            values = view.values(board)
            for annotation in board["annotations"]["list"]:
                if "expr" in annotation:
                    _api(view.server, "query", {"query": substitute(annotation["expr"], values)})


@pytest.mark.integration
def test_drift_shows_on_the_heat_map_only_after_it_starts(scraped: Scraped) -> None:
    """On the heat map, alcohol stays below 0.1 before the drift and ends above 0.25."""
    board = BOARDS["driftgauge-overview"]
    heat = next(p for p in _query_panels(board) if p["type"] == "status-history")
    query = substitute(heat["targets"][0]["expr"], scraped.values(board))

    def alcohol() -> list[tuple[float, float]]:
        params = {"query": query, "start": scraped.started, "end": time.time(), "step": 1.0}
        series = _api(scraped.server, "query_range", params)["result"]
        found = next(s for s in series if s["metric"]["feature"] == "alcohol")
        return [(float(t), float(v)) for t, v in found["values"]]

    before = [v for t, v in alcohol() if t < scraped.world.drift_started]
    assert before and float(np.median(before)) < 0.1
    # The short window fills with drifted traffic at the traffic's pace: on a busy
    # machine that can take a few more seconds than the fixture waited.
    wait_for(lambda: alcohol()[-1][1] > 0.25, timeout=40, what="alcohol's PSI above 0.25")
