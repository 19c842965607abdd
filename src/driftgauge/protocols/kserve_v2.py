"""Open Inference Protocol (KServe V2) adapter: ``inputs``/``outputs`` tensors.

Reference: Open Inference Protocol HTTP/REST (kserve/open-inference-protocol
``specification/protocol/inference_rest.md``, also KServe
``docs/predict-api/v2/required_api.md``):

- route ``POST v2/models/<model_name>[/versions/<model_version>]/infer``;
- request ``{"id"?, "parameters"?, "inputs": [$request_input, ...], "outputs"?}``
  with ``$request_input = {"name", "shape", "datatype", "parameters"?, "data"}``;
- response ``{"model_name", "model_version"?, "id", "parameters"?,
  "outputs": [$response_output, ...]}``, outputs shaped like inputs;
- error ``{"error": <error message string>}``;
- tensor data is row-major, either nested in its natural shape or flattened;
  datatypes BOOL, UINT8..UINT64, INT8..INT64, FP16, FP32, FP64, BYTES, and Triton's
  BF16 (bfloat16: the upper 16 bits of a float32, so each value is a float32 exactly).

Rows are ``shape[0]``; every tensor of a body must agree on it.  A tensor of
shape ``[N, d1, d2, ...]`` holds ``d1*d2*...`` values per row.  A scalar
tensor (shape ``[]``, whose data is one value: the protocol's shape is the
list of dimensions, none for a scalar) has no rows of its own: beside
``[N, ...]`` tensors it is that value in each of the N rows (a parameter
sent once for the batch), alone or beside other scalars one row, so a
one-row request or answer may send its values as scalars.  (The protocol
defines no broadcasting: a ``[1]`` tensor is a batch of one row, and beside
an ``[N]`` one ``row_mismatch``.)  Mapping:

- by name, when any tensor is named after a configured field: such a tensor
  must hold one value per row (``[N]`` or ``[N, 1]``) and becomes that column;
  the values of other tensors count as extra columns;
- by order otherwise (tensors named ``input-0``, ``output-0``...): the values
  of all tensors, tensor after tensor, map onto the configured fields in
  config order; values beyond the last field count as extra columns.  An
  output tensor maps whole or not at all: one whose values per row run past
  the last configured prediction (MLServer's ``predict_proba``, ``[N,
  classes]``, asked for in place of ``predict`` or before it) is other
  outputs than the configured ones: all its values count as extra columns and
  it takes no position, so the tensors after it still map, and predictions
  that none fills are absent (missing fields), never fed probabilities.  (A
  request's tensor may run past the last feature: the configured features are
  then its first values.)

Numeric tensors become 1-D float/int numpy columns in one reshape; BOOL and
BYTES tensors (BYTES carry strings: categorical data) become Python lists.
A categorical field's FP16, BF16 or FP32 values are values of that type, so
each category is the type's own shortest text: a BF16 ``0.1`` in JSON data and
the same bfloat16 (0.10009765625) in binary data are one category, ``0.1``.
``parameters`` are ignored but for ``binary_data_size``.

Binary tensor data extension (Triton ``docs/protocol/extension_binary_data.md``,
what its HTTP client sends and asks for by default): a body whose
``Inference-Header-Content-Length`` header gives the length of its JSON
head, followed by the raw bytes of each tensor whose ``parameters`` hold a
``binary_data_size``, in tensor order; elements are little-endian and
row-major, a BOOL one byte, a BF16 two, a BYTES element its 4-byte length and then its
bytes (read as UTF-8 text, U+FFFD for bytes that are none).
:meth:`KServeV2Adapter.read_text` and ``read_response_text`` read such a
body into the JSON form (each binary tensor's ``data`` filled in).  A binary
tensor with no ``binary_data_size`` (or no header) has no ``data``:
``bad_shape``.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from driftgauge.config import FieldSpec
from driftgauge.exceptions import ProtocolError
from driftgauge.jsonbody import decode_json
from driftgauge.protocols._common import (
    BaseAdapter,
    Column,
    Part,
    flatten,
    json_type,
    object_numbers,
    pair,
    raise_if_error,
    require_object,
    short,
)
from driftgauge.protocols._tables import add_layout_block, fields_of
from driftgauge.typing import Extracted

__all__ = ["KServeV2Adapter"]

_ROUTE = re.compile(r"/v2/models/[^/]+(?:/versions/[^/]+)?/infer")
_INTEGER = frozenset({"UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"})
_FLOAT = frozenset({"FP16", "BF16", "FP32", "FP64"})
_DATATYPES = _INTEGER | _FLOAT | {"BOOL", "BYTES"}


def _bfloat16(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """``values`` rounded to the nearest bfloat16 (ties to even, by way of float32), so that
    each decimal spelling of a bfloat16 (its shortest 0.1, a float32's 0.10009766, the exact
    0.10009765625) reads as that bfloat16."""
    bits = values.astype(np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16).astype(np.uint32)
    return np.where(np.isnan(values), np.float32(np.nan), rounded.view(np.float32))


def _bfloat16_categories(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """Each value's bfloat16 as the float32 of that bfloat16's shortest text.

    numpy has no bfloat16 to print: spelled as a float32, the bfloat16 0.10009765625 in
    binary data would be 0.10009766 where the JSON number 0.1 (the same bfloat16 to the
    model) is 0.1.  Both are the bfloat16's own shortest text, 0.1, as a float32 category
    is its own (0.1, not 0.10000000149011612).
    """
    distinct, inverse = np.unique(_bfloat16(values), return_inverse=True)
    spelled = []
    for value in distinct.tolist():
        texts = (f"{value:.{digits}g}" for digits in range(1, 5))  # 4 digits tell any two apart
        shortest = (float(text) for text in texts if _bfloat16(np.array([float(text)]))[0] == value)
        spelled.append(next(shortest, value))
    return np.asarray(spelled, dtype=np.float32)[inverse.ravel()]


# An FP16, BF16 or FP32 tensor's values (held as float64) as values of its own type.
_SINGLE: dict[str, Callable[[npt.NDArray[np.float64]], npt.NDArray[np.floating[Any]]]] = {
    "FP16": lambda values: values.astype(np.float16),
    "BF16": _bfloat16_categories,
    "FP32": lambda values: values.astype(np.float32),
}
BINARY_HEADER = "inference-header-content-length"
_HEAD = json.JSONDecoder()
# The numpy dtype of each fixed-size datatype's elements in binary tensor data.
_ELEMENTS = {
    "BOOL": "u1",  # 0 or 1, made booleans as JSON's 0/1 are
    "UINT8": "u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "BF16": "<u2",  # a float32's upper 16 bits, widened by _binary_elements
    "FP32": "<f4",
    "FP64": "<f8",
}


class _Tensor:
    """One decoded tensor: ``rows`` × ``width`` values, numeric as a 2-D array, else flat.

    ``single`` turns an FP16, BF16 or FP32 tensor's values, which ``matrix``
    holds as float64, into values of that type; ``scalar`` is true for shape ``[]``.
    """

    __slots__ = ("flat", "matrix", "name", "rows", "scalar", "single", "width")

    def __init__(
        self,
        name: str,
        rows: int,
        width: int,
        matrix: npt.NDArray[Any] | None,
        flat: list[Any] | None,
        single: Callable[[npt.NDArray[np.float64]], npt.NDArray[np.floating[Any]]] | None = None,
        scalar: bool = False,
    ) -> None:
        self.name = name
        self.rows = rows
        self.width = width
        self.matrix = matrix
        self.flat = flat
        self.single = single
        self.scalar = scalar

    def repeated(self, rows: int) -> _Tensor:
        """This scalar's value in each of ``rows`` rows."""
        matrix = None if self.matrix is None else np.repeat(self.matrix, rows, axis=0)
        flat = None if self.flat is None else self.flat * rows
        return _Tensor(self.name, rows, 1, matrix, flat, self.single)

    def column(self, position: int, categorical: bool = False) -> Column:
        if self.matrix is not None:
            if categorical and self.single is not None:
                # A category sent as FP32 is that float32, spelled 0.1 (not 0.10000000149011612).
                with np.errstate(over="ignore"):  # JSON data beyond FP32's range: inf
                    return self.single(self.matrix[:, position])
            return self.matrix[:, position].copy()
        assert self.flat is not None
        return self.flat[position :: self.width] if self.width > 1 else self.flat


