"""The live part of /metrics: driftgauge's cumulative counters, written straight to text.

Every scrape reads these (observations, missing and invalid values, per-bin
counts, parse errors, drops, schema violations, feedback labels).  Their
series are fixed by the config and the baseline, so :class:`LiveFamilies`
lays out and escapes every label set once, at start; a scrape copies the
counters and only formats numbers (:mod:`driftgauge.exposition.text`).  The same
samples are also available as prometheus_client families, for registry
reads such as ``get_sample_value``.  The families are declared in
:mod:`driftgauge.exposition.catalogue`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from prometheus_client.core import Metric

from driftgauge.exposition import catalogue
from driftgauge.exposition.catalogue import MetricSpec, Series
from driftgauge.monitor.batch import BODY_REASONS
from driftgauge.monitor.fields import CATEGORICAL_INVALID_REASONS, NUMERIC_INVALID_REASONS
from driftgauge.monitor.model import Monitor
from driftgauge.protocols import REASONS

__all__ = [
    "DROP_REASONS",
    "LABEL_RESULTS",
    "PARSE_ERROR_REASONS",
    "LiveFamilies",
    "merged_read",
]

PARSE_ERROR_REASONS = (*REASONS, *BODY_REASONS, "invalid_json", "unknown_path", "internal")
# Each starts at 0, so that increase() sees the first drops of a reason too.  A model's own:
# what the source drops before routing is driftgauge_source_dropped_total's (exposition.source).
DROP_REASONS = ("feedback_expired", "feedback_no_id")
LABEL_RESULTS = ("matched", "unmatched", "invalid")


@dataclass(frozen=True, slots=True)
class _Family:
    """The fixed series of one live family, in exposition order."""

    spec: MetricSpec
    members: tuple[Series, ...]
    prefixes: tuple[str, ...]

    @classmethod
    def of(cls, spec: MetricSpec, label_values: Sequence[Sequence[str]]) -> _Family:
        members = tuple(spec.series(values) for values in label_values)
        return cls(spec, members, tuple(member.prefix for member in members))

    @property
    def label_values(self) -> tuple[tuple[str, ...], ...]:
        return tuple(member.labels for member in self.members)

    def with_version(self, version: str) -> _Family:
        members = tuple(m.with_label(self.spec, "version", version) for m in self.members)
        return _Family(self.spec, members, tuple(member.prefix for member in members))


class LiveFamilies:
    """driftgauge's counters for one monitor, read from it at each scrape.

    The series are fixed by the config and the baseline (fields, bins,
    invalid reasons), so their label sets are laid out and escaped once
    here; a scrape copies the counters once and either formats the numbers
    straight into exposition text (:meth:`render`, what ``/metrics`` serves)
    or builds prometheus_client families of the same samples
    (:meth:`metrics`, for registry reads such as ``get_sample_value``).
    """

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        model = monitor.config.model
        self._names = tuple(spec.name for spec in monitor.config.fields)
        fields = [(model, spec.name, spec.role) for spec in monitor.config.fields]
        self._reasons = tuple(
            NUMERIC_INVALID_REASONS if spec.type == "numeric" else CATEGORICAL_INVALID_REASONS
            for spec in monitor.config.fields
        )
        bin_labels = [monitor.baseline.fields[name].bin_labels for name in self._names]
        self._observations = _Family.of(catalogue.OBSERVATIONS, fields)
        self._missing = _Family.of(catalogue.MISSING, fields)
        self._invalid = _Family.of(
            catalogue.INVALID,
            [(*f, r) for f, reasons in zip(fields, self._reasons, strict=True) for r in reasons],
        )
        self._bins = _Family.of(
            catalogue.BIN_OBSERVATIONS,
            [(*f, str(b)) for f, labels in zip(fields, bin_labels, strict=True) for b in labels],
        )
        self._rows = _Family.of(catalogue.ROWS, [(model,)])
        self._absent = _Family.of(catalogue.MISSING_FIELDS, fields)
        self._extra = _Family.of(catalogue.EXTRA_FIELDS, [(model,)])
        self._labels = _Family.of(catalogue.LABELS, [(model, r) for r in LABEL_RESULTS])
        self._pending = _Family.of(catalogue.PENDING_PREDICTIONS, [(model,)])
        # Parse error and drop reasons beyond the known ones appear at run time (few).
        self._by_reason: dict[tuple[str, tuple[str, ...]], _Family] = {}

    def _reason_series(self, spec: MetricSpec, reasons: tuple[str, ...]) -> _Family:
        key = (spec.name, reasons)
        series = self._by_reason.get(key)
        if series is None:
            model = self.monitor.config.model
            series = _Family.of(spec, [(model, r) for r in reasons])
            self._by_reason[key] = series
        return series

    def read(self) -> list[tuple[_Family, Sequence[float]]]:
        """Every live family's series with their current values, in exposition order."""
        monitor = self.monitor
        copied = monitor.counters()
        counters = [copied[name] for name in self._names]
        bins = np.concatenate([c.bins for c in counters]) if counters else np.zeros(0, np.int64)
        parse_errors: Mapping[str, int] = dict(monitor.parse_errors)
        dropped: Mapping[str, int] = dict(monitor.dropped)
        # Known reasons start at 0, so dashboards and rate() see them before the first event.
        known = {*PARSE_ERROR_REASONS, *monitor.parse_reasons}
        parse_reasons = tuple(sorted(known | set(parse_errors)))
        drop_reasons = tuple(sorted(set(DROP_REASONS) | set(dropped)))
        read: list[tuple[_Family, Sequence[float]]] = [
            (self._observations, [c.observations for c in counters]),
            (self._missing, [c.missing for c in counters]),
            (
                self._invalid,
                [
                    c.invalid.get(reason, 0)
                    for c, reasons in zip(counters, self._reasons, strict=True)
                    for reason in reasons
                ],
            ),
            (self._bins, bins.tolist()),
            (
                self._reason_series(catalogue.PARSE_ERRORS, parse_reasons),
                [parse_errors.get(r, 0) for r in parse_reasons],
            ),
            (
                self._reason_series(catalogue.DROPPED, drop_reasons),
                [dropped.get(r, 0) for r in drop_reasons],
            ),
            (self._rows, [monitor.rows_total]),
            (self._absent, [c.absent for c in counters]),
            (self._extra, [monitor.extra_columns_total]),
        ]
        outcomes = monitor.outcomes
        if outcomes is not None:
            labels = outcomes.labels
            read.append((self._labels, [labels.get(r, 0) for r in LABEL_RESULTS]))
            read.append((self._pending, [outcomes.pending]))
        return read

    def render(self, openmetrics: bool) -> bytes:
        """The live families as exposition text (without OpenMetrics' ``# EOF``)."""
        return render_read(self.read(), openmetrics)

    def metrics(self) -> Iterator[Metric]:
        """The same samples as prometheus_client families."""
        return metrics_read(self.read())


