"""Every metric driftgauge exports, declared once: name, type, help, label names (and buckets).

The direct text writers (:mod:`~driftgauge.exposition.live`,
:mod:`~driftgauge.exposition.snapshot`), the prometheus_client families a
collector yields, the proxy's prometheus_client instruments
(:mod:`~driftgauge.exposition.proxy`), the tests' reference rendering and the
README's metrics table all read these declarations; none declares a family
of its own.  Names are the family names prometheus_client takes: a counter's
samples are ``name_total``, an info family's ``name_info``
(:attr:`MetricSpec.sample_name`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import Metric

from driftgauge.exposition.text import FamilyText, Kind

__all__ = [
    "BASELINE_BIN_RATIO",
    "BASELINE_CARDINALITY",
    "BASELINE_INFO",
    "BASELINE_MEAN",
    "BASELINE_OBSERVATIONS",
    "BASELINE_QUANTILE",
    "BIN_OBSERVATIONS",
    "BUILD_INFO",
    "CARDINALITY",
    "CATALOGUE",
    "CHI2_PVALUE",
    "CLASS_PERFORMANCE",
    "CLIENT_ERRORS",
    "COMPUTED_AT",
    "COMPUTE_DURATION",
    "DESIGN_EFFECT",
    "DISPARATE_IMPACT",
    "DROPPED",
    "EQUAL_OPPORTUNITY",
    "EXTRA_FIELDS",
    "FEATURE_MEAN",
    "FEATURE_QUANTILE",
    "INVALID",
    "JS_DISTANCE",
    "KS_PVALUE",
    "KS_STATISTIC",
    "LABELS",
    "MISSING",
    "MISSING_FIELDS",
    "OBSERVATIONS",
    "OVERHEAD",
    "PARSE_ERRORS",
    "PENDING_PREDICTIONS",
    "PERFORMANCE",
    "POSITIVE_RATE",
    "PSI",
    "PSI_NOISE_FLOOR",
    "QUANTILE_LABEL",
    "QUEUE_DEPTH",
    "REQUESTS",
    "REQUEST_SIZE",
    "RESPONSE_SIZE",
    "ROWS",
    "SAMPLING_RATE",
    "SEGMENT_OBSERVATIONS",
    "SEGMENT_PERFORMANCE",
    "SEGMENT_PSI",
    "SEGMENT_PSI_NOISE_FLOOR",
    "SOURCE_DROPPED",
    "SOURCE_PARSE_ERRORS",
    "STATE_SAVE_FAILURES",
    "UPSTREAM_ERRORS",
    "UPSTREAM_LATENCY",
    "WINDOW_LABELS",
    "WINDOW_OBSERVATIONS",
    "MetricSpec",
    "Series",
]


@dataclass(frozen=True, slots=True)
class Series:
    """One series of a family: its label values (in the family's label order) and line prefix.

    ``names`` are its label names when they are not the family's own (a
    series with an extra label such as ``version``).
    """

    labels: tuple[str, ...]
    prefix: str
    names: tuple[str, ...] = ()

    def label_names(self, spec: MetricSpec) -> tuple[str, ...]:
        return self.names or spec.labels

    def with_label(self, spec: MetricSpec, name: str, value: str) -> Series:
        """This series with one more label (appended last, in the prefix too)."""
        names = (*self.label_names(spec), name)
        values = (*self.labels, value)
        return Series(values, spec.text.prefix(dict(zip(names, values, strict=True))), names)


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric family as Prometheus sees it; builds its text writer and prometheus_client forms.

    ``labels`` are the label names of every series, in the order the
    writers give their values (an info family's include its info keys);
    ``buckets`` are a histogram's upper bounds.
    """

    name: str
    kind: Kind
    documentation: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()
    text: FamilyText = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if bool(self.buckets) != (self.kind == "histogram"):
            raise ValueError(f"{self.name}: buckets are for histograms, and histograms need them")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"{self.name}: a label name twice in {self.labels}")
        object.__setattr__(self, "text", FamilyText(self.name, self.kind, self.documentation))

    @property
    def sample_name(self) -> str:
        """The name of its samples: ``name_total`` for a counter, ``name_info`` for info."""
        return self.text.sample_name

    def series(self, labels: Sequence[str]) -> Series:
        """The series of ``labels`` (values in :attr:`labels` order), its sample prefix escaped once."""
        values = tuple(labels)
        return Series(values, self.text.prefix(dict(zip(self.labels, values, strict=True))))

    def metric(self) -> Metric:
        """An empty prometheus_client family of this metric, for a collector to fill and yield."""
        return Metric(self.name, self.documentation, self.kind)

    def counter(self, registry: CollectorRegistry) -> Counter:
        """A prometheus_client ``Counter`` of this metric, registered on ``registry``."""
        self._expect("counter")
        return Counter(self.name, self.documentation, self.labels, registry=registry)

    def gauge(self, registry: CollectorRegistry) -> Gauge:
        """A prometheus_client ``Gauge`` of this metric, registered on ``registry``."""
        self._expect("gauge")
        return Gauge(self.name, self.documentation, self.labels, registry=registry)

    def _expect(self, kind: Kind) -> None:
        if self.kind != kind:
            raise TypeError(f"{self.name} is a {self.kind}, not a {kind}")


