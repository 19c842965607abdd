"""Training-data files read in chunks of columns: CSV, JSON Lines and Parquet.

Each reader yields :class:`~driftgauge.baseline.chunks.Chunk` objects (one
numpy array per configured field) and the bytes consumed so far, so memory
stays constant whatever the file size.  CSV and JSON Lines use pyarrow's
streaming readers when pyarrow is installed (the ``parquet`` extra) and the
standard library otherwise; Parquet needs pyarrow.  A file is a
:class:`~driftgauge.baseline.inputs.DataInput` (local, in an object store or
at a URL) or, for convenience, a local path.
"""

from __future__ import annotations

import csv
import io
import json
import re
import threading
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np

from driftgauge.baseline.chunks import (
    CHUNK_ROWS,
    CSV_NUMERIC_NULLS,
    Chunk,
    arrow_chunk,
    column_from_list,
    csv_number,
    plain_utf8,
    require_columns,
)
from driftgauge.baseline.inputs import DataInput, as_input, data_format
from driftgauge.config import FieldSpec
from driftgauge.exceptions import DataError, first_line

__all__ = [
    "NotNumbers",
    "arrow_available",
    "csv_header",
    "csv_rows",
    "file_format",
    "parquet_metadata",
    "part_batches",
    "read_chunks",
    "require_lines",
    "require_separator",
]

try:
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.json as pa_json
    import pyarrow.parquet as pa_parquet
except ImportError:  # pragma: no cover - exercised only without the extra
    pa = None

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
        yield from _stdlib_csv_chunks(source, fields, chunk_rows)
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
        batches = _joined(
            _csv_range_batches(source, fields, start, stop, threads, text, quotes), chunk_rows
        )
    else:
        batches = _parquet_batches(source, fields, chunk_rows, row_groups, threads)
    yield from _reported(source, batches)


def _csv_options(
    source: DataInput, fields: Sequence[FieldSpec], text: Collection[str] = ()
) -> tuple[Any, Any]:
    """pyarrow's options for a CSV file: numeric fields as float64 (those in ``text`` as
    text), categorical ones as text with no missing value: an empty cell is made
    missing when the column is read
    (:func:`~driftgauge.baseline.chunks.arrow_chunk`), "NA" is a category."""
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


def _count_quotes(data: bytes | memoryview) -> int:
    """The quote characters in ``data``: numpy in 4 MiB steps, 9 against bytes.count's 16 ms
    for 28 MB."""
    view = np.frombuffer(data, dtype=np.uint8)
    step = 1 << 22
    return sum(
        int(np.count_nonzero(view[i : i + step] == QUOTE[0])) for i in range(0, len(view), step)
    )


class _Range(io.RawIOBase):
    """``header``, then up to ``size`` bytes of ``handle`` from where it stands, read as
    pyarrow's CSV reader asks (a block at a time); ``quotes`` counts the quote characters
    of those bytes.

    Read whole, a part was a ``bytes`` of its size, then another joined to the header:
    new memory each time (numpy's and Arrow's allocators give back what is over a few MiB
    at once), a page fault per 4 KiB, 13,400 faults and 30-50 ms of system time per 28 MB part.
    """

    def __init__(self, header: bytes, handle: IO[bytes], size: int) -> None:
        super().__init__()
        self._header, self._handle, self._left = header, handle, size
        self.quotes = 0
        self.ended = False  # read as at its end from now on (see _csv_range_batches)
        self.at_end = threading.Event()  # a read returned nothing: pyarrow reads no more

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.ended:
            self.at_end.set()
            return 0
        with memoryview(buffer) as raw, raw.cast("B") as view:
            if self._header:
                count = min(len(view), len(self._header))
                view[:count] = self._header[:count]
                self._header = self._header[count:]
                return count
            # DataInput.open's files are buffered: io.BufferedReader has readinto.
            count = self._handle.readinto(view[: min(len(view), self._left)]) or 0  # type: ignore[attr-defined]
            self._left -= count
            if not count:
                self.at_end.set()
            self.quotes += _count_quotes(view[:count])
            return count


def _csv_range_batches(
    source: DataInput,
    fields: Sequence[FieldSpec],
    start: int,
    stop: int,
    threads: bool,
    text: Collection[str],
    quotes: list[int] | None,
) -> Iterator[Any]:
    parse, convert = _csv_options(source, fields, text)
    require_columns(source.name, _csv_header(source, source.delimiter), fields)
    with source.open() as handle:
        header = handle.readline()
        if stop <= start:
            if quotes is not None:
                quotes.append(0)
            return
        handle.seek(start)
        body = _Range(header, handle, stop - start)
        try:
            yield from pa_csv.open_csv(
                pa.PythonFile(body, mode="r"),
                read_options=pa_csv.ReadOptions(block_size=1 << 22, use_threads=threads),
                parse_options=parse,
                convert_options=convert,
            )
        except BaseException:
            # Stopped early (SIGTERM, Ctrl-C, an error; also within open_csv, which reads the
            # first block): pyarrow's I/O thread reads ahead, calling body.readinto, whatever
            # becomes of the reader, and an interpreter exiting meanwhile aborted ('terminate
            # called without an active exception', exit -6).  The next read ends it; a thread
            # with its queue full reads nothing more (hence the bound).
            body.ended = True
            body.at_end.wait(1.0)
            raise
    if quotes is not None:
        quotes.append(body.quotes)