# Error messages name where a tensor is; they are built when raising, not for every tensor.


def _named(name: str) -> str:
    return f"tensor {short(name)}"


def _shape(value: Any, name: str) -> list[int]:
    if not isinstance(value, list) or not all(type(dim) is int and dim >= 0 for dim in value):
        raise ProtocolError("bad_shape", f"{_named(name)} 'shape' must be an array of sizes >= 0")
    return value


def _numeric(data: list[Any] | npt.NDArray[Any], datatype: str, name: str) -> npt.NDArray[Any]:
    try:
        array = np.asarray(data)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise ProtocolError(
            "bad_shape", f"{_named(name)} 'data' is a ragged nested array"
        ) from None
    kind = array.dtype.kind
    if array.size == 0:
        return array.astype(bool if datatype == "BOOL" else np.float64)
    if kind == "O" and datatype != "BOOL":  # an integer beyond 64 bits among numbers
        floats = object_numbers(array)
        if floats is not None:
            return floats
    if datatype == "BOOL":
        if kind == "b":
            return array
        # The spec lets a server coerce; 0/1 is the usual non-JSON-bool spelling.
        if kind in "iu" and bool(((array == 0) | (array == 1)).all()):
            return array.astype(bool)
    elif kind in "iuf":
        # A fresh array: converted in place of a copy when it already is float64.
        return array.astype(np.float64, copy=False) if datatype in _FLOAT else array
    raise ProtocolError("bad_datatype", f"{_named(name)} data does not hold {datatype} values")


