"""Body tables to field columns: rows, named columns and numeric matrices, mapped once.

Every adapter reduces its format to one of three shapes and hands it to a
function here, so the mapping rules are written (and tested) once:

- :func:`map_rows` - a list of rows.  An object row maps by key, a list row by
  position (onto ``labels``, which default to the configured names in config
  order), a scalar row is the value of the first label.  A nested list row is
  flattened row-major first.  In a response (``whole``), a list row without
  labels that runs past the last configured prediction fills none of them:
  it is other outputs than the configured ones (class probabilities where a
  class is configured), all its values count as extra columns and the
  predictions are absent, as a V2 output tensor maps whole or not at all.
- :func:`map_columns` - an object of named columns (TF Serving / MLflow
  columnar ``inputs``), by name only.
- :func:`map_matrix` - a numeric 2-D array whose columns carry ``labels``.
  Its numeric fields are handed over together as one block (a view of the
  matrix where they are consecutive); where each field sits is worked out
  once per adapter side and labels (:class:`Fields`), not on every request.

Each returns a :class:`~driftgauge.protocols._common.Part` (rows, columns,
extra column count), which :func:`~driftgauge.protocols._common.pair` joins
with the other body's.  Numeric list rows and numeric columns go through numpy
in one call (columns are then 1-D arrays); everything else is kept as Python
lists of JSON scalars.  Categorical fields always keep the exact JSON values
(``2`` stays ``2``, ``2.0`` stays ``2.0``, ``true`` stays ``True``), because
numpy would turn a mixed int/float batch into floats.

A JSON boolean is never a number here, whatever else its row holds: numpy
reads ``true`` among numbers as ``1``, so a column where it did gets the
rows' own values back (:func:`numeric_array`).  A categorical field then
reads ``true`` (as from an object row or a BOOL tensor), a numeric field a
boolean, which the monitor counts ``wrong_type``.  (Typed tensors, read by
their adapters, follow their declared datatype instead.)

Error messages name keys, field names, JSON types and shapes, never values.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from driftgauge.config import FieldSpec
from driftgauge.exceptions import ProtocolError
from driftgauge.protocols._common import Column, Part, flatten, scalar

__all__ = [
    "Fields",
    "Layout",
    "add_layout_block",
    "column_values",
    "fields_of",
    "map_columns",
    "map_matrix",
    "map_rows",
    "numeric_array",
    "rows_or_columns",
]

_NUMERIC_KINDS = "iuf"
# Values: up to this many, looking at each one's type costs less than numpy's calls.
_SCAN_LIMIT = 256
_SCALAR_TYPES = frozenset({str, int, float, bool, type(None)})

_NUMBER_TYPES = {int, float, bool}


def _number_array(values: list[Any]) -> npt.NDArray[Any] | None:
    """``values`` as an int or float array in one numpy call, or None when not all numeric.

    Only tried when the first leaf, and every value beside it, is a number, so
    string data and rows mixing strings with numbers never pay for a failed
    conversion (numpy made 50,000 such rows an array of strings in 0.1 s).
    Booleans mixed with numbers become 0 and 1 (numpy's rule).
    """
    innermost: Any = values
    while isinstance(innermost, list) and innermost and isinstance(innermost[0], list):
        innermost = innermost[0]
    if not isinstance(innermost, list) or not innermost:
        return None
    if not set(map(type, innermost)) <= _NUMBER_TYPES:
        return None
    try:
        array = np.asarray(values)
    except (ValueError, TypeError, OverflowError, RecursionError):
        return None
    return array if array.dtype.kind in _NUMERIC_KINDS else None


def numeric_array(values: list[Any]) -> npt.NDArray[Any] | None:
    """``values`` as an int or float array in one numpy call, or None when not all numbers.

    A boolean is not a number: values holding one stay a list, where a numeric
    field counts it ``wrong_type`` and a categorical one reads ``true``.
    """
    array = _number_array(values)
    if array is None or _holds_boolean(array, values):
        return None
    return array


def _has_bool(values: Iterable[Any]) -> bool:
    return bool in set(map(type, values))


def _zero_or_one(array: npt.NDArray[Any]) -> bool:
    """True when ``array`` holds a 0 or a 1: what numpy makes of a boolean among numbers."""
    return bool(np.count_nonzero(array == 0) or np.count_nonzero(array == 1))


def _holds_boolean(array: npt.NDArray[Any], values: list[Any]) -> bool:
    """True when ``values``, which numpy made into the numeric ``array``, hold a JSON boolean.

    numpy reads ``true`` among numbers as 1 and ``false`` as 0 and leaves no
    trace of it, so only an array holding a 0 or a 1 is looked at value by value.
    """
    return _zero_or_one(array) and _has_bool(values if array.ndim == 1 else flatten(values))


def _boolean_positions(matrix: npt.NDArray[Any], table: list[list[Any]]) -> list[int]:
    """The columns of ``matrix`` (made of the rows ``table``) where a row holds a JSON boolean."""
    small = matrix.size <= _SCAN_LIMIT
    if small:
        if not _has_bool(itertools.chain.from_iterable(table)):
            return []
    elif not _zero_or_one(matrix):
        return []
    candidates = np.flatnonzero(((matrix == 0) | (matrix == 1)).any(axis=0)).tolist()
    # Many candidates (0/1 codes): one pass over every value first, column by column only if
    # that finds a boolean.
    if (
        not small
        and 2 * len(candidates) > matrix.shape[1]
        and not _has_bool(itertools.chain.from_iterable(table))
    ):
        return []
    return [position for position in candidates if _has_bool([row[position] for row in table])]


@dataclass(frozen=True, slots=True)
class Layout:
    """Where configured fields sit among a matrix's columns (see :meth:`Fields.layout`)."""

    block: tuple[str, ...]  # numeric fields, handed over together as one block
    columns: slice | list[int]  # their columns (a slice when consecutive: a view, no copy)
    singles: tuple[tuple[str, int], ...]  # other configured fields and their columns
    extra: int  # columns the config does not know


class Fields:
    """One side's configured fields, by name, with the matrix layouts worked out so far.

    A wide model's matrix has the same layout in every request, and working it
    out is one Python step per column; :func:`fields_of` keeps one of these per
    adapter side, so that happens once.
    """

    __slots__ = ("_layouts", "kinds", "names", "specs")

    def __init__(self, specs: Sequence[FieldSpec]) -> None:
        self.specs = specs
        self.names = [spec.name for spec in specs]
        self.kinds = {spec.name: spec.type for spec in specs}
        self._layouts: dict[tuple[tuple[Hashable, ...] | None, int, bool, int], Layout] = {}

    def layout(
        self, labels: Sequence[Hashable] | None, width: int, numeric: bool, start: int = 0
    ) -> Layout:
        """The layout of ``width`` columns labelled ``labels`` (default: config order from ``start``).

        ``numeric``: the matrix holds numbers, so its numeric fields can form a block.
        """
        key = (None if labels is None else tuple(labels), width, numeric, start)
        layout = self._layouts.get(key)
        if layout is None:
            if len(self._layouts) >= _KEPT:  # labels may come from request bodies
                self._layouts.clear()
            layout = self._layouts[key] = self._work_out(labels, width, numeric, start)
        return layout

    def _work_out(
        self, labels: Sequence[Hashable] | None, width: int, numeric: bool, start: int
    ) -> Layout:
        names: Sequence[Hashable] = self.names[start:] if labels is None else labels
        block: list[str] = []
        positions: list[int] = []
        singles: list[tuple[str, int]] = []
        unknown: set[Hashable] = set()
        for position, label in enumerate(names[:width]):
            kind = self.kinds.get(label) if isinstance(label, str) else None
            if kind == "numeric" and numeric:
                block.append(cast(str, label))
                positions.append(position)
            elif kind is not None:
                singles.append((cast(str, label), position))
            else:
                unknown.add(label)
        first = positions[0] if positions else 0
        consecutive = positions == list(range(first, first + len(positions)))
        return Layout(
            tuple(block),
            slice(first, first + len(positions)) if consecutive else positions,
            tuple(singles),
            len(unknown) + max(0, width - len(names)),
        )


_KEPT = 64
_FIELDS: dict[int, Fields] = {}


def fields_of(specs: Sequence[FieldSpec]) -> Fields:
    """The :class:`Fields` of ``specs``, remembered when they are a tuple (as adapters hold them).

    Remembered by identity, since hashing every spec would cost as much as a
    layout; a list may change, so it gets fresh ones.
    """
    if not isinstance(specs, tuple):
        return Fields(specs)
    found = _FIELDS.get(id(specs))
    if found is None or found.specs is not specs:
        if len(_FIELDS) >= _KEPT:
            _FIELDS.clear()
        found = _FIELDS[id(specs)] = Fields(specs)
    return found


def map_matrix(
    matrix: npt.NDArray[Any],
    specs: Sequence[FieldSpec],
    labels: Sequence[Hashable] | None = None,
    whole: bool = False,
) -> Part:
    """Columns of a 2-D numeric array, labelled by ``labels`` (default: config order; with
    ``whole``, none when its rows run past the last field, see :func:`map_rows`)."""
    rows, width = matrix.shape
    if whole and labels is None and width > len(specs):
        return Part(rows, extra=width)
    layout = fields_of(specs).layout(labels, width, matrix.dtype.kind in "fiu")
    part = Part(rows, extra=layout.extra)
    for name, position in layout.singles:
        part.columns[name] = matrix[:, position].copy()
    add_layout_block(part, layout, matrix)
    return part


def add_layout_block(part: Part, layout: Layout, matrix: npt.NDArray[Any]) -> None:
    """Hand the numeric columns of ``matrix`` that ``layout`` found over as one block."""
    if layout.block:
        chosen = matrix[:, layout.columns]
        part.blocks.append((layout.block, chosen.astype(np.float64, copy=False)))


def _exact(spec: FieldSpec) -> bool:
    """Categorical values are labels: keep them exactly as JSON spelled them."""
    return spec.type == "categorical"


def _restore_exact(
    part: Part,
    rows: list[Any],
    ndim: int,
    matrix: npt.NDArray[Any],
    specs: Sequence[FieldSpec],
    labels: Sequence[Hashable] | None,
) -> None:
    """Give columns taken from ``matrix`` (made of ``rows``) the rows' own values where numpy
    changed them.

    Categorical columns of a float matrix (``2`` became ``2.0``) and every
    column holding a JSON boolean (``true`` became ``1``) get them back; a
    numeric field given its values back leaves the block.
    """
    fields = fields_of(specs)
    exact: set[Hashable] = set()
    if matrix.dtype.kind == "f":
        exact = {name for name in part.columns if fields.kinds.get(name) == "categorical"}
    if ndim == 1:
        # Scalar rows: one column, the rows themselves (a list per row, 50,000 of them,
        # woke the garbage collector over the whole parsed body: 80 ms).
        table: list[Any] = rows
        positions = [0] if _zero_or_one(matrix) and _has_bool(rows) else []
    else:
        if ndim == 2:
            table = rows
        elif not exact and matrix.size > _SCAN_LIMIT and not _zero_or_one(matrix):
            return  # no boolean: the rows need not be laid out as a table
        else:
            table = [flatten(row) for row in rows]
        positions = _boolean_positions(matrix, table)
    if not exact and not positions:
        return
    names: Sequence[Hashable] = fields.names if labels is None else labels
    booleans = {
        names[position]
        for position in positions
        if position < len(names) and names[position] in fields.kinds
    }
    restore = exact | booleans
    moved = booleans - part.columns.keys()  # numeric fields, in the block
    if moved:
        blocks, part.blocks = part.blocks, []
        for block_names, block in blocks:
            keep = [j for j, name in enumerate(block_names) if name not in moved]
            if keep:
                part.blocks.append((tuple(block_names[j] for j in keep), block[:, keep]))
    for position, label in enumerate(names[: matrix.shape[1]]):
        if label in restore:
            column = list(table) if ndim == 1 else [row[position] for row in table]
            part.columns[cast(str, label)] = column


def _map_objects(rows: list[dict[str, Any]], specs: Sequence[FieldSpec]) -> Part:
    """Columns of a batch of object rows, one pass per configured field instead of per value."""
    keys = Counter(itertools.chain.from_iterable(rows))  # the rows holding each key
    part = Part(len(rows))
    for spec in specs:
        held = keys[spec.name]
        if held:
            values = [row.get(spec.name) for row in rows]
            part.columns[spec.name] = column_values(values, spec.name, _exact(spec))
            if held < part.rows:
                part.absent[spec.name] = part.rows - held
    part.extra = len(keys.keys() - {spec.name for spec in specs})
    return part


def _table(rows: list[Any]) -> list[tuple[Any, ...]] | None:
    """The columns of ``rows`` when all are lists of one width without a nested list, else None.

    Rows that mix numbers and strings (a tabular model's usual body) are then
    read a column at a time (as object rows are): one body of 50,000 such rows
    took about 0.5 s of CPU read value by value (``bench.rows``), holding the
    proxy's loop for as long.
    """
    if not rows or type(rows[0]) is not list:
        return None
    width = len(rows[0])
    if not all(type(row) is list and len(row) == width for row in rows):
        return None
    columns = list(zip(*rows, strict=True))
    if any(list in set(map(type, column)) for column in columns):
        return None  # a nested list: each row is flattened first (see map_rows)
    return columns


def _map_table(
    count: int,
    columns: list[tuple[Any, ...]],
    specs: Sequence[FieldSpec],
    names: Sequence[Hashable],
    picks: Sequence[tuple[int, Hashable]],
) -> Part:
    """:func:`map_rows` of list rows given as their ``columns`` (see :func:`_table`)."""
    kinds = fields_of(specs).kinds
    part = Part(count)
    for position, label in picks:
        if position < len(columns):
            name = cast(str, label)
            exact = kinds[name] == "categorical"
            part.columns[name] = column_values(list(columns[position]), name, exact)
    width = len(columns)
    unknown = {label for label in names[:width] if label not in kinds}
    part.extra = len(unknown) + max(0, width - len(names))
    return part


def map_rows(
    rows: list[Any],
    specs: Sequence[FieldSpec],
    labels: Sequence[Hashable] | None = None,
    whole: bool = False,
) -> Part:
    """Columns of a list of rows: objects by key, lists by position onto ``labels``, scalars first.

    ``labels`` name the positions of list rows (Seldon ``names``, MLflow
    ``columns``); without them positions map onto the configured fields in
    config order, and with ``whole`` (predictions) a list row longer than the
    fields fills none of them (all its values are extra).  A field present in
    some rows only is ``None`` in the others, which the part counts in ``absent``.
    """
    count = len(rows)
    # A list row wider than this fills no field (all its values are extra).
    widest = len(specs) if whole and labels is None else None
    matrix = _number_array(rows) if count else None
    if matrix is not None and matrix.size:
        # All numbers, all rows the same width: one numpy call instead of a loop per value.
        flat = matrix.reshape(count, -1)
        if widest is not None and flat.shape[1] > widest:
            return Part(count, extra=flat.shape[1])
        part = map_matrix(flat, specs, labels)
        _restore_exact(part, rows, matrix.ndim, flat, specs, labels)
        return part
    if count and all(type(row) is dict for row in rows):
        return _map_objects(rows, specs)
    wanted = {spec.name for spec in specs}
    names: Sequence[Hashable] = [spec.name for spec in specs] if labels is None else labels
    picks = [(position, label) for position, label in enumerate(names) if label in wanted]
    table = _table(rows)
    if table is not None:
        if widest is not None and len(table) > widest:
            return Part(count, extra=len(table))
        return _map_table(count, table, specs, names, picks)
    columns: dict[str, list[Any]] = {}
    held: Counter[str] = Counter()  # the rows holding each field
    unknown: set[Hashable] = set()
    overflow = 0

    def put(name: str, index: int, value: Any) -> None:
        column = columns.get(name)
        if column is None:
            column = columns[name] = [None] * count
        column[index] = scalar(value, name)
        held[name] += 1

    for index, row in enumerate(rows):
        if isinstance(row, dict):
            for key, value in row.items():
                if key in wanted:
                    put(key, index, value)
                else:
                    unknown.add(key)
        elif isinstance(row, list):
            values = flatten(row) if any(isinstance(item, list) for item in row) else row
            width = len(values)
            if widest is not None and width > widest:
                overflow = max(overflow, width)
                continue
            for position, name in picks:
                if position < width:
                    put(name, index, values[position])
            unknown.update(label for label in names[:width] if label not in wanted)
            overflow = max(overflow, width - len(names))
        elif names:
            if names[0] in wanted:
                put(names[0], index, row)
            else:
                unknown.add(names[0])
        else:
            overflow = max(overflow, 1)
    absent = {name: count - rows for name, rows in held.items() if rows < count}
    return Part(count, dict(columns), len(unknown) + overflow, absent=absent)


def column_values(value: Any, name: str, exact: bool = True) -> Column:
    """One named column: a list of scalars (``[N]`` or ``[N, 1]``) or a lone scalar (one row).

    Unless ``exact`` (categorical fields: every value keeps its JSON type), an
    all-numeric column becomes a numpy array in one call.
    """
    if isinstance(value, dict):
        raise ProtocolError("bad_shape", f"column {name!r} is an object, expected an array")
    if not isinstance(value, list):
        return [scalar(value, name)]
    array = None if exact else numeric_array(value)
    if array is None:
        if all(type(item) in _SCALAR_TYPES for item in value):
            return value
        return [scalar(item, name) for item in value]
    if array.ndim == 1:
        return array
    if array.ndim == 2 and array.shape[1] == 1:
        return array[:, 0].copy()
    raise ProtocolError(
        "bad_shape", f"column {name!r} has shape {list(array.shape)}, expected one value per row"
    )


def map_columns(body: Mapping[str, Any], specs: Sequence[FieldSpec], where: str) -> Part:
    """Columns of an object of named columns (columnar format); names not configured are extra."""
    if not body:
        raise ProtocolError("bad_shape", f"{where} is an empty object")
    by_name = {spec.name: spec for spec in specs}
    part = Part(-1)
    for key, value in body.items():
        spec = by_name.get(key)
        if spec is None:
            part.extra += 1
            continue
        column = column_values(value, key, _exact(spec))
        if part.rows >= 0 and len(column) != part.rows:
            raise ProtocolError(
                "row_mismatch",
                f"{where}: column {key!r} has {len(column)} rows, others {part.rows}",
            )
        part.rows = len(column)
        part.columns[key] = column
    if part.rows < 0:
        # Nothing configured is here: the first array still tells the batch size.
        first = next((item for item in body.values() if isinstance(item, list)), None)
        part.rows = 1 if first is None else len(first)
    return part


def rows_or_columns(body: Any, specs: Sequence[FieldSpec], where: str, whole: bool = False) -> Part:
    """A TF Serving style tensor value: an object of named columns, a list of rows, or one scalar
    (``whole``: as :func:`map_rows` reads predictions)."""
    if isinstance(body, dict):
        return map_columns(body, specs, where)
    if isinstance(body, list):
        return map_rows(body, specs, whole=whole)
    return map_rows([body], specs)
