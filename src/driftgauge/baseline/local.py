"""Passes over local data files on every core: the :class:`LocalRunner`.

The files are split into parts: byte ranges of a CSV file (cut at line
ends, each parsed with the file's header), groups of a Parquet file's row
groups, and whole JSON Lines files.  Each part is filled by one worker
process.  The first pass parses each part once and spills the columns it
read to an Arrow IPC file in a temporary directory; the later passes
read that file instead of parsing again.  A part is at most
``PART_BYTES`` of input, so a worker's memory does not grow with the data.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, TypeVar

from driftgauge.baseline import datafiles
from driftgauge.baseline.datafiles import Chunk, arrow_chunk, part_batches, read_chunks
from driftgauge.baseline.inputs import DataInput, as_input
from driftgauge.baseline.runner import PassState
from driftgauge.config import FieldSpec

__all__ = ["PART_BYTES", "LocalRunner", "Part", "default_workers", "split_parts"]

PART_BYTES = 32 << 20
MIN_PART_BYTES = 1 << 20

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
    if size == 0:  # a server that did not say: one part
        return [Part(source, 0, whole=True)]
    with source.open() as handle:
        header = len(handle.readline())
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
    ) -> None:
        self.workers = workers or default_workers()
        self.parts = split_parts(files, self.workers)
        self.columns = list(columns)
        self.progress = progress or (lambda stage, done, total: None)
        self.chunk_rows = chunk_rows
        self.total = sum(p.size for p in self.parts)
        self._spill = Path(tempfile.mkdtemp(prefix="driftgauge-baseline-"))
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> LocalRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
        shutil.rmtree(self._spill, ignore_errors=True)

    def run(self, state: S, stage: str) -> S:
        jobs = [
            (p, self._spill_path(i), self.columns, self.chunk_rows)
            for i, p in enumerate(self.parts)
        ]
        done = 0
        self.progress(stage, 0, self.total)
        if self.workers == 1 or len(jobs) == 1:
            for job in jobs:
                for chunk in _chunks(*job, state.reads, threads=True):
                    state.add(chunk)
                done += job[0].size
                self.progress(stage, done, self.total)
            return state
        pool = self._executor()
        # At most two parts per worker in flight: an empty state and a filled one each
        # hold every numeric field's bucket counts, so memory stays flat in the part count.
        waiting = iter(jobs)
        running: dict[Future[Any], Part] = {}
        try:
            while True:
                while len(running) < 2 * self.workers and (task := next(waiting, None)):
                    running[pool.submit(_fill, state.empty(), *task)] = task[0]
                if not running:
                    return state
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    part = running.pop(future)
                    state.merge(future.result())
                    done += part.size
                    self.progress(stage, done, self.total)
        finally:
            for future in running:
                future.cancel()

    def _spill_path(self, index: int) -> Path:
        return self._spill / f"part-{index}.arrow"

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # fork: workers start at once with the parent's imports (spawn would import
            # numpy, pyarrow and DataSketches again in each).
            context = multiprocessing.get_context("fork")
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=context, initializer=_start_worker
            )
        return self._pool


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


def _fill(state: Any, part: Part, spill: Path, columns: list[FieldSpec], rows: int) -> Any:
    """Worker side: ``state`` filled from one part."""
    for chunk in _chunks(part, spill, columns, rows, state.reads, threads=False):
        state.add(chunk)
    if datafiles.arrow_available():
        import pyarrow as pa

        pa.default_memory_pool().release_unused()  # what the part freed, for the next one
    return state


def _chunks(
    part: Part,
    spill: Path,
    columns: list[FieldSpec],
    rows: int,
    reads: Sequence[FieldSpec],
    threads: bool,
) -> Iterator[Chunk]:
    """The part's chunks holding ``reads``: from its spill file, else parsed (and spilled)."""
    if part.whole:
        yield from read_chunks(part.source, reads, rows)
        return
    import pyarrow as pa

    name = part.source.name
    if spill.exists():
        # Read batch by batch, not memory-mapped: a mapping's touched pages would count
        # in the worker's RSS for the whole part.
        with pa.OSFile(str(spill)) as source:
            reader = pa.ipc.open_file(source)
            for i in range(reader.num_record_batches):
                yield arrow_chunk(reader.get_batch(i), reads, name)
        return
    partial = spill.with_suffix(".partial")
    writer = None
    try:
        for batch in part_batches(
            part.source, columns, rows, part.start, part.stop, part.row_groups, threads
        ):
            if writer is None:
                writer = pa.ipc.new_file(str(partial), batch.schema)
            writer.write_batch(batch)
            yield arrow_chunk(batch, reads, name)
        if writer is None:
            return
        writer.close()
        writer = None
        partial.rename(spill)
    finally:
        if writer is not None:
            writer.close()
        partial.unlink(missing_ok=True)
