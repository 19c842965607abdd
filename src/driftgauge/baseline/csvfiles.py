"""CSV training files: the header, its separator, and the rows, read with pyarrow or the
standard library.

pyarrow's CSV reader reads a whole file or a part of one (a byte range cut at
line ends, parsed with the file's header); the standard library's reader is
used without pyarrow.  :mod:`~driftgauge.baseline.datafiles` picks the reader
by format and turns their errors into one line.
"""

from __future__ import annotations

import csv
import io
import re
import threading
from collections.abc import Collection, Iterator, Sequence
from typing import IO, Any

import numpy as np

from driftgauge.baseline.chunks import (
    CSV_NUMERIC_NULLS,
    Chunk,
    column_from_list,
    csv_number,
    require_columns,
)
from driftgauge.baseline.inputs import DataInput
from driftgauge.config import FieldSpec
from driftgauge.exceptions import DataError

__all__ = [
    "QUOTE",
    "NotNumbers",
    "csv_file_header",
    "csv_header",
    "csv_options",
    "csv_rows",
    "empty_file",
    "name_csv_column",
    "ragged_row",
    "range_batches",
    "require_separator",
    "stdlib_csv_chunks",
]

try:
    import pyarrow as pa
    import pyarrow.csv as pa_csv
except ImportError:  # pragma: no cover - exercised only without the extra
    pa = None


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


def csv_options(
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


def range_batches(
    source: DataInput,
    fields: Sequence[FieldSpec],
    chunk_rows: int,
    start: int,
    stop: int,
    threads: bool,
    text: Collection[str],
    quotes: list[int] | None,
) -> Iterator[Any]:
    """pyarrow Tables of ``chunk_rows`` rows or more of the lines in bytes ``[start, stop)``
    (see :func:`~driftgauge.baseline.datafiles.part_batches`)."""
    return _joined(
        _csv_range_batches(source, fields, start, stop, threads, text, quotes), chunk_rows
    )


def _csv_range_batches(
    source: DataInput,
    fields: Sequence[FieldSpec],
    start: int,
    stop: int,
    threads: bool,
    text: Collection[str],
    quotes: list[int] | None,
) -> Iterator[Any]:
    parse, convert = csv_options(source, fields, text)
    require_columns(source.name, csv_file_header(source, source.delimiter), fields)
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


_CSV_COLUMN = re.compile(r"^In CSV column #(\d+): ")


def name_csv_column(source: DataInput, message: str) -> tuple[str, str]:
    """pyarrow's ``In CSV column #2: ...`` with the column's name instead of its position,
    and that name ("" if the message names none)."""
    match = _CSV_COLUMN.match(message)
    if match is None:
        return message, ""
    header = csv_file_header(source, source.delimiter)
    position = int(match.group(1))
    if position >= len(header):
        return message, ""
    name = header[position]
    return f"column {name!r}: {message[match.end() :]}", name


def csv_file_header(source: DataInput, delimiter: str) -> list[str]:
    # utf-8-sig: a byte order mark (spreadsheet exports) is not part of the first name;
    # pyarrow drops it too, and columns are matched by exact name.
    with io.TextIOWrapper(source.open(), newline="", encoding="utf-8-sig") as text:
        return csv_header(csv.reader(text, delimiter=delimiter), source.name, delimiter)


def empty_file(name: str) -> DataError:
    """The error of a CSV file ``name`` holding nothing, not even a header (on every runner)."""
    return DataError(f"{name}: the file is empty (no header row)")


def csv_header(reader: Any, name: str, delimiter: str) -> list[str]:
    """The header, the first row a ``csv.reader`` of the file ``name`` gives; a DataError
    when there is none (an empty file), when it is blank (pyarrow's reader would take the
    next line, the parts of a build the blank one), or when another separator splits it."""
    header: list[str] | None = next(reader, None)
    if header is None:
        raise empty_file(name)
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


def stdlib_csv_chunks(
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


# pyarrow's refusal of a row of another cell count than the header (pandas' engine="pyarrow"
# says the same): it names the row by its text, and by its number in the part read if at all.
RAGGED_ROW = re.compile(r"CSV parse error: (Row #\d+: )?Expected \d+ columns, got \d+")


def ragged_row(source: DataInput, split: bool = False) -> DataError | None:
    """:func:`csv_rows`'s error naming the line of the first row of ``source`` whose cell
    count is not its header's, or None if the standard library's reader finds none (or
    cannot read that far).  ``split``: or the first row holding a line break within quotes,
    if it comes first, which Spark's reader (line by line) takes for two rows.

    pyarrow's reader names the row by its text (and number in a part, if at all), Spark's
    by neither, Dask's not its file: the file is read again with this once it is refused.
    """
    try:
        with io.TextIOWrapper(source.open(), newline="", encoding="utf-8-sig") as text:
            reader = csv.reader(text, delimiter=source.delimiter)
            header = csv_header(reader, source.name, source.delimiter)
            for row in csv_rows(reader, header, source.name):
                breaks = sum(cell.count("\n") for cell in row) if split else 0
                if breaks:
                    return DataError(
                        f"{source.name}: line {reader.line_num - breaks} holds a line break "
                        "within quotes, which Spark's CSV reader takes for the end of a row: "
                        "build from it locally or with --dask, or save it as Parquet"
                    )
    except DataError as exc:
        return exc
    except (OSError, UnicodeDecodeError, csv.Error):  # not the reader's refusal to name
        return None
    return None


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
