"""Generic adapter: each configured field names a JSONPath into the request or response.

Feature paths are read from the request body, prediction paths from the
response body.  The supported subset of JSONPath (RFC 9535 spelling):

=====================  ==================================================
``$``                  the whole body
``.name``              member ``name`` (letters, digits, ``_``, ``-``, non-ASCII; not first a digit or ``-``)
``['any key']``        member by quoted name (``'`` or ``"``; ``\\`` escapes the quote or itself):
                       any feature name, e.g. ``$.rows[*]['sepal length (cm)']``
``[3]``, ``[-1]``      array element by index (negative counts from the end)
``[*]``                every element of an array: one value per row (at most once per path)
=====================  ==================================================

No filters, slices, unions or ``..``.  Paths compile once in the adapter's
constructor; a bad path raises :class:`ValueError` naming it, so ``driftgauge
check`` reports it.

Rows: a path with ``[*]`` gives one value per element of that array, a path
without gives one row.  Every field found must agree on the number of rows
(``row_mismatch`` otherwise; a single value is not broadcast).  A path that
does not resolve (missing member, index out of range, wrong container) leaves
its field out; inside ``[*]`` an element where the rest of the path does not
resolve is ``None`` for that row, counted as a missing field (``absent``).
A body where no path resolves at all is ``missing_inputs``.  A value must be a JSON scalar (``[x]`` is squeezed);
an array or object there is ``bad_shape``.  Names not in the config are never
seen, so ``extra_columns`` is always 0.  Any path is accepted as a route.
A response object with an ``error``/``error_code`` member where no prediction
path resolves is ``error_response``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from driftgauge.config import FieldSpec
from driftgauge.exceptions import ProtocolError
from driftgauge.jsonpath_syntax import JsonPath, Step, compile_path
from driftgauge.protocols._common import BaseAdapter, Column, Part, pair, scalar
from driftgauge.protocols._tables import column_values
from driftgauge.typing import Extracted

__all__ = ["JsonPath", "JsonPathAdapter", "compile_path", "evaluate"]

_MISSING: Any = object()


def _walk(node: Any, steps: tuple[Step, ...]) -> Any:
    for step in steps:
        if isinstance(step, str):
            if not isinstance(node, dict) or step not in node:
                return _MISSING
            node = node[step]
        else:
            if not isinstance(node, list) or not -len(node) <= step < len(node):
                return _MISSING
            node = node[step]
    return node


def evaluate(path: JsonPath, body: Any, name: str, exact: bool = True) -> Column | None:
    """The column ``path`` selects in ``body``, or None when it does not resolve.

    ``name`` is used in error messages.  Unless ``exact``, an all-numeric
    ``[*]`` column comes back as a numpy array (exact keeps every JSON type).
    """
    return _lookup(path, body, name, exact)[0]


def _lookup(path: JsonPath, body: Any, name: str, exact: bool) -> tuple[Column | None, int]:
    """:func:`evaluate`'s column and how many of its rows the path did not resolve in."""
    node = _walk(body, path.head)
    if node is _MISSING:
        return None, 0
    if path.tail is None:
        return [scalar(node, name)], 0
    if not isinstance(node, list):
        return None, 0
    if not path.tail:
        return column_values(node, name, exact), 0
    values = [_walk(item, path.tail) for item in node]
    lacking = sum(value is _MISSING for value in values)
    if node and lacking == len(values):
        return None, 0
    return [None if value is _MISSING else scalar(value, name) for value in values], lacking


# Kept for callers written against the first, private name.
_evaluate = evaluate


def _compile(specs: Sequence[FieldSpec], role: str) -> list[tuple[str, JsonPath, bool]]:
    compiled = []
    for spec in specs:
        if spec.path is None:
            raise ValueError(f"{role} {spec.name!r} has no path (the jsonpath protocol needs one)")
        compiled.append((spec.name, compile_path(spec.path), spec.type == "categorical"))
    return compiled


class JsonPathAdapter(BaseAdapter):
    """Reads any JSON body through one configured JSONPath per field."""

    name = "jsonpath"
    routes = re.compile(r".*", re.DOTALL)
    body_names = False  # a field's path is a JSONPath here, not a column name

    def __init__(self, features: Sequence[FieldSpec], predictions: Sequence[FieldSpec]) -> None:
        super().__init__(features, predictions)
        self.feature_paths = _compile(self.features, "feature")
        self.prediction_paths = _compile(self.predictions, "prediction")

    def _extract(self, request: Any, response: Any) -> Extracted:
        """Evaluate every path; all fields found must agree on the number of rows."""
        found: dict[str, Column] = {}
        absent: dict[str, int] = {}
        for name, path, exact in self.feature_paths:
            column, lacking = _lookup(path, request, name, exact)
            if column is not None:
                found[name] = column
            if lacking:
                absent[name] = lacking
        predicted: dict[str, Column] = {}
        if response is not None:
            for name, path, exact in self.prediction_paths:
                column, lacking = _lookup(path, response, name, exact)
                if column is not None:
                    predicted[name] = column
                if lacking:
                    absent[name] = lacking
            if (
                not predicted
                and isinstance(response, dict)
                and any(response.get(key) is not None for key in ("error", "error_code"))
            ):
                raise ProtocolError("error_response", "response is an error object")
        if not found and not predicted:
            raise ProtocolError("missing_inputs", "no configured path matched the request")
        rows = -1
        first = ""
        for name, column in (*found.items(), *predicted.items()):
            if rows < 0:
                rows, first = len(column), name
            elif len(column) != rows:
                raise ProtocolError(
                    "row_mismatch", f"field {name!r} has {len(column)} rows, {first!r} has {rows}"
                )
        features = Part(rows, found, absent=absent)
        return pair(features, None if response is None else Part(rows, predicted))
