"""Training-data files read in chunks of columns: CSV, JSON Lines and Parquet.

Each reader yields ``Chunk`` objects (one numpy array per configured field:
float64 with ``nan`` for missing numeric values, a string array plus a
missing count for categorical ones) and the bytes consumed so far, so
memory stays constant whatever the file size.  CSV and JSON Lines use
pyarrow's streaming readers when pyarrow is installed (the ``parquet``
extra) and the standard library otherwise; Parquet needs pyarrow.  A file
is a :class:`~driftgauge.baseline.inputs.DataInput` (local, in an object
store or at a URL) or, for convenience, a local path.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from driftgauge.baseline.inputs import DataInput, as_input, data_format
from driftgauge.canonical import canonical_strings
from driftgauge.config import FieldSpec
from driftgauge.exceptions import DataError
from driftgauge.sketches.summary import CategoricalBinning, to_categories, to_floats

__all__ = [
    "Chunk",
    "Column",
    "arrow_available",
    "arrow_chunk",
    "file_format",
    "parquet_metadata",
    "part_batches",
    "read_chunks",
    "require_columns",
]

try:
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.json as pa_json
    import pyarrow.parquet as pa_parquet
except ImportError:  # pragma: no cover - exercised only without the extra
    pa = None

CHUNK_ROWS = 65_536


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


def arrow_available() -> bool:
    """Whether pyarrow is installed (its readers split, parse and spill files)."""
    return pa is not None


def file_format(path: Path) -> str:
    """``csv``, ``jsonl`` or ``parquet`` from the file name, or a DataError."""
    return data_format(str(path), path.suffix)


def read_chunks(
    source: DataInput | Path, fields: Sequence[FieldSpec], chunk_rows: int = CHUNK_ROWS
) -> Iterator[Chunk]:
    """Stream ``source`` as chunks holding exactly the configured fields."""
    source = as_input(source)
    yield from _reported(source, _format_chunks(source, fields, chunk_rows))


def _format_chunks(
    source: DataInput, fields: Sequence[FieldSpec], chunk_rows: int
) -> Iterator[Chunk]:
    fmt = source.format
    if fmt == "parquet":
        if pa is None:
            raise DataError(
                f"{source.name}: reading Parquet needs pyarrow: pip install 'driftgauge[parquet]'"
            )
        yield from _parquet_chunks(source, fields, chunk_rows)
    elif pa is not None and fmt == "jsonl":
        yield from _arrow_jsonl_chunks(source, fields, chunk_rows)
    elif pa is not None:
        yield from _arrow_text_chunks(source, fmt, fields, chunk_rows)
    elif fmt == "csv":
        yield from _stdlib_csv_chunks(source, fields, chunk_rows)
    else:
        yield from _stdlib_jsonl_chunks(source, fields, chunk_rows)


T = TypeVar("T")


def _reported(source: DataInput, items: Iterator[T]) -> Iterator[T]:
    """``items``, with a reader's error turned into a one-line DataError naming ``source``."""
    fmt = source.format
    try:
        yield from items
    except DataError:
        raise
    except Exception as exc:
        # pyarrow's errors (ArrowInvalid is also a ValueError) and the standard library's.
        known = (OSError, ValueError, TypeError, UnicodeDecodeError)
        if not isinstance(exc, known) and not (
            pa is not None and isinstance(exc, pa.ArrowException)
        ):
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if fmt == "csv":
            message = _name_csv_column(source, message)
        raise DataError(f"{source.name}: cannot read {fmt.upper()} data: {message}") from None


def parquet_metadata(source: DataInput) -> Any:
    """A Parquet file's metadata (its row groups); a read error as for its data."""

    def read() -> Iterator[Any]:
        handle = source.open_arrow()
        try:
            yield pa_parquet.ParquetFile(handle).metadata
        finally:
            handle.close()

    (metadata,) = _reported(source, read())
    return metadata


