"""Seldon Core v1 adapter: ``SeldonMessage`` bodies with ``data.names`` and ``data.ndarray``.

Reference: Seldon Core v1 "External Prediction API" and "Prediction Proto
Buffer Spec" (SeldonIO/seldon-core ``doc/source/reference/apis/
external-prediction.md``, ``prediction.md``, ``internal-api.md``):

- routes ``POST /api/v1.0/predictions`` (``/api/v0.1/predictions`` in older
  releases), the same behind the ingress as
  ``/seldon/<namespace>/<deployment>/api/v1.0/predictions``, and a model
  microservice's own ``POST /predict``;
- ``SeldonMessage = {"status"?, "meta"?, "data": DefaultData}`` where
  ``DefaultData = {"names"?: [string], "tensor": {"shape", "values"} |
  "ndarray": [...] | "tftensor": ...}``; the payload may instead be
  ``binData``/``strData``/``jsonData`` (not tabular: ``bad_shape``);
- example request ``{"data":{"names":["a","b"],"tensor":{"shape":[2,2],
  "values":[0,0,1,1]}}}``; a classifier answers ``{"data":{"names":["t:0",
  "t:1","t:2"],"ndarray":[[...]]},"meta":{...}}`` (one probability per class);
- a failure is ``{"status": {"code": -1, "info": "...", "reason":
  "MICROSERVICE_BAD_DATA", "status": 1}}`` (``"FAILURE"`` in proto JSON);
- the microservice also takes the message as the ``json`` field of a form
  (``application/x-www-form-urlencoded``), which is how SeldonClient's
  microservice calls (``seldon_core/seldon_client.py``) send it.

Mapping: with ``names``, each row's values map by name (so configure
predictions ``t:0``, ``t:1``... to monitor class probabilities); without,
by position onto the configured fields in config order, but for a response
row wider than the configured predictions, which fills none of them (its
values are extra).  ``tensor`` values are numeric and reshaped in numpy;
``meta`` is ignored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Hashable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs

import numpy as np

from driftgauge.config import FieldSpec
from driftgauge.exceptions import ProtocolError
from driftgauge.jsonbody import decode_json
from driftgauge.protocols._common import (
    BaseAdapter,
    Part,
    json_type,
    object_numbers,
    pair,
    require_object,
    short,
)
from driftgauge.protocols._tables import map_matrix, map_rows
from driftgauge.protocols.csv_body import content_type
from driftgauge.typing import Extracted

__all__ = ["SeldonAdapter"]

_ROUTE = re.compile(r"(?:/seldon/[^/]+/[^/]+)?/api/v(?:0\.1|1\.0)/predictions|/predict")
_OTHER_PAYLOADS = ("binData", "strData", "jsonData", "customData")
_FAILURE = (1, "FAILURE")


def _raise_if_failure(body: Any) -> None:
    if isinstance(body, dict):
        status = body.get("status")
        if isinstance(status, dict) and status.get("status") in _FAILURE:
            raise ProtocolError("error_response", "Seldon returned a FAILURE status")


def _names(value: Any, where: str) -> list[Hashable] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ProtocolError("bad_shape", f"{where} 'data.names' must be an array of strings")
    # An empty list is what the Python wrapper sends for "no names": map by position.
    return list(value) or None


def _tensor(
    value: Any, specs: Sequence[FieldSpec], labels: list[Hashable] | None, where: str, whole: bool
) -> Part:
    if not isinstance(value, dict):
        raise ProtocolError(
            "bad_shape", f"{where} 'data.tensor' is {json_type(value)}, expected an object"
        )
    shape, values = value.get("shape"), value.get("values")
    if (
        not isinstance(shape, list)
        or not shape
        or not all(type(dim) is int and dim >= 0 for dim in shape)
    ):
        raise ProtocolError(
            "bad_shape", f"{where} 'data.tensor.shape' must be an array of sizes >= 0"
        )
    if not isinstance(values, list):
        raise ProtocolError("bad_shape", f"{where} 'data.tensor.values' is {json_type(values)}")
    try:
        array = np.asarray(values)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise ProtocolError(
            "bad_shape", f"{where} 'data.tensor.values' is a ragged array"
        ) from None
    if array.ndim != 1:
        raise ProtocolError("bad_shape", f"{where} 'data.tensor.values' must be a flat array")
    # An integer beyond 64 bits among the numbers makes an object array.
    numbers = object_numbers(array) if array.dtype.kind == "O" else array
    if numbers is None or (numbers.size and numbers.dtype.kind not in "iuf"):
        raise ProtocolError("bad_datatype", f"{where} tensor values must be numbers")
    rows, width = shape[0], math.prod(shape[1:])
    if numbers.size != rows * width:
        raise ProtocolError(
            "bad_shape", f"{where} tensor has {numbers.size} values for shape {short(shape)}"
        )
    return map_matrix(numbers.astype(np.float64).reshape(rows, width), specs, labels, whole)


def _message(
    body: dict[str, Any], specs: Sequence[FieldSpec], where: str, missing: str, whole: bool = False
) -> Part:
    """The ``data`` of a message (``whole``: a response's, see :func:`map_rows`)."""
    if "data" not in body:
        other = next((key for key in _OTHER_PAYLOADS if key in body), None)
        if other is not None:
            raise ProtocolError("bad_shape", f"{where} carries {other!r}, which is not tabular")
        raise ProtocolError(missing, f"{where} has no 'data'")
    data = body["data"]
    if not isinstance(data, dict):
        raise ProtocolError("bad_shape", f"{where} 'data' is {json_type(data)}, expected an object")
    labels = _names(data.get("names"), where)
    if "ndarray" in data:
        ndarray = data["ndarray"]
        if not isinstance(ndarray, list):
            raise ProtocolError(
                "bad_shape", f"{where} 'data.ndarray' is {json_type(ndarray)}, expected an array"
            )
        return map_rows(ndarray, specs, labels, whole)
    if "tensor" in data:
        return _tensor(data["tensor"], specs, labels, where, whole)
    if "tftensor" in data:
        raise ProtocolError("bad_shape", f"{where} 'data.tftensor' is not supported")
    raise ProtocolError("bad_shape", f"{where} 'data' has neither 'ndarray' nor 'tensor'")


class SeldonAdapter(BaseAdapter):
    """Reads Seldon Core v1 prediction bodies."""

    name = "seldon"
    routes = _ROUTE

    def read_text(self, body: bytes | str, headers: Mapping[str, str]) -> Any:
        """A message sent as a form's ``json`` field, parsed; ValueError when it is not one."""
        if content_type(headers) not in (None, "application/x-www-form-urlencoded"):
            raise ValueError("not a form")
        fields = parse_qs(body.encode() if isinstance(body, str) else body)
        if b"json" not in fields:
            raise ValueError("a form without a json field")
        return decode_json(fields[b"json"][0])

    def _extract(self, request: Any, response: Any) -> Extracted:
        """Rows of the request's ``data`` paired with the response's ``data``."""
        if response is not None:
            _raise_if_failure(response)
        features = _message(
            require_object(request, "request"), self.features, "request", "missing_inputs"
        )
        predictions = None
        if response is not None:
            predictions = _message(
                require_object(response, "response"),
                self.predictions,
                "response",
                "missing_outputs",
                whole=True,
            )
        return pair(features, predictions)
