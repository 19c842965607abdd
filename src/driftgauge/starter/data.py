"""A training file's first rows, profiled column by column: the type each suggests, and why.

Rules: text and booleans are categorical; numbers are numeric (also beside a
few text cells, at most :data:`STRAY_TEXT_SHARE` of the values, flagged),
except whole numbers with at most :data:`CATEGORICAL_MAX_DISTINCT` distinct values in the
sample (0/1 flags, small codes), which are categorical: their drift is then
measured per value, not over quantile bins that ties would make degenerate.
Values of other types (dates, lists, objects) are not monitored: the column
is skipped, with a note.
"""

from __future__ import annotations

import csv
import datetime
import io
import itertools
import json
import math
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from driftgauge.baseline.chunks import plain_utf8
from driftgauge.baseline.csvfiles import csv_header, csv_rows
from driftgauge.baseline.datafiles import require_lines
from driftgauge.baseline.inputs import DataInput, resolve_inputs
from driftgauge.config import (
    FieldType,
)
from driftgauge.config.validation import label_value
from driftgauge.exceptions import DataError, first_line

__all__ = [
    "CATEGORICAL_MAX_DISTINCT",
    "SAMPLE_ROWS",
    "STRAY_TEXT_SHARE",
    "ColumnProfile",
    "DataSample",
    "profile_column",
    "sample_data",
]

SAMPLE_ROWS = 10_000
CATEGORICAL_MAX_DISTINCT = 10
# Numbers with at most this share of text cells (a stray '?') are numeric, the text flagged.
STRAY_TEXT_SHARE = 0.05
# Text categories beyond this many distinct values in the sample are flagged: an identifier?
MANY_CATEGORIES = 50
# Cells pyarrow's CSV reader (the baseline build) reads as missing.
_CSV_NULLS = frozenset(
    {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN"}
    | {"N/A", "NA", "NULL", "NaN", "n/a", "nan", "null"}
)

_PANDAS_INDEX = re.compile(r"__index_level_\d+__")
# A number written with a decimal comma (a European spreadsheet's "1,5"): text to the readers.
_DECIMAL_COMMA = re.compile(r"[+-]?\d+,\d+")

Kind = Literal["missing", "bool", "int", "float", "text", "other"]


@dataclass(frozen=True, slots=True)
class ColumnProfile:
    """What the sampled values of one column look like, and the type they suggest."""

    name: str
    type: FieldType | None  # None: not a type driftgauge monitors (skipped)
    note: str
    present: int = 0
    distinct: int = 0


@dataclass(frozen=True, slots=True)
class DataSample:
    """The profiled columns of a training file's first rows, in file order."""

    path: str  # the file read: a path or URL
    rows: int
    columns: tuple[ColumnProfile, ...]
    skipped: tuple[str, ...] = ()  # columns without a usable name, as notes
    source: str = ""  # what --data named (a glob, folder, prefix, file URL), when not that
    files: int = 1  # the files it names

    def column(self, name: str) -> ColumnProfile | None:
        return next((c for c in self.columns if c.name == name), None)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


def _kind(value: Any) -> Kind:
    if value is None:
        return "missing"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float | Decimal):
        return "missing" if isinstance(value, float) and math.isnan(value) else "float"
    if isinstance(value, str):
        return "text"
    return "other"


def _type_name(value: Any) -> str:
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return "dates or times"
    if isinstance(value, bytes):
        return "binary values"
    if isinstance(value, list | tuple):
        return "lists"
    if isinstance(value, dict):
        return "objects"
    return type(value).__name__ + " values"