_MODEL = ("model",)
_FIELD = ("model", "feature", "role")
_WINDOW = (*_FIELD, "window")
_SEGMENT = (*_WINDOW, "segment_feature", "segment")
_FAIRNESS = ("model", "window", "segment_feature")
QUANTILE_LABEL = "q"
"""The quantile gauges' label: not ``quantile``, which `promtool check metrics` reserves for
summaries ('non-summary metrics should not have "quantile" label')."""

# -- cumulative counters, read at every scrape (live.py) ------------------------------------------

OBSERVATIONS = MetricSpec("driftgauge_observations", "counter", "Values seen per field.", _FIELD)
MISSING = MetricSpec("driftgauge_missing", "counter", "Missing or null values per field.", _FIELD)
INVALID = MetricSpec(
    "driftgauge_invalid",
    "counter",
    "Invalid values per field: wrong type, NaN/inf, out of baseline range, unseen category.",
    (*_FIELD, "reason"),
)
BIN_OBSERVATIONS = MetricSpec(
    "driftgauge_bin_observations",
    "counter",
    "Values per baseline bin (sum over replicas for fleet-wide PSI).",
    (*_FIELD, "bin"),
)
PARSE_ERRORS = MetricSpec(
    "driftgauge_parse_errors",
    "counter",
    "Bodies that could not be read, by reason.",
    ("model", "reason"),
)
# No model label: what the sidecar's source counted before a record reached a model (a request
# for no configured model, a path no model's protocol takes, a tail line or CloudEvent it could
# not read) is no model's own error, whose parse_errors count only the records routed to it.
SOURCE_PARSE_ERRORS = MetricSpec(
    "driftgauge_source_parse_errors",
    "counter",
    "Records the source could not read or route to a model, by reason.",
    ("reason",),
)
DROPPED = MetricSpec(
    "driftgauge_dropped",
    "counter",
    "Observations of the model dropped after routing, by reason.",
    ("model", "reason"),
)
# No model label, as SOURCE_PARSE_ERRORS: what the source dropped before routing (its queue full,
# a body too large, an early answer, a request sampled out) may have been any model's.
SOURCE_DROPPED = MetricSpec(
    "driftgauge_source_dropped",
    "counter",
    "Records the source dropped before routing them to a model (overload, oversize), by reason.",
    ("reason",),
)
ROWS = MetricSpec(
    "driftgauge_rows", "counter", "Rows (one request may carry many) monitored.", _MODEL
)
MISSING_FIELDS = MetricSpec(
    "driftgauge_missing_fields",
    "counter",
    "Rows that lacked the field: no key, column or tensor for it (a schema violation; "
    "also counted missing).",
    _FIELD,
)
EXTRA_FIELDS = MetricSpec(
    "driftgauge_extra_fields",
    "counter",
    "Columns in requests that the config does not name (schema violations, not labelled by name).",
    _MODEL,
)
LABELS = MetricSpec(
    "driftgauge_labels",
    "counter",
    "Labels received, by whether they matched a held prediction.",
    ("model", "result"),
)
PENDING_PREDICTIONS = MetricSpec(
    "driftgauge_pending_predictions", "gauge", "Predictions waiting for their label.", _MODEL
)