def _tensor(value: Any, what: str, key: str, index: int) -> _Tensor:
    if not isinstance(value, dict):
        raise ProtocolError(
            "bad_shape", f"{what} {key}[{index}] is {json_type(value)}, expected a tensor object"
        )
    name = value.get("name")
    if not isinstance(name, str):
        raise ProtocolError("bad_shape", f"{what} {key}[{index}] has no string 'name'")
    shape = _shape(value.get("shape"), name)
    datatype = value.get("datatype")
    if not isinstance(datatype, str) or datatype not in _DATATYPES:
        raise ProtocolError("bad_datatype", f"{_named(name)} has datatype {short(datatype)}")
    data = value.get("data")
    if not isinstance(data, list | np.ndarray):
        raise ProtocolError(
            "bad_shape", f"{_named(name)} 'data' is {json_type(data)}, expected an array"
        )
    scalar = not shape  # shape []: one value, one row (or every row of a batch beside it)
    rows = shape[0] if shape else 1
    width = shape[1] if len(shape) == 2 else math.prod(shape[1:])
    if datatype == "BYTES":
        flat = flatten(data if isinstance(data, list) else data.tolist())
        if not all(isinstance(item, str) for item in flat):
            raise ProtocolError(
                "bad_datatype", f"{_named(name)} BYTES data holds non-string values"
            )
        if len(flat) != rows * width:
            raise ProtocolError(
                "bad_shape", f"{_named(name)} has {len(flat)} values for shape {short(shape)}"
            )
        return _Tensor(name, rows, width, None, flat, scalar=scalar)
    array = _numeric(data, datatype, name)
    if array.size != rows * width:
        raise ProtocolError(
            "bad_shape", f"{_named(name)} has {array.size} values for shape {short(shape)}"
        )
    matrix = array if array.shape == (rows, width) else array.reshape(rows, width)
    if datatype == "BOOL":
        return _Tensor(name, rows, width, None, matrix.reshape(-1).tolist(), scalar=scalar)
    return _Tensor(name, rows, width, matrix, None, _SINGLE.get(datatype), scalar)


