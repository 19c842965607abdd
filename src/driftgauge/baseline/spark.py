"""Baseline passes on a Spark DataFrame: each partition fills its own state, the driver merges.

:class:`SparkRunner` implements :class:`~driftgauge.baseline.runner.Runner`.
A pass selects just the columns it reads and runs ``mapInArrow``: every
partition turns its Arrow batches into chunks (the same conversion the file
readers use, :func:`~driftgauge.baseline.chunks.arrow_chunk`), folds them
into an empty copy of the pass's state and returns that state pickled, as one
binary cell.  The driver collects those cells (one per partition, a few
kilobytes to a few megabytes each) and merges them; merging does not depend
on the order, so the result is the one a local build of the same rows gives.

pyspark is imported only when a runner runs (it is the ``spark`` extra:
``pip install 'driftgauge[spark]'``); the executors need driftgauge itself
installed, as for any Python UDF.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import socket
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from driftgauge.baseline.chunks import CHUNK_ROWS, arrow_chunk, plain_utf8, require_columns
from driftgauge.baseline.csvfiles import empty_file, require_separator
from driftgauge.baseline.datafiles import (
    first_missing_column,
    first_ragged_row,
    require_first_lines,
)
from driftgauge.baseline.inputs import FORMATS, location_format, not_found
from driftgauge.baseline.runner import PassState
from driftgauge.config import FieldSpec
from driftgauge.exceptions import DataError, first_line

__all__ = ["SparkRunner", "is_spark_dataframe", "read_data", "spark_session"]

INSTALL = "pip install 'driftgauge[spark]'"
# How long a standalone master's port may take to accept a connection before it counts as down.
MASTER_CONNECT_SECONDS = 5.0

S = TypeVar("S", bound=PassState)
_STATE = "driftgauge_state"
# pyspark warns that it does not support pandas 3 yet: these jobs never use pandas.
_PANDAS_WARNING = "PySpark does not yet fully support pandas"
_BATCH_ROWS_KEY = "spark.sql.execution.arrow.maxRecordsPerBatch"
# Spark's CSV reader decodes bytes that are not UTF-8 as U+FFFD, where the local and Dask
# builds refuse the file: CSV is read as Latin-1 (one character a byte, every byte kept) and
# each value decoded as UTF-8 in the query, a value that is not UTF-8 failing the job with
# Spark's MALFORMED_CHARACTER_CODING (Spark 4) or this error (Spark 3.5 decodes as U+FFFD).
_BYTES = "ISO-8859-1"
_NOT_UTF8 = "driftgauge: CSV data not UTF-8"
# JSON Lines are read FAILFAST: a line that is not JSON (or not UTF-8 text) is refused, as
# locally; Spark's default kept its fields up to the fault when a pass read every column and
# none when it read a few, so the passes counted different values (an IndexError in
# class_edges), or a row of nothing but missing values.
_MALFORMED = "MALFORMED_RECORD_IN_PARSING"
# CSV is read FAILFAST too, without column pruning: a row of another cell count than the
# header is refused, as locally; Spark's default read it, its absent cells missing and its
# extra ones dropped (and FAILFAST alone saw it only when a pass read every column).
# A failed read names its file.
_FAILED_FILE = re.compile(r"while reading file (\S+?)\.?\s")
# Spark reads a Parquet column as the type one file gives it, and fails on a file giving it
# another (integers in one file, floats in another: pandas writes int64 for a column without
# gaps).  Spark 4's words, then Spark 3.5's.
_PARQUET_TYPE = re.compile(
    r"reading file (?:file://)?(\S+?)\. Data type mismatches when reading Parquet column "
    r"\[(.+?)\]\. Expected Spark type (\w+), actual Parquet type (\w+)"
    r"|cannot be converted in file (?:file:(?://)?)?(\S+?)\. Column: \[(.+?)\], "
    r"Expected: (\w+), Found: (\w+)"
)
# A URL of a scheme without a Hadoop file system on Spark's classpath (s3:// or s3a://
# without hadoop-aws, gs:// without the GCS connector).
_NO_FILE_SYSTEM = re.compile(r"UnsupportedFileSystemException: (.+)")


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


def is_spark_dataframe(data: object) -> bool:
    """Whether ``data`` is a pyspark DataFrame (classic or Spark Connect), without importing pyspark."""
    module = type(data).__module__
    return module.startswith("pyspark.sql") and hasattr(data, "mapInArrow")


class SparkRunner:
    """Runs each pass with one Spark job over ``dataframe``'s partitions.

    ``source`` names the data in error messages, ``files`` are the locations it was read
    from (a CSV row of another cell count than its header is found in them, to name its
    file and line); ``progress`` is called with
    ``(stage, 0, 1)`` when a pass starts and ``(stage, 1, 1)`` when it ends
    (Spark draws its own per-task progress bar on a terminal).
    """

    def __init__(
        self,
        dataframe: Any,
        *,
        source: str = "Spark DataFrame",
        files: Sequence[str] = (),
        progress: Callable[[str, int, int], None] = _no_progress,
    ) -> None:
        if not is_spark_dataframe(dataframe):
            raise TypeError(f"SparkRunner needs a pyspark DataFrame, not {type(dataframe)!r}")
        self.dataframe = dataframe
        self.source = source
        self.files = files
        self.progress = progress
        self.parts = 0  # partitions merged by the last run

    def run(self, state: S, stage: str) -> S:
        """``state`` with every partition's filled copy merged in."""
        from pyspark.sql.types import BinaryType, StructField, StructType

        fields = list(state.reads)
        require_columns(self.source, self.dataframe.columns, fields)
        selected = self.dataframe.select(*_columns(self.dataframe, fields))
        fill = _partition_filler(state.empty(), fields, self.source)
        schema = StructType([StructField(_STATE, BinaryType(), nullable=False)])
        self.progress(stage, 0, 1)
        with warnings.catch_warnings(), _batch_rows(self.dataframe.sparkSession, CHUNK_ROWS):
            # mapInArrow checks the pandas version (Arrow batches in, one binary cell out).
            warnings.filterwarnings("ignore", _PANDAS_WARNING)
            try:
                rows = selected.mapInArrow(fill, schema).collect()
            except Exception as exc:
                raise _read_error(exc, self.source, self.files) from None
        for row in rows:
            state.merge(pickle.loads(row[_STATE]))
        self.parts = len(rows)
        self.progress(stage, 1, 1)
        return state