def merged_read(families: Sequence[LiveFamilies]) -> list[tuple[_Family, Sequence[float]]]:
    """Several monitors' live series as one series list per family, in first-seen order.

    A model version's monitor (``monitor.version``) adds a ``version`` label
    to every series of a family with a ``model`` label.
    """
    merged: dict[str, tuple[list[_Family], list[float]]] = {}
    for one in families:
        version = one.monitor.version
        for series, values in one.read():
            if version and "model" in series.spec.labels:
                series = series.with_version(version)
            parts, numbers = merged.setdefault(series.spec.name, ([], []))
            parts.append(series)
            numbers.extend(values)
    return [
        (
            _Family(
                parts[0].spec,
                tuple(m for part in parts for m in part.members),
                tuple(p for part in parts for p in part.prefixes),
            ),
            numbers,
        )
        for parts, numbers in merged.values()
    ]


def render_read(read: Sequence[tuple[_Family, Sequence[float]]], openmetrics: bool) -> bytes:
    """Series and their values as exposition text (without OpenMetrics' ``# EOF``)."""
    out: list[str] = []
    for series, values in read:
        series.spec.text.write(out, openmetrics, series.prefixes, values)
    return "".join(out).encode()


def metrics_read(read: Sequence[tuple[_Family, Sequence[float]]]) -> Iterator[Metric]:
    """Series and their values as prometheus_client families."""
    for series, values in read:
        spec = series.spec
        metric = spec.metric()
        for member, value in zip(series.members, values, strict=True):
            names = member.label_names(spec)
            metric.add_sample(spec.sample_name, dict(zip(names, member.labels, strict=True)), value)
        yield metric
