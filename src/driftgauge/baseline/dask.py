"""Baseline passes on a Dask DataFrame: each partition fills its own state, the client merges.

:class:`DaskRunner` implements :class:`~driftgauge.baseline.runner.Runner`.
A pass keeps just the columns it reads, and one task per partition turns
that pandas partition into Arrow (``pyarrow.Table.from_pandas``), then into
chunks the way the file readers do
(:func:`~driftgauge.baseline.chunks.arrow_chunk`), and folds them into an
empty copy of the pass's state.  The states come back to the client as they
finish and are merged there; merging does not depend on the order.

With a ``distributed`` client (given, or the default one) the tasks run on
its workers and progress is reported per partition; without one they run on
Dask's local scheduler.  With a client, pass 1
(:class:`~driftgauge.baseline.passes.SketchPass`) also leaves each
partition's sorted class keys of every numeric field on the workers
(:attr:`~driftgauge.baseline.chunks.Chunk.keys`, 4 bytes a value) until the
runner is closed, and pass 2 (:class:`~driftgauge.baseline.passes.ClassPass`,
when it needs nothing else) counts its buckets from them by binary search, as
the local runner does from its spill files, instead of reading the partitions
again.  Dask is imported only when a runner runs (the
``dask`` extra: ``pip install 'driftgauge[dask]'``).

In a partition whose numbers pandas holds as NumPy floats a missing number is a
``NaN``: a missing value and a ``NaN`` in the data are both counted as missing.
:func:`read_data` keeps them apart: Parquet and CSV numbers are Arrow-backed, JSON Lines
ones Python values.
"""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any, TypeVar

from driftgauge.baseline.chunks import (
    CHUNK_ROWS,
    Chunk,
    arrow_chunk,
    column_from_list,
    csv_floats,
    csv_number,
    plain_utf8,
    require_columns,
)
from driftgauge.baseline.csvfiles import RAGGED_ROW, empty_file, require_separator
from driftgauge.baseline.datafiles import (
    first_missing_column,
    first_ragged_row,
    require_first_lines,
)
from driftgauge.baseline.inputs import is_glob, location_format, not_found
from driftgauge.baseline.passes import ClassPass, SketchPass
from driftgauge.baseline.runner import PassState
from driftgauge.canonical import canonical_category, is_missing
from driftgauge.config import FieldSpec
from driftgauge.exceptions import DataError, first_line
from driftgauge.sketches.classes import KeyArray

__all__ = [
    "DaskRunner",
    "dask_client",
    "fill_from_keys",
    "fill_partition",
    "fill_partition_keyed",
    "is_dask_dataframe",
    "read_data",
]

INSTALL = "pip install 'driftgauge[dask]'"
PARTITION_BYTES = 32 << 20  # what the CLI's readers aim at (as local.PART_BYTES)
JSONL_BLOCK_BYTES = 64 << 20  # a JSON Lines partition's (read whole, as text, by _json_lines)

S = TypeVar("S", bound=PassState)
Keys = list[dict[str, KeyArray]]  # a partition's chunks' sorted class keys, by field


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


def is_dask_dataframe(data: object) -> bool:
    """Whether ``data`` is a Dask DataFrame, without importing dask."""
    module = type(data).__module__
    # dask_expr: the separate package dask 2024.x used for its DataFrames.
    return module.startswith(("dask.dataframe", "dask_expr")) and hasattr(data, "to_delayed")


