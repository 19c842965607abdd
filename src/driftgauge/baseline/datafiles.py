"""Training-data files read in chunks of columns: CSV, JSON Lines and Parquet.

Each reader (CSV's in :mod:`~driftgauge.baseline.csvfiles`) yields :class:`~driftgauge.baseline.chunks.Chunk` objects (one
numpy array per configured field) and the bytes consumed so far, so memory
stays constant whatever the file size.  CSV and JSON Lines use pyarrow's
streaming readers when pyarrow is installed (the ``parquet`` extra) and the
standard library otherwise; Parquet needs pyarrow.  A file is a
:class:`~driftgauge.baseline.inputs.DataInput` (local, in an object store or
at a URL) or, for convenience, a local path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from driftgauge.baseline.chunks import (
    CHUNK_ROWS,
    Chunk,
    arrow_chunk,
    column_from_list,
    plain_utf8,
    require_columns,
)
from driftgauge.baseline.csvfiles import (
    RAGGED_ROW,
    NotNumbers,
    csv_file_header,
    csv_options,
    name_csv_column,
    ragged_row,
    range_batches,
    stdlib_csv_chunks,
)
from driftgauge.baseline.inputs import (
    DataInput,
    as_input,
    data_format,
    readable,
    resolve_inputs,
)
from driftgauge.config import FieldSpec
from driftgauge.exceptions import DataError, first_line

__all__ = [
    "arrow_available",
    "file_format",
    "first_missing_column",
    "first_ragged_row",
    "parquet_metadata",
    "part_batches",
    "read_chunks",
    "require_first_lines",
    "require_lines",
]

try:
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.json as pa_json
    import pyarrow.parquet as pa_parquet
except ImportError:  # pragma: no cover - exercised only without the extra
    pa = None

_NOT_A_NUMBER = re.compile(r"CSV conversion error to double")


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
        require_lines(source)
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
        yield from stdlib_csv_chunks(source, fields, chunk_rows)
    else:
        yield from _stdlib_jsonl_chunks(source, fields, chunk_rows)


def require_lines(source: DataInput | Path) -> None:
    """A DataError when a ``.json`` file holds one JSON array instead of one object per line
    (pyarrow's reader said "Column() changed from object to array")."""
    source = as_input(source)
    with source.open() as handle:
        start = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if start.startswith(b"["):
        raise DataError(
            f"{source.name}: holds a JSON array; baselines read JSON Lines, one object per "
            "line (for example: jq -c '.[]' FILE > FILE.jsonl)"
        )


def require_first_lines(locations: Sequence[str]) -> None:
    """What a local build checks first, of the files ``locations`` (paths, globs and URLs
    that Spark or Dask reads) name, wherever this reader reads them too (local files, object
    stores, HTTP(S)): a CSV file's header (a first line, not blank, split by the file's
    separator, in UTF-8 text), a JSON Lines file's start (not one JSON array).

    Spark and Dask took the line after a blank first line as the header; Spark read a file
    holding one JSON array as its objects, Dask as no columns.  A URL this reader does not
    know, or cannot resolve (a missing object, credentials it lacks), is Spark's or Dask's
    to read with their own and to say what they find.
    """
    for location in locations:
        remote = "://" in location.removeprefix("file://")
        if not readable(location):
            continue
        try:
            sources = resolve_inputs([location])
        except DataError:
            if not remote:
                raise
            continue
        for source in sources:
            list(_reported(source, _first_lines(source)))


def first_missing_column(locations: Sequence[str], fields: Sequence[FieldSpec]) -> DataError | None:
    """The error naming the first Parquet file ``locations`` name that lacks a column of
    ``fields`` (:func:`~driftgauge.baseline.chunks.require_columns`'), or None: none found
    in the files read here.  Dask takes a Parquet dataset's columns from its first file."""
    for source in _readable(locations):
        if source.format != "parquet":
            continue
        try:
            names = parquet_metadata(source).schema.to_arrow_schema().names
            require_columns(source.name, names, fields)
        except DataError as exc:
            return exc
    return None


def first_ragged_row(locations: Sequence[str], split: bool = False) -> DataError | None:
    """The error naming the first row of another cell count than its header (``split``: or
    holding a line break within quotes) in the CSV files ``locations`` name
    (:func:`~driftgauge.baseline.csvfiles.ragged_row`), or None: none found, in the files
    read here (a location this reader does not know, such as Spark's ``s3a://``, is not)."""
    for source in _readable(locations):
        if source.format == "csv" and (error := ragged_row(source, split)) is not None:
            return error
    return None


def _readable(locations: Sequence[str]) -> Iterator[DataInput]:
    """The files ``locations`` name that this reader resolves (others are skipped)."""
    for location in locations:
        try:
            yield from resolve_inputs([location])
        except DataError:
            continue


def _first_lines(source: DataInput) -> Iterator[None]:
    """:func:`require_first_lines`'s checks of ``source``, read as :func:`_reported` reports."""
    if source.format == "csv":
        csv_file_header(source, source.delimiter)
    elif source.format == "jsonl":
        require_lines(source)
    yield from ()


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
        message = plain_utf8(first_line(exc))
        column = ""
        if fmt == "csv" and RAGGED_ROW.search(message):
            ragged = ragged_row(source)  # its line in the file, not its text
            if ragged is not None:
                raise ragged from None
        if fmt == "csv":
            message, column = name_csv_column(source, message)
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
    """pyarrow RecordBatches (or Tables of a few) of ``fields`` from part of a CSV or
    Parquet file.

    CSV: the lines in bytes ``[start, stop)`` (cut at line ends), parsed with
    the file's header, the numeric fields ``text`` read as text; the count of
    quote characters in the range is appended to ``quotes``.  Parquet: the
    row groups ``row_groups`` (all if none).  Batches of ``chunk_rows`` rows
    (CSV: Tables of the reader's batches, up to a block longer).  Both on pyarrow's threads if
    ``threads`` (not in a worker process, where the other workers use the
    cores: 0.3–0.5 s less CPU per 1M Parquet rows).
    """
    if pa is None:
        raise DataError(f"{source.name}: building a baseline needs pyarrow: pip install pyarrow")
    if source.format == "csv":
        batches = range_batches(source, fields, chunk_rows, start, stop, threads, text, quotes)
    else:
        batches = _parquet_batches(source, fields, chunk_rows, row_groups, threads)
    yield from _reported(source, batches)


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
        require_columns(source.name, parquet.schema_arrow.names, fields)
        yield from parquet.iter_batches(
            batch_size=chunk_rows,
            row_groups=list(row_groups) or None,
            columns=[f.name for f in fields],
            use_threads=threads,
        )
    finally:
        handle.close()


def _batches_to_chunks(
    batches: Iterator[Any], source: DataInput, fields: Sequence[FieldSpec], position: Any
) -> Iterator[Chunk]:
    for batch in batches:
        if batch.num_rows == 0:
            require_columns(source.name, batch.schema.names, fields)
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
        require_columns(source.name, parquet.schema_arrow.names, fields)
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
            # First: the reader parses its first block at once, and says less of a bad header.
            require_columns(source.name, csv_file_header(source, source.delimiter), fields)
            parse, convert = csv_options(source, fields, text)
            reader = pa_csv.open_csv(
                handle,
                read_options=pa_csv.ReadOptions(block_size=block),
                parse_options=parse,
                convert_options=convert,
            )
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


# pyarrow's JSON Lines refusals the standard library reads: a value not of its field's type,
# a number beyond float64, a key twice in one line (the last value counts, as for the
# sidecar's JSON parser and for init).
_READ_BY_THE_STANDARD_LIBRARY = (
    " changed from ",
    "Number too big to be stored in double",
    " was specified twice ",
    "Empty JSON stream",  # no record: no rows, as a CSV file of its header alone
)


def _arrow_jsonl_chunks(
    source: DataInput, fields: Sequence[FieldSpec], chunk_rows: int
) -> Iterator[Chunk]:
    """pyarrow's JSON Lines reader, and the standard library's from the row where it gives up.

    pyarrow reads a categorical field as a JSON string (its explicit schema
    has no "any JSON value" type) and refuses a number or a boolean there,
    such as a 0/1 flag or an integer code: the standard library reads those
    as their canonical text, like the CSV and Parquet readers do.  It reads a
    numeric field as a number and refuses anything else there (a string, a
    boolean): the standard library counts those as not numbers, as in a CSV.
    It refuses a number beyond float64 too (1e400), which is infinite there.
    """
    rows = 0
    try:
        for chunk in _arrow_text_chunks(source, "jsonl", fields, chunk_rows):
            rows += chunk.rows
            yield chunk
    except pa.ArrowInvalid as exc:
        if not any(refusal in str(exc) for refusal in _READ_BY_THE_STANDARD_LIBRARY):
            raise
        yield from _stdlib_jsonl_chunks(source, fields, chunk_rows, skip=rows)


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
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:  # its own position is within the line
                raise DataError(
                    f"{source.name}: line {number} is not JSON ({exc.msg}, column {exc.pos + 1})"
                ) from None
            if not isinstance(record, dict):
                raise DataError(f"{source.name}: line {number} is not a JSON object")
            records.append(record)
            if len(records) >= chunk_rows:
                yield _records_chunk(records, fields, raw.tell())
                records = []
        if records:
            yield _records_chunk(records, fields, raw.tell())


def _records_chunk(records: list[dict[str, Any]], fields: Sequence[FieldSpec], at: int) -> Chunk:
    columns = {f.name: column_from_list([r.get(f.name) for r in records], f) for f in fields}
    return Chunk(len(records), columns, at)
