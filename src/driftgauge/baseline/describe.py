"""What ``driftgauge inspect`` prints: a readable account of a baseline."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from driftgauge.baseline.model import Baseline, FieldBaseline
from driftgauge.baseline.store import FORMAT_VERSION
from driftgauge.sketches.edges import bin_ranges
from driftgauge.sketches.summary import OTHER, NumericBinning, NumericSummary

__all__ = ["describe"]


def _edge_accuracy(held: FieldBaseline) -> str:
    error = held.edge_rank_error
    if error is None:
        return "edges from an older baseline, rank error not recorded"
    if error == 0:
        return "edges at exact quantiles"
    return f"edges within ±{error:.2%} rank of the exact quantiles"


def _quantile_accuracy(sketch: Any) -> str:
    """How far the printed quantiles may be from the exact ones (the KLL sketch's bound)."""
    if not sketch.is_estimation_mode():
        return "exact (the sketch holds every value)"
    return f"within ±{sketch.normalized_rank_error(False):.2%} rank of the exact ones"


def _shown(name: str) -> str:
    """``name`` as written when every character prints, else quoted and escaped as repr does:
    a category (from the data) holding a newline or a tab must not break the layout."""
    return name if name and name.isprintable() else repr(name)


def describe(baseline: Baseline, path: Path) -> str:
    """A readable account of what ``baseline`` holds, for `driftgauge inspect`."""
    created = dt.datetime.fromtimestamp(baseline.created, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [
        f"baseline {path}",
        f"  id {baseline.id}  rows {baseline.rows:,}  created {created}",
        f"  format v{FORMAT_VERSION}  driftgauge {baseline.driftgauge_version}  "
        f"schema {baseline.schema_hash}  kll k={baseline.kll_k}",
        "",
    ]
    pca = baseline.multivariate
    if pca is not None:
        lines[-1:-1] = [
            f"  multivariate: PCA of {', '.join(map(_shown, pca.features))}: "
            f"{pca.components.shape[1]} of {len(pca.features)} components, "
            f"{pca.explained:.1%} of the variance"
        ]
    for name, by_prediction in baseline.segments.items():
        counts = next(iter(by_prediction.values()), None)
        binning = baseline.fields[name].summary.binning
        if counts is None or isinstance(binning, NumericBinning):
            continue
        labels = [*binning.categories[: counts.shape[0] - 1], OTHER]
        rows = "  ".join(
            f"{_shown(label)} {int(n):,}" for label, n in zip(labels, counts.sum(1), strict=True)
        )
        lines[-1:-1] = [f"  segments by {_shown(name)} (training rows with a prediction): {rows}"]
    for held in baseline.fields.values():
        spec, summary = held.spec, held.summary
        exactness = "exact bins" if held.exact else "estimated bins (merged)"
        lines.append(f"{_shown(spec.name)}  ({spec.type} {spec.role}; {exactness})")
        lines.append(f"  count {summary.count:,}  missing {summary.missing:,}")
        if isinstance(summary, NumericSummary):
            # A field of float64 classes differs beyond 6 digits (1.7e18 ± 1e6): all 17.
            digits = ".17g" if held.live_items == "float64" else ".6g"
            if summary.count:
                qs = [
                    format(q, digits)
                    for q in summary.kll.get_quantiles([0.01, 0.25, 0.5, 0.75, 0.99])
                ]
                low, high = format(summary.minimum, digits), format(summary.maximum, digits)
                lines.append(
                    f"  min {low}  p1 {qs[0]}  p25 {qs[1]}  p50 {qs[2]}  p75 {qs[3]}  p99 {qs[4]}  "
                    f"max {high}  mean {format(summary.mean, digits)}"
                )
                if held.live_items == "float64":
                    lines.append(
                        "  float64 classes and live sketches (float32 would merge its values)"
                    )
                lines.append(f"  quantiles {_quantile_accuracy(summary.kll)}")
            if summary.wrong_type or summary.nan or summary.inf:
                lines.append(
                    f"  not numbers {summary.wrong_type:,}  nan {summary.nan:,}  inf {summary.inf:,}"
                )
            if summary.count:
                lines.append(f"  {summary.binning.size} bins ({_edge_accuracy(held)}):")
                ranges = bin_ranges(
                    summary.binning.edges,
                    summary.minimum,
                    summary.maximum,
                    float64=held.live_items == "float64",
                )
                for index, (text, ratio) in enumerate(zip(ranges, held.ratios, strict=True)):
                    lines.append(f"    bin {index:<3} {text:<32} share {ratio:.4f}")
            else:
                lines.append("  no finite value, no bins: check and serve refuse this baseline")
        else:
            cardinality = summary.hll.get_estimate()
            lines.append(
                f"  distinct ≈ {cardinality:,.0f}  top categories kept {len(summary.binning.categories)}"
            )
            shown = list(zip(held.bin_labels, held.ratios, strict=True))[:10]
            lines.append("  " + "  ".join(f"{_shown(label)} {ratio:.3f}" for label, ratio in shown))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
