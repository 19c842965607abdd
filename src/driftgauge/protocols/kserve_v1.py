"""KServe V1 protocol adapter (``instances`` in, ``predictions`` out).

Reference: KServe "V1 Protocol" (https://kserve.github.io/website/docs/concepts/
architecture/data-plane/v1-protocol): ``POST /v1/models/<model_name>:predict``
with ``{"instances": []}`` (or ``{"inputs": []}``) answered by
``{"predictions": []}``; the protocol is "based on the TensorFlow Serving REST
API", so an error is ``{"error": "<message>"}`` as in TF Serving.  KServe V1
has no version segment in its route; TF Serving's versioned and labelled
routes belong to :mod:`driftgauge.protocols.tfserving`.

Each instance is a row: a list maps by position onto the configured features
(config order), an object by name, a scalar is the single (first) feature.
Each prediction pairs with the instance at the same index under the same
rules, but for a list wider than the configured predictions (KServe's sklearn
server with ``PREDICT_PROBA``: class probabilities), which fills none of them
(its values are extra, the predictions absent).  The response must hold
exactly one prediction per instance.
"""

from __future__ import annotations

import re
from typing import Any

from driftgauge.exceptions import ProtocolError
from driftgauge.protocols._common import BaseAdapter, Part, json_type, require_object
from driftgauge.protocols._tables import map_rows

__all__ = ["KServeV1Adapter"]

_ROUTE = re.compile(r"/v1/models/[^/:]+:predict")


class KServeV1Adapter(BaseAdapter):
    """Reads KServe V1 ``:predict`` bodies."""

    name = "kserve-v1"
    routes = _ROUTE

    error_keys = ("error",)
    server = "KServe"

    def _request(self, request: Any) -> Part:
        body = require_object(request, "request")
        keys = [key for key in ("instances", "inputs") if key in body]
        if not keys:
            raise ProtocolError("missing_inputs", "request has no 'instances'")
        if len(keys) > 1:
            raise ProtocolError("bad_shape", "request has both 'instances' and 'inputs'")
        instances = body[keys[0]]
        if not isinstance(instances, list):
            raise ProtocolError(
                "bad_shape", f"request {keys[0]!r} is {json_type(instances)}, expected an array"
            )
        return map_rows(instances, self.features)

    def _response(self, response: Any) -> Part:
        body = require_object(response, "response")
        if "predictions" not in body:
            raise ProtocolError("missing_outputs", "response has no 'predictions'")
        predictions = body["predictions"]
        if not isinstance(predictions, list):
            raise ProtocolError(
                "bad_shape",
                f"response 'predictions' is {json_type(predictions)}, expected an array",
            )
        return map_rows(predictions, self.predictions, whole=True)
