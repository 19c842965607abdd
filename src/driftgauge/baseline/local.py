"""Passes over local data files on every core: the :class:`LocalRunner`.

The files are split into parts: byte ranges of a CSV file (cut at line
ends, each parsed with the file's header), groups of a Parquet file's row
groups, and whole JSON Lines files.  A line end may lie inside a quoted
value: each CSV part counts its quote characters as it is parsed, and when
an odd count precedes a cut, the pass starts again with the file whole.  A
numeric column with a cell that is not a number is read again as text
(:class:`~driftgauge.baseline.csvfiles.NotNumbers`) likewise.  Each part is
filled by one worker process.  The first pass parses each part once and spills the columns it
read to an Arrow IPC file in a temporary directory; the later passes
read that file instead of parsing again.  A numeric column no later pass
reads row by row (``keyed``) is spilled as the sorted class keys pass 1
computed (:attr:`~driftgauge.baseline.chunks.Chunk.keys`), which pass 2
counts by binary search; a pass that needs such a column's values
(``reads_values``: a field whose float32 classes merge values that differ) parses
the part again instead.  A part is at most ``PART_BYTES`` of input, so a
worker's memory does not grow with the data.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from itertools import groupby, pairwise
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from driftgauge.baseline import csvfiles, datafiles
from driftgauge.baseline.chunks import Chunk, arrow_chunk, buffer_values
from driftgauge.baseline.datafiles import part_batches, read_chunks
from driftgauge.baseline.inputs import DataInput, as_input
from driftgauge.baseline.runner import PassState
from driftgauge.config import FieldSpec
from driftgauge.exceptions import DataError
from driftgauge.sketches.classes import NO_CLASS

__all__ = ["PART_BYTES", "LocalRunner", "Part", "default_workers", "split_parts"]

PART_BYTES = 32 << 20
MIN_PART_BYTES = 1 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters

S = TypeVar("S", bound=PassState)
Progress = Callable[[str, int, int], None]


def default_workers() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True, slots=True)
class Part:
    """One worker's share of one file: a byte range (CSV), row groups (Parquet), or all of it.

    A ``whole`` file is read by :func:`~driftgauge.baseline.datafiles.read_chunks`
    in every pass (JSON Lines, whose reader may fall back to the standard
    library, and every file when pyarrow is not installed).
    """

    source: DataInput
    size: int
    start: int = 0
    stop: int = 0
    row_groups: tuple[int, ...] = ()
    whole: bool = False
    text: frozenset[str] = frozenset()  # CSV: numeric fields read as text


def split_parts(files: Sequence[DataInput | Path], workers: int) -> list[Part]:
    """The parts of ``files``: at least ``workers`` of a large file, none over ``PART_BYTES``."""
    parts: list[Part] = []
    for source in map(as_input, files):
        if source.format == "jsonl" or not datafiles.arrow_available():
            parts.append(Part(source, source.size, whole=True))
        elif source.format == "csv":
            parts += _csv_parts(source, workers)
        else:
            parts += _parquet_parts(source, workers)
    return parts


def _count(size: int, workers: int) -> int:
    """Parts of at most ``PART_BYTES``, a multiple of ``workers`` (so that no worker
    is left idle while another fills the last part), none under ``MIN_PART_BYTES``."""
    rounds = math.ceil(size / (PART_BYTES * workers))
    return max(1, min(workers * rounds, size // MIN_PART_BYTES + 1))


def _csv_parts(source: DataInput, workers: int) -> list[Part]:
    size = source.size
    if size == 0 or not source.ranged:  # a server that did not say, or reads from the start only
        return [Part(source, size, whole=True)]
    with source.open() as handle:
        line = handle.readline()
        if line.count(csvfiles.QUOTE) % 2 or (b"\r" in line and not line.endswith(b"\n")):
            # A header with a line end in a quoted name, or lines ended by CR alone.
            return [Part(source, size, whole=True)]
        header = len(line)
        cuts = [header]
        count = _count(size - header, workers)
        for i in range(1, count):
            handle.seek(max(cuts[-1], header + (size - header) * i // count))
            handle.readline()  # to the end of the line the cut falls in
            cuts.append(min(size, handle.tell()))
        cuts.append(size)
    bounds = sorted(set(cuts))
    return [Part(source, b - a, a, b) for a, b in pairwise(bounds)] or [
        Part(source, 0, header, header)
    ]


def _parquet_parts(source: DataInput, workers: int) -> list[Part]:
    size = source.size
    metadata = datafiles.parquet_metadata(source)
    groups = metadata.num_row_groups
    if groups == 0:
        return [Part(source, size)]
    count = min(groups, _count(size, workers))
    rows = max(1, metadata.num_rows)
    parts = []
    for i in range(count):
        chosen = tuple(range(groups * i // count, groups * (i + 1) // count))
        share = sum(metadata.row_group(g).num_rows for g in chosen)
        parts.append(Part(source, size * share // rows, row_groups=chosen))
    return parts


class LocalRunner:
    """Runs each pass over the parts of local files, in ``workers`` processes."""

    def __init__(
        self,
        files: Sequence[DataInput | Path],
        columns: Sequence[FieldSpec],
        workers: int | None = None,
        progress: Progress | None = None,
        chunk_rows: int = 65_536,
        keyed: Sequence[str] = (),
    ) -> None:
        self.workers = workers or default_workers()
        self.parts = split_parts(files, self.workers)
        self.columns = list(columns)
        self.keyed = list(keyed)
        self.progress = progress or (lambda stage, done, total: None)
        self.chunk_rows = chunk_rows
        self.total = sum(p.size for p in self.parts)
        self._spill = Path(tempfile.mkdtemp(prefix="driftgauge-baseline-"))
        self._attempt = 0  # a pass read again (see run) spills into a folder of its own
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> LocalRunner:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        self.close(stop=kind is not None)

    def close(self, stop: bool = False) -> None:
        """Shut the workers down and remove the spill files; ``stop``: without waiting for
        the parts they are filling (an error, Ctrl-C or SIGTERM: a part read from S3 may take
        minutes)."""
        if self._pool is not None:
            if stop:
                # concurrent.futures has no public way before Python 3.14 (terminate_workers).
                for process in list(getattr(self._pool, "_processes", {}).values()):
                    process.terminate()
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
        shutil.rmtree(self._spill, ignore_errors=True)

    def run(self, state: S, stage: str) -> S:
        fresh = state.empty()
        while True:
            try:
                quotes = self._run(state, stage)
            except _PartError as failed:
                if not self._read_again(failed.index, failed.error):
                    raise failed.error from None
            else:
                if not self._cut_in_quotes(quotes):
                    return state
            # Again, from the start: what was read so far is dropped, spills included.  The
            # parts still being filled finish unheard; they spill into the folder removed here,
            # not into the next attempt's, where a part of the same number would read them.
            state, fresh = fresh, fresh.empty()
            shutil.rmtree(self._spill / str(self._attempt), ignore_errors=True)
            self._attempt += 1

    def _read_again(self, index: int, error: DataError) -> bool:
        """Whether reading part ``index`` differently may mend ``error``: a column read as
        text (:class:`~csvfiles.NotNumbers`), or a CSV file cut in a quoted value read whole."""
        if isinstance(error, csvfiles.NotNumbers):
            return self._read_as_text(error)
        part = self.parts[index]
        siblings = sum(p.source is part.source for p in self.parts)
        if part.source.format != "csv" or siblings == 1:
            return False
        self._whole(part.source)
        return True

    def _read_as_text(self, exc: csvfiles.NotNumbers) -> bool:
        """Read ``exc``'s column as text in every part of its file; False if it already is."""
        changed = False
        for index, part in enumerate(self.parts):
            if part.source.name == exc.source and exc.column not in part.text:
                self.parts[index] = replace(part, text=part.text | {exc.column})
                changed = True
        return changed

    def _cut_in_quotes(self, quotes: dict[int, int]) -> bool:
        """Whether a CSV cut fell inside a quoted value (an odd count of quote characters
        before it): such a file becomes one whole part, read again."""
        odd = []
        for _, parts in groupby(enumerate(self.parts), key=lambda item: id(item[1].source)):
            before = 0
            for index, part in parts:
                if before % 2:
                    odd.append(part.source)
                    break
                before += quotes.get(index, 0)
        for source in odd:
            self._whole(source)
        return bool(odd)

    def _whole(self, source: DataInput) -> None:
        """``source`` read as one part, by pyarrow's streaming reader."""
        first = next(i for i, p in enumerate(self.parts) if p.source is source)
        text = self.parts[first].text
        self.parts = [p for p in self.parts if p.source is not source]
        self.parts.insert(first, Part(source, source.size, whole=True, text=text))

    def _run(self, state: S, stage: str) -> dict[int, int]:
        """One pass into ``state``; returns the quote characters each CSV part parsed held."""
        parse = getattr(state, "reads_values", False)
        jobs = [
            (p, None if parse else self._spill_path(i), self.columns, self.keyed, self.chunk_rows)
            for i, p in enumerate(self.parts)
        ]
        quotes: dict[int, int] = {}
        done = 0
        self.progress(stage, 0, self.total)
        if self.workers == 1 or len(jobs) == 1:
            for index, job in enumerate(jobs):
                counted: list[int] = []
                try:
                    for chunk in _chunks(*job, state.reads, threads=True, quotes=counted):
                        state.add(chunk)
                except DataError as exc:
                    raise _PartError(index, exc) from None
                quotes[index] = sum(counted)
                done += job[0].size
                self.progress(stage, done, self.total)
            return quotes
        pool = self._executor()
        # At most two parts per worker in flight: an empty state and a filled one each
        # hold every numeric field's bucket counts, so memory stays flat in the part count.
        waiting = iter(enumerate(jobs))
        running: dict[Future[Any], int] = {}
        try:
            while True:
                while len(running) < 2 * self.workers and (task := next(waiting, None)):
                    index, job = task
                    running[pool.submit(_fill, state.empty(), *job)] = index
                if not running:
                    return quotes
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    index = running.pop(future)
                    try:
                        filled, quotes[index] = future.result()
                    except DataError as exc:
                        raise _PartError(index, exc) from None
                    state.merge(filled)
                    done += self.parts[index].size
                    self.progress(stage, done, self.total)
        finally:
            for future in running:
                future.cancel()

    def _spill_path(self, index: int) -> Path:
        folder = self._spill / str(self._attempt)
        folder.mkdir(exist_ok=True)
        return folder / f"part-{index}.arrow"

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # fork: workers start at once with the parent's imports (spawn would import
            # numpy, pyarrow and DataSketches again in each).
            context = multiprocessing.get_context("fork")
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=context, initializer=_start_worker
            )
        return self._pool


