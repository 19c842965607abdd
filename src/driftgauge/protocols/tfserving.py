"""TensorFlow Serving REST ``predict`` adapter, row and columnar formats.

Reference: TensorFlow Serving "RESTful API" (https://www.tensorflow.org/tfx/
serving/api_rest, ``tensorflow_serving/g3doc/api_rest.md``):

- route ``POST /v1/models/${MODEL_NAME}[/versions/${VERSION}|/labels/${LABEL}]:predict``;
- row format ``{"instances": [...]}``: a list of scalars (one named input),
  of lists (one input, one tensor per row) or of objects (named inputs);
  answered by ``{"predictions": [...]}``, a list of values, nested lists or
  objects (several named outputs);
- columnar format ``{"inputs": ...}``: one tensor (a list whose 0-th
  dimension is the batch) or an object of named tensors; answered by
  ``{"outputs": ...}`` in the same two forms;
- on error every API returns ``{"error": <message string>}``.

Mapping: list rows by position onto the configured fields (config order, a
nested row flattened row-major), objects by name, scalars to the first
field; named columnar tensors by name only.  A prediction row (list) wider
than the configured predictions fills none of them (its values are extra).  A configured named input must
hold one value per row (``[N]`` or ``[N, 1]``).  Binary ``{"b64": ...}``
values are not decoded: a configured field holding one is ``bad_shape``.
"""

from __future__ import annotations

import re
from typing import Any

from driftgauge.exceptions import ProtocolError
from driftgauge.protocols._common import BaseAdapter, Part, json_type, require_object
from driftgauge.protocols._tables import map_rows, rows_or_columns

__all__ = ["TFServingAdapter"]

_ROUTE = re.compile(r"/v1/models/[^/:]+(?:/versions/[0-9]+|/labels/[^/:]+)?:predict")


class TFServingAdapter(BaseAdapter):
    """Reads TensorFlow Serving ``:predict`` bodies (row and columnar)."""

    name = "tfserving"
    routes = _ROUTE

    error_keys = ("error",)
    server = "TF Serving"

    def _request(self, request: Any) -> Part:
        body = require_object(request, "request")
        has_rows, has_columns = "instances" in body, "inputs" in body
        if has_rows and has_columns:
            raise ProtocolError("bad_shape", "request has both 'instances' and 'inputs'")
        if has_rows:
            instances = body["instances"]
            if not isinstance(instances, list):
                raise ProtocolError(
                    "bad_shape", f"request 'instances' is {json_type(instances)}, expected an array"
                )
            return map_rows(instances, self.features)
        if has_columns:
            return rows_or_columns(body["inputs"], self.features, "request 'inputs'")
        raise ProtocolError("missing_inputs", "request has neither 'instances' nor 'inputs'")

    def _response(self, response: Any) -> Part:
        body = require_object(response, "response")
        if "predictions" in body:
            predictions = body["predictions"]
            if isinstance(predictions, dict):
                raise ProtocolError(
                    "bad_shape", "response 'predictions' is an object, expected an array"
                )
            return rows_or_columns(
                predictions, self.predictions, "response 'predictions'", whole=True
            )
        if "outputs" in body:
            return rows_or_columns(
                body["outputs"], self.predictions, "response 'outputs'", whole=True
            )
        raise ProtocolError("missing_outputs", "response has neither 'predictions' nor 'outputs'")