def profile_column(name: str, values: Sequence[Any]) -> ColumnProfile:
    """The type ``values`` (Python values, None for missing) suggest, and why, as a note."""
    # One exemplar per Python type: a column has few types, and this stays at C speed.
    exemplars = {type(v): v for v in values}
    kinds = {_kind(v) for v in exemplars.values()}
    if "other" in kinds:
        sample = next(v for v in exemplars.values() if _kind(v) == "other")
        present = sum(v is not None for v in values)
        return ColumnProfile(name, None, f"holds {_type_name(sample)}", present)
    # NaN != NaN drops float NaNs; Decimal values count as the floats they equal.
    present_values = [v for v in values if v is not None and v == v]
    present = len(present_values)
    kinds.discard("missing")
    if present == 0:
        return ColumnProfile(name, "numeric", "REVIEW: no values in the sample; guessed numeric")
    if Decimal in exemplars:
        present_values = [float(v) if isinstance(v, Decimal) else v for v in present_values]
    distinct = len(set(present_values))
    counted = f"{distinct:,} distinct in {present:,} value{'' if present == 1 else 's'}"
    if "text" in kinds:
        texts = [v for v in present_values if isinstance(v, str)]
        if kinds <= {"text", "int", "float"} and len(texts) <= STRAY_TEXT_SHARE * present:
            numbers = profile_column(name, [v for v in present_values if not isinstance(v, str)])
            if numbers.type == "numeric":
                return ColumnProfile(
                    name,
                    "numeric",
                    f"{numbers.note}; REVIEW: {len(texts):,} of {present:,} values are text, "
                    f"such as {texts[0][:40]!r} (the baseline counts them as not numbers)",
                    present,
                    numbers.distinct,
                )
        what = "text" if kinds == {"text"} else "numbers mixed with text"
        note = f"{what}, {counted}"
        if kinds <= {"text", "int", "float"} and all(map(_DECIMAL_COMMA.fullmatch, texts)):
            note += (
                f"; REVIEW: numbers with a decimal comma, such as {texts[0][:40]!r}? "
                "driftgauge reads '.' as the decimal point: save the file so, and run init again"
            )
        elif distinct > MANY_CATEGORIES:
            note += (
                f"; REVIEW: more than {MANY_CATEGORIES} categories (only the top "
                "sketch.top_categories are tracked): an identifier? remove it if so"
            )
        return ColumnProfile(name, "categorical", note, present, distinct)
    if "bool" in kinds:
        return ColumnProfile(name, "categorical", f"booleans, {counted}", present, distinct)
    whole = kinds == {"int"} or all(
        float(v).is_integer() for v in present_values if math.isfinite(v)
    )
    if whole and distinct <= CATEGORICAL_MAX_DISTINCT:
        return ColumnProfile(
            name,
            "categorical",
            f"whole numbers, only {counted}: a flag or a code; REVIEW: numeric if it is a count",
            present,
            distinct,
        )
    what = "whole numbers" if whole else "numbers"
    return ColumnProfile(name, "numeric", f"{what}, {counted}", present, distinct)


def _usable_name(name: Any) -> str:
    """``name`` when it can name a field (a non-empty label value); else ValueError saying why."""
    if name is None or name == "":
        raise ValueError("no name (a saved index?)")
    try:
        return label_value(name)
    except ValueError as exc:
        raise ValueError(f"not a usable name: {exc}") from None


def _profiles(
    path: str,
    header: Sequence[Any],
    columns: Sequence[Sequence[Any]],
    rows: int,
    saved_index: Collection[str] = (),
) -> DataSample:
    profiles, skipped, seen = [], [], set()
    for position, (name, values) in enumerate(zip(header, columns, strict=True), start=1):
        if name in saved_index:
            skipped.append(f"column {position} ({name!r}): the index pandas saved")
            continue
        try:
            usable = _usable_name(name)
        except ValueError as exc:
            skipped.append(f"column {position} ({name!r}): {exc}")
            continue
        if usable in seen:
            raise DataError(f"{path}: two columns are named {usable!r}")
        seen.add(usable)
        profiles.append(profile_column(usable, values))
    return DataSample(path, rows, tuple(profiles), tuple(skipped))


