"""Several monitors' metrics as one exposition: each family once, with every monitor's samples.

The text format wants all the samples of a family together, so a sidecar
with several models cannot simply register one collector per model (each
would write its own ``# HELP``/``# TYPE`` block of the same family), nor
can a model whose versions each have a monitor.  ``ModelsCollector`` reads
every monitor's live counters and snapshot and writes each family once; its
samples differ by their ``model`` label, and a version's by ``version``.
The monitors are asked for at each collect: versions appear as traffic
shows them.  A one-model sidecar without versions keeps the plain
:class:`~driftgauge.exposition.collector.MonitorCollector`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from driftgauge.exposition.gzipjoin import Deflated
from driftgauge.exposition.live import LiveFamilies, merged_read, metrics_read, render_read
from driftgauge.exposition.snapshot import (
    Block,
    SnapshotFamilies,
    merge_blocks,
    metrics_of,
    render_blocks,
    with_version,
)
from driftgauge.monitor.model import Monitor

__all__ = ["ModelsCollector"]


class ModelsCollector(Collector):
    """Reads several monitors; a ``DirectWriter`` like ``MonitorCollector`` (same ``part``s)."""

    def __init__(
        self, monitors: Sequence[Monitor] | Callable[[], Sequence[Monitor]], part: str = "all"
    ) -> None:
        self._source = monitors if callable(monitors) else (lambda: tuple(monitors))
        self.part = part
        self._families: dict[int, tuple[LiveFamilies, SnapshotFamilies]] = {}
        self._baseline_lock = threading.Lock()
        self._baseline: tuple[tuple[int, ...], Deflated, Deflated] | None = None

    def _current(self) -> list[tuple[LiveFamilies, SnapshotFamilies]]:
        current = []
        for monitor in self._source():
            families = self._families.get(id(monitor))
            if families is None:
                families = self._families[id(monitor)] = (
                    LiveFamilies(monitor),
                    SnapshotFamilies(monitor),
                )
            current.append(families)
        return current

    @property
    def live(self) -> list[LiveFamilies]:
        return [live for live, _ in self._current()] if self.part in ("all", "live") else []

    @property
    def snapshot(self) -> list[SnapshotFamilies]:
        wanted = self.part in ("all", "snapshot")
        return [snapshot for _, snapshot in self._current()] if wanted else []

    def _baseline_blocks(self, snapshot: list[SnapshotFamilies]) -> list[Block]:
        return merge_blocks(
            with_version(families.baseline_blocks(), families.monitor.version)
            for families in snapshot
        )

    def _baseline_part(self, snapshot: list[SnapshotFamilies], openmetrics: bool) -> Deflated:
        key = tuple(id(families) for families in snapshot)
        with self._baseline_lock:
            if self._baseline is None or self._baseline[0] != key:
                text, om = render_blocks(self._baseline_blocks(snapshot))
                self._baseline = key, Deflated.of(text), Deflated.of(om)
            _, text_part, openmetrics_part = self._baseline
            return openmetrics_part if openmetrics else text_part

    def _recompute_blocks(self, snapshot: list[SnapshotFamilies]) -> list[Block]:
        return merge_blocks(
            with_version(
                families.snapshot_blocks(families.monitor.snapshot), families.monitor.version
            )
            for families in snapshot
        )

    def collect(self) -> Iterator[Metric]:
        live, snapshot = self.live, self.snapshot
        if live:
            yield from metrics_read(merged_read(live))
        if snapshot:
            yield from metrics_of(self._baseline_blocks(snapshot))
            yield from metrics_of(self._recompute_blocks(snapshot))

    def write_text(self, openmetrics: bool) -> list[bytes]:
        live, snapshot = self.live, self.snapshot
        written = []
        if live:
            written.append(render_read(merged_read(live), openmetrics))
        if snapshot:
            written.append(self._baseline_part(snapshot, openmetrics).raw)
            written.append(render_blocks(self._recompute_blocks(snapshot))[openmetrics])
        return written

    def write_deflated(self) -> tuple[list[Deflated], list[Deflated]]:
        live, snapshot = self.live, self.snapshot
        text: list[Deflated] = []
        openmetrics: list[Deflated] = []
        if live:
            read = merged_read(live)
            text.append(Deflated.of(render_read(read, False)))
            openmetrics.append(Deflated.of(render_read(read, True)))
        if snapshot:
            deflated, deflated_openmetrics = Deflated.pair(
                *render_blocks(self._recompute_blocks(snapshot))
            )
            text.extend((self._baseline_part(snapshot, False), deflated))
            openmetrics.extend((self._baseline_part(snapshot, True), deflated_openmetrics))
        return text, openmetrics