def _columns(dataframe: Any, fields: Sequence[FieldSpec]) -> list[Any]:
    """The pass's columns by exact name, renamed ``_0``, ``_1``… and decimals cast to double.

    mapInArrow resolves the columns it is given by name again, and reads a
    dot as a struct's member: plain positional names avoid that, and each
    partition gives the batches their fields' names back.  With no fields
    (a pass that only counts rows) one constant column keeps the row count.
    """
    from pyspark.sql import functions
    from pyspark.sql.types import DecimalType

    if not fields:
        return [functions.lit(0).alias("_")]
    types = {f.name: f.dataType for f in dataframe.schema.fields}
    columns = []
    for index, spec in enumerate(fields):
        column = functions.col("`" + spec.name.replace("`", "``") + "`")
        if spec.type == "numeric" and isinstance(types.get(spec.name), DecimalType):
            column = column.cast("double")
        columns.append(column.alias(f"_{index}"))
    return columns


@contextmanager
def _batch_rows(session: Any, rows: int) -> Iterator[None]:
    """Spark's Arrow batches of ``rows`` rows (10,000 by default) while one job runs.

    Fewer, larger batches: the file readers' chunk size, with less time per
    row spent in Python.  The session's own setting is restored after.
    """
    previous = session.conf.get(_BATCH_ROWS_KEY, None)
    session.conf.set(_BATCH_ROWS_KEY, str(rows))
    try:
        yield
    finally:
        if previous is None:
            session.conf.unset(_BATCH_ROWS_KEY)
        else:
            session.conf.set(_BATCH_ROWS_KEY, previous)


def _partition_filler(
    template: PassState, fields: Sequence[FieldSpec], source: str
) -> Callable[[Iterator[Any]], Iterator[Any]]:
    """The function each partition runs: its batches into a fresh state, out as one pickle."""

    def fill(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa

        names = [f.name for f in fields] or ["_"]
        state = template.empty()
        for batch in batches:
            if batch.num_rows:
                named = pa.RecordBatch.from_arrays(batch.columns, names=names)
                state.add(arrow_chunk(named, fields, source))
        cell = pa.array([pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)], pa.binary())
        yield pa.RecordBatch.from_arrays([cell], names=[_STATE])

    return fill


