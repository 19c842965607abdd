"""A Grafana dashboard for one model, derived from the shipped per-model dashboard.

``grafana/dashboards/driftgauge-model.json`` (packaged as
``driftgauge/rules/assets/driftgauge-model.json``) selects a model and a field with
variables. The generated one fixes the model. Up to :data:`FIELD_ROWS_MAX` fields, it
gives every configured field a collapsed row of its own holding the template's
per-field panels that apply to its type (KS and quantiles for numeric fields,
category shares and chi-squared for categorical ones), with the model and field
written into the queries as escaped PromQL strings (no variable interpolation
can break a name such as ``a"b\\c``), PSI and KS panels coloured at the field's
alert thresholds; only ``datasource`` and ``window`` remain variables. A wider
model's fields share one row per type instead, repeated for each field its
variable selects (``feature`` for numeric fields, ``categorical`` for categorical
ones, matched as the shipped dashboard matches them, coloured at the model's
thresholds): a field's row is about 50 kB of JSON, and 2,000 of them made a
95 MB dashboard. The first :data:`FIELD_ROWS_MAX` fields with thresholds of
their own, and names holding a backtick, which no variable can select, keep
rows of their own there (the variables leave them out). The
service row reads the sidecars that serve the model (joined on their
``driftgauge_baseline_info``), which export their requests under their first
model's label, so every model of a multi-model sidecar shows them; the alert
annotations likewise mark the service alerts raised on those series, and
``DriftgaugeSidecarDown``, of the sidecars serving the model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from importlib import resources
from typing import Any, Literal, TypeAlias

from driftgauge.config import FieldSpec
from driftgauge.config.alerting import AlertingConfig, AlertThresholds
from driftgauge.rules.promql import promql_string
from driftgauge.rules.writing import slug

__all__ = ["FIELD_ROWS_MAX", "dashboard_file", "dashboard_uid", "render_dashboard", "template"]

# Template rows (by title, before substitution) whose panels are per field, by field type.
_FIELD_ROWS = {
    "numeric": ("now", "Drift of", "Distribution of", "Data quality of"),
    "categorical": ("now", "Drift of", "Categories of", "Distribution of", "Data quality of"),
}
_NUMERIC_ONLY = ("driftgauge_ks_", "driftgauge_feature_quantile", "driftgauge_feature_mean")
_CATEGORICAL_ONLY = ("driftgauge_chi2_pvalue",)
_FIELD_VARIABLES = re.compile(r"\$\{?(feature|categorical)\}?")
# Up to this many fields, each has a row of its own; past it the fields share a row per type.
FIELD_ROWS_MAX = 20
# Each type's variable in the shared rows, and the series listing the model's fields of that
# type, from the baseline's gauges (exported before any traffic).
_TYPE_VARIABLES = {
    "numeric": ("feature", "driftgauge_baseline_mean{{model={model}}}"),
    "categorical": (
        "categorical",
        'driftgauge_baseline_bin_ratio{{model={model}, bin="__unseen__"}}',
    ),
}
# What Grafana's regex format escapes (``escapeRegex`` of @grafana/data), and ``/``, which ends
# a variable's regex.
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")
_MODEL_VARIABLE = re.compile(r"\$\{?model\}?")


def template() -> dict[str, Any]:
    """The shipped per-model dashboard."""
    text = (
        resources.files("driftgauge.rules")
        .joinpath("assets/driftgauge-model.json")
        .read_text("utf-8")
    )
    board: dict[str, Any] = json.loads(text)
    return board


def dashboard_uid(model: str) -> str:
    return slug(f"driftgauge-model-{model}")


def dashboard_file(model: str) -> str:
    return f"dashboards/{dashboard_uid(model)}.json"


def _rows(board: dict[str, Any]) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each row of the template with its panels (nested when collapsed, else following it)."""
    row: dict[str, Any] | None = None
    panels: list[dict[str, Any]] = []
    for panel in board["panels"]:
        if panel["type"] == "row":
            if row is not None:
                yield row, panels
            row, panels = panel, list(panel.get("panels", []))
        else:
            panels.append(panel)
    if row is not None:
        yield row, panels


def _replace(value: Any, expr: dict[str, str], text: dict[str, str]) -> Any:
    """``value`` with the variables of ``expr`` replaced in queries and of ``text`` elsewhere.

    A copy: every dict and list is new, so the template's panels are never changed.
    """
    if isinstance(value, dict):
        return {
            key: (
                _substitute(item, expr, quoted=True)
                if key == "expr" and isinstance(item, str)
                else _replace(item, expr, text)
            )
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_replace(item, expr, text) for item in value]
    if isinstance(value, str):
        return _substitute(value, text, quoted=False)
    return value