class DaskRunner:
    """Runs each pass as one task per partition of ``dataframe``.

    ``client`` is a ``distributed.Client``; without one, the default client
    if there is one, else Dask's local scheduler.  ``source`` names the data
    in error messages, ``data`` what it holds ("CSV data"), ``files`` the locations it was
    read from (a CSV row of another cell count than its header is found in them, to name
    its file and line).  Pass 1's class keys stay on the workers until :meth:`close` (or
    the ``with`` block's end).
    """

    def __init__(
        self,
        dataframe: Any,
        client: Any = None,
        *,
        source: str = "Dask DataFrame",
        data: str = "the data",
        files: Sequence[str] = (),
        progress: Callable[[str, int, int], None] = _no_progress,
    ) -> None:
        if not is_dask_dataframe(dataframe):
            raise TypeError(f"DaskRunner needs a Dask DataFrame, not {type(dataframe)!r}")
        self.dataframe = dataframe
        self.client = client
        self.source = source
        self.data = data
        self.files = files
        self.progress = progress
        self.parts = 0  # partitions merged by the last run
        self._keys: list[Any] = []  # pass 1's class keys: a future of each partition's Keys
        self._keyed: list[str] = []  # the numeric fields they are of

    def __enter__(self) -> DaskRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release pass 1's class keys held by the workers."""
        for future in self._keys:
            future.release()
        self._keys, self._keyed = [], []

    def run(self, state: S, stage: str) -> S:
        """``state`` with every partition's filled copy merged in."""
        try:
            return self._run(state, stage)
        except DataError:
            raise
        except KeyError as exc:  # a Parquet file without a column the first one has
            if "not in index" not in str(exc):
                raise
            if missing := first_missing_column(self.files, list(state.reads)):
                raise missing from None
            raise DataError(f"{self.source}: cannot read {self.data}: {exc}") from None
        except (OSError, ValueError) as exc:  # pandas' reading a partition: its bytes, its text
            problem = plain_utf8(first_line(exc))
            if RAGGED_ROW.search(problem) and (ragged := first_ragged_row(self.files)):
                raise ragged from None
            raise DataError(f"{self.source}: cannot read {self.data}: {problem}") from None

    def _run(self, state: S, stage: str) -> S:
        import dask

        fields = list(state.reads)
        client = self.client if self.client is not None else _default_client()
        cached = bool(self._keys) and all(f.name in self._keyed for f in fields)
        if client is not None and isinstance(state, ClassPass) and state.from_keys and cached:
            template = state.empty()
            names = [f.name for f in fields]
            futures = [client.submit(fill_from_keys, template, k, names) for k in self._keys]
            return self._merged(state, stage, client, futures)
        require_columns(self.source, list(self.dataframe.columns), fields)
        selected = self.dataframe[[f.name for f in fields]]
        template = state.empty()
        parts = selected.to_delayed()
        if client is not None and isinstance(state, SketchPass):
            self.close()
            keyed = [f.name for f in fields if f.type == "numeric"]
            fill_keyed = dask.delayed(fill_partition_keyed, pure=True, nout=2)
            pairs = [fill_keyed(template, part, fields, self.source, keyed) for part in parts]
            # One graph: each partition is filled once, its state sent back, its keys kept.
            futures = client.compute([p[0] for p in pairs] + [p[1] for p in pairs])
            self._keys, self._keyed = futures[len(pairs) :], keyed
            return self._merged(state, stage, client, futures[: len(pairs)], pickled=True)
        fill = dask.delayed(fill_partition, pure=True)
        tasks = [fill(template, part, fields, self.source) for part in parts]
        if client is not None:
            return self._merged(state, stage, client, client.compute(tasks))
        total = len(tasks)
        self.progress(stage, 0, total)
        for done, part in enumerate(dask.compute(*tasks), start=1):
            state.merge(part)
            self.progress(stage, done, total)
        self.parts = total
        return state

    def _merged(
        self, state: S, stage: str, client: Any, futures: list[Any], pickled: bool = False
    ) -> S:
        """``state`` with the states of ``futures`` (``pickled``: their pickles) merged in as
        they finish."""
        from distributed import as_completed

        total = len(futures)
        self.progress(stage, 0, total)
        for done, future in enumerate(as_completed(futures), start=1):
            part = future.result()
            state.merge(pickle.loads(part) if pickled else part)
            future.release()
            self.progress(stage, done, total)
        self.parts = total
        return state


