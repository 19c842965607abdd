"""The dashboard `driftgauge rules` generates passes the checks of the shipped ones.

It is rendered for the config of ``tests/system/test_grafana.py``'s live fixture (the
same model, fields and windows), and every target of every panel, in every
field's row, must parse and return data on that fixture's real Prometheus fed
by a real sidecar, as an instant and as a range query. So must the layout of a
wide model (a row per field type repeated over a field variable), rendered for
the same fields, also for the fixture's odd names with the variables formatted
as Grafana formats them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from driftgauge.config import config_from_mapping
from driftgauge.rules.dashboards import FIELD_ROWS_MAX, render_dashboard
from tests.system.grafana_support import (
    DATASOURCE_REF,
    FIELDS,
    ODD,
    WINDOWS,
    Scraped,
    _api,
    assert_returns_data,
    substitute,
)

# The live module fixture (a real sidecar and Prometheus), shared with test_grafana.py.
from tests.system.grafana_support import scraped as scraped


def _board(names: dict[str, str] | None = None, rows_up_to: int = FIELD_ROWS_MAX) -> dict[str, Any]:
    """The dashboard of the fixture's model, its model and field names renamed by ``names``."""
    name = (names or {}).get
    raw = {
        "model": name("wine", "wine"),
        "source": {"tail": {"path": "requests.jsonl"}},
        "baseline": "baseline.dgb",
        "windows": list(WINDOWS),
        # region's row is its own in the wide layout too, coloured at these
        "alerting": {
            "features": {name("region", "region"): {"psi": {"warning": 0.2, "critical": 0.4}}}
        },
        **{
            role: [{**field, "name": name(field["name"], field["name"])} for field in fields]
            for role, fields in FIELDS.items()
        },
    }
    config = config_from_mapping(raw, base=Path("."))
    return render_dashboard(config.model, config.fields, config.alerting, rows_up_to)


BOARD = _board()
# The wide layout for the same fields, and for the names the odd-names Prometheus sees.
SHARED = _board(rows_up_to=0)
SHARED_ODD = _board(ODD, rows_up_to=0)


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for top in board["panels"] for p in [top, *top.get("panels", [])]]


def _targets(board: dict[str, Any] = BOARD) -> list[Any]:
    return [
        pytest.param(panel["title"], target["expr"], id=f"{panel['id']}{target['refId']}")
        for panel in _panels(board)
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


@pytest.mark.parametrize("board", [BOARD, SHARED], ids=["rows", "shared"])
def test_generated_dashboard_uses_the_datasource_variable_everywhere(board: dict[str, Any]) -> None:
    """Panels, targets and the query variables read ${datasource}; ids are unique; panels fit."""
    panels = _panels(board)
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"] == DATASOURCE_REF, panel["title"]
            assert all(t["datasource"] == DATASOURCE_REF for t in panel["targets"])
    for variable in board["templating"]["list"][1:]:
        assert variable["datasource"] == DATASOURCE_REF
    assert board["id"] is None and "driftgauge" in board["tags"]


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


@pytest.mark.integration
def test_shared_rows_variables_offer_the_fields_of_their_type(scraped: Scraped) -> None:
    """The wide layout's variables offer the model's numeric and categorical fields, odd names too."""
    for view, board, odd in ((scraped, SHARED, {}), (scraped.odd, SHARED_ODD, ODD)):
        assert view is not None
        variables = {v["name"]: v for v in board["templating"]["list"]}
        offered = {
            name: view.label_values(variables[name]["query"]["query"])
            for name in ("feature", "categorical")
        }
        numeric = [f["name"] for f in [*FIELDS["features"], *FIELDS["predictions"]]]
        categorical = ["region", "class"]
        assert offered == {
            "feature": sorted(odd.get(n, n) for n in numeric if n not in categorical),
            "categorical": sorted(odd.get(n, n) for n in categorical),
        }
        assert view.values(board)["window"] in WINDOWS


@pytest.mark.integration
@pytest.mark.parametrize(("title", "expr"), _targets(SHARED))
def test_shared_panel_query_returns_data(scraped: Scraped, title: str, expr: str) -> None:
    """Each target of the wide layout returns data for the fields its variables pick."""
    assert_returns_data(scraped, title, substitute(expr, scraped.values(SHARED)))


@pytest.mark.integration
@pytest.mark.parametrize(("title", "expr"), _targets(SHARED_ODD))
def test_shared_panel_query_returns_data_for_odd_names(
    scraped: Scraped, title: str, expr: str
) -> None:
    """... and when the model and fields have odd names, formatted as Grafana does."""
    assert scraped.odd is not None
    assert_returns_data(scraped.odd, title, substitute(expr, scraped.odd.values(SHARED_ODD)))
