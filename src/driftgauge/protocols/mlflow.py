"""MLflow scoring server adapter (``POST /invocations``).

Reference: MLflow "Deploy MLflow Model as a Local Inference Server",
section "Accepted Input Formats" (https://mlflow.org/docs/latest/ml/deployment/
deploy-model-locally), and the scoring server ``mlflow/pyfunc/scoring_server``:

- ``{"dataframe_split": {"columns": [...], "data": [[...]], "index"?: [...]}}``
  (pandas ``to_dict(orient="split")``);
- ``{"dataframe_records": [{...}, ...]}`` (pandas ``orient="records"``);
- ``{"instances": [...]}`` - TF Serving row format;
- ``{"inputs": [...] | {...}}`` - same as ``instances``, or an object of
  named columns;
- an optional ``"params"`` object, ignored; exactly one format key is allowed;
- a bare list of records is read as ``dataframe_records`` (the docs' "Encoding
  complex data" examples post one);
- the answer is ``{"predictions": ...}`` (pandas results as a list of
  records, arrays as nested lists); a bare list is accepted too (MLflow 1.x);
- an error is ``{"error_code": "BAD_REQUEST", "message": "..."}``;
- ``Content-Type: text/csv``: a header line naming the columns, then one line
  per row (read by :mod:`driftgauge.protocols.csv_body`; without the content
  type, a body that is not JSON is taken as CSV when its header names a
  configured feature).

Mapping: ``dataframe_split`` rows map through their ``columns`` by name
(integer column labels, pandas' default, map by position in config order);
object rows by name; list rows by position; scalar rows to the first field;
an ``inputs``/``predictions`` object by column name.  A prediction row (list)
wider than the configured predictions fills none of them (its values are
extra).
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping
from typing import Any

from driftgauge.exceptions import ProtocolError
from driftgauge.protocols._common import BaseAdapter, Part, json_type
from driftgauge.protocols._tables import map_rows, rows_or_columns
from driftgauge.protocols.csv_body import CsvTable, csv_part, read_csv_body

__all__ = ["MLflowAdapter"]

_ROUTE = re.compile(r"/invocations")
_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def _labels(value: Any) -> list[Hashable] | None:
    """``dataframe_split.columns`` as labels; None (by position) when absent or all integers."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        item is None or isinstance(item, str | int | float) for item in value
    ):
        raise ProtocolError(
            "bad_shape", "request 'dataframe_split.columns' must be an array of names"
        )
    if all(type(item) is int for item in value):
        return None
    return list(value)


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ProtocolError("bad_shape", f"{where} is {json_type(value)}, expected an array")
    return value


class MLflowAdapter(BaseAdapter):
    """Reads MLflow ``/invocations`` bodies in all four JSON formats and CSV."""

    name = "mlflow"
    routes = _ROUTE

    error_keys = ("error_code", "error")
    server = "MLflow"

    def read_text(self, body: bytes | str, headers: Mapping[str, str]) -> Any:
        """A ``text/csv`` body as a :class:`CsvTable`; ValueError when it is not CSV."""
        return read_csv_body(body, headers, [spec.name for spec in self.features])

    def _request(self, request: Any) -> Part:
        if isinstance(request, CsvTable):
            return csv_part(request, self.features)
        if isinstance(request, list):
            return map_rows(request, self.features)
        if not isinstance(request, dict):
            raise ProtocolError(
                "not_object", f"request is {json_type(request)}, expected an object"
            )
        keys = [key for key in _FORMATS if key in request]
        if not keys:
            raise ProtocolError("missing_inputs", f"request has none of {', '.join(_FORMATS)}")
        if len(keys) > 1:
            raise ProtocolError("bad_shape", f"request has more than one of {', '.join(keys)}")
        key = keys[0]
        value = request[key]
        if key == "dataframe_split":
            if not isinstance(value, dict):
                raise ProtocolError(
                    "bad_shape",
                    f"request 'dataframe_split' is {json_type(value)}, expected an object",
                )
            data = _list(value.get("data"), "request 'dataframe_split.data'")
            return map_rows(data, self.features, _labels(value.get("columns")))
        if key == "inputs":
            return rows_or_columns(value, self.features, "request 'inputs'")
        return map_rows(_list(value, f"request {key!r}"), self.features)

    def _response(self, response: Any) -> Part:
        if isinstance(response, list):
            return map_rows(response, self.predictions, whole=True)
        if not isinstance(response, dict):
            raise ProtocolError(
                "not_object", f"response is {json_type(response)}, expected an object"
            )
        if "predictions" not in response:
            raise ProtocolError("missing_outputs", "response has no 'predictions'")
        return rows_or_columns(
            response["predictions"], self.predictions, "response 'predictions'", whole=True
        )