# Where a template panel's variables are: the keys (or list indices) of the parts holding
# one, each with its own places, and True for a string holding one.
_Places: TypeAlias = "dict[str | int, _Places] | Literal[True]"


def _places(value: Any) -> _Places | None:
    """Where ``value``'s variables are (strings holding a ``$``); None if it has none."""
    if isinstance(value, str):
        return True if "$" in value else None
    items: Iterable[tuple[str | int, Any]] = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    places = {key: where for key, item in items if (where := _places(item)) is not None}
    return places or None


def _fill(
    value: Any, places: dict[str | int, _Places], expr: dict[str, str], text: dict[str, str]
) -> Any:
    """``value`` as :func:`_replace` makes it, copying only the dicts and lists on the way to
    ``places`` (:func:`_places` of ``value``): the other parts are ``value``'s own."""
    copy: Any = dict(value) if isinstance(value, dict) else list(value)
    for key, where in places.items():
        item = value[key]
        if where is True:
            copy[key] = (
                _substitute(item, expr, quoted=True)
                if key == "expr"
                else _substitute(item, text, quoted=False)
            )
        else:
            copy[key] = _fill(item, where, expr, text)
    return copy


def _literal(text: str) -> Callable[[re.Match[str]], str]:
    """A ``re.sub`` replacement inserting ``text`` as it is (no backslash processing)."""
    return lambda _match: text


def _substitute(value: str, names: dict[str, str], quoted: bool) -> str:
    """``value`` with each variable of ``names`` replaced by its name.

    In a query (``quoted``) the template's matcher ``label=~`${feature:regex}``` (a
    regex-escaped value in a raw string, see grafana/README.md) becomes
    ``label="<escaped literal>"``, as does a plain ``"$feature"``.
    """
    if "$" not in value:  # most of a panel's strings: no variable to look for
        return value
    for variable, name in names.items():
        if variable not in value:  # as $window, ${datasource} or $__rate_interval
            continue
        pattern = r"\$(?:\{" + variable + r"(?::\w+)?\}|" + variable + r"\b)"
        if quoted:
            literal = promql_string(name)
            value = re.sub(f"=~`{pattern}`", _literal("=" + literal), value)
            value = re.sub(f'"{pattern}"', _literal(literal), value)
        value = re.sub(pattern, _literal(name), value)
    return value


