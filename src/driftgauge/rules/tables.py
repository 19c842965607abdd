"""The shipped rules that every model (or sidecar) gets as they are, as tables.

The fleet recording rules, and the data-quality, service, state and performance
alerts of the shipped ``alert_rules/driftgauge.rules.yml``, with ``{M}`` where
the model's label matchers go, and in the service alerts (the sidecar's, on
series its proxy and source export without a model label) ``{S}`` where the
join selecting the config's sidecars goes (:mod:`driftgauge.rules.alerts` fills
them in and adds the config's labels, severities and runbook links).
"""

from __future__ import annotations

from driftgauge.exposition.catalogue import METRICS_VERSION

__all__ = [
    "FLEET_RECORDS",
    "NOT_LOST",
    "PERFORMANCE",
    "QUALITY",
    "SERVICE",
    "STATE",
    "VERSION_RECORDS",
]


def _with_baseline_id(ignored: str, info: str = "driftgauge_baseline_info{M}") -> str:
    """The baseline_id of each series' sidecar, joined in from ``info`` (fleet PSI is per model
    and baseline); ``ignored``: the series' own labels besides the model's."""
    return (
        f"\n    * ignoring ({ignored}, baseline_id, created, rows) group_left (baseline_id)\n"
        f"  {info}\n"
    )


_BASELINE_ID = _with_baseline_id("feature, role, bin")
_WINDOW_BASELINE_ID = _with_baseline_id("feature, role, window")
# For counters: the baseline of the range (a sidecar that left keeps its counts of the
# range), never from a sidecar whose baseline changed within it (counts in two baselines' bins),
# nor from one first scraped within it: rate() extrapolates each bin's counter to the zero it
# started from (durationToZero) or not, by how its first sample compares with its increase, so
# a replica whose first scrape already holds counts has its bins scaled unlike one another.
_STEADY_BASELINE_ID = _with_baseline_id(
    "feature, role, bin",
    "(\n"
    "    last_over_time(driftgauge_baseline_info{M}[5m])\n"
    "      unless ignoring (baseline_id, created, rows)\n"
    "    (count without (baseline_id, created, rows) (last_over_time(driftgauge_baseline_info{M}[5m])) > 1)\n"
    "      and driftgauge_baseline_info{M} offset 5m\n"
    "  )",
)

# (record, expr with {M} for the model matchers)
FLEET_RECORDS = (
    (
        "driftgauge:bin_observations:rate5m",
        "sum by (model, baseline_id, feature, role, bin) (\n"
        f"  rate(driftgauge_bin_observations_total{{M}}[5m]){_STEADY_BASELINE_ID})\n",
    ),
    (
        "driftgauge:fleet_observations:rate5m",
        "sum by (model, baseline_id, feature, role) (driftgauge:bin_observations:rate5m{M})\n",
    ),
    (
        "driftgauge:bin_share:rate5m",
        "driftgauge:bin_observations:rate5m{M}\n  / ignoring (bin) group_left\n"
        "driftgauge:fleet_observations:rate5m{M}\n",
    ),
    (
        "driftgauge:baseline_bin_ratio",
        "max by (model, baseline_id, feature, role, bin) (\n"
        f"  driftgauge_baseline_bin_ratio{{M}}{_BASELINE_ID})\n",
    ),
    (
        "driftgauge:fleet_psi:rate5m",
        "sum by (model, baseline_id, feature, role) (\n"
        "  (clamp_min(driftgauge:bin_share:rate5m{M}, 0.0001) - clamp_min(driftgauge:baseline_bin_ratio{M}, 0.0001))\n"
        "  * ln(clamp_min(driftgauge:bin_share:rate5m{M}, 0.0001) / clamp_min(driftgauge:baseline_bin_ratio{M}, 0.0001))\n"
        ")\n",
    ),
    (
        # increase() is rate() times the range: the counters are read once, by the rate.
        "driftgauge:fleet_observations:increase5m",
        "driftgauge:fleet_observations:rate5m{M} * 300\n",
    ),
    (
        # Rows of one request are alike: each sidecar's window counts as its rows over its design
        # effect, so the fleet's rows count as N / (Σ n·δ / Σ n) draws, the mean of the design
        # effects weighted by each window's rows (the pooled shares' variance); 1 without them.
        "driftgauge:fleet_design_effect",
        "sum by (model, baseline_id, feature, role) (\n"
        "  driftgauge_window_observations{M} * driftgauge_design_effect{M}"
        f"{_WINDOW_BASELINE_ID})\n"
        "/ sum by (model, baseline_id, feature, role) (\n"
        "  (driftgauge_window_observations{M} and driftgauge_design_effect{M})"
        f"{_WINDOW_BASELINE_ID})\n"
        "or driftgauge:fleet_observations:increase5m{M} * 0 + 1\n",
    ),
    (
        "driftgauge:fleet_draws:increase5m",
        "driftgauge:fleet_observations:increase5m{M} / driftgauge:fleet_design_effect{M}\n",
    ),
    (
        "driftgauge:fleet_psi_noise_floor:rate5m",
        "clamp_min(count by (model, baseline_id, feature, role) (driftgauge:baseline_bin_ratio{M} > 0) - 1, 1)\n"
        "  * (\n"
        "    1 / driftgauge:fleet_draws:increase5m{M}\n"
        "    + 1 / max by (model, baseline_id, feature, role) (\n"
        f"      driftgauge_baseline_observations{{M}}{_with_baseline_id('feature, role')}    )\n"
        "  )\n",
    ),
)

