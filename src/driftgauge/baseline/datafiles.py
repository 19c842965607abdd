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
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from driftgauge.baseline.inputs import DataInput, as_input, data_format
from driftgauge.canonical import canonical_strings
from driftgauge.config import FieldSpec
from driftgauge.exceptions import DataError, first_line
from driftgauge.sketches.summary import CategoricalBinning, to_categories, to_floats

__all__ = [
    "CSV_NUMERIC_NULLS",
    "Chunk",
    "Column",
    "NotNumbers",
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
# How a CSV cell spells a missing value.  Empty is missing in every column; the others
# (R's and pandas' NA, SQL's NULL, spreadsheets' #N/A) only in numeric columns, where they
# cannot be numbers: in a categorical column "NA" may be a category (North America), as it
# is for the sidecar.  NaN spellings are numbers (NaN), as in Parquet.
CSV_NUMERIC_NULLS = ("", "#N/A", "#N/A N/A", "#NA", "N/A", "NA", "NULL", "n/a", "null")
_NOT_A_NUMBER = re.compile(r"CSV conversion error to double")


class NotNumbers(DataError):
    """A CSV column read as numbers holds a cell that is not one (pyarrow's reader stops).

    The local build reads the column again as text, counting such cells as not
    numbers (as the Parquet and standard-library readers do); uncaught, it is
    the reader's one-line error.
    """

    def __init__(self, message: str, source: str = "", column: str = "") -> None:
        super().__init__(message, source, column)
        self.source, self.column = source, column

    def __str__(self) -> str:
        return str(self.args[0])


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
    source: DataInput | Path,
    fields: Sequence[FieldSpec],
    chunk_rows: int = CHUNK_ROWS,
    text: Collection[str] = (),
) -> Iterator[Chunk]:
    """Stream ``source`` as chunks holding exactly the configured fields.

    ``text``: numeric fields of a CSV file to read as text (see :class:`NotNumbers`).
    """
    source = as_input(source)
    yield from _reported(source, _format_chunks(source, fields, chunk_rows, text))


def _format_chunks(
    source: DataInput, fields: Sequence[FieldSpec], chunk_rows: int, text: Collection[str]
) -> Iterator[Chunk]:
    fmt = source.format
    if fmt == "jsonl":
        _require_lines(source)
    if fmt == "parquet":
        if pa is None:
            raise DataError(
                f"{source.name}: reading Parquet needs pyarrow: pip install 'driftgauge[parquet]'"
            )
        yield from _parquet_chunks(source, fields, chunk_rows)
    elif pa is not None and fmt == "jsonl":
        yield from _arrow_jsonl_chunks(source, fields, chunk_rows)
    elif pa is not None:
        yield from _arrow_text_chunks(source, fmt, fields, chunk_rows, text)
    elif fmt == "csv":
        yield from _stdlib_csv_chunks(source, fields, chunk_rows)
    else:
        yield from _stdlib_jsonl_chunks(source, fields, chunk_rows)


def _require_lines(source: DataInput) -> None:
    """A DataError when a ``.json`` file holds one JSON array instead of one object per line
    (pyarrow's reader said "Column() changed from object to array")."""
    with source.open() as handle:
        start = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if start.startswith(b"["):
        raise DataError(
            f"{source.name}: holds a JSON array; baselines read JSON Lines, one object per "
            "line (for example: jq -c '.[]' FILE > FILE.jsonl)"
        )


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
        known = (OSError, ValueError, TypeError, UnicodeDecodeError, KeyError)
        if not isinstance(exc, known) and not (
            pa is not None and isinstance(exc, pa.ArrowException)
        ):
            raise
        message = first_line(exc)
        column = ""
        if fmt == "csv":
            message, column = _name_csv_column(source, message)
        message = f"{source.name}: cannot read {fmt.upper()} data: {message}"
        if column and _NOT_A_NUMBER.search(message):
            raise NotNumbers(message, source.name, column) from None
        raise DataError(message) from None


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
    text: Collection[str] = (),
    quotes: list[int] | None = None,
) -> Iterator[Any]:
    """pyarrow RecordBatches of ``fields`` from part of a CSV or Parquet file.

    CSV: the lines in bytes ``[start, stop)`` (cut at line ends), parsed with
    the file's header, the numeric fields ``text`` read as text; the count of
    quote characters in the range is appended to ``quotes``.  Parquet: the
    row groups ``row_groups`` (all if none), decoded on pyarrow's threads if
    ``threads`` (not in a worker process, where the other workers use the
    cores: 0.3–0.5 s less CPU per 1M rows).
    """
    if pa is None:
        raise DataError(f"{source.name}: building a baseline needs pyarrow: pip install pyarrow")
    if source.format == "csv":
        batches = _csv_range_batches(source, fields, start, stop, text, quotes)
    else:
        batches = _parquet_batches(source, fields, chunk_rows, row_groups, threads)
    yield from _reported(source, batches)