class _PartError(Exception):
    """A part's DataError, and which part."""

    def __init__(self, index: int, error: DataError) -> None:
        super().__init__(index, error)
        self.index, self.error = index, error


def _start_worker() -> None:
    """Worker side, once: Arrow allocates from jemalloc where pyarrow has it.

    With the default mimalloc, a worker's peak RSS grew with the parts it had
    filled (1M → 5M Parquet rows: 182 → 211 MiB); with jemalloc it stays put
    (213–221 → 208–215 MiB), at the same speed.
    """
    if datafiles.arrow_available():
        import pyarrow as pa

        with contextlib.suppress(NotImplementedError):  # a pyarrow built without it
            pa.set_memory_pool(pa.jemalloc_memory_pool())
    _keep_freed_memory()


def _keep_freed_memory() -> None:
    """Worker side: glibc's malloc keeps what numpy frees for the next chunk.

    By default it maps each allocation over 128 KiB (a chunk's column is 512 KiB)
    afresh and hands the top of its heap back once over twice that: each chunk's
    arrays then took new pages, a fault per 4 KiB.  With a 32 MiB mapping and a
    256 MiB trim threshold a worker reuses its heap: a CSV build's CPU 1.55-1.58
    -> 1.45-1.47 s, Parquet 0.97 -> 0.93 s (with batches of 65,536 CSV rows); its
    peak RSS is what it was (a worker's memory is as large as one part needs).
    Other C libraries, or none found: nothing is changed.
    """
    try:
        glibc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):  # not a name this system knows
        glibc = ""
    if glibc.startswith("glibc"):
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_TRIM_THRESHOLD, 256 << 20)
        libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)