def _binary_elements(data: bytearray, datatype: Any, name: str) -> list[str] | npt.NDArray[Any]:
    """One tensor's binary data as its ``data``: BYTES elements as text, others as an array."""
    if datatype == "BYTES":
        values = []
        offset = 0
        while offset < len(data):
            if offset + 4 > len(data):
                raise ProtocolError("bad_shape", f"{_named(name)} binary BYTES data is cut short")
            (size,) = struct.unpack_from("<I", data, offset)
            offset += 4 + size
            if offset > len(data):
                raise ProtocolError("bad_shape", f"{_named(name)} binary BYTES data is cut short")
            # Not always text (an image model's input): bytes that are no UTF-8 read as U+FFFD.
            values.append(data[offset - size : offset].decode("utf-8", "replace"))
        return values
    element = _ELEMENTS.get(datatype) if isinstance(datatype, str) else None
    if element is None:
        raise ProtocolError("bad_datatype", f"{_named(name)} has datatype {short(datatype)}")
    if len(data) % np.dtype(element).itemsize:
        raise ProtocolError(
            "bad_shape", f"{_named(name)} binary data is not a whole number of {datatype} values"
        )
    elements = np.frombuffer(data, element)
    if datatype == "BF16":  # back in the upper half of a float32: that float32 exactly
        return (elements.astype("<u4") << 16).view("<f4")
    return elements


def binary_body(body: bytes | str, headers: Mapping[str, str], key: str) -> Any:
    """A body of the binary tensor data extension in its JSON form: the head, with the
    ``data`` of each tensor under ``key`` read from the bytes after it.

    Without the header that gives the JSON head's length (KServe's payload logger sends the
    body alone), the head is read where it ends, and must declare binary data.
    Raises ValueError when the body is no such body or its head does not fit it.
    """
    declared = next((v for k, v in headers.items() if k.lower() == BINARY_HEADER), None)
    if isinstance(body, str) or not (declared is None or declared.strip().isdigit()):
        raise ValueError("not a body of the binary tensor data extension")
    size = _head_size(body) if declared is None else int(declared)
    if size > len(body):
        raise ValueError("the JSON head is longer than the body")
    head = decode_json(body[:size])
    tensors = head.get(key) if isinstance(head, dict) else None
    if declared is None and not any(_binary_size(t) is not None for t in _listed(tensors)):
        raise ValueError("not a body of the binary tensor data extension")
    data = memoryview(body)[size:]
    for tensor in _listed(tensors):
        taken = _binary_size(tensor)
        if taken is None or "data" in tensor:
            continue
        name = tensor.get("name")
        if not 0 <= taken <= len(data):
            raise ProtocolError("bad_shape", f"{_named(name)} binary data is cut short")
        tensor["data"] = _binary_elements(bytearray(data[:taken]), tensor.get("datatype"), name)
        data = data[taken:]
    return head


def _head_size(body: bytes) -> int:
    """The length of the JSON value ``body`` starts with (its binary data after it), found by
    reading it: as Latin-1 each byte is one character, and JSON's own syntax is ASCII."""
    try:
        return _HEAD.raw_decode(body.decode("latin-1"))[1]
    except ValueError:
        raise ValueError("not a body of the binary tensor data extension") from None


def _listed(tensors: Any) -> list[Any]:
    return tensors if isinstance(tensors, list) else []


def _binary_size(tensor: Any) -> int | None:
    """A tensor's ``binary_data_size`` parameter, if it declares one."""
    parameters = tensor.get("parameters") if isinstance(tensor, dict) else None
    taken = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    return taken if type(taken) is int else None


