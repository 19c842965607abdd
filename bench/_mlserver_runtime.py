"""MLServer's scikit-learn runtime plus one check, for ``bench.proxy --upstream mlserver``.

:class:`CheckedSKLearnModel` is ``mlserver_sklearn.SKLearnModel`` unchanged,
except that it first compares the request's tensor with the one the benchmark
sends (:data:`bench._proxy_upstream.REQUEST_BODY`): a request altered on the
way fails with MLServer's ``InferenceError`` (HTTP 400), which the load
generator counts as a non-2xx response and MLServer as
``model_infer_request_failure``.  The comparison is of the decoded JSON
values, a few microseconds against the model's and MLServer's milliseconds.

MLServer imports this module (``implementation`` in ``model-settings.json``);
the benchmark process never does, so it needs no MLServer to start.
"""

from __future__ import annotations

import json
from typing import Any

from mlserver.errors import InferenceError
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver_sklearn import SKLearnModel

from bench._proxy_upstream import REQUEST_BODY

__all__ = ["CheckedSKLearnModel"]


def _tensor(raw: dict[str, Any]) -> tuple[Any, ...]:
    return raw["name"], raw["datatype"], list(raw["shape"]), raw["data"]


_EXPECTED = [_tensor(t) for t in json.loads(REQUEST_BODY)["inputs"]]


class CheckedSKLearnModel(SKLearnModel):  # type: ignore[misc]
    """``SKLearnModel`` that refuses any request but the benchmark's own (compared value by value)."""

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        received = [
            (t.name, t.datatype, list(t.shape), t.data.root if hasattr(t.data, "root") else t.data)
            for t in payload.inputs
        ]
        if received != _EXPECTED:
            raise InferenceError("request altered on the way: not the benchmark's tensor")
        return await super().predict(payload)