# A version's PSI above the least-drifted version's (same model, field and window): 0 for the
# stable version, the canary's own drift when only the canary moved.  No series without versions.
VERSION_RECORDS = (
    (
        "driftgauge:psi_version_excess",
        'driftgauge_psi{M, version!=""}\n'
        "  - on (model, feature, role, window) group_left\n"
        'min by (model, feature, role, window) (driftgauge_psi{M, version!=""})\n',
    ),
)

# The driftgauge_source_dropped_total reason that loses no drift observation
# (DriftgaugeObservationsDropped): a model's own drops (driftgauge_dropped_total: predictions
# whose label can no longer join) never lose one, so the alert does not read them.
NOT_LOST = "sampled"

# (name, expr with {M} for the model matchers, for, level, summary, description)
QUALITY = (
    (
        "DriftgaugeMissingValuesHigh",
        "rate(driftgauge_missing_total{M}[10m])\n"
        "  / (rate(driftgauge_missing_total{M}[10m]) + rate(driftgauge_observations_total{M}[10m]))\n"
        "> 0.05\n",
        "10m",
        "warning",
        "Many missing values in {{ $labels.feature }} (model {{ $labels.model }}{{ with $labels.version }} version {{ . }}{{ end }})",
        "{{ $value | humanizePercentage }} of the values of {{ $labels.role }} {{ $labels.feature }} (model {{ $labels.model }}{{ with $labels.version }} version {{ . }}{{ end }}, instance {{ $labels.instance }}) were missing or null over the last 10m (threshold 5%).",
    ),
    (
        "DriftgaugeInvalidValuesHigh",
        'sum without (reason) (rate(driftgauge_invalid_total{M, reason!="unseen_category"}[10m]))\n'
        "  / (\n"
        "    rate(driftgauge_observations_total{M}[10m])\n"
        '    + sum without (reason) (rate(driftgauge_invalid_total{M, reason=~"wrong_type|nan|inf"}[10m]))\n'
        "  )\n"
        "> 0.05\n",
        "10m",
        "warning",
        "Many invalid values in {{ $labels.feature }} (model {{ $labels.model }}{{ with $labels.version }} version {{ . }}{{ end }})",
        "{{ $value | humanizePercentage }} of the values of {{ $labels.role }} {{ $labels.feature }} (model {{ $labels.model }}{{ with $labels.version }} version {{ . }}{{ end }}, instance {{ $labels.instance }}) were of the wrong type, NaN/inf or outside the baseline's range over the last 10m (threshold 5%).",
    ),
    (
        "DriftgaugeUnseenCategories",
        'sum without (reason) (rate(driftgauge_invalid_total{M, reason="unseen_category"}[10m]))\n'
        "  / rate(driftgauge_observations_total{M}[10m])\n"
        "> 0.01\n",
        "10m",
        "warning",
        "Unseen categories in {{ $labels.feature }} (model {{ $labels.model }}{{ with $labels.version }} version {{ . }}{{ end }})",
        "{{ $value | humanizePercentage }} of the values of categorical {{ $labels.role }} {{ $labels.feature }} (model {{ $labels.model }}{{ with $labels.version }} version {{ . }}{{ end }}, instance {{ $labels.instance }}) were categories the baseline never saw, over the last 10m (threshold 1%).",
    ),
)

