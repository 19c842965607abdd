"""CSV request bodies (MLflow's ``Content-Type: text/csv``): a header line, then rows.

MLflow's scoring server reads a ``text/csv`` body with ``pandas.read_csv``:
the first line names the columns, every later line is a row, blank lines are
skipped, a short row is missing its last values and a long one is refused.
:func:`read_csv_body` decides whether a body that is not JSON is such a CSV
table: when the request's ``Content-Type`` is known (the proxy keeps it) it
says so; when it is not (the tail log and the CloudEvents source keep no
headers), the body is taken as CSV only if its header line names at least
one configured field, so other broken bodies stay ``invalid_json``.  :func:`csv_part` maps the table's
columns onto the configured fields by name.

Values are read as the baseline reads a training CSV: an empty cell is
missing, a numeric field's cell is a number when it parses as one (else the
text, which the monitor counts as a wrong type), a categorical field's cell
is its text.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from driftgauge.config import FieldSpec
from driftgauge.exceptions import ProtocolError
from driftgauge.protocols._common import Column, Part

__all__ = ["CSV_TYPES", "CsvTable", "content_type", "csv_part", "read_csv_body"]

CSV_TYPES = frozenset({"text/csv", "application/csv"})
"""Media types of a CSV body."""


@dataclass(frozen=True, slots=True)
class CsvTable:
    """A CSV body: its header's column names and its rows of cells (text)."""

    header: tuple[str, ...]
    rows: list[list[str]]


def content_type(headers: Mapping[str, str]) -> str | None:
    """The media type of ``Content-Type`` (any letter case, no parameters), or None."""
    for name, value in headers.items():
        if name.lower() == "content-type":
            return value.partition(";")[0].strip().lower()
    return None


def read_csv_body(body: bytes | str, headers: Mapping[str, str], names: Sequence[str]) -> CsvTable:
    """``body`` as a CSV table, ValueError when it is not one (see the module docstring).

    ``names`` are the configured fields' names in the body.  A body declared
    CSV whose header or rows do not parse is ``ProtocolError("bad_shape")``.
    """
    declared = content_type(headers)
    if declared is not None and declared not in CSV_TYPES:
        raise ValueError(f"the body is {declared}, not JSON nor CSV")
    text = body.decode("utf-8-sig") if isinstance(body, bytes) else body.removeprefix("\ufeff")
    try:
        lines = [row for row in csv.reader(io.StringIO(text, newline="")) if row]
    except csv.Error:
        if declared is None:
            raise ValueError("the body is neither JSON nor CSV") from None
        raise ProtocolError("bad_shape", "the CSV body does not parse") from None
    header = tuple(lines[0]) if lines else ()
    if declared is None and not set(header).intersection(names):
        raise ValueError("the body is neither JSON nor CSV with a header naming a field")
    if not header:
        raise ProtocolError("bad_shape", "the CSV body has no header line")
    width = len(header)
    for number, row in enumerate(lines[1:], start=2):
        if len(row) > width:
            raise ProtocolError(
                "bad_shape", f"CSV line {number} has {len(row)} cells for {width} columns"
            )
    return CsvTable(header, lines[1:])


def _numbers(cells: list[str | None]) -> Column:
    """A numeric column: one numpy call when every cell is a number, else cell by cell."""
    if None not in cells:
        try:
            return np.asarray(cells, dtype=np.float64)
        except ValueError:
            pass
    column: list[Any] = []
    for cell in cells:
        try:
            column.append(None if cell is None else float(cell))
        except ValueError:
            column.append(cell)
    return column


def csv_part(table: CsvTable, specs: Sequence[FieldSpec]) -> Part:
    """The configured fields' columns of ``table``, by header name; other columns are extra."""
    positions: dict[str, int] = {}
    for index, name in enumerate(table.header):
        positions.setdefault(name, index)
    part = Part(len(table.rows))
    for spec in specs:
        at = positions.get(spec.name)
        if at is None:
            continue
        cells: list[str | None] = [
            row[at] if at < len(row) and row[at] != "" else None for row in table.rows
        ]
        part.columns[spec.name] = _numbers(cells) if spec.type == "numeric" else cells
    part.extra = len(set(table.header).difference(spec.name for spec in specs))
    return part