def _all(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from panel.get("panels", [])


def _uses(panel: dict[str, Any], prefixes: Sequence[str]) -> bool:
    return any(p in t.get("expr", "") for t in panel.get("targets", []) for p in prefixes)


def _per_field(panel: dict[str, Any]) -> bool:
    text = json.dumps([t.get("expr", "") for t in panel.get("targets", [])])
    return bool(_FIELD_VARIABLES.search(text))


def _colour(panel: dict[str, Any], title: str, t: AlertThresholds) -> None:
    """PSI and KS thresholds at the field's alert thresholds (the template has 0.02/0.25, 0.1).

    The template's significance gate line (the noise floor times the 99.9% χ² gate, z 3.09)
    takes the field's warning z.

    ``title`` is the template's title, so a field named like "KS" changes nothing. What it
    changes below the panel is replaced, not modified: fields' panels share the rest.
    """
    if re.search(r"\bPSI\b", title):
        values = {0.02: t.psi_warning, 0.25: t.psi_critical}
        panel["description"] = (
            panel.get("description", "")
            .replace(
                "0.02 warning, 0.25 critical",
                f"{t.psi_warning:g} warning, {t.psi_critical:g} critical",
            )
            .replace("0.02 / 0.25 thresholds", f"{t.psi_warning:g} / {t.psi_critical:g} thresholds")
            .replace(
                "psi_chi2_gate at 99.9%",
                f"psi_chi2_gate at {100 * (1 - t.significance_warning):.10g}%",
            )
        )
    elif re.search(r"\bKS\b", title):
        values = {0.1: t.ks_statistic}
    else:
        return
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    steps = defaults.get("thresholds", {}).get("steps", [])
    if any(step.get("value") in values for step in steps):
        thresholds = {
            **defaults["thresholds"],
            "steps": [
                {**step, "value": values[step["value"]]} if step.get("value") in values else step
                for step in steps
            ],
        }
        defaults = {**defaults, "thresholds": thresholds}
        panel["fieldConfig"] = {**panel["fieldConfig"], "defaults": defaults}
    if "targets" not in panel:
        return
    z = f"{t.z('warning'):.2f}"
    panel["targets"] = [
        {
            **target,
            "legendFormat": f"significance gate (z {z})",
            "expr": target["expr"].replace('z="3.09"', f'z="{z}"'),
        }
        if target.get("legendFormat") == "significance gate (z 3.09)"
        else target
        for target in panel["targets"]
    ]


def _flow(panels: list[dict[str, Any]], top: int) -> int:
    """Lay ``panels`` out left to right from row ``top``, wrapping at 24 columns; the next free row."""
    x, y, height = 0, top, 0
    for panel in panels:
        grid = panel["gridPos"]
        if x + grid["w"] > 24:
            x, y, height = 0, y + height, 0
        panel["gridPos"] = {"h": grid["h"], "w": grid["w"], "x": x, "y": y}
        x += grid["w"]
        height = max(height, grid["h"])
    return y + height


def _field_templates(
    rows: list[tuple[dict[str, Any], list[dict[str, Any]]]], field_type: str
) -> list[tuple[dict[str, Any], dict[str | int, _Places]]]:
    """The template's per-field panels that apply to fields of ``field_type``, in row order,
    each with the places of its variables."""
    wanted = _FIELD_ROWS[field_type]
    skip = _CATEGORICAL_ONLY if field_type == "numeric" else _NUMERIC_ONLY
    ordered = [(row, panels) for word in wanted for row, panels in rows if word in row["title"]]
    return [
        (panel, places if isinstance(places := _places(panel), dict) else {})
        for _row, panels in ordered
        for panel in panels
        if _per_field(panel)
        and not _uses(panel, skip)
        and not (field_type == "numeric" and "$categorical" in json.dumps(panel))
    ]


_Templates: TypeAlias = "list[tuple[dict[str, Any], dict[str | int, _Places]]]"


def _field_panels(
    templates: _Templates, names: dict[str, str], thresholds: AlertThresholds
) -> list[dict[str, Any]]:
    """The panels of ``templates`` (:func:`_field_templates` of a type) with the variables of
    ``names`` filled in, coloured at ``thresholds``.

    They share the parts without a variable with the template, and so with every other
    field's panels: the dashboard is written out, not changed.
    """
    chosen: list[dict[str, Any]] = []
    seen: list[tuple[str, set[str]]] = []
    for panel, places in templates:
        filled = _fill(panel, places, names, names)
        exprs = {t["expr"] for t in filled["targets"]}
        if any(kind == panel["type"] and exprs <= other for kind, other in seen):
            continue  # a panel of the same kind already shows these queries
        seen.append((panel["type"], exprs))
        _colour(filled, panel["title"], thresholds)
        chosen.append(filled)
    return chosen


def _shared_templates(templates: _Templates, variable: str) -> _Templates:
    """``templates`` reading every field variable as ``variable`` (a categorical field's row
    reads ``$feature`` too), each with its places."""
    if variable == "feature":
        return templates
    renamed = [
        json.loads(re.sub(r"\$(\{?)feature\b", rf"$\g<1>{variable}", json.dumps(panel)))
        for panel, _places in templates
    ]
    return [
        (panel, places if isinstance(places := _places(panel), dict) else {}) for panel in renamed
    ]


def _colours(t: AlertThresholds) -> tuple[float, ...]:
    """What of ``t`` a field's panels show (:func:`_colour`)."""
    return t.psi_warning, t.psi_critical, t.ks_statistic, t.z("warning")


def _selectable(excluded: Iterable[str]) -> str:
    """A variable's regex: any name but those ``excluded`` and those with a backtick (which
    would end the raw string holding ``${feature:regex}``)."""
    names = "|".join(_REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), n) for n in excluded)
    ahead = f"(?!(?:{names})$)" if names else ""
    return f"/^{ahead}[^`]*$/"


def _field_variable(
    template: dict[str, Any], field_type: str, model: str, excluded: Iterable[str]
) -> dict[str, Any]:
    """The variable selecting the fields of ``field_type`` whose rows to show (several at once),
    but those ``excluded`` (they have rows of their own)."""
    name, selector = _TYPE_VARIABLES[field_type]
    query = f"label_values({selector.format(model=promql_string(model))}, feature)"
    return {
        **template,
        "current": {},
        "definition": query,
        "description": f"The {field_type} fields of {model} to show, a row each.",
        "includeAll": False,
        "label": f"{field_type.capitalize()} fields",
        "multi": True,
        "name": name,
        "query": {**template["query"], "query": query},
        "regex": _selectable(excluded),
    }