def _fill(
    state: Any,
    part: Part,
    spill: Path | None,
    columns: list[FieldSpec],
    keyed: list[str],
    rows: int,
) -> tuple[Any, int]:
    """Worker side: ``state`` filled from one part, and the quote characters parsed."""
    quotes: list[int] = []
    reads = state.reads
    for chunk in _chunks(part, spill, columns, keyed, rows, reads, threads=False, quotes=quotes):
        state.add(chunk)
    if datafiles.arrow_available():
        import pyarrow as pa

        pa.default_memory_pool().release_unused()  # what the part freed, for the next one
    return state, sum(quotes)


def _chunks(
    part: Part,
    spill: Path | None,
    columns: list[FieldSpec],
    keyed: list[str],
    rows: int,
    reads: Sequence[FieldSpec],
    threads: bool,
    quotes: list[int],
) -> Iterator[Chunk]:
    """The part's chunks holding ``reads``: from its spill file, else parsed (and spilled
    once the pass has added each, the quote characters of a CSV range counted into
    ``quotes``); parsed and not spilled when ``spill`` is None."""
    if part.whole:
        yield from read_chunks(part.source, reads, rows, part.text)
        return
    import pyarrow as pa

    name = part.source.name
    csv = part.source.format == "csv"
    if spill is not None and spill.exists():
        # Read batch by batch, not memory-mapped: a mapping's touched pages would count
        # in the worker's RSS for the whole part.
        with pa.OSFile(str(spill)) as source:
            reader = pa.ipc.open_file(source)
            for i in range(reader.num_record_batches):
                yield _unspilled(reader.get_batch(i), reads, keyed, name, csv)
        return
    batches = part_batches(
        part.source,
        columns,
        rows,
        part.start,
        part.stop,
        part.row_groups,
        threads,
        part.text,
        quotes,
    )
    if spill is None:
        for batch in batches:
            yield arrow_chunk(batch, reads, name, csv=csv)
        return
    partial = spill.with_suffix(".partial")
    writer = None
    try:
        for batch in batches:
            chunk = arrow_chunk(batch, reads, name, csv=csv)
            yield chunk
            for spilled in _spilled(batch, chunk, keyed):
                if writer is None:
                    writer = pa.ipc.new_file(str(partial), spilled.schema)
                writer.write_batch(spilled)
        if writer is None:
            return
        writer.close()
        writer = None
        partial.rename(spill)
    finally:
        if writer is not None:
            writer.close()
        partial.unlink(missing_ok=True)