def _joined(batches: Iterator[Any], rows: int) -> Iterator[Any]:
    """``batches`` gathered into Tables of ``rows`` rows or more (but the last), not copied.

    pyarrow's CSV reader gives a batch per block, 25,000 rows of the bench's
    23 columns, and a chunk's sketch work has a fixed cost per column: 0.062
    against 0.042 s of CPU per 167,000-row part for batches 4 times as long.
    (Joined into one batch, they were over the 8 MiB the allocator hands back
    to the system at once: a page fault per 4 KiB each time.)
    """
    held: list[Any] = []
    count = 0
    for batch in batches:
        held.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield pa.Table.from_batches(held)
            held, count = [], 0
    if held:
        yield pa.Table.from_batches(held)


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
            require_columns(source.name, _csv_header(source, source.delimiter), fields)
            parse, convert = _csv_options(source, fields, text)
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
        return csv_header(csv.reader(text, delimiter=delimiter), source.name, delimiter)


def csv_header(reader: Any, name: str, delimiter: str) -> list[str]:
    """The header, the first row a ``csv.reader`` of the file ``name`` gives; a DataError
    when there is none (an empty file), when it is blank (pyarrow's reader would take the
    next line, the parts of a build the blank one), or when another separator splits it."""
    header: list[str] | None = next(reader, None)
    if header is None:
        raise DataError(f"{name}: the file is empty (no header row)")
    if not header:
        raise DataError(f"{name}: line 1 is blank: a CSV file's first line is its header")
    require_separator(name, header, delimiter)
    return header


# What a CSV export may put between its columns, as messages name it.
_SEPARATORS = {",": "','", "\t": "tabs", ";": "';'", "|": "'|'"}
# The separators read, the files they are read in, and those files as messages name them.
_READ_IN = {",": (".csv", "a comma-separated file"), "\t": (".tsv", "a tab-separated file")}


def require_separator(name: str, header: Sequence[str], delimiter: str) -> None:
    """A DataError when another separator splits every name of a CSV ``header`` read with
    ``delimiter`` (``,`` for .csv, a tab for .tsv): a spreadsheet's ``;`` export, read
    whole, would otherwise be one column of text named after all of them (or two, split at
    a comma in a name such as ``price, EUR``)."""
    found = next((s for s in _SEPARATORS if s != delimiter and _all_split(header, s)), None)
    if found is None:
        return
    separator = _SEPARATORS[found]
    if len(header) == 1:
        shown = header[0] if len(header[0]) <= 60 else header[0][:57] + "..."
        said = f"the header is one column, {shown!r}, with {separator} between names"
    else:
        shown = ", ".join(map(repr, header[:2])) + (", ..." if len(header) > 2 else "")
        said = f"every name of the header holds {separator} ({shown})"
    if found in _READ_IN:
        suffix, what = _READ_IN[found]
        read = f"a {_READ_IN[delimiter][0]} file is read with {_SEPARATORS[delimiter]} between"
        fix = f"columns; name {what} {suffix}"
    else:
        read = "driftgauge reads ',' (.csv) or tabs (.tsv) between"
        fix = "columns; save the file with ',' (and '.' as the decimal point) or as Parquet"
    raise DataError(f"{name}: {said}: {read} {fix}")


def _all_split(header: Sequence[str], separator: str) -> bool:
    """Whether ``separator`` splits every name of ``header`` (and there is one)."""
    return bool(header) and all(
        len(next(csv.reader([cell], delimiter=separator))) > 1 for cell in header
    )


def _stdlib_csv_chunks(
    source: DataInput, fields: Sequence[FieldSpec], chunk_rows: int
) -> Iterator[Chunk]:
    delimiter = source.delimiter
    with source.open() as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        reader = csv.reader(text, delimiter=delimiter)
        header = csv_header(reader, source.name, delimiter)
        require_columns(source.name, header, fields)
        positions = [header.index(f.name) for f in fields]
        rows: list[list[str]] = []
        for row in csv_rows(reader, header, source.name):
            rows.append(row)
            if len(rows) >= chunk_rows:
                yield _csv_rows_chunk(rows, fields, positions, raw.tell())
                rows = []
        if rows:
            yield _csv_rows_chunk(rows, fields, positions, raw.tell())


def csv_rows(reader: Any, header: Sequence[str], name: str) -> Iterator[list[str]]:
    """The rows a ``csv.reader`` gives after ``header``, as pyarrow's CSV reader takes them:
    blank lines skipped, a row of another cell count than the header's refused (a DataError
    naming its line in the file ``name``)."""
    for row in reader:
        if not row:
            continue
        if len(row) != len(header):
            raise DataError(
                f"{name}: line {reader.line_num} has {len(row)} cells, the header "
                f"{len(header)}: a CSV file's rows must have the header's columns"
            )
        yield row


def _csv_rows_chunk(
    rows: list[list[str]], fields: Sequence[FieldSpec], positions: list[int], at: int
) -> Chunk:
    columns = {}
    for spec, pos in zip(fields, positions, strict=True):
        cells: list[Any] = [row[pos] if row[pos] != "" else None for row in rows]
        if spec.type == "numeric":
            cells = [csv_number(c) for c in cells]
        columns[spec.name] = column_from_list(cells, spec)
    return Chunk(len(rows), columns, at)


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