# -- the baseline and the build (snapshot.py, rendered once) --------------------------------------

# The version of the metrics the generated rules and dashboards read: raised whenever a metric
# or label they select changes, so rules written for another version can tell
# (DriftgaugeRulesOutdated).  2: the service metrics without a `model` label (2026-12-05).
METRICS_VERSION = 2
BUILD_INFO = MetricSpec(
    "driftgauge_build",
    "info",
    "driftgauge version, and the version of its metrics that alert rules are written for.",
    ("version", "metrics_version"),
)
BASELINE_INFO = MetricSpec(
    "driftgauge_baseline",
    "info",
    "The baseline in use: id, creation time, rows.",
    ("model", "baseline_id", "created", "rows"),
)
# Gauges, not summaries: features can be negative, and strict OpenMetrics parsers
# (prometheus_client's among them) refuse negative summary quantiles and sums.
BASELINE_QUANTILE = MetricSpec(
    "driftgauge_baseline_quantile",
    "gauge",
    "Quantiles of a numeric field in the baseline, beside driftgauge_feature_quantile's live ones.",
    (*_FIELD, QUANTILE_LABEL),
)
BASELINE_MEAN = MetricSpec(
    "driftgauge_baseline_mean",
    "gauge",
    "The baseline's mean of a numeric field, beside driftgauge_feature_mean's live one.",
    _FIELD,
)
BASELINE_BIN_RATIO = MetricSpec(
    "driftgauge_baseline_bin_ratio",
    "gauge",
    "The baseline's share of each bin.",
    (*_FIELD, "bin"),
)
BASELINE_OBSERVATIONS = MetricSpec(
    "driftgauge_baseline_observations",
    "gauge",
    "Valid values of each field in the baseline (for fleet-wide noise floors).",
    _FIELD,
)
BASELINE_CARDINALITY = MetricSpec(
    "driftgauge_baseline_cardinality",
    "gauge",
    "Distinct values of a categorical field in the baseline (HLL estimate).",
    _FIELD,
)

# -- drift and window figures, per recompute (snapshot.py) ----------------------------------------

WINDOW_OBSERVATIONS = MetricSpec(
    "driftgauge_window_observations", "gauge", "Valid observations in the window.", _WINDOW
)
PSI = MetricSpec(
    "driftgauge_psi", "gauge", "Population stability index, live window vs baseline.", _WINDOW
)
PSI_NOISE_FLOOR = MetricSpec(
    "driftgauge_psi_noise_floor",
    "gauge",
    "PSI expected with no drift for this window's and the baseline's sizes.",
    _WINDOW,
)
DESIGN_EFFECT = MetricSpec(
    "driftgauge_design_effect",
    "gauge",
    "Rows of the window that count as one independent draw (its rows come in requests).",
    _WINDOW,
)
KS_STATISTIC = MetricSpec(
    "driftgauge_ks_statistic", "gauge", "Two-sample Kolmogorov-Smirnov D (numeric).", _WINDOW
)
KS_PVALUE = MetricSpec(
    "driftgauge_ks_pvalue", "gauge", "p-value of the Kolmogorov-Smirnov D.", _WINDOW
)
JS_DISTANCE = MetricSpec(
    "driftgauge_js_distance",
    "gauge",
    "Jensen-Shannon distance (base 2) on the baseline bins.",
    _WINDOW,
)
CHI2_PVALUE = MetricSpec(
    "driftgauge_chi2_pvalue", "gauge", "Chi-squared test p-value (categorical).", _WINDOW
)
FEATURE_QUANTILE = MetricSpec(
    "driftgauge_feature_quantile",
    "gauge",
    "Live quantiles of a numeric feature or prediction, from the window's sketch.",
    (*_WINDOW, QUANTILE_LABEL),
)
FEATURE_MEAN = MetricSpec(
    "driftgauge_feature_mean",
    "gauge",
    "The window's mean of a numeric feature or prediction.",
    _WINDOW,
)
CARDINALITY = MetricSpec(
    "driftgauge_cardinality",
    "gauge",
    "Distinct values of a categorical field in the window (HLL estimate).",
    _WINDOW,
)