def render_dashboard(
    model: str,
    fields: Sequence[FieldSpec],
    alerting: AlertingConfig,
    rows_up_to: int = FIELD_ROWS_MAX,
) -> dict[str, Any]:
    """The dashboard of ``model``: a row for each of ``fields`` while they are at most
    ``rows_up_to``, else a row per field type repeated over its variable.

    The fields' panels share their parts that hold no name (:func:`_field_panels`): a
    document to write out, not to change in place.
    """
    base = template()
    rows = list(_rows(base))
    fixed = {"model": model}
    shared = len(fields) > rows_up_to
    top_panels = []
    for row, panels in rows:
        for panel in panels:
            if not row.get("collapsed") and not _per_field(panel):
                filled = _replace(panel, fixed, fixed)
                _colour(filled, panel["title"], alerting.defaults)
                filled["gridPos"].update(h=8, w=6 if filled["type"] == "stat" else 18)
                if shared and "every field" in panel["title"]:  # not 2,000 lines
                    top = f"the {FIELD_ROWS_MAX} most drifting fields"
                    filled["title"] = filled["title"].replace("every field", top)
                    filled["description"] = f"PSI of {top} of {model} at each time, in the window."
                    filled["targets"] = [
                        {**t, "expr": f"topk({FIELD_ROWS_MAX}, {t['expr']})"}
                        for t in filled["targets"]
                    ]
                top_panels.append(filled)
    layout: list[dict[str, Any]] = [
        {
            "collapsed": False,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": 0},
            "panels": [],
            "title": f"Fields of {model} ($window window)",
            "type": "row",
        }
    ]
    y = _flow(top_panels, 1)
    layout += top_panels
    templates = {kind: _field_templates(rows, kind) for kind in _FIELD_ROWS}
    variables = {v["name"]: v for v in base["templating"]["list"]}
    window = f"label_values(driftgauge_window_observations{{model={promql_string(model)}}}, window)"
    chosen = [
        variables["datasource"],
        {
            **variables["window"],
            "definition": window,
            "query": {**variables["window"]["query"], "query": window},
        },
    ]
    # In the shared rows, a field's panels are coloured at the model's thresholds: the first
    # FIELD_ROWS_MAX fields with thresholds of their own keep rows of their own (each is about
    # 50 kB), as does a name no variable can select.
    default = _colours(alerting.defaults)
    coloured = {name for name, t in alerting.overrides if shared and _colours(t) != default}
    apart = {spec.name for spec in fields if not shared or "`" in spec.name}
    apart.update([spec.name for spec in fields if spec.name in coloured][:FIELD_ROWS_MAX])
    own = [spec for spec in fields if spec.name in apart]
    for kind, (variable, _selector) in _TYPE_VARIABLES.items() if shared else ():
        if all(spec.name in apart for spec in fields if spec.type == kind):
            continue
        panels = _field_panels(
            _shared_templates(templates[kind], variable), fixed, alerting.defaults
        )
        title = f"${variable} ({kind})"
        row = {"collapsed": False, "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []}
        layout += [{**row, "repeat": variable, "title": title, "type": "row"}, *panels]
        y = _flow(panels, y + 1)
        excluded = [spec.name for spec in own if spec.type == kind and "`" not in spec.name]
        chosen.append(_field_variable(variables["feature"], kind, model, excluded))
    for spec in own:
        names = {"model": model, "feature": spec.name, "categorical": spec.name}
        panels = _field_panels(templates[spec.type], names, alerting.for_field(spec.name))
        _flow(panels, y + 1)
        layout.append(
            {
                "collapsed": True,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": panels,
                "title": f"{spec.name} ({spec.role}, {spec.type})",
                "type": "row",
            }
        )
        y += 1
    for row, panels in rows:  # the collapsed service row, model fixed
        if row.get("collapsed"):
            nested = [_replace(p, fixed, fixed) for p in panels]
            _flow(nested, y + 1)
            row = _replace(row, fixed, fixed)
            row.update(gridPos={"h": 1, "w": 24, "x": 0, "y": y}, panels=nested)
            layout.append(row)
            y += 1
    panel_id = 0
    for panel in layout:
        panel_id += 1
        panel["id"] = panel_id
        for nested_panel in panel.get("panels", []):
            panel_id += 1
            nested_panel["id"] = panel_id
    board = {key: value for key, value in base.items() if key != "panels"}
    board["panels"] = layout
    board["templating"] = {"list": chosen}
    board["annotations"] = _replace(base["annotations"], fixed, fixed)
    board["title"] = f"driftgauge / {model}"
    board["uid"] = dashboard_uid(model)
    each = "a row per field type, repeated for the fields chosen" if shared else "one row each"
    board["description"] = (
        f"Model {model}: drift, distributions and data quality of each configured field "
        f"({each}), and service health. Generated by `driftgauge rules`."
    )
    board["tags"] = sorted({*base.get("tags", []), "generated"})
    queries = json.dumps(
        [
            [t["expr"] for p in _all(layout) for t in p.get("targets", [])],
            board["templating"],
            board["annotations"],
        ]
    )
    leftover = _MODEL_VARIABLE.search(queries) or (not shared and _FIELD_VARIABLES.search(queries))
    if leftover:
        raise ValueError(f"the dashboard template left {leftover.group(0)} unreplaced")
    return board