def _spilled(batch: Any, chunk: Chunk, keyed: list[str]) -> Iterator[Any]:
    """What a parsed batch (or Table) is spilled as, a RecordBatch at a time: its columns
    but the ``keyed`` ones, then the ``keyed`` columns' sorted class keys (pass 1's), padded
    to the chunk's length and cut as its batches are (each cut is sorted too)."""
    import pyarrow as pa

    kept = [n for n in batch.schema.names if n not in keyed]
    padded = {}
    for name in keyed:
        keys = chunk.keys[name]
        if len(keys) < batch.num_rows:
            keys = np.concatenate([keys, np.full(batch.num_rows - len(keys), NO_CLASS)])
        padded[name] = keys
    start = 0
    for part in batch.to_batches() if isinstance(batch, pa.Table) else [batch]:
        stop = start + part.num_rows
        arrays = [part.column(n) for n in kept]
        for name in keyed:
            # From the buffer: pa.array would import pandas, half a second in each worker.
            keys = padded[name][start:stop]
            arrays.append(pa.Array.from_buffers(pa.uint32(), len(keys), [None, pa.py_buffer(keys)]))
        yield pa.RecordBatch.from_arrays(arrays, names=kept + keyed)
        start = stop


def _unspilled(
    batch: Any, reads: Sequence[FieldSpec], keyed: list[str], name: str, csv: bool
) -> Chunk:
    """The chunk of ``reads`` in a spilled batch (:func:`_spilled`)."""
    import pyarrow as pa

    count = batch.num_columns - len(keyed)
    columns = pa.RecordBatch.from_arrays(batch.columns[:count], names=batch.schema.names[:count])
    wanted = {s.name for s in reads}
    chunk = arrow_chunk(columns, [s for s in reads if s.name not in keyed], name, csv=csv)
    keys = {
        field: buffer_values(batch.column(count + i), np.uint32)
        for i, field in enumerate(keyed)
        if field in wanted
    }
    return Chunk(batch.num_rows, chunk.columns, 0, keys)
