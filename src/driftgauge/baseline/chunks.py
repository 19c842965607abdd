"""Chunks of training data: one numpy column per configured field, and how values become one.

A :class:`Chunk` holds a run of rows (:data:`CHUNK_ROWS` at most, so memory
stays constant whatever the file size) as one :class:`Column` per configured
field: float64 with ``nan`` for missing numeric values, a string array plus a
missing count for categorical ones.  :func:`arrow_chunk` makes one of a
pyarrow ``RecordBatch`` or ``Table`` through the arrays' buffers (no Python
object per row); :func:`column_from_list` makes a column of Python values
(the standard-library readers' rows, or a CSV column pyarrow read as text).
The file readers are in :mod:`driftgauge.baseline.datafiles` (CSV's in
:mod:`~driftgauge.baseline.csvfiles`); the Spark and Dask runners convert
their Arrow batches here too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from driftgauge.canonical import canonical_category, canonical_strings, is_missing
from driftgauge.config import FieldSpec
from driftgauge.exceptions import DataError, first_line
from driftgauge.sketches.summary import CategoricalBinning, to_categories, to_floats

__all__ = [
    "CHUNK_ROWS",
    "CSV_NUMERIC_NULLS",
    "Chunk",
    "Column",
    "arrow_chunk",
    "buffer_values",
    "column_from_list",
    "csv_floats",
    "csv_number",
    "plain_utf8",
    "require_columns",
]

try:
    import pyarrow as pa
except ImportError:  # pragma: no cover - exercised only without the extra
    pa = None

CHUNK_ROWS = 65_536
# How a CSV cell spells a missing value.  Empty is missing in every column; the others
# (R's and pandas' NA, SQL's NULL, spreadsheets' #N/A) only in numeric columns, where they
# cannot be numbers: in a categorical column "NA" may be a category (North America), as it
# is for the sidecar.  NaN spellings are numbers (NaN), as in Parquet.
CSV_NUMERIC_NULLS = ("", "#N/A", "#N/A N/A", "#NA", "N/A", "NA", "NULL", "n/a", "null")


@dataclass(frozen=True, slots=True)
class Column:
    """One field of a chunk: numeric as float64 (nan = missing), categorical as strings."""

    values: npt.NDArray[Any]
    missing: int
    wrong_type: int = 0
    present: npt.NDArray[np.bool_] | None = None  # categorical: rows whose value is in ``values``
    # Categorical, from Arrow: ``values`` is ``dictionary[codes]`` (for a cheap tally).
    dictionary: npt.NDArray[np.str_] | None = None
    codes: npt.NDArray[np.intp] | None = None

    def tally(self) -> tuple[npt.NDArray[np.str_], npt.NDArray[np.int64]]:
        """A categorical column's distinct values (sorted) and how often each occurs."""
        if self.dictionary is None or self.codes is None:
            distinct, counts = np.unique(self.values, return_counts=True)
            return distinct, counts.astype(np.int64)
        # Two spellings in Arrow's dictionary may be one canonical category.
        distinct, inverse = np.unique(self.dictionary, return_inverse=True)
        per_code = np.bincount(self.codes, minlength=len(self.dictionary))
        counts = np.bincount(inverse, weights=per_code, minlength=len(distinct)).astype(np.int64)
        seen = counts > 0
        return distinct[seen], counts[seen]

    def aligned_indexes(self, binning: CategoricalBinning) -> npt.NDArray[np.intp]:
        """Each row's bucket (categorical), -1 for missing rows."""
        slots = binning.indexes(self.values)
        if self.present is None:
            return slots
        result = np.full(len(self.present), -1, dtype=np.intp)
        result[self.present] = slots
        return result


@dataclass(frozen=True, slots=True)
class Chunk:
    rows: int
    columns: dict[str, Column]
    bytes_read: int
    # Each numeric field's class keys of its finite values, ascending: filled by pass 1
    # (:class:`~driftgauge.baseline.passes.SketchPass`), kept by a runner for pass 2 in place
    # of the column (the local runner's spill files).
    keys: dict[str, npt.NDArray[np.uint32]] = field(default_factory=dict)


