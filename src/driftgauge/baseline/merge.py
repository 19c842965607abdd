"""Baselines built on parts of a data set, merged into the baseline of the whole."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from driftgauge.baseline.build import category_binning, equal_mass_edges_of, rank_error
from driftgauge.baseline.model import KNOWN_CATEGORY_LIMIT, Baseline, FieldBaseline
from driftgauge.baseline.store import finish
from driftgauge.config import Config, FieldSpec
from driftgauge.exceptions import BaselineError
from driftgauge.sketches.summary import (
    CategoricalBinning,
    CategoricalSummary,
    ItemType,
    NumericBinning,
    NumericSummary,
    training_frequent,
)

__all__ = ["merge_baselines"]


def merge_baselines(config: Config, parts: Sequence[Baseline]) -> Baseline:
    """One baseline for the union of the data behind ``parts`` (built with one config).

    Counts, moments and sketches merge exactly as DataSketches merges them.
    When every part has the same bin edges they are kept and the bin counts
    add up exactly.  Otherwise the edges are recomputed from the merged KLL
    sketch and the counts estimated from its CDF (error within its normalized
    rank error per edge), and the field is marked ``exact: false``.
    Categories add up exactly while every part kept all its categories.
    """
    if not parts:
        raise BaselineError("nothing to merge")
    if config.multivariate is not None:
        raise BaselineError(
            "baselines with multivariate drift cannot be merged (each part fitted its own PCA); "
            "build one baseline from all the data"
        )
    hashes = {p.schema_hash for p in parts}
    if len(hashes) > 1:
        raise BaselineError("the baselines were built with different configs and cannot be merged")
    fields: dict[str, FieldBaseline] = {}
    for spec in config.fields:
        held = [p.fields[spec.name] for p in parts]
        fields[spec.name] = _merge_field(spec, held, config)
    segments: dict[str, dict[str, npt.NDArray[np.int64]]] = {}
    for name in config.segments.features:
        # Segment counts add up only where every part split by the same top values and bins.
        keys = {_segment_key(p.fields, name, config) for p in parts}
        keys.add(_segment_key(fields, name, config))
        if len(keys) == 1 and all(name in p.segments for p in parts):
            segments[name] = {
                pred: np.sum([p.segments[name][pred] for p in parts], axis=0)
                for pred in parts[0].segments[name]
            }
    return finish(config, sum(p.rows for p in parts), fields, segments)


def _segment_key(held: dict[str, FieldBaseline], name: str, config: Config) -> tuple[object, ...]:
    labels = held[name].summary.binning.labels()[: config.segments.top]
    return (
        tuple(labels),
        *(tuple(held[p.name].summary.binning.labels()) for p in config.predictions),
    )


def _merge_field(spec: FieldSpec, held: list[FieldBaseline], config: Config) -> FieldBaseline:
    first = held[0].summary
    if isinstance(first, NumericSummary):
        merged = NumericSummary(NumericBinning(np.empty(0)), k=first.k)
        for h in held:
            part = h.summary
            assert isinstance(part, NumericSummary)
            merged.merge(replace(part, binning=merged.binning, bins=np.zeros(1, dtype=np.int64)))
        # A field any part needed float64 for needs it in the whole.
        items: ItemType = "float64" if any(h.live_items == "float64" for h in held) else "float32"
        shared = first.binning.edges
        same = all(np.array_equal(h.summary.binning.edges, shared) for h in held)  # type: ignore[union-attr]
        edges = (
            shared if same else equal_mass_edges_of(merged, config.sketch.bins, items == "float64")
        )
        binning = NumericBinning(edges)
        if same:
            bins = np.sum([h.summary.bins for h in held], axis=0).astype(np.int64)
        else:
            cdf = (
                np.asarray(merged.kll.get_cdf(edges.tolist()), dtype=np.float64)
                if len(edges)
                else np.ones(1)
            )
            bins = np.round(np.diff(np.concatenate([[0.0], cdf])) * merged.count).astype(np.int64)
        exact = same and all(h.exact for h in held)
        errors = [h.edge_rank_error for h in held]
        edge_error = (
            (None if None in errors else max(e or 0.0 for e in errors))
            if same
            else rank_error(merged.kll)
        )
        return FieldBaseline(
            spec, replace(merged, binning=binning, bins=bins), exact, None, edge_error, items
        )
    merged_cat = CategoricalSummary(
        CategoricalBinning(()),
        hll_lg_k=first.hll_lg_k,
        frequent=training_frequent(config.sketch.top_categories),
    )
    tallies = [h.category_counts for h in held]
    for h in held:
        part = h.summary
        assert isinstance(part, CategoricalSummary)
        merged_cat.merge(
            replace(part, binning=merged_cat.binning, bins=np.zeros(2, dtype=np.int64))
        )
    if all(t is not None for t in tallies):
        total: Counter[str] = Counter()
        for t in tallies:
            total.update(t or {})
        if len(total) <= KNOWN_CATEGORY_LIMIT:
            binning_cat = category_binning(merged_cat, total, config.sketch.top_categories)
            bins = binning_cat.count_table(total)
            return FieldBaseline(
                spec, replace(merged_cat, binning=binning_cat, bins=bins), True, dict(total)
            )
    binning_cat = category_binning(merged_cat, None, config.sketch.top_categories)
    estimates = [int(merged_cat.frequent.get_estimate(c)) for c in binning_cat.categories]
    other = max(0, merged_cat.count - sum(estimates))
    bins = np.asarray([*estimates, other, 0], dtype=np.int64)
    return FieldBaseline(spec, replace(merged_cat, binning=binning_cat, bins=bins), False)