def part_batches(
    source: DataInput,
    fields: Sequence[FieldSpec],
    chunk_rows: int,
    start: int = 0,
    stop: int = 0,
    row_groups: Sequence[int] = (),
    threads: bool = True,
) -> Iterator[Any]:
    """pyarrow RecordBatches of ``fields`` from part of a CSV or Parquet file.

    CSV: the lines in bytes ``[start, stop)`` (cut at line ends), parsed with
    the file's header.  Parquet: the row groups ``row_groups`` (all if none),
    decoded on pyarrow's threads if ``threads`` (not in a worker process, where
    the other workers use the cores: 0.3–0.5 s less CPU per 1M rows).
    """
    if pa is None:
        raise DataError(f"{source.name}: building a baseline needs pyarrow: pip install pyarrow")
    if source.format == "csv":
        batches = _csv_range_batches(source, fields, start, stop)
    else:
        batches = _parquet_batches(source, fields, chunk_rows, row_groups, threads)
    yield from _reported(source, batches)


def _csv_options(source: DataInput, fields: Sequence[FieldSpec]) -> tuple[Any, Any]:
    types = {f.name: pa.float64() if f.type == "numeric" else pa.string() for f in fields}
    convert = pa_csv.ConvertOptions(
        column_types=types,
        include_columns=[f.name for f in fields],
        include_missing_columns=True,
        strings_can_be_null=True,
    )
    return pa_csv.ParseOptions(delimiter=source.delimiter), convert


def _csv_range_batches(
    source: DataInput, fields: Sequence[FieldSpec], start: int, stop: int
) -> Iterator[Any]:
    parse, convert = _csv_options(source, fields)
    _require(source.name, _csv_header(source, source.delimiter), fields)
    with source.open() as handle:
        header = handle.readline()
        handle.seek(start)
        body = handle.read(stop - start)
    if not body:
        return
    reader = pa_csv.open_csv(
        pa.BufferReader(header + body),
        read_options=pa_csv.ReadOptions(block_size=1 << 22),
        parse_options=parse,
        convert_options=convert,
    )
    yield from reader


def _parquet_batches(
    source: DataInput,
    fields: Sequence[FieldSpec],
    chunk_rows: int,
    row_groups: Sequence[int],
    threads: bool,
) -> Iterator[Any]:
    handle = source.open_arrow()
    try:
        parquet = pa_parquet.ParquetFile(handle, pre_buffer=False, buffer_size=1 << 20)
        _require(source.name, parquet.schema_arrow.names, fields)
        yield from parquet.iter_batches(
            batch_size=chunk_rows,
            row_groups=list(row_groups) or None,
            columns=[f.name for f in fields],
            use_threads=threads,
        )
    finally:
        handle.close()


def arrow_chunk(batch: Any, fields: Sequence[FieldSpec], source: str, bytes_read: int = 0) -> Chunk:
    """The chunk of a pyarrow ``RecordBatch`` or ``Table`` holding ``fields``.

    ``source`` names the data in the error raised when a field's column is missing.
    """
    _require(source, batch.schema.names, fields)
    columns = {f.name: _arrow_column(_combined(batch.column(f.name)), f) for f in fields}
    return Chunk(batch.num_rows, columns, bytes_read)


def _combined(column: Any) -> Any:
    """A Table's ChunkedArray as one Array (a RecordBatch's column already is one)."""
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def _require(name: str, present: Sequence[str], fields: Sequence[FieldSpec]) -> None:
    missing = [f.name for f in fields if f.name not in present]
    if missing:
        raise DataError(
            f"{name}: no column named {', '.join(map(repr, missing))} (the config's fields)"
        )


def require_columns(source: str, present: Sequence[str], fields: Sequence[FieldSpec]) -> None:
    """A DataError naming the ``fields`` missing from the column names ``present``."""
    _require(source, present, fields)


# Arrow arrays are read through their buffers: ``to_numpy`` imports pandas when it is
# installed, half a second in each worker process.


def _buffer(array: Any, dtype: type[np.generic]) -> Any:
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
    values: npt.NDArray[np.float64] = _buffer(array, np.float64)
    if array.null_count:
        values = values.copy()
        values[~_valid(array)] = np.nan
    return values