def _default_client() -> Any:
    """The current ``distributed`` client, or None (not installed, or none running)."""
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:  # no client has been created
        return None


def fill_partition(template: S, frame: Any, fields: Sequence[FieldSpec], source: str) -> S:
    """A fresh state of ``template``'s pass filled from one pandas partition."""
    state: S = template.empty()
    for chunk in _chunks(frame, fields, source):
        state.add(chunk)
    return state


def fill_partition_keyed(
    template: PassState, frame: Any, fields: Sequence[FieldSpec], source: str, keyed: Sequence[str]
) -> tuple[bytes, Keys]:
    """:func:`fill_partition`'s state, pickled, and the sorted class keys of the ``keyed``
    fields its chunks were given (:attr:`~driftgauge.baseline.chunks.Chunk.keys`, pass 1's).

    Pickled here: the pair and its first item would hold one state object on the worker,
    and pickling a state compacts its counts, so sending it to the client while the pair
    went to another worker (work stealing moves the item's task) raced on them.
    """
    state = template.empty()
    keys = []
    for chunk in _chunks(frame, fields, source):
        state.add(chunk)
        keys.append({name: chunk.keys[name] for name in keyed})
    return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL), keys


def fill_from_keys(template: S, keys: Keys, names: Sequence[str]) -> S:
    """A fresh state of ``template``'s pass filled from a partition's sorted class keys of
    ``names``: each chunk's, as a chunk of no columns."""
    state: S = template.empty()
    for held in keys:
        state.add(Chunk(0, {}, 0, {name: held[name] for name in names}))
    return state


def _chunks(frame: Any, fields: Sequence[FieldSpec], source: str) -> Iterator[Chunk]:
    """The chunks of one pandas partition holding ``fields``."""
    import pyarrow as pa

    if not fields:  # a pass that only counts rows: a chunk of no columns
        if len(frame):
            yield arrow_chunk(pa.table({"_": pa.nulls(len(frame))}), fields, source)
        return
    # A numeric field of Python objects (_json_lines; _csv_numbers where a cell is not a
    # number) keeps a NaN apart from missing (pandas' conversion takes it for missing), and
    # is read value by value when Arrow holds no column of its values (numbers and text).
    columns, listed = {}, []
    for spec in fields:
        python = spec.type == "numeric" and frame[spec.name].dtype == object
        try:
            columns[spec.name] = pa.array(frame[spec.name], from_pandas=not python)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            if not python:
                raise
            listed.append(spec)
    typed = [f for f in fields if f not in listed]
    table = pa.table(columns)
    for start in range(0, len(frame), CHUNK_ROWS):
        chunk = arrow_chunk(table.slice(start, CHUNK_ROWS), typed, source)
        rows = frame.iloc[start : start + CHUNK_ROWS]
        read = chunk.columns | {f.name: column_from_list(rows[f.name].tolist(), f) for f in listed}
        yield Chunk(len(rows), {f.name: read[f.name] for f in fields}, 0)


@contextmanager
def dask_client(address: str) -> Iterator[Any]:
    """A ``distributed.Client`` of the scheduler at ``address``, closed after the command."""
    try:
        import dask.dataframe  # noqa: F401  (the reader the command needs)
        from distributed import Client
    except ImportError:
        raise DataError(f"--dask needs dask and distributed: {INSTALL}") from None
    try:
        client = Client(address, timeout="20s", set_as_default=True)
    except (OSError, TimeoutError, ValueError) as exc:  # ValueError: no port in the address
        raise DataError(f"--dask {address}: cannot reach the scheduler: {exc}") from None
    try:
        yield client
    finally:
        client.close()


