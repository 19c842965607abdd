"""Several models' metrics as one exposition: each family once, with every model's samples.

The text format wants all the samples of a family together, so a sidecar
with several models cannot simply register one collector per model (each
would write its own ``# HELP``/``# TYPE`` block of the same family).
``ModelsCollector`` reads every model's live counters and snapshot and
writes each family once; its samples differ by their ``model`` label.  A
one-model sidecar keeps the plain :class:`~driftgauge.exposition.collector.MonitorCollector`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from driftgauge.exposition.gzipjoin import Deflated
from driftgauge.exposition.live import LiveFamilies, merged_read, metrics_read, render_read
from driftgauge.exposition.snapshot import (
    SnapshotFamilies,
    merge_blocks,
    metrics_of,
    render_blocks,
)
from driftgauge.monitor.model import Monitor

__all__ = ["ModelsCollector"]


class ModelsCollector(Collector):
    """Reads several monitors; a ``DirectWriter`` like ``MonitorCollector`` (same ``part``s)."""

    def __init__(self, monitors: Sequence[Monitor], part: str = "all") -> None:
        self.monitors = tuple(monitors)
        self.part = part
        self.live = [LiveFamilies(m) for m in self.monitors] if part in ("all", "live") else []
        self.snapshot = (
            [SnapshotFamilies(m) for m in self.monitors] if part in ("all", "snapshot") else []
        )
        self._baseline_lock = threading.Lock()
        self._baseline: tuple[Deflated, Deflated] | None = None

    def _baseline_part(self, openmetrics: bool) -> Deflated:
        with self._baseline_lock:
            if self._baseline is None:
                blocks = merge_blocks(families.baseline_blocks() for families in self.snapshot)
                text, om = render_blocks(blocks)
                self._baseline = Deflated.of(text), Deflated.of(om)
            return self._baseline[openmetrics]

    def _recompute_part(self) -> tuple[bytes, bytes]:
        return render_blocks(
            merge_blocks(
                families.snapshot_blocks(families.monitor.snapshot) for families in self.snapshot
            )
        )

    def collect(self) -> Iterator[Metric]:
        if self.live:
            yield from metrics_read(merged_read(self.live))
        if self.snapshot:
            yield from metrics_of(
                merge_blocks(families.baseline_blocks() for families in self.snapshot)
            )
            yield from metrics_of(
                merge_blocks(
                    families.snapshot_blocks(families.monitor.snapshot)
                    for families in self.snapshot
                )
            )

    def write_text(self, openmetrics: bool) -> list[bytes]:
        written = []
        if self.live:
            written.append(render_read(merged_read(self.live), openmetrics))
        if self.snapshot:
            written.append(self._baseline_part(openmetrics).raw)
            written.append(self._recompute_part()[openmetrics])
        return written

    def write_deflated(self) -> tuple[list[Deflated], list[Deflated]]:
        text: list[Deflated] = []
        openmetrics: list[Deflated] = []
        if self.live:
            read = merged_read(self.live)
            text.append(Deflated.of(render_read(read, False)))
            openmetrics.append(Deflated.of(render_read(read, True)))
        if self.snapshot:
            text_part, openmetrics_part = self._recompute_part()
            deflated = Deflated.of(text_part)
            deflated_openmetrics = (
                Deflated.of(openmetrics_part) if openmetrics_part != text_part else deflated
            )
            text.extend((self._baseline_part(False), deflated))
            openmetrics.extend((self._baseline_part(True), deflated_openmetrics))
        return text, openmetrics