def _arrow_column(array: Any, spec: FieldSpec) -> Column:
    if spec.type == "numeric":
        if (
            pa.types.is_floating(array.type)
            or pa.types.is_integer(array.type)
            or pa.types.is_decimal(array.type)
            or pa.types.is_null(array.type)
        ):
            values = _float_values(array.cast(pa.float64()))
            return Column(values, int(array.null_count))
        if pa.types.is_boolean(array.type):
            return Column(
                np.full(len(array), np.nan),
                int(array.null_count),
                len(array) - int(array.null_count),
            )
        floats, missing, wrong = to_floats(array.to_pylist())
        return Column(floats, missing, wrong)
    strings = array.cast(pa.string()) if not pa.types.is_string(array.type) else array
    nulls = int(strings.null_count)
    present = None
    if nulls:
        present = _valid(strings)
        strings = strings.drop_null()
    # Each distinct value is spelled canonically once (Arrow hashes them in C++), and the
    # column is gathered from them: no Python object per row.
    encoded = strings.dictionary_encode()
    spelled = canonical_strings(encoded.dictionary.to_pylist())
    indices = _buffer(encoded.indices, np.int32)
    values = spelled[indices] if len(spelled) else np.empty(0, dtype=np.str_)
    return Column(values, nulls, 0, present, spelled, indices)


def _batches_to_chunks(
    batches: Iterator[Any], source: DataInput, fields: Sequence[FieldSpec], position: Any
) -> Iterator[Chunk]:
    for batch in batches:
        _require(source.name, batch.schema.names, fields)
        if batch.num_rows == 0:
            continue
        columns = {f.name: _arrow_column(batch.column(f.name), f) for f in fields}
        yield Chunk(batch.num_rows, columns, position())


def _parquet_chunks(
    source: DataInput, fields: Sequence[FieldSpec], chunk_rows: int
) -> Iterator[Chunk]:
    # pre_buffer=False reads column chunks as they are needed instead of whole row groups
    # ahead, and the handle is closed at the end: memory stays flat with the file's size.
    handle = source.open_arrow()
    try:
        parquet = pa_parquet.ParquetFile(handle, pre_buffer=False, buffer_size=1 << 20)
        _require(source.name, parquet.schema_arrow.names, fields)
        total = source.size
        rows_total = max(1, parquet.metadata.num_rows)
        done = 0

        def position() -> int:
            return int(total * min(1.0, done / rows_total))

        for batch in parquet.iter_batches(batch_size=chunk_rows, columns=[f.name for f in fields]):
            done += batch.num_rows
            yield from _batches_to_chunks(iter([batch]), source, fields, position)
    finally:
        handle.close()


def _arrow_text_chunks(
    source: DataInput, fmt: str, fields: Sequence[FieldSpec], chunk_rows: int
) -> Iterator[Chunk]:
    types = {f.name: pa.float64() if f.type == "numeric" else pa.string() for f in fields}
    handle = source.open_arrow()
    block = 1 << 22
    try:
        if fmt == "csv":
            parse, convert = _csv_options(source, fields)
            reader = pa_csv.open_csv(
                handle,
                read_options=pa_csv.ReadOptions(block_size=block),
                parse_options=parse,
                convert_options=convert,
            )
            _require(source.name, _csv_header(source, source.delimiter), fields)
        else:
            reader = pa_json.open_json(
                handle,
                read_options=pa_json.ReadOptions(block_size=block),
                parse_options=pa_json.ParseOptions(
                    explicit_schema=pa.schema(types), unexpected_field_behavior="ignore"
                ),
            )
        yield from _batches_to_chunks(iter(reader), source, fields, handle.tell)
    finally:
        handle.close()