# Python's and pyarrow's words for bytes that are not UTF-8 (a spreadsheet's export in
# Windows-1252 or Latin-1); the codec's position is within a buffer, not the file.  (On a
# Dask worker, pandas' error arrives as its type's name alone; its engine="pyarrow" reads
# text as large_string.)  pyarrow's column position goes too: the other readers name none.
_NOT_UTF8 = re.compile(
    r"'utf-8' codec can't decode byte (0x[0-9a-f]{2})[^:]*: .*"
    r"|(?:In CSV column #\d+: )?CSV conversion error to (?:large_)?string: invalid UTF8 data"
    r"|^UnicodeDecodeError$"
)


def plain_utf8(message: str) -> str:
    """A reader's ``message``, saying plainly where it means the file is not UTF-8 text."""

    def said(match: re.Match[str]) -> str:
        byte = f" (byte {match[1]})" if match[1] else ""
        return f"not UTF-8 text{byte}: save the file as UTF-8"

    return _NOT_UTF8.sub(said, message)


def arrow_chunk(
    batch: Any, fields: Sequence[FieldSpec], source: str, bytes_read: int = 0, csv: bool = False
) -> Chunk:
    """The chunk of a pyarrow ``RecordBatch`` or ``Table`` holding ``fields``.

    ``source`` names the data in the error raised when a field's column is
    missing or cannot be read.  ``csv``: the batch was parsed from a CSV file
    (by :mod:`~driftgauge.baseline.datafiles`, categorical columns as text with
    no missing value): an empty categorical cell is missing, and a numeric
    column read as text is converted here.
    """
    require_columns(source, batch.schema.names, fields)
    columns = {}
    for spec in fields:
        try:
            columns[spec.name] = _arrow_column(_combined(batch.column(spec.name)), spec, csv)
        except (pa.ArrowException, KeyError, ValueError, TypeError) as exc:
            problem = plain_utf8(first_line(exc))
            raise DataError(f"{source}: column {spec.name!r}: {problem}") from None
    return Chunk(batch.num_rows, columns, bytes_read)


def _combined(column: Any) -> Any:
    """A Table's ChunkedArray as one Array (a RecordBatch's column already is one)."""
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def require_columns(source: str, present: Sequence[str], fields: Sequence[FieldSpec]) -> None:
    """A DataError naming the ``fields`` missing from the column names ``present``."""
    missing = [f.name for f in fields if f.name not in present]
    if missing:
        raise DataError(
            f"{source}: no column named {', '.join(map(repr, missing))} (the config's fields)"
        )
    twice = [f.name for f in fields if present.count(f.name) > 1]
    if twice:
        raise DataError(f"{source}: more than one column named {', '.join(map(repr, twice))}")


# Arrow arrays are read through their buffers: ``to_numpy`` imports pandas when it is
# installed, half a second in each worker process.


def buffer_values(array: Any, dtype: type[np.generic]) -> Any:
    """The values of a fixed-width Arrow array (nulls unset), a read-only view."""
    offset, size = array.offset, len(array)
    return np.frombuffer(array.buffers()[1], dtype=dtype, count=offset + size)[offset:]


def _valid(array: Any) -> npt.NDArray[np.bool_]:
    """Which values of an Arrow array are not null."""
    offset, size = array.offset, len(array)
    bitmap = array.buffers()[0]
    if bitmap is None or not array.null_count:
        return np.ones(size, dtype=np.bool_)
    bits = np.unpackbits(
        np.frombuffer(bitmap, dtype=np.uint8), count=offset + size, bitorder="little"
    )
    valid: npt.NDArray[np.bool_] = bits[offset:].astype(np.bool_)
    return valid


def _float_values(array: Any) -> npt.NDArray[np.float64]:
    """A float64 Arrow array as numpy, nulls as NaN."""
    values: npt.NDArray[np.float64] = buffer_values(array, np.float64)
    if array.null_count:
        values = values.copy()
        values[~_valid(array)] = np.nan
    return values