# (name, expr with {S} for the join selecting the config's sidecars, for, level, summary,
# description): the sidecar's, on series without a model label.
SERVICE = (
    (
        "DriftgaugeUpstreamErrors",
        'sum by (instance) (rate(driftgauge_requests_total{code=~"5..|0"}[5m]){S})\n'
        "  / sum by (instance) (rate(driftgauge_requests_total[5m]){S})\n"
        "> 0.05\n",
        "5m",
        "critical",
        "The upstream of driftgauge sidecar {{ $labels.instance }} answers with server errors",
        "{{ $value | humanizePercentage }} of the requests proxied by {{ $labels.instance }} ended in a 5xx status or a closed connection over the last 5m (threshold 5%).",
    ),
    (
        "DriftgaugeAddedLatencyHigh",
        "histogram_quantile(0.99, sum by (instance, le) (rate(driftgauge_overhead_seconds_bucket[5m]){S}))\n"
        "> 0.005\n",
        "10m",
        "warning",
        "driftgauge sidecar {{ $labels.instance }} adds too much latency",
        "The 99th percentile of the time the sidecar {{ $labels.instance }} adds to requests is {{ $value | humanizeDuration }} over the last 5m (budget 5ms).",
    ),
    (
        # Only reasons that lose drift observations (queue_full, body_too_large,
        # answered_early, cloudevents_overload). Requests sampled out under overload (sampled) leave the
        # windows a uniform sample (DriftgaugeMonitoringSampled tells when that lasts).
        "DriftgaugeObservationsDropped",
        f'sum by (instance, reason) (increase(driftgauge_source_dropped_total{{reason!="{NOT_LOST}"}}[10m]){{S}}) > 0',
        "5m",
        "warning",
        "driftgauge sidecar {{ $labels.instance }} drops observations ({{ $labels.reason }})",
        'The sidecar {{ $labels.instance }} dropped {{ $value | printf "%.0f" }} records before routing in the last 10m (reason {{ $labels.reason }}); drift figures under-count that traffic.',
    ),
    (
        "DriftgaugeMonitoringSampled",
        "max by (instance) (max_over_time(driftgauge_sampling_rate[15m]){S}) < 1",
        "15m",
        "warning",
        "driftgauge sidecar {{ $labels.instance }} monitors only a sample of its requests",
        "The sidecar {{ $labels.instance }} has monitored at most {{ $value | humanizePercentage }} of its prediction requests for 30 minutes: monitoring is over its CPU budget or its queue. Drift figures stay unbiased but noisier (the noise floor follows the sampled count).",
    ),
    (
        # The sidecar's metrics are another version than these rules were written for (an
        # earlier sidecar has no metrics_version label, which matches too).
        "DriftgaugeRulesOutdated",
        f'driftgauge_build_info{{metrics_version!="{METRICS_VERSION}"}}{{S}}',
        "30m",
        "warning",
        "The alert rules do not match driftgauge sidecar {{ $labels.instance }}",
        f"The sidecar {{{{ $labels.instance }}}} (driftgauge {{{{ $labels.version }}}}) exposes metrics{{{{ with $labels.metrics_version }}}} of version {{{{ . }}}}{{{{ end }}}} other than the version {METRICS_VERSION} these rules were written for: some of them select series it does not expose and never fire. Regenerate the rules and dashboards with the sidecar's own `driftgauge rules` and reload Prometheus.",
    ),
)

# Each model's snapshot is its own file, so its failures are counted under its own label.
# {R} is a range holding a failure whatever the interval (10m, or two state.interval where
# longer) and {F} is {R} and 5m: failing on end holds the condition for good, while a
# failure the next save repairs holds it for {R} only and does not fire (rules.alerts).
STATE = (
    (
        "DriftgaugeStateNotSaved",
        "increase(driftgauge_state_save_failures_total{M}[{R}]) > 0",
        "{F}",
        "warning",
        "driftgauge cannot save the state of model {{ $labels.model }}",
        'The sidecar {{ $labels.instance }} has failed to write the state snapshot of model {{ $labels.model }} for {F} ({{ $value | printf "%.0f" }} failures in the last {R}): a restart now restores an older snapshot, and the windows since are lost.',
    ),
)

# DriftgaugePerformanceDrop, one rule per task: its `metric` label, then the rule. A
# classifier's accuracy falls, a regressor's RMSE rises (the sidecar exports mae and rmse
# for regression, no threshold of its own: the day-old level is the baseline).
PERFORMANCE = (
    (
        "accuracy",
        (
            "DriftgaugePerformanceDrop",
            'driftgauge_performance{M, metric="accuracy"}\n'
            '  < 0.95 * (driftgauge_performance{M, metric="accuracy"} offset 1d)\n',
            "30m",
            "warning",
            "Accuracy of model {{ $labels.model }} dropped",
            "Accuracy of model {{ $labels.model }} from delayed labels (instance {{ $labels.instance }}) is {{ $value | humanizePercentage }}, more than 5% below its level a day ago.",
        ),
    ),
    (
        "rmse",
        (
            "DriftgaugePerformanceDrop",
            'driftgauge_performance{M, metric="rmse"}\n'
            '  > 1.05 * (driftgauge_performance{M, metric="rmse"} offset 1d)\n',
            "30m",
            "warning",
            "Prediction error of model {{ $labels.model }} rose",
            'RMSE of model {{ $labels.model }} from delayed labels (instance {{ $labels.instance }}) is {{ $value | printf "%.4g" }}, more than 5% above its level a day ago.',
        ),
    ),
)
