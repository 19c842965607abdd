"""Protocol adapters: turn one parsed request/response pair into feature and prediction columns.

One adapter per ``protocol:`` value of the config (:data:`ADAPTERS`), built by
:func:`make_adapter`.  Each implements :class:`driftgauge.typing.Adapter`:

- ``matches(path)`` - True for the protocol's prediction routes (the path
  without its query string); ``""`` always matches, since a tail log may not
  record the path;
- ``route(path)`` - the adapter that reads bodies sent to ``path`` (itself,
  or for several protocols on one sidecar the member whose route it is), or
  None when ``path`` is none of its routes;
- ``read_text(body, headers)`` - a request body that is not JSON, read in
  another format the protocol takes (MLflow: CSV; KServe V2: binary tensor
  data), else ValueError; ``read_response_text(body, headers)`` the same for
  a response (KServe V2: binary tensor data);
- ``extract(request, response)`` - both bodies already parsed from JSON;
  ``response`` is None when not available (only feature columns come back).
  It returns ``Extracted(rows, columns, extra_columns, absent)``: one column
  per configured field found in the body, each exactly ``rows`` long; a field
  absent from the body is left out (the caller counts it missing, and a
  missing field in every row); ``absent`` counts, per field found, the rows
  that lacked it (an object row without its key, a list row too short to reach
  it: ``None`` in the column, but a missing field, where a JSON null is only
  missing); values for names the config does not know are only counted, as a
  number of columns.

A field's ``path`` is, for every protocol but jsonpath, the name the body
uses for it (column, key, tensor or ``names`` entry) when the metric is
named differently: ``{name: alcohol_pct, path: alcohol}`` reads ``alcohol``
and reports ``feature="alcohol_pct"``.  For jsonpath it is a JSONPath.

Several protocols (``protocol: kserve``, or a list) make a
:class:`~driftgauge.protocols.composite.CompositeAdapter`.

Shared mapping rules: a row given as a list maps by position onto the
configured fields in config order, a row given as an object maps by name, a
scalar row is the first configured field.  Predictions pair with request
rows by index, under the same rules.  Values are JSON scalars (``[x]`` is
squeezed).  Numeric fields may come back as 1-D numpy arrays instead of lists;
categorical fields keep each value's exact JSON type (``2`` is not ``2.0``),
and a boolean stays a boolean beside numbers (``true`` is not ``1``), except
from typed tensors (V2 numeric datatypes, Seldon ``tensor``), whose declared
type decides.

``extract`` raises only :class:`~driftgauge.exceptions.ProtocolError`, whose
``reason`` (the ``reason`` label of ``driftgauge_parse_errors_total``) is one of:

==================  =========================================================
``not_object``      a body is not a JSON object where the protocol needs one
``missing_inputs``  the request lacks the protocol's input key (``instances``,
                    ``inputs``, ``data``...); for jsonpath: no path matched
``missing_outputs`` the response lacks its output key (``predictions``...)
``error_response``  the response is the server's error body
``bad_shape``       a key holds the wrong JSON type, a tensor's data does not
                    fit its shape, a field holds an array/object per row...
``bad_datatype``    a tensor's datatype is unknown or its data is of another type
``row_mismatch``    request and response (or two tensors/columns/paths of one
                    body) disagree on the number of rows
==================  =========================================================

Messages are one line and name keys, fields, types and shapes, never values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import get_args

from driftgauge.config import FieldSpec, ProtocolName, ProtocolSetting, protocol_names
from driftgauge.config.protocols import parse_protocol
from driftgauge.config.validation import Errors
from driftgauge.protocols._common import BaseAdapter
from driftgauge.protocols.composite import CompositeAdapter, KServeAdapter
from driftgauge.protocols.jsonpath import JsonPathAdapter
from driftgauge.protocols.kserve_v1 import KServeV1Adapter
from driftgauge.protocols.kserve_v2 import KServeV2Adapter
from driftgauge.protocols.mlflow import MLflowAdapter
from driftgauge.protocols.seldon import SeldonAdapter
from driftgauge.protocols.tfserving import TFServingAdapter
from driftgauge.typing import Adapter

__all__ = [
    "ADAPTERS",
    "REASONS",
    "BaseAdapter",
    "CompositeAdapter",
    "JsonPathAdapter",
    "KServeAdapter",
    "KServeV1Adapter",
    "KServeV2Adapter",
    "MLflowAdapter",
    "SeldonAdapter",
    "TFServingAdapter",
    "make_adapter",
]

ADAPTERS: dict[ProtocolName, type[BaseAdapter]] = {
    "kserve-v1": KServeV1Adapter,
    "kserve-v2": KServeV2Adapter,
    "kserve": KServeAdapter,
    "tfserving": TFServingAdapter,
    "mlflow": MLflowAdapter,
    "seldon": SeldonAdapter,
    "jsonpath": JsonPathAdapter,
}
"""The adapter class for each ``protocol:`` value."""

REASONS: tuple[str, ...] = (
    "not_object",
    "missing_inputs",
    "missing_outputs",
    "error_response",
    "bad_shape",
    "bad_datatype",
    "row_mismatch",
)
"""Every ``ProtocolError.reason`` an adapter raises (a bounded label set)."""


def make_adapter(
    protocol: ProtocolSetting, features: Sequence[FieldSpec], predictions: Sequence[FieldSpec]
) -> Adapter:
    """The adapter for ``protocol`` (a name or a list of names).

    ValueError for an unknown protocol, protocols whose routes overlap, or a
    bad JSONPath.
    """
    names = protocol_names(protocol)
    known = get_args(ProtocolName)
    for name in names:
        if name not in known:
            raise ValueError(f"unknown protocol {name!r} (known: {', '.join(known)})")
    if len(names) == 1:
        return ADAPTERS[names[0]](features, predictions)
    errors = Errors()
    parse_protocol(list(names), errors)
    if errors.items:
        raise ValueError("; ".join(errors.items))
    members = [ADAPTERS[name](features, predictions) for name in names]
    return CompositeAdapter(members, str(protocol))