def _csv_options(
    source: DataInput, fields: Sequence[FieldSpec], text: Collection[str] = ()
) -> tuple[Any, Any]:
    """pyarrow's options for a CSV file: numeric fields as float64 (those in ``text`` as
    text), categorical ones as text with no missing value: an empty cell is made
    missing when the column is read (:func:`arrow_chunk`), "NA" is a category."""
    types = {
        f.name: pa.float64() if f.type == "numeric" and f.name not in text else pa.string()
        for f in fields
    }
    convert = pa_csv.ConvertOptions(
        column_types=types,
        include_columns=[f.name for f in fields],
        include_missing_columns=True,
        null_values=list(CSV_NUMERIC_NULLS),
        strings_can_be_null=False,
    )
    # Quoted values may hold line ends (as much as a few per cent slower, measured: no).
    parse = pa_csv.ParseOptions(delimiter=source.delimiter, newlines_in_values=True)
    return parse, convert


QUOTE = b'"'


def _count_quotes(data: bytes) -> int:
    """The quote characters in ``data``: numpy in 4 MiB steps, 9 against bytes.count's 16 ms
    for 28 MB."""
    view = np.frombuffer(data, dtype=np.uint8)
    step = 1 << 22
    return sum(
        int(np.count_nonzero(view[i : i + step] == QUOTE[0])) for i in range(0, len(view), step)
    )


def _csv_range_batches(
    source: DataInput,
    fields: Sequence[FieldSpec],
    start: int,
    stop: int,
    text: Collection[str],
    quotes: list[int] | None,
) -> Iterator[Any]:
    parse, convert = _csv_options(source, fields, text)
    _require(source.name, _csv_header(source, source.delimiter), fields)
    with source.open() as handle:
        header = handle.readline()
        handle.seek(start)
        body = handle.read(stop - start)
    if quotes is not None:
        quotes.append(_count_quotes(body))
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


def arrow_chunk(
    batch: Any, fields: Sequence[FieldSpec], source: str, bytes_read: int = 0, csv: bool = False
) -> Chunk:
    """The chunk of a pyarrow ``RecordBatch`` or ``Table`` holding ``fields``.

    ``source`` names the data in the error raised when a field's column is
    missing or cannot be read.  ``csv``: the batch was parsed from a CSV file
    (:func:`_csv_options`): an empty categorical cell is missing, and a numeric
    column read as text is converted here.
    """
    _require(source, batch.schema.names, fields)
    columns = {}
    for spec in fields:
        try:
            columns[spec.name] = _arrow_column(_combined(batch.column(spec.name)), spec, csv)
        except (pa.ArrowException, KeyError, ValueError, TypeError) as exc:
            raise DataError(f"{source}: column {spec.name!r}: {first_line(exc)}") from None
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
    twice = [f.name for f in fields if present.count(f.name) > 1]
    if twice:
        raise DataError(f"{name}: more than one column named {', '.join(map(repr, twice))}")


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
            return _column_from_list([_csv_number(cell) for cell in array.to_pylist()], spec)
        if pa.types.is_boolean(array.type):
            return Column(
                np.full(len(array), np.nan),
                int(array.null_count),
                len(array) - int(array.null_count),
            )
        floats, missing, wrong = to_floats(array.to_pylist())
        return Column(floats, missing, wrong)
    strings = array.cast(pa.string()) if not pa.types.is_string(array.type) else array
    # Each distinct value is spelled canonically once (Arrow hashes them in C++), and the
    # column is gathered from them: no Python object per row.
    encoded = strings.dictionary_encode()
    dictionary = encoded.dictionary.to_pylist()
    indices = _buffer(encoded.indices, np.int32)
    present = _valid(encoded.indices)
    if csv and "" in dictionary:  # an empty cell is missing
        present &= indices != dictionary.index("")
    if present.all():
        present_rows = None
    else:
        present_rows, indices = present, indices[present]
    spelled = canonical_strings(dictionary)
    values = spelled[indices] if len(spelled) else np.empty(0, dtype=np.str_)
    return Column(values, len(array) - len(indices), 0, present_rows, spelled, indices)


def _batches_to_chunks(
    batches: Iterator[Any], source: DataInput, fields: Sequence[FieldSpec], position: Any
) -> Iterator[Chunk]:
    for batch in batches:
        if batch.num_rows == 0:
            _require(source.name, batch.schema.names, fields)
            continue
        yield arrow_chunk(batch, fields, source.name, position(), csv=source.format == "csv")


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
    source: DataInput,
    fmt: str,
    fields: Sequence[FieldSpec],
    chunk_rows: int,
    text: Collection[str] = (),
) -> Iterator[Chunk]:
    types = {f.name: pa.float64() if f.type == "numeric" else pa.string() for f in fields}
    handle = source.open_arrow()
    block = 1 << 22
    try:
        if fmt == "csv":
            parse, convert = _csv_options(source, fields, text)
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


def _name_csv_column(source: DataInput, message: str) -> tuple[str, str]:
    """pyarrow's ``In CSV column #2: ...`` with the column's name instead of its position,
    and that name ("" if the message names none)."""
    match = _CSV_COLUMN.match(message)
    if match is None:
        return message, ""
    header = _csv_header(source, source.delimiter)
    position = int(match.group(1))
    if position >= len(header):
        return message, ""
    name = header[position]
    return f"column {name!r}: {message[match.end() :]}", name


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
            cells = [_csv_number(c) for c in cells]
        columns[spec.name] = _column_from_list(cells, spec)
    return Chunk(len(rows), columns, at)


def _csv_number(cell: str | None) -> Any:
    """A CSV cell of a numeric column: a float, None (missing) or the text (not a number)."""
    if cell is None or cell in CSV_NUMERIC_NULLS:
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