def _csv_column(cells: list[str]) -> list[Any]:
    """A CSV column's cells as values: all numbers (the common case) in one pass, else cell by
    cell."""
    try:
        return [None if c in _CSV_NULLS else float(c) for c in cells]
    except ValueError:
        return [_csv_cell(c) for c in cells]


def _csv_cell(cell: str) -> Any:
    """A CSV cell as the baseline build reads it: missing, a number, a boolean or text."""
    if cell in _CSV_NULLS:
        return None
    lowered = cell.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return float(cell)
    except ValueError:
        return cell


def _sample_csv(source: DataInput, limit: int) -> DataSample:
    with io.TextIOWrapper(source.open(), encoding="utf-8-sig", newline="") as text:
        reader = csv.reader(text, delimiter=source.delimiter)
        header = csv_header(reader, source.name, source.delimiter)
        # A ragged row is refused as the baseline build refuses it.
        rows = list(itertools.islice(csv_rows(reader, header, source.name), limit))
    columns = [_csv_column([row[index] for row in rows]) for index in range(len(header))]
    return _profiles(source.name, header, columns, len(rows))


def _sample_jsonl(source: DataInput, limit: int) -> DataSample:
    require_lines(source)
    records: list[dict[str, Any]] = []
    names: dict[str, None] = {}  # first appearance order
    with source.open() as raw:
        for number, line in enumerate(raw, start=1):
            if len(records) >= limit:
                break
            if not line.strip():
                continue
            record = json.loads(line)
            if not isinstance(record, dict):
                raise DataError(f"{source.name}: line {number} is not a JSON object")
            records.append(record)
            names.update(dict.fromkeys(record))
    header = list(names)
    columns = [[r.get(name) for r in records] for name in header]
    return _profiles(source.name, header, columns, len(records))


def _sample_parquet(source: DataInput, limit: int) -> DataSample:
    try:
        import pyarrow.parquet as pa_parquet
    except ImportError:
        raise DataError(
            f"{source.name}: reading Parquet needs pyarrow: pip install 'driftgauge[parquet]'"
        ) from None
    handle = source.open_arrow()
    parquet = pa_parquet.ParquetFile(handle)
    rows = 0
    try:
        header = list(parquet.schema_arrow.names)
        columns: list[list[Any]] = [[] for _ in header]
        # A batch never spans row groups: small ones take several batches to reach the limit.
        for batch in parquet.iter_batches(batch_size=limit):
            taken = batch.slice(0, limit - rows)
            for index, column in enumerate(columns):
                column += taken.column(index).to_pylist()
            rows += taken.num_rows
            if rows >= limit:
                break
        # pandas keeps an unnamed index as a column of this name (a named one stays data).
        pandas = parquet.schema_arrow.pandas_metadata or {}
        saved_index = [
            c
            for c in pandas.get("index_columns", [])
            if isinstance(c, str) and _PANDAS_INDEX.fullmatch(c)
        ]
    finally:
        parquet.close()
        handle.close()
    return _profiles(source.name, header, columns, rows, saved_index)


_SAMPLERS = {"csv": _sample_csv, "jsonl": _sample_jsonl, "parquet": _sample_parquet}


def sample_data(source: str | Path, rows: int = SAMPLE_ROWS) -> DataSample:
    """Profile the columns of the first ``rows`` rows of a CSV, JSON Lines or Parquet file.

    ``source`` is what ``driftgauge baseline --data`` takes: a path, glob, folder or URL
    (``s3://``, ``gs://``, ``https://``); of several files, the first is read.
    """
    given = str(source)
    inputs = resolve_inputs([given])
    first = inputs[0]
    try:
        sample = _SAMPLERS[first.format](first, rows)
    except DataError:
        raise
    except (OSError, ValueError) as exc:  # UnicodeDecodeError, JSONDecodeError, ArrowInvalid
        raise DataError(
            f"{first.name}: cannot read {first.format.upper()} data: " + plain_utf8(first_line(exc))
        ) from None
    return sample if first.name == given else replace(sample, source=given, files=len(inputs))