@contextmanager
def spark_session(master: str) -> Iterator[Any]:
    """A SparkSession on ``master`` for one command, stopped after it.

    A session already running in this process (a notebook's, a job's) is
    used as it is and left running.  On a ``local`` master the executors run
    this interpreter, which has driftgauge and pyarrow installed.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise DataError(f"--spark needs pyspark: {INSTALL}") from None
    # py4j logs each connection it opens and closes at INFO: noise in the command's log.
    logging.getLogger("py4j").setLevel(logging.WARNING)
    active = SparkSession.getActiveSession()
    if active is not None:
        yield active
        return
    if master.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    require_reachable(master)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", _PANDAS_WARNING)
        try:
            builder = SparkSession.builder.master(master).appName("driftgauge baseline")
            session = builder.getOrCreate()
        except Exception as exc:  # no Java, a JVM that exits, a master refusing the app...
            raise DataError(f"--spark {master}: Spark did not start: {first_line(exc)}") from None
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()


def require_reachable(master: str) -> None:
    """A standalone master (``spark://host:port``, or several, comma-separated, for a standby)
    that no connection reaches is a one-line error now, not after a minute of Spark's retries.

    Other masters (``local``, ``yarn``, ``k8s://``...) are left to Spark.
    """
    if not master.startswith("spark://"):
        return
    failures = []
    for address in master.removeprefix("spark://").split(","):
        host, _, port = address.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), MASTER_CONNECT_SECONDS):
                return
        except ValueError:
            failures.append(f"{address}: not host:port")
        except OSError as exc:
            failures.append(f"{address}: {exc.strerror or type(exc).__name__}")
    raise DataError(f"--spark {master}: no master answers ({'; '.join(failures)})")


def read_data(session: Any, locations: Sequence[str], fields: Sequence[FieldSpec]) -> Any:
    """The DataFrame of the config's ``fields`` in ``locations``, read by Spark.

    The reader follows each location's extension, as for local files:
    Parquet, CSV (a header row, RFC 4180 quoting; TSV too), JSON Lines.  Text
    formats give strings: numeric fields are cast to double, a value that is
    not a number becoming missing.
    """
    if not locations:
        raise DataError("no data to read")
    frames = []
    for fmt in ("parquet", "csv", "jsonl"):
        group = [x for x in locations if location_format(x, "Spark") == fmt]
        if not group:
            continue
        require_first_lines(group)
        # Spark takes a Parquet dataset's columns from one file and reads a field another
        # lacks as missing, where a local build refuses that file.
        if fmt == "parquet" and (missing := first_missing_column(group, fields)):
            raise missing
        frame = _read(session, fmt, group)
        if fmt == "jsonl" and not frame.columns:  # empty files: no rows, as locally
            frame = session.createDataFrame([], ", ".join(f"`{f.name}` string" for f in fields))
        require_columns(_shown(group), frame.columns, fields)
        frames.append(frame.select(*_typed(frame, fields, fmt)))
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result


def _read_error(exc: Exception, source: str, files: Sequence[str] = ()) -> Exception:
    """The DataError of a Spark job's failure reading ``source``'s text (``exc`` itself if
    it is not one): a value that is not UTF-8 (see _BYTES), a CSV row of another cell count
    than its header (named by its line in ``files``), a line that is not JSON, a Parquet
    column of another type than in another file, a scheme Spark has no file system for."""
    said = str(exc)
    if (missing := _NO_FILE_SYSTEM.search(said)) is not None:
        return DataError(f"{source}: Spark cannot read it: {missing[1]}")
    if "MALFORMED_CHARACTER_CODING" in said or _NOT_UTF8 in said:
        return DataError(f"{source}: cannot read CSV data: not UTF-8 text: save the file as UTF-8")
    if (typed := _PARQUET_TYPE.search(said)) is not None:
        name, column, expected, found = (g for g in typed.groups() if g is not None)
        return DataError(
            f"{name}: column {column!r} is {found.lower()} where another Parquet file's is "
            f"{expected}: Spark reads a column as one type; write it as one in every file "
            "(float64 for a numeric field), or build locally or with --dask"
        )
    failed = _FAILED_FILE.search(said)
    name = failed[1] if failed else ""
    if _MALFORMED in said and FORMATS.get(os.path.splitext(name)[1].lower()) == "csv":
        return first_ragged_row(files, split=True) or DataError(
            f"{name}: cannot read CSV data: a row's cell count is not the header's "
            "(Spark's FAILFAST mode)"
        )
    if _MALFORMED in said:
        return DataError(
            f"{source}: cannot read JSONL data: a line is not a JSON object in UTF-8 text "
            "(Spark's FAILFAST mode)"
        )
    return exc


def _read(session: Any, fmt: str, locations: list[str]) -> Any:
    """``locations`` read together; a path or glob that names no file is refused by name."""
    from pyspark.errors import AnalysisException

    try:
        return _reader(session, fmt, locations)
    except AnalysisException as exc:
        if "PATH_NOT_FOUND" not in str(exc):
            raise
        if len(locations) == 1:
            raise not_found(locations[0]) from None
        for location in locations:  # which one: each read alone (a header or a footer)
            _read(session, fmt, [location])
        raise
    except DataError:
        raise
    except Exception as exc:  # JSON Lines' schema is inferred from the lines, FAILFAST; a
        # scheme Spark cannot read
        raise _read_error(exc, _shown(locations)) from None


def _reader(session: Any, fmt: str, locations: list[str]) -> Any:
    if fmt == "parquet":
        return session.read.parquet(*locations)
    if fmt == "jsonl":
        return session.read.json(locations, mode="FAILFAST")
    tabs = [x for x in locations if x.lower().endswith(".tsv")]
    if tabs and len(tabs) < len(locations):
        raise DataError(f"{_shown(tabs)}: give TSV and CSV files in separate builds")
    sep = "\t" if tabs else ","
    reader = session.read.option("columnPruning", "false")
    frame = reader.csv(
        locations, header=True, sep=sep, quote='"', escape='"', encoding=_BYTES, mode="FAILFAST"
    )
    shown = _shown(locations)
    try:
        names = [name.encode(_BYTES).decode("utf-8") for name in frame.columns]
    except UnicodeDecodeError as exc:
        raise DataError(f"{shown}: cannot read CSV data: {plain_utf8(str(exc))}") from None
    if not names:
        raise empty_file(shown)
    names[0] = names[0].removeprefix("\ufeff")  # a byte order mark, as the local build
    require_separator(shown, names, sep)
    return frame.toDF(*names)


def _typed(frame: Any, fields: Sequence[FieldSpec], fmt: str) -> list[Any]:
    from pyspark.sql import functions

    columns = []
    types = dict(frame.dtypes)
    for spec in fields:
        quoted = "`" + spec.name.replace("`", "``") + "`"
        column = functions.col(quoted)
        text = _utf8(quoted) if fmt == "csv" else quoted
        if spec.type == "numeric" and fmt != "parquet" and types.get(spec.name) == "string":
            column = functions.expr(f"try_cast({text} AS DOUBLE)")
        elif fmt == "csv":
            column = functions.expr(text)
        columns.append(column.alias(spec.name))
    return columns


def _utf8(quoted: str) -> str:
    """The SQL of the CSV column ``quoted``, read as Latin-1, decoded as UTF-8 (see _BYTES).

    ASCII (one byte a character, Spark holding strings as UTF-8) is taken as it is: decoding
    every value took a scan and cast of 1M rows from 2.3 to 5.6 s.
    """
    raw = f"encode({quoted}, '{_BYTES}')"
    text = f"decode({raw}, 'UTF-8')"
    return (
        f"CASE WHEN {quoted} IS NULL OR octet_length({quoted}) = length({quoted}) THEN {quoted} "
        f"WHEN encode({text}, 'UTF-8') = {raw} THEN {text} "
        f"ELSE raise_error('{_NOT_UTF8}') END"
    )


def _shown(locations: Sequence[str]) -> str:
    return ", ".join(locations[:3]) + (
        f" and {len(locations) - 3} more" if len(locations) > 3 else ""
    )