# -- segments, fairness and performance, per recompute (snapshot.py) -----------------------------

SEGMENT_PSI = MetricSpec(
    "driftgauge_segment_psi",
    "gauge",
    "PSI of a prediction within a segment vs the same segment in the baseline.",
    _SEGMENT,
)
SEGMENT_PSI_NOISE_FLOOR = MetricSpec(
    "driftgauge_segment_psi_noise_floor",
    "gauge",
    "PSI expected by chance for the segment's sizes.",
    _SEGMENT,
)
SEGMENT_OBSERVATIONS = MetricSpec(
    "driftgauge_segment_observations",
    "gauge",
    "Predictions of the segment in the window.",
    _SEGMENT,
)
POSITIVE_RATE = MetricSpec(
    "driftgauge_positive_rate",
    "gauge",
    "Share of the segment's predictions that are the positive class.",
    ("model", "window", "segment_feature", "segment"),
)
DISPARATE_IMPACT = MetricSpec(
    "driftgauge_disparate_impact",
    "gauge",
    "Lowest positive prediction rate over the highest, across a feature's segments.",
    _FAIRNESS,
)
PERFORMANCE = MetricSpec(
    "driftgauge_performance",
    "gauge",
    "Model performance from delayed labels in the window (accuracy, f1, mae, rmse...).",
    ("model", "window", "metric"),
)
CLASS_PERFORMANCE = MetricSpec(
    "driftgauge_class_performance",
    "gauge",
    "Precision, recall and F1 of each class (for at most 10 classes).",
    ("model", "window", "class", "metric"),
)
SEGMENT_PERFORMANCE = MetricSpec(
    "driftgauge_segment_performance",
    "gauge",
    "Model performance from delayed labels within a segment.",
    ("model", "window", "segment_feature", "segment", "metric"),
)
WINDOW_LABELS = MetricSpec(
    "driftgauge_window_labels",
    "gauge",
    "Labelled predictions in the window.",
    ("model", "window"),
)
EQUAL_OPPORTUNITY = MetricSpec(
    "driftgauge_equal_opportunity_difference",
    "gauge",
    "Largest gap in true positive rate between a feature's segments.",
    _FAIRNESS,
)
COMPUTED_AT = MetricSpec(
    "driftgauge_stats_computed_timestamp_seconds",
    "gauge",
    "Unix time of the last drift statistics recompute (0 before the first).",
    _MODEL,
)
COMPUTE_DURATION = MetricSpec(
    "driftgauge_stats_compute_duration_seconds",
    "gauge",
    "Time the last drift statistics recompute took.",
    _MODEL,
)

# -- service health of the proxy (proxy.py, prometheus_client instruments) -----------------------
# No model label: the proxy forwards every model's requests (and others) without routing them, so
# these are the sidecar's, as SOURCE_DROPPED is.