def _arrow_column(array: Any, spec: FieldSpec, csv: bool = False) -> Column:
    if spec.type == "numeric":
        if (
            pa.types.is_floating(array.type)
            or pa.types.is_integer(array.type)
            or pa.types.is_decimal(array.type)
            or pa.types.is_null(array.type)
        ):
            # Not safe: an integer past 2**53 becomes the nearest float, as in JSON.
            values = _float_values(array.cast(pa.float64(), safe=False))
            return Column(values, int(array.null_count))
        if csv and pa.types.is_string(array.type):  # a column with cells that are not numbers
            return column_from_list([csv_number(cell) for cell in array.to_pylist()], spec)
        if pa.types.is_boolean(array.type):
            return Column(
                np.full(len(array), np.nan),
                int(array.null_count),
                len(array) - int(array.null_count),
            )
        floats, missing, wrong = to_floats(array.to_pylist())
        return Column(floats, missing, wrong)
    # Each distinct value is spelled canonically once (Arrow hashes them in C++), and the
    # column is gathered from them: no Python object per row.
    missing_slots: list[int] = []  # dictionary entries that are missing values
    if pa.types.is_floating(array.type):
        # Arrow's own float text is not the sidecar's (1.2345678901e+10, -0, 0.00001).
        encoded = array.dictionary_encode()
        distinct = encoded.dictionary.to_numpy(zero_copy_only=False)
        dictionary = [canonical_category(value) for value in distinct]
        missing_slots = np.flatnonzero(np.isnan(distinct)).tolist()  # a NaN (is_missing)
    else:
        strings = array.cast(pa.string()) if not pa.types.is_string(array.type) else array
        encoded = strings.dictionary_encode()
        dictionary = encoded.dictionary.to_pylist()
        if csv and "" in dictionary:  # an empty cell is missing
            missing_slots = [dictionary.index("")]
    indices = buffer_values(encoded.indices, np.int32)
    present = _valid(encoded.indices)
    if missing_slots:
        present &= ~np.isin(indices, missing_slots)
    if present.all():
        present_rows = None
    else:
        present_rows, indices = present, indices[present]
    spelled = canonical_strings(dictionary)
    values = spelled[indices] if len(spelled) else np.empty(0, dtype=np.str_)
    return Column(values, len(array) - len(indices), 0, present_rows, spelled, indices)


def column_from_list(values: list[Any], spec: FieldSpec) -> Column:
    """A column of Python values for ``spec`` (None is missing): rows the standard library read."""
    if spec.type == "numeric":
        floats, missing, wrong = to_floats(values)
        return Column(floats, missing, wrong)
    strings, missing = to_categories(values)
    present = np.asarray([not is_missing(v) for v in values], dtype=np.bool_) if missing else None
    return Column(strings, missing, 0, present)


def csv_floats(cells: Any) -> Any:
    """A CSV column read as text (a pyarrow string array) as float64, its null spellings
    (:data:`CSV_NUMERIC_NULLS`) null, or None when a cell is not a number (read each cell
    with :func:`csv_number` then): the cells pyarrow's CSV reader reads as numbers."""
    import pyarrow.compute as pc

    spelled_null = pc.is_in(cells, value_set=pa.array(CSV_NUMERIC_NULLS))
    # Arrow's cast takes no spaces around a number, as pyarrow's CSV reader and float() do.
    numbers = pc.if_else(spelled_null, pa.scalar(None, cells.type), pc.utf8_trim_whitespace(cells))
    try:
        return numbers.cast(pa.float64())
    except pa.ArrowInvalid:
        return None


def csv_number(cell: str | None) -> Any:
    """A CSV cell of a numeric column: a float, None (missing) or the text (not a number)."""
    if cell is None or cell in CSV_NUMERIC_NULLS:
        return None
    try:
        return float(cell)
    except ValueError:
        return cell
