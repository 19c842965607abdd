"""The dashboard `driftgauge rules` generates passes the checks of the shipped ones.

It is rendered for the config of ``tests/system/test_grafana.py``'s live fixture (the
same model, fields and windows), and every target of every panel, in every
field's row, must parse and return data on that fixture's real Prometheus fed
by a real sidecar, as an instant and as a range query.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from driftgauge.config import config_from_mapping
from driftgauge.rules.dashboards import render_dashboard
from tests.system.grafana_support import (
    DATASOURCE_REF,
    FIELDS,
    WINDOWS,
    Scraped,
    _api,
    assert_returns_data,
    substitute,
)

# The live module fixture (a real sidecar and Prometheus), shared with test_grafana.py.
from tests.system.grafana_support import scraped as scraped


def _board() -> dict[str, Any]:
    raw = {
        "model": "wine",
        "source": {"tail": {"path": "requests.jsonl"}},
        "baseline": "baseline.dgb",
        "windows": list(WINDOWS),
        "alerting": {"features": {"region": {"psi": {"warning": 0.2, "critical": 0.4}}}},
        **FIELDS,
    }
    config = config_from_mapping(raw, base=Path("."))
    return render_dashboard(config.model, config.fields, config.alerting)


BOARD = _board()


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for top in board["panels"] for p in [top, *top.get("panels", [])]]


def _targets() -> list[Any]:
    return [
        pytest.param(panel["title"], target["expr"], id=f"{panel['id']}{target['refId']}")
        for panel in _panels(BOARD)
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def test_generated_dashboard_uses_the_datasource_variable_everywhere() -> None:
    """Panels, targets and the window variable read ${datasource}; ids are unique; panels fit."""
    panels = _panels(BOARD)
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"] == DATASOURCE_REF, panel["title"]
            assert all(t["datasource"] == DATASOURCE_REF for t in panel["targets"])
    window = next(v for v in BOARD["templating"]["list"] if v["name"] == "window")
    assert window["datasource"] == DATASOURCE_REF
    assert BOARD["id"] is None and "driftgauge" in BOARD["tags"]


@pytest.mark.integration
def test_generated_dashboard_variables_resolve(scraped: Scraped) -> None:
    """The window variable offers the sidecar's windows of this model."""
    values = scraped.values(BOARD)
    assert values["window"] in WINDOWS


@pytest.mark.integration
@pytest.mark.parametrize(("title", "expr"), _targets())
def test_generated_panel_query_returns_data(scraped: Scraped, title: str, expr: str) -> None:
    """The target parses and returns data as an instant query and over the test's time span."""
    assert_returns_data(scraped, title, substitute(expr, scraped.values(BOARD)))


@pytest.mark.integration
def test_generated_dashboard_annotations_parse(scraped: Scraped) -> None:
    """The alert annotation query, with the model fixed, is valid PromQL."""
    values = scraped.values(BOARD)
    for annotation in BOARD["annotations"]["list"]:
        if "expr" in annotation:
            _api(scraped.server, "query", {"query": substitute(annotation["expr"], values)})
