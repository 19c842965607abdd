"""One model's live state: its trackers, built once, and the snapshot they make together.

``Monitor`` builds the trackers a model's config asks for (field drift
always; segments when ``segments:`` or ``feedback:`` is set; outcomes with
``feedback:``), hands each batch of observations to every one of them, and
on a recompute joins their parts into one immutable
:class:`~driftgauge.monitor.fields.Snapshot`.  It also keeps the model's
parse-error and drop tallies, under a lock of their own: the proxy counts
drops on its event loop, which must never wait for an ingest running in a
worker thread.  A second model behind the same sidecar is a second Monitor.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from driftgauge.baseline import Baseline
from driftgauge.config import Config
from driftgauge.monitor.fields import FieldCounters, FieldTracker, Snapshot
from driftgauge.monitor.outcomes import Outcomes
from driftgauge.monitor.segments import SegmentTracker
from driftgauge.monitor.tallies import Tallies
from driftgauge.monitor.tracker import Observation, Tracker
from driftgauge.sketches.summary import Summary
from driftgauge.sketches.window import SlicedWindow
from driftgauge.typing import Extracted

__all__ = ["Monitor"]


class Monitor(Tallies):
    """The trackers, tallies and latest snapshot of one model against one baseline."""

    def __init__(
        self,
        config: Config,
        baseline: Baseline,
        clock: Callable[[], float] = time.time,
        version: str = "",
        outcomes: bool = True,
    ) -> None:
        self.config = config
        self.baseline = baseline
        self.clock = clock
        # A model version's monitor (see monitor/versions.py): its metrics carry a version label.
        self.version = version
        super().__init__()
        # Reasons counted here besides the protocols' (its label file's): the exposition shows
        # each from 0, so rate() sees the first one too.
        self.parse_reasons: tuple[str, ...] = ()
        self.fields = FieldTracker(config, baseline, clock)
        self.segments: SegmentTracker | None = None
        self.outcomes: Outcomes | None = None
        # A version's monitor (outcomes false) keeps the feedback config for its segments'
        # positive class; its labels join in the model's own outcomes.
        joins = config.feedback is not None and outcomes
        if config.segments.features or joins:
            self.segments = SegmentTracker(config, baseline, clock)
        if joins:
            assert self.segments is not None
            self.outcomes = Outcomes(config, baseline, self.segments, self.count_dropped, clock)
        self.trackers: tuple[Tracker, ...] = tuple(
            tracker
            for tracker in (self.fields, self.segments, self.outcomes)
            if tracker is not None
        )
        self.snapshot = Snapshot(computed_at=0.0, duration=0.0)
        # Called with each new snapshot, in the computing thread (the exposition renders it).
        self.on_compute: list[Callable[[Snapshot], None]] = []

    # -- ingestion ---------------------------------------------------------

    def observe(self, batch: Sequence[Observation], now: float | None = None) -> None:
        """Hand a batch of observations to every tracker."""
        if not batch:
            return
        now = self.clock() if now is None else now
        for tracker in self.trackers:
            tracker.ingest(batch, now)

    def ingest(self, batch: Iterable[Extracted], now: float | None = None) -> None:
        """Add extracted columns to the field tracker alone (no record, so no segments or ids)."""
        self.fields.add(batch, now)

    # -- the field tracker's windows and counters, read by the exposition ----

    @property
    def windows(self) -> dict[str, SlicedWindow[Summary]]:
        return self.fields.windows

    def locked(self) -> threading.Lock:
        return self.fields.locked()

    def counters(self) -> dict[str, FieldCounters]:
        return self.fields.counters()

    def merged_windows(self, now: float | None = None) -> dict[str, Mapping[str, Summary]]:
        return self.fields.merged_windows(now)

    @property
    def rows_total(self) -> int:
        return self.fields.rows_total

    @property
    def extra_columns_total(self) -> int:
        return self.fields.extra_columns_total

    # -- statistics ----------------------------------------------------------

    def compute(self, now: float | None = None) -> Snapshot:
        """Recompute every tracker's statistics; store and return the joined snapshot."""
        started = time.perf_counter()
        now = self.clock() if now is None else now
        parts: dict[str, tuple[Any, ...]] = {}
        for tracker in self.trackers:
            parts.update(tracker.compute(now))
        snapshot = Snapshot(
            computed_at=now,
            duration=time.perf_counter() - started,
            fields=parts.get("fields", ()),
            segments=parts.get("segments", ()),
            fairness=parts.get("fairness", ()),
            performance=parts.get("performance", ()),
        )
        self.snapshot = snapshot
        for listener in self.on_compute:
            listener(snapshot)
        return snapshot