def read_data(locations: Sequence[str], fields: Sequence[FieldSpec]) -> Any:
    """The Dask DataFrame of the config's ``fields`` in ``locations``.

    The reader follows each location's extension, as for local files:
    Parquet, CSV (TSV too) and JSON Lines; in text formats numeric fields
    are read as float64 and categorical ones as strings.  A CSV file's cells are read as
    the local build reads them (:func:`_csv_numbers`); its numbers and Parquet's are
    Arrow-backed: a missing one is not a ``NaN``.
    """
    try:
        import dask.dataframe as dd
    except ImportError:
        raise DataError(f"--dask needs dask and distributed: {INSTALL}") from None
    if not locations:
        raise DataError("no data to read")
    names = [f.name for f in fields]
    types = {f.name: "float64" if f.type == "numeric" else "string" for f in fields}
    frames = []
    for fmt in ("parquet", "csv", "jsonl"):
        group = [x for x in locations if location_format(x, "Dask") == fmt]
        if not group:
            continue
        shown = ", ".join(group[:3])
        require_first_lines(group)
        try:
            _require_files(group)
            frame = _read(dd, fmt, group, types)
        except DataError:
            raise
        # pandas' readers, their first rows read here; ImportError: fsspec's file system of
        # the scheme is not installed (s3fs, gcsfs)
        except (OSError, ValueError, ImportError) as exc:
            # Dask's backend dispatch raises the reader's error anew, saying so first.
            cause = exc.__cause__ or exc
            if type(cause).__name__ == "EmptyDataError":  # pandas': not even a header
                raise empty_file(shown) from None
            if isinstance(cause, FileNotFoundError):
                raise not_found(str(cause.filename or shown)) from None
            problem = plain_utf8(first_line(cause))
            if RAGGED_ROW.search(problem) and (ragged := first_ragged_row(group)):
                raise ragged from None
            raise DataError(f"{shown}: cannot read {fmt.upper()} data: {problem}") from None
        require_columns(shown, list(frame.columns), fields)
        frames.append(frame[names])
    return frames[0] if len(frames) == 1 else dd.concat(frames)


def _require_files(locations: Sequence[str]) -> None:
    """A DataError naming the first glob of ``locations`` that matches no file (Dask reads
    the others and says nothing of it, or that the whole list matched nothing)."""
    from fsspec.core import url_to_fs

    for location in locations:
        if is_glob(location):
            filesystem, pattern = url_to_fs(location)
            if not filesystem.glob(pattern):
                raise not_found(location)


def _any_bytes(locations: Sequence[str]) -> bool:
    """Whether a file ``locations`` name holds anything."""
    from fsspec.core import get_fs_token_paths

    filesystem, _, paths = get_fs_token_paths(list(locations))
    return any(filesystem.size(path) for path in paths)


def _read(dd: Any, fmt: str, group: list[str], types: dict[str, str]) -> Any:
    if fmt == "parquet":
        # Partitions of about the local build's part size: one file is not one task.
        return dd.read_parquet(group, blocksize=PARTITION_BYTES, dtype_backend="pyarrow")
    if fmt == "jsonl":
        import dask

        if not _any_bytes(group):  # no rows, as locally (Dask's reader fails on no blocks)
            return dd.from_dict({n: [] for n in types}, npartitions=1).astype(types)
        reader = partial(_json_lines, types=types)
        # The columns of no lines: Dask took them from the first file's first lines, and
        # read every file as none when it was empty.
        meta = reader(io.StringIO(""), orient="records", lines=True)
        # Dask's convert-string turned a column of numbers beside a few strings or booleans
        # (which pandas keeps as objects) into text, every number a string.
        with dask.config.set({"dataframe.convert-string": False}):
            return dd.read_json(
                group, lines=True, blocksize=JSONL_BLOCK_BYTES, engine=reader, meta=meta
            )
    tabs = [x for x in group if x.lower().endswith(".tsv")]
    if tabs and len(tabs) < len(group):
        raise DataError(f"{', '.join(tabs[:3])}: give TSV and CSV files in separate builds")
    sep = "\t" if tabs else ","
    # pyarrow's parser, as the local build's: pandas' own padded a row of fewer cells than
    # the header with missing values, and named a longer one by its line in a partition.
    # Every cell is text, only an empty one missing: pandas' missing spellings ("NA", "null",
    # "None", "NaN"...) made categories and NaN missing; numbers are read by _csv_numbers.
    # Every column: the type pandas guessed for another from the first rows stopped the
    # build at a partition holding other cells ('Mismatched dtypes found in pd.read_csv').
    frame = dd.read_csv(
        group,
        sep=sep,
        dtype="string",
        blocksize=PARTITION_BYTES,
        engine="pyarrow",
        keep_default_na=False,
        na_values=[""],
    )
    require_separator(", ".join(group[:3]), list(frame.columns), sep)
    numeric = [name for name, kind in types.items() if kind == "float64"]
    meta = _csv_numbers(frame._meta, numeric)
    return frame.map_partitions(_csv_numbers, numeric, meta=meta)


