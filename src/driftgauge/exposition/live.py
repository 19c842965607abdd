"""The live part of /metrics: driftgauge's cumulative counters, written straight to text.

Every scrape reads these (observations, missing and invalid values, per-bin
counts, parse errors, drops, schema violations, feedback labels).  Their
series are fixed by the config and the baseline, so :class:`LiveFamilies`
lays out and escapes every label set once, at start; a scrape copies the
counters and only formats numbers (:mod:`driftgauge.exposition.text`).  The same
samples are also available as prometheus_client families, for registry
reads such as ``get_sample_value``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from prometheus_client.core import Metric

from driftgauge.exposition.text import FamilyText
from driftgauge.monitor.fields import CATEGORICAL_INVALID_REASONS, NUMERIC_INVALID_REASONS
from driftgauge.monitor.model import Monitor
from driftgauge.protocols import REASONS

__all__ = ["DROP_REASONS", "LABEL_RESULTS", "PARSE_ERROR_REASONS", "LiveFamilies"]

_FIELD_LABELS = ("model", "feature", "role")

PARSE_ERROR_REASONS = (*REASONS, "invalid_json", "unknown_path", "internal")
DROP_REASONS = ("queue_full", "body_too_large", "feedback_expired")
LABEL_RESULTS = ("matched", "unmatched", "invalid")

_OBSERVATIONS = FamilyText("driftgauge_observations", "counter", "Values seen per field.")
_MISSING = FamilyText("driftgauge_missing", "counter", "Missing or null values per field.")
_INVALID = FamilyText(
    "driftgauge_invalid",
    "counter",
    "Invalid values per field: wrong type, NaN/inf, out of baseline range, unseen category.",
)
_BINS = FamilyText(
    "driftgauge_bin_observations",
    "counter",
    "Values per baseline bin (sum over replicas for fleet-wide PSI).",
)
_PARSE_ERRORS = FamilyText(
    "driftgauge_parse_errors", "counter", "Bodies that could not be read, by reason."
)
_DROPPED = FamilyText("driftgauge_dropped", "counter", "Observations dropped, by reason.")
_ROWS = FamilyText("driftgauge_rows", "counter", "Rows (one request may carry many) monitored.")
_ABSENT = FamilyText(
    "driftgauge_missing_fields",
    "counter",
    "Rows whose request lacked the field altogether (a schema violation; also counted missing).",
)
_EXTRA = FamilyText(
    "driftgauge_extra_fields",
    "counter",
    "Columns in requests that the config does not name (schema violations, not labelled by name).",
)
_LABELS = FamilyText(
    "driftgauge_labels",
    "counter",
    "Labels received, by whether they matched a held prediction.",
)
_PENDING = FamilyText(
    "driftgauge_pending_predictions", "gauge", "Predictions waiting for their label."
)


@dataclass(frozen=True, slots=True)
class _Series:
    """The fixed series of one live family: their label values and their escaped line prefixes."""

    family: FamilyText
    label_names: tuple[str, ...]
    label_values: tuple[tuple[str, ...], ...]
    prefixes: tuple[str, ...]

    @classmethod
    def of(
        cls, family: FamilyText, label_names: Sequence[str], label_values: Sequence[Sequence[str]]
    ) -> _Series:
        names = tuple(label_names)
        values = tuple(tuple(v) for v in label_values)
        prefixes = tuple(family.prefix(dict(zip(names, v, strict=True))) for v in values)
        return cls(family, names, values, prefixes)


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
        invalid_names = [*_FIELD_LABELS, "reason"]
        bin_names = [*_FIELD_LABELS, "bin"]
        self._observations = _Series.of(_OBSERVATIONS, _FIELD_LABELS, fields)
        self._missing = _Series.of(_MISSING, _FIELD_LABELS, fields)
        self._invalid = _Series.of(
            _INVALID,
            invalid_names,
            [(*f, r) for f, reasons in zip(fields, self._reasons, strict=True) for r in reasons],
        )
        self._bins = _Series.of(
            _BINS,
            bin_names,
            [(*f, str(b)) for f, labels in zip(fields, bin_labels, strict=True) for b in labels],
        )
        self._rows = _Series.of(_ROWS, ["model"], [(model,)])
        self._absent = _Series.of(_ABSENT, _FIELD_LABELS, fields)
        self._extra = _Series.of(_EXTRA, ["model"], [(model,)])
        self._labels = _Series.of(_LABELS, ["model", "result"], [(model, r) for r in LABEL_RESULTS])
        self._pending = _Series.of(_PENDING, ["model"], [(model,)])
        # Parse error and drop reasons beyond the known ones appear at run time (few).
        self._by_reason: dict[tuple[str, tuple[str, ...]], _Series] = {}

    def _reason_series(self, family: FamilyText, reasons: tuple[str, ...]) -> _Series:
        key = (family.name, reasons)
        series = self._by_reason.get(key)
        if series is None:
            model = self.monitor.config.model
            series = _Series.of(family, ["model", "reason"], [(model, r) for r in reasons])
            self._by_reason[key] = series
        return series

    def read(self) -> list[tuple[_Series, Sequence[float]]]:
        """Every live family's series with their current values, in exposition order."""
        monitor = self.monitor
        copied = monitor.counters()
        counters = [copied[name] for name in self._names]
        bins = np.concatenate([c.bins for c in counters]) if counters else np.zeros(0, np.int64)
        parse_errors: Mapping[str, int] = dict(monitor.parse_errors)
        dropped: Mapping[str, int] = dict(monitor.dropped)
        # Known reasons start at 0, so dashboards and rate() see them before the first event.
        parse_reasons = tuple(sorted(set(PARSE_ERROR_REASONS) | set(parse_errors)))
        drop_reasons = tuple(sorted(set(DROP_REASONS) | set(dropped)))
        read: list[tuple[_Series, Sequence[float]]] = [
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
                self._reason_series(_PARSE_ERRORS, parse_reasons),
                [parse_errors.get(r, 0) for r in parse_reasons],
            ),
            (
                self._reason_series(_DROPPED, drop_reasons),
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
        out: list[str] = []
        for series, values in self.read():
            series.family.write(out, openmetrics, series.prefixes, values)
        return "".join(out).encode()

    def metrics(self) -> Iterator[Metric]:
        """The same samples as prometheus_client families."""
        for series, values in self.read():
            family = series.family
            metric = Metric(family.name, family.documentation, family.kind)
            names = series.label_names
            for label_values, value in zip(series.label_values, values, strict=True):
                metric.add_sample(
                    family.sample_name, dict(zip(names, label_values, strict=True)), value
                )
            yield metric