def _tensors(body: dict[str, Any], key: str, reason: str, what: str) -> list[_Tensor]:
    if key not in body:
        raise ProtocolError(reason, f"{what} has no {key!r}")
    value = body[key]
    if not isinstance(value, list) or not value:
        raise ProtocolError("bad_shape", f"{what} {key!r} must be a non-empty array of tensors")
    tensors = [_tensor(item, what, key, index) for index, item in enumerate(value)]
    if len(tensors) == 1:
        return tensors
    names = [tensor.name for tensor in tensors]
    if len(set(names)) != len(names):
        raise ProtocolError("bad_shape", f"{what} {key!r} names a tensor twice")
    rows = {tensor.rows for tensor in tensors if not tensor.scalar}
    if len(rows) > 1:
        raise ProtocolError(
            "row_mismatch", f"{what} tensors disagree on rows: shape[0] in {sorted(rows)}"
        )
    if len(rows) == 1 and any(tensor.scalar for tensor in tensors):
        (batch,) = rows
        return [tensor.repeated(batch) if tensor.scalar else tensor for tensor in tensors]
    return tensors


def _map(tensors: list[_Tensor], specs: Sequence[FieldSpec], whole: bool = False) -> Part:
    """``tensors`` as columns of ``specs``: by name, else by position (``whole``: a tensor fills
    fields only if all its values do, see the module's docstring)."""
    part = Part(tensors[0].rows)
    fields = fields_of(specs)
    if any(tensor.name in fields.kinds for tensor in tensors):
        for tensor in tensors:
            if tensor.name not in fields.kinds:
                part.extra += tensor.width
            elif tensor.width != 1:
                raise ProtocolError(
                    "bad_shape",
                    f"tensor {short(tensor.name)} holds {tensor.width} values per row, "
                    "expected one for a configured field",
                )
            else:
                categorical = fields.kinds[tensor.name] == "categorical"
                part.columns[tensor.name] = tensor.column(0, categorical)
        return part
    position = 0
    for tensor in tensors:
        if whole and position + tensor.width > len(specs):
            part.extra += tensor.width  # not the configured outputs: it takes no position
            continue
        matrix = tensor.matrix
        numeric = matrix is not None and matrix.dtype.kind in "fiu"
        layout = fields.layout(None, tensor.width, numeric, start=min(position, len(specs)))
        for name, offset in layout.singles:
            part.columns[name] = tensor.column(offset, fields.kinds[name] == "categorical")
        if matrix is not None:
            add_layout_block(part, layout, matrix)
        part.extra += layout.extra
        position += tensor.width
    return part


class KServeV2Adapter(BaseAdapter):
    """Reads Open Inference Protocol (KServe V2) ``/infer`` bodies."""

    name = "kserve-v2"
    routes = _ROUTE

    def read_text(self, body: bytes | str, headers: Mapping[str, str]) -> Any:
        """A request of the binary tensor data extension in its JSON form; else ValueError."""
        return binary_body(body, headers, "inputs")

    def read_response_text(self, body: bytes | str, headers: Mapping[str, str]) -> Any:
        """A response of the binary tensor data extension in its JSON form; else ValueError."""
        return binary_body(body, headers, "outputs")

    def _extract(self, request: Any, response: Any) -> Extracted:
        """Columns of the ``inputs`` tensors paired with the ``outputs`` tensors."""
        if response is not None:
            raise_if_error(response, ("error",), "the inference server")
        body = require_object(request, "request")
        features = _map(_tensors(body, "inputs", "missing_inputs", "request"), self.features)
        predictions = None
        if response is not None:
            answer = require_object(response, "response")
            outputs = _tensors(answer, "outputs", "missing_outputs", "response")
            predictions = _map(outputs, self.predictions, whole=True)
        return pair(features, predictions)