def _arrow_jsonl_chunks(
    source: DataInput, fields: Sequence[FieldSpec], chunk_rows: int
) -> Iterator[Chunk]:
    """pyarrow's JSON Lines reader, and the standard library's from the row where it gives up.

    pyarrow reads a categorical field as a JSON string (its explicit schema
    has no "any JSON value" type) and refuses a number or a boolean there,
    such as a 0/1 flag or an integer code: the standard library reads those
    as their canonical text, like the CSV and Parquet readers do.
    """
    rows = 0
    try:
        for chunk in _arrow_text_chunks(source, "jsonl", fields, chunk_rows):
            rows += chunk.rows
            yield chunk
    except pa.ArrowInvalid as exc:
        if "changed from string to" not in str(exc):  # only categorical fields are strings
            raise
        yield from _stdlib_jsonl_chunks(source, fields, chunk_rows, skip=rows)


_CSV_COLUMN = re.compile(r"^In CSV column #(\d+): ")


def _name_csv_column(source: DataInput, message: str) -> str:
    """pyarrow's ``In CSV column #2: ...`` with the column's name instead of its position."""
    match = _CSV_COLUMN.match(message)
    if match is None:
        return message
    header = _csv_header(source, source.delimiter)
    position = int(match.group(1))
    if position >= len(header):
        return message
    return f"column {header[position]!r}: {message[match.end() :]}"


def _csv_header(source: DataInput, delimiter: str) -> list[str]:
    # utf-8-sig: a byte order mark (spreadsheet exports) is not part of the first name;
    # pyarrow drops it too, and columns are matched by exact name.
    with io.TextIOWrapper(source.open(), newline="", encoding="utf-8-sig") as text:
        return next(csv.reader(text, delimiter=delimiter), [])


def _column_from_list(values: list[Any], spec: FieldSpec) -> Column:
    if spec.type == "numeric":
        floats, missing, wrong = to_floats(values)
        return Column(floats, missing, wrong)
    strings, missing = to_categories(values)
    present = np.asarray([v is not None for v in values], dtype=np.bool_) if missing else None
    return Column(strings, missing, 0, present)


def _stdlib_csv_chunks(
    source: DataInput, fields: Sequence[FieldSpec], chunk_rows: int
) -> Iterator[Chunk]:
    delimiter = source.delimiter
    with source.open() as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        reader = csv.reader(text, delimiter=delimiter)
        header = next(reader, [])
        _require(source.name, header, fields)
        positions = [header.index(f.name) for f in fields]
        rows: list[list[str]] = []
        for row in reader:
            rows.append(row)
            if len(rows) >= chunk_rows:
                yield _csv_rows_chunk(rows, fields, positions, raw.tell())
                rows = []
        if rows:
            yield _csv_rows_chunk(rows, fields, positions, raw.tell())


def _csv_rows_chunk(
    rows: list[list[str]], fields: Sequence[FieldSpec], positions: list[int], at: int
) -> Chunk:
    columns = {}
    for spec, pos in zip(fields, positions, strict=True):
        cells: list[Any] = [row[pos] if pos < len(row) and row[pos] != "" else None for row in rows]
        if spec.type == "numeric":
            cells = [_number(c) for c in cells]
        columns[spec.name] = _column_from_list(cells, spec)
    return Chunk(len(rows), columns, at)


def _number(cell: str | None) -> Any:
    if cell is None:
        return None
    try:
        return float(cell)
    except ValueError:
        return cell


def _stdlib_jsonl_chunks(
    source: DataInput, fields: Sequence[FieldSpec], chunk_rows: int, skip: int = 0
) -> Iterator[Chunk]:
    """The records of ``source`` in chunks, after the first ``skip`` (already read)."""
    with source.open() as raw:
        records: list[dict[str, Any]] = []
        for number, line in enumerate(raw, start=1):
            if not line.strip():
                continue
            if skip:
                skip -= 1
                continue
            record = json.loads(line)
            if not isinstance(record, dict):
                raise DataError(f"{source.name}: line {number} is not a JSON object")
            records.append(record)
            if len(records) >= chunk_rows:
                yield _records_chunk(records, fields, raw.tell())
                records = []
        if records:
            yield _records_chunk(records, fields, raw.tell())


def _records_chunk(records: list[dict[str, Any]], fields: Sequence[FieldSpec], at: int) -> Chunk:
    columns = {f.name: _column_from_list([r.get(f.name) for r in records], f) for f in fields}
    return Chunk(len(records), columns, at)
