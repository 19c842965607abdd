"""Building blocks shared by the protocol adapters: JSON helpers, body parts and pairing.

An adapter reads each body into a :class:`Part` (rows, columns, extra column
count), mostly through the mapping functions of
:mod:`driftgauge.protocols._tables`; :func:`pair` joins the request's part
with the response's part into an :class:`~driftgauge.typing.Extracted`.
:class:`BaseAdapter` holds what every adapter shares: the constructor, route
matching, fields read under their body names (:func:`wire_specs`, renamed
back by :func:`rename_columns`) and the request/response pairing.  The small
JSON helpers (:func:`json_type`, :func:`short`, :func:`require_object`,
:func:`raise_if_error`, :func:`flatten`, :func:`scalar`) build the one-line
errors; :func:`object_numbers` reads integers beyond 64 bits in a typed tensor.

Error messages name keys, field names, JSON types and shapes, never values.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

import numpy as np
import numpy.typing as npt

from driftgauge.config import FieldSpec
from driftgauge.exceptions import ProtocolError
from driftgauge.sketches.summary import to_floats
from driftgauge.typing import Block, Columns, Extracted

__all__ = [
    "BaseAdapter",
    "Column",
    "Part",
    "flatten",
    "json_type",
    "object_numbers",
    "pair",
    "raise_if_error",
    "rename_columns",
    "require_object",
    "scalar",
    "short",
    "wire_specs",
]

Column = list[Any] | npt.NDArray[Any]
"""One value per row: a list of JSON scalars, or a 1-D numpy array for numeric data."""

_JSON_TYPES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    type(None): "null",
}


def json_type(value: Any) -> str:
    """The JSON type of ``value`` for an error message (never the value itself)."""
    return _JSON_TYPES.get(type(value), type(value).__name__)


def short(text: Any, limit: int = 40) -> str:
    """``repr`` of a body-supplied name, cut to ``limit`` characters for a one-line message."""
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def require_object(body: Any, what: str) -> dict[str, Any]:
    """``body`` as a JSON object, else ``ProtocolError("not_object")``."""
    if not isinstance(body, dict):
        raise ProtocolError("not_object", f"{what} is {json_type(body)}, expected an object")
    return body


def raise_if_error(body: Any, keys: Sequence[str], server: str) -> None:
    """Raise ``ProtocolError("error_response")`` when ``body`` is a server's error object.

    The server's own message is not repeated: it may quote the request data.
    """
    if isinstance(body, dict):
        found = [key for key in keys if body.get(key) is not None]
        if found:
            raise ProtocolError(
                "error_response", f"{server} returned an error body (key {found[0]!r})"
            )


def flatten(value: list[Any]) -> list[Any]:
    """The non-list leaves of a nested list in row-major order (iterative: no recursion limit)."""
    out: list[Any] = []
    stack: list[Any] = [iter(value)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def object_numbers(array: npt.NDArray[Any]) -> npt.NDArray[np.float64] | None:
    """An object array of JSON numbers as floats (±inf beyond float range); None if it holds
    anything else.

    numpy holds an integer beyond 64 bits (JSON read exactly) only as an object, and so every
    array with one; as a float it is the value a list row's number is.
    """
    floats, missing, wrong = to_floats(array.ravel().tolist())
    return None if missing or wrong else floats.reshape(array.shape)


def scalar(value: Any, name: str) -> Any:
    """``value`` as one JSON scalar for field ``name``; ``[x]`` and ``[[x]]`` are squeezed."""
    while isinstance(value, list) and len(value) == 1:
        value = value[0]
    if value is None or isinstance(value, str | int | float):
        return value
    raise ProtocolError(
        "bad_shape", f"field {name!r} holds {json_type(value)} in a row, expected one scalar"
    )


@dataclass(slots=True)
class Part:
    """What one body (request or response) contributed: its rows and its columns."""

    rows: int
    columns: dict[str, Column] = field(default_factory=dict)
    extra: int = 0
    blocks: list[Block] = field(default_factory=list)
    absent: dict[str, int] = field(default_factory=dict)  # rows lacking a field others hold


def pair(features: Part, predictions: Part | None) -> Extracted:
    """One :class:`Extracted` from the request's part and the response's part (or None)."""
    columns: dict[str, Column] = dict(features.columns)
    extra = features.extra
    blocks = list(features.blocks)
    absent = dict(features.absent)
    if predictions is not None:
        if predictions.rows != features.rows:
            raise ProtocolError(
                "row_mismatch",
                f"request has {features.rows} rows but response has {predictions.rows}",
            )
        columns.update(predictions.columns)
        blocks.extend(predictions.blocks)
        extra += predictions.extra
        absent.update(predictions.absent)
    if blocks:
        return Extracted(features.rows, Columns(columns, blocks), extra, absent)
    # numpy arrays stand in for Sequence here: 1-D, indexable, with len().
    return Extracted(features.rows, cast(Mapping[str, Sequence[Any]], columns), extra, absent)


def _strip_query(path: str) -> str:
    return path.partition("?")[0]


def wire_specs(specs: Sequence[FieldSpec]) -> tuple[tuple[FieldSpec, ...], dict[str, str]]:
    """``specs`` under the names the bodies use (``path`` where given), and those names' fields.

    The second item maps each body name that differs to the configured
    (metric) name; it is empty when no field has a ``path``.
    """
    renamed: dict[str, str] = {}
    wire = []
    for spec in specs:
        if spec.path is not None and spec.path != spec.name:
            renamed[spec.path] = spec.name
            spec = dataclasses.replace(spec, name=spec.path, path=None)
        wire.append(spec)
    return tuple(wire), renamed


def rename_columns(extracted: Extracted, names: Mapping[str, str]) -> Extracted:
    """``extracted`` with each column under ``names[column]`` (unlisted names kept).

    One dictionary step per column, not per value: numeric blocks keep their
    matrix and only get new names.
    """
    columns = extracted.columns
    if isinstance(columns, Columns):
        single = {names.get(key, key): column for key, column in columns.single.items()}
        blocks = [
            (tuple(names.get(key, key) for key in keys), matrix) for keys, matrix in columns.blocks
        ]
        renamed: Mapping[str, Sequence[Any]] = Columns(single, blocks)
    else:
        renamed = {names.get(key, key): column for key, column in columns.items()}
    absent = {names.get(key, key): count for key, count in extracted.absent.items()}
    return Extracted(extracted.rows, renamed, extracted.extra_columns, absent)


class BaseAdapter:
    """Common constructor, route matching, body names and the request/response pairing.

    Subclasses set ``name`` and ``routes``, and either ``error_keys``,
    ``server``, ``_request`` and ``_response`` (the common shape of a body
    pair), or their own ``_extract``.

    A field with a ``path`` is read from the body under that name (its
    column, key or tensor) and reported under its configured name: the
    subclass sees ``features`` and ``predictions`` already under the body's
    names, and ``extract`` renames the columns back.  The jsonpath adapter,
    whose paths are JSONPaths, turns this off (``body_names = False``).
    """

    name: str = ""
    routes: re.Pattern[str] = re.compile(r"(?!)")
    error_keys: tuple[str, ...] = ("error",)
    server: str = "the model server"
    body_names: ClassVar[bool] = True

    def __init__(self, features: Sequence[FieldSpec], predictions: Sequence[FieldSpec]) -> None:
        self.features: tuple[FieldSpec, ...] = tuple(features)
        self.predictions: tuple[FieldSpec, ...] = tuple(predictions)
        self.metric_names: dict[str, str] = {}
        if self.body_names:
            self.features, inputs = wire_specs(self.features)
            self.predictions, outputs = wire_specs(self.predictions)
            self.metric_names = {**inputs, **outputs}

    def matches(self, path: str) -> bool:
        """True for this protocol's prediction routes; ``""`` (path unknown) always matches."""
        path = _strip_query(path)
        return not path or self.routes.fullmatch(path) is not None

    def route(self, path: str) -> BaseAdapter | None:
        """The adapter that reads bodies sent to ``path``: this one, or None when not a route."""
        return self if self.matches(path) else None

    def read_text(self, body: bytes | str, headers: Mapping[str, str]) -> Any:
        """A request body that is not JSON, read in another format the protocol takes.

        Raises ValueError when it is in none (the caller counts ``invalid_json``).
        """
        raise ValueError(f"{self.name} request bodies are JSON")

    def read_response_text(self, body: bytes | str, headers: Mapping[str, str]) -> Any:
        """A response body that is not JSON, read in another format the protocol takes.

        Raises ValueError when it is in none (the caller counts ``invalid_json``).
        """
        raise ValueError(f"{self.name} response bodies are JSON")

    def extract(self, request: Any, response: Any) -> Extracted:
        """The request's rows paired with the response's; raises ProtocolError on a bad body."""
        extracted = self._extract(request, response)
        if self.metric_names:
            return rename_columns(extracted, self.metric_names)
        return extracted

    def _extract(self, request: Any, response: Any) -> Extracted:
        if response is not None:
            raise_if_error(response, self.error_keys, self.server)
        features = self._request(request)
        predictions = None if response is None else self._response(response)
        return pair(features, predictions)

    def _request(self, request: Any) -> Part:  # pragma: no cover - overridden
        raise NotImplementedError

    def _response(self, response: Any) -> Part:  # pragma: no cover - overridden
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(features={[f.name for f in self.features]}, "
            f"predictions={[p.name for p in self.predictions]})"
        )