def _json_lines(source: Any, types: dict[str, str], **_: Any) -> Any:
    """A block of JSON Lines as the config's columns (``types``), read with the standard
    library's ``json`` as the local build reads them (``NaN`` is NaN, an integer of any size
    a number): numeric fields as Python objects, None where missing or absent
    (:func:`_chunks` reads them value by value), categorical ones as their canonical text.

    The columns and types are the same in every block: Dask compares each block's with the
    first's ('Metadata mismatch found in from_delayed'), and pandas' reader gave a field's
    first string, or another column's, past the first block other ones.
    """
    import pandas as pd

    # One array of the lines: half the time of a json.loads per line (and of pandas').
    lines = [line for line in source if line.strip()]
    try:
        records = json.loads("[" + ",".join(lines) + "]")
    except json.JSONDecodeError as exc:  # its position is within the block
        raise ValueError(f"a line is not JSON ({exc.msg})") from None
    if len(records) != len(lines) or not all(isinstance(r, dict) for r in records):
        raise ValueError("a line is not a JSON object")
    columns = {}
    for name, kind in types.items():
        values = [record.get(name) for record in records]
        if kind == "float64":
            columns[name] = pd.Series(values, dtype=object)
        else:
            columns[name] = pd.Series(_spelled(values), dtype="string")
    return pd.DataFrame(columns)


def _spelled(values: list[Any]) -> list[str | None]:
    """Each JSON value's canonical category (None where missing), spelled once per distinct
    value (by type: ``True`` and ``1`` are equal keys)."""
    spelled: dict[tuple[type, Any], str | None] = {}
    result = []
    for value in values:
        try:
            key = (type(value), value)
            text = spelled[key] if key in spelled else spelled.setdefault(key, _category(value))
        except TypeError:  # a list or an object: not a key
            text = _category(value)
        result.append(text)
    return result


def _category(value: Any) -> str | None:
    return None if is_missing(value) else canonical_category(value)


def _csv_numbers(frame: Any, names: Sequence[str]) -> Any:
    """A pandas partition of CSV text with its columns ``names`` read as numbers, as the local
    build reads them: Arrow float64, missing where a cell is empty or spells a missing value
    ("NA", "null"...), or, if a cell is not a number, Python objects: floats, None where
    missing, the text of a cell that is not a number."""
    import pandas as pd
    import pyarrow as pa

    frame = frame.copy(deep=False)  # (not assign(**columns): a field may be named "self")
    for name in names:
        cells = pa.array(frame[name], pa.large_string())
        numbers = csv_floats(cells)
        if numbers is not None:
            column = pd.arrays.ArrowExtensionArray(numbers)
        else:
            column = pd.array([csv_number(cell) for cell in cells.to_pylist()], dtype=object)
        frame[name] = pd.Series(column, index=frame.index, name=name)
    return frame