REQUESTS = MetricSpec(
    "driftgauge_requests",
    "counter",
    "Proxied requests by the status code returned to the client (0: connection closed).",
    ("code",),
)
_LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
UPSTREAM_LATENCY = MetricSpec(
    "driftgauge_upstream_latency_seconds",
    "histogram",
    "Model server latency seen by the proxy: request forwarded to response complete.",
    (),
    _LATENCY_BUCKETS,
)
OVERHEAD = MetricSpec(
    "driftgauge_overhead_seconds",
    "histogram",
    "Time the sidecar itself holds a request, excluding the model server.",
    (),
    (0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05),
)
_SIZE_BUCKETS = (256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216)
REQUEST_SIZE = MetricSpec(
    "driftgauge_request_size_bytes", "histogram", "Request body sizes.", (), _SIZE_BUCKETS
)
RESPONSE_SIZE = MetricSpec(
    "driftgauge_response_size_bytes", "histogram", "Response body sizes.", (), _SIZE_BUCKETS
)
UPSTREAM_ERRORS = MetricSpec(
    "driftgauge_upstream_errors",
    "counter",
    "Upstream failures by reason (connect_refused, connect_timeout, timeout, upstream_reset, bad_response).",
    ("reason",),
)
CLIENT_ERRORS = MetricSpec(
    "driftgauge_client_errors",
    "counter",
    "Client requests refused by the proxy, and pauses of its accepting (out of descriptors), by reason.",
    ("reason",),
)
# The source's too: its queue and sampler take every model's records.
QUEUE_DEPTH = MetricSpec(
    "driftgauge_queue_depth", "gauge", "Records waiting for the monitoring consumer.", ()
)
SAMPLING_RATE = MetricSpec(
    "driftgauge_sampling_rate",
    "gauge",
    "Share of prediction requests monitoring takes: 1 is every one; lower under overload, "
    "the rest counted in driftgauge_source_dropped_total with reason sampled.",
    (),
)

# -- the sidecar's own upkeep (app.py, prometheus_client instruments) ----------------------------

STATE_SAVE_FAILURES = MetricSpec(
    "driftgauge_state_save_failures",
    "counter",
    "State snapshots (state.directory) that could not be written: a restart restores the "
    "last one written.",
    _MODEL,
)

CATALOGUE: tuple[MetricSpec, ...] = (
    OBSERVATIONS,
    MISSING,
    INVALID,
    BIN_OBSERVATIONS,
    PARSE_ERRORS,
    SOURCE_PARSE_ERRORS,
    DROPPED,
    SOURCE_DROPPED,
    ROWS,
    MISSING_FIELDS,
    EXTRA_FIELDS,
    LABELS,
    PENDING_PREDICTIONS,
    BUILD_INFO,
    BASELINE_INFO,
    BASELINE_QUANTILE,
    BASELINE_MEAN,
    BASELINE_BIN_RATIO,
    BASELINE_OBSERVATIONS,
    BASELINE_CARDINALITY,
    WINDOW_OBSERVATIONS,
    PSI,
    PSI_NOISE_FLOOR,
    DESIGN_EFFECT,
    KS_STATISTIC,
    KS_PVALUE,
    JS_DISTANCE,
    CHI2_PVALUE,
    FEATURE_QUANTILE,
    FEATURE_MEAN,
    CARDINALITY,
    SEGMENT_PSI,
    SEGMENT_PSI_NOISE_FLOOR,
    SEGMENT_OBSERVATIONS,
    POSITIVE_RATE,
    DISPARATE_IMPACT,
    PERFORMANCE,
    CLASS_PERFORMANCE,
    SEGMENT_PERFORMANCE,
    WINDOW_LABELS,
    EQUAL_OPPORTUNITY,
    COMPUTED_AT,
    COMPUTE_DURATION,
    REQUESTS,
    UPSTREAM_LATENCY,
    OVERHEAD,
    REQUEST_SIZE,
    RESPONSE_SIZE,
    UPSTREAM_ERRORS,
    CLIENT_ERRORS,
    QUEUE_DEPTH,
    SAMPLING_RATE,
    STATE_SAVE_FAILURES,
)
"""Every metric driftgauge exports (besides prometheus_client's process metrics)."""
