"""The baseline: what the training data looked like, built once, read by the sidecar.

Built in two streaming passes over the data files.  The first fills an
accurate KLL sketch (k = ``EDGE_SKETCH_K``) and the moments of each numeric
field and counts categories; the baseline's bin edges come from that sketch
by the rule in :mod:`driftgauge.sketches.edges` (point masses in bins of
their own, equal-mass bins for the rest, edges between float32 values), and
the second pass counts every value into those bins exactly, so the
baseline's bin shares carry no sketch error.  The sketch kept in the file
is that sketch reduced to ``sketch.kll_k``, the live windows' accuracy.
Categories are stored in their canonical spelling (:mod:`driftgauge.canonical`).

File format (version 1): gzip-compressed JSON with a ``format`` marker, the
format version, the driftgauge version, the config's schema hash, creation
time, row count and one entry per field whose sketches are DataSketches'
own ``serialize()`` bytes in base64.  ``zcat baseline.dgb | jq`` shows it.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import datasketches as ds
import numpy as np
import numpy.typing as npt

from driftgauge import __version__
from driftgauge.atomic import write_atomically
from driftgauge.baseline.datafiles import Chunk, read_chunks
from driftgauge.baseline.multivariate import Moments, PcaModel
from driftgauge.config import Config, FieldSpec, FieldType, MultivariateConfig, Role
from driftgauge.exceptions import BaselineError, DataError
from driftgauge.sketches.codec import decode_summary, encode_summary
from driftgauge.sketches.edges import EDGE_SKETCH_K, bin_ranges, equal_mass_edges
from driftgauge.sketches.summary import (
    CategoricalBinning,
    CategoricalSummary,
    NumericBinning,
    NumericSummary,
    Summary,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Baseline",
    "FieldBaseline",
    "build_baseline",
    "check_against",
    "describe",
    "load_baseline",
    "merge_baselines",
    "save_baseline",
]

FORMAT = "driftgauge-baseline"
FORMAT_VERSION = 1
# Up to this many distinct categories the baseline keeps them all, exactly,
# which is what lets the sidecar tell a rare known category from an unseen one.
KNOWN_CATEGORY_LIMIT = 10_000
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, slots=True)
class FieldBaseline:
    """One field's baseline summary.

    ``exact`` says whether the bin counts are exact (always, for a baseline
    built from data; a merge of baselines with different edges re-estimates
    them from the merged sketch).  ``category_counts`` holds every category's
    exact count when there were at most ``KNOWN_CATEGORY_LIMIT`` of them.
    ``edge_rank_error`` bounds how far (in normalized rank) a numeric field's
    edges may sit from the exact quantiles of its rule (0 when the sketch
    held every value; ``None`` in baselines written before it was recorded).
    """

    spec: FieldSpec
    summary: Summary
    exact: bool = True
    category_counts: dict[str, int] | None = None
    edge_rank_error: float | None = None

    @property
    def ratios(self) -> list[float]:
        total = float(self.summary.bins.sum())
        return [float(c) / total if total else 0.0 for c in self.summary.bins]

    @property
    def bin_labels(self) -> list[str]:
        return self.summary.binning.labels()


@dataclass(frozen=True, slots=True)
class Baseline:
    id: str
    created: float
    rows: int
    schema_hash: str
    driftgauge_version: str
    kll_k: int
    fields: dict[str, FieldBaseline] = field(default_factory=dict)
    # segment feature -> prediction -> counts[segment, prediction bin]
    segments: dict[str, dict[str, npt.NDArray[np.int64]]] = field(default_factory=dict)
    multivariate: PcaModel | None = None


Progress = Callable[[str, int, int], None]


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


def terminal_progress(stage: str, done: int, total: int) -> None:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal."""
    if not sys.stderr.isatty():
        return
    share = min(1.0, done / total) if total else 1.0
    bar = "#" * int(share * 30)
    end = "\n" if share >= 1.0 else ""
    sys.stderr.write(f"\r{stage:<24} [{bar:<30}] {share:6.1%}{end}")
    sys.stderr.flush()


def build_baseline(
    config: Config,
    files: Sequence[Path],
    progress: Progress = _no_progress,
    chunk_rows: int = 65_536,
) -> Baseline:
    """Two streaming passes over ``files``: sketches and categories, then exact bin counts.

    With ``multivariate`` configured, the first pass also sums the moments
    its PCA is fitted from, and one more pass over just those features
    sketches the rows' reconstruction errors before the bins are counted.
    """
    fields = config.fields
    derived = config.multivariate
    moments = Moments(len(derived.features)) if derived is not None else None
    sizes = sum(f.stat().st_size for f in files if f.is_file())
    k, top = config.sketch.kll_k, config.sketch.top_categories
    first: dict[str, Summary] = {}
    counts: dict[str, Counter[str] | None] = {}
    for spec in fields:
        if spec.type == "numeric":
            first[spec.name] = NumericSummary(NumericBinning(np.empty(0)), k=EDGE_SKETCH_K)
        else:
            first[spec.name] = CategoricalSummary(
                CategoricalBinning(()), hll_lg_k=config.sketch.hll_lg_k
            )
            counts[spec.name] = Counter()
    rows = 0
    offset = 0
    for path in files:
        for chunk in read_chunks(path, config.columns, chunk_rows):
            rows += chunk.rows
            if moments is not None and derived is not None:
                moments.add(_complete(chunk, derived.features))
            for spec in config.columns:
                column = chunk.columns[spec.name]
                summary = first[spec.name]
                if isinstance(summary, NumericSummary):
                    summary.update(column.values, column.missing, column.wrong_type)
                else:
                    summary.update(column.values, column.missing)
                    tally = counts[spec.name]
                    if tally is not None and len(column.values):
                        distinct, n = np.unique(column.values, return_counts=True)
                        tally.update(dict(zip(distinct.tolist(), n.tolist(), strict=True)))
                        if len(tally) > KNOWN_CATEGORY_LIMIT:
                            counts[spec.name] = None
            progress("pass 1/2: sketches", offset + chunk.bytes_read, sizes)
        offset += path.stat().st_size
    pca = None
    if moments is not None and derived is not None:
        pca = _fit(derived, moments)
        errors_summary = first[derived.name]
        assert isinstance(errors_summary, NumericSummary)
        for chunk in _chunks(files, derived.features, config, chunk_rows, progress, sizes):
            errors_summary.update(pca.errors(_complete(chunk, derived.features)))
    binnings: dict[str, NumericBinning | CategoricalBinning] = {}
    rank_errors: dict[str, float] = {}
    for spec in fields:
        summary = first[spec.name]
        if isinstance(summary, NumericSummary):
            binnings[spec.name] = NumericBinning(_equal_mass_edges(summary, config.sketch.bins))
            rank_errors[spec.name] = _rank_error(summary.kll)
            first[spec.name] = replace(summary, k=k, kll=_reduced(summary.kll, k))
        else:
            binnings[spec.name] = _category_binning(summary, counts[spec.name], top)
    second = {name: np.zeros(b.size, dtype=np.int64) for name, b in binnings.items()}
    needs_bins = [s for s in fields if s.type == "numeric" or counts.get(s.name) is None]
    crosstab = SegmentCrosstab(config, binnings)
    needs_pass = [s for s in fields if s in needs_bins or s.name in crosstab.columns]
    offset = 0
    read = [s for s in needs_pass if s.role != "multivariate"]
    if pca is not None and derived is not None:
        read += [s for s in config.features if s.name in derived.features and s not in read]
    for path in files if needs_pass else ():
        for chunk in read_chunks(path, read, chunk_rows):
            for spec in needs_bins:
                if spec.role == "multivariate":
                    assert pca is not None and derived is not None
                    numeric = binnings[spec.name]
                    assert isinstance(numeric, NumericBinning)
                    second[spec.name] += numeric.count(
                        pca.errors(_complete(chunk, derived.features))
                    )
                    continue
                values = chunk.columns[spec.name].values
                if spec.type == "numeric":
                    values = values[np.isfinite(values)]
                second[spec.name] += binnings[spec.name].count(values)
            crosstab.add(chunk)
            progress("pass 2/2: exact bins", offset + chunk.bytes_read, sizes)
        offset += path.stat().st_size
    result = {}
    for spec in fields:
        summary = first[spec.name]
        tally = counts.get(spec.name)
        binning = binnings[spec.name]
        bins = second[spec.name]
        if isinstance(binning, CategoricalBinning) and tally is not None:
            bins = binning.count_table(tally)
        if isinstance(summary, NumericSummary):
            assert isinstance(binning, NumericBinning)
            summary = replace(summary, binning=binning, bins=bins)
        else:
            assert isinstance(binning, CategoricalBinning)
            summary = replace(summary, binning=binning, bins=bins)
        result[spec.name] = FieldBaseline(
            spec,
            summary,
            True,
            dict(tally) if tally is not None else None,
            rank_errors.get(spec.name),
        )
    return _finish(config, rows, result, crosstab.counts, pca)


def _complete(chunk: Chunk, names: Sequence[str]) -> npt.NDArray[np.float64]:
    """The rows of ``chunk`` holding a finite value of every one of ``names``, as a matrix."""
    matrix = np.column_stack([chunk.columns[name].values for name in names]).astype(np.float64)
    complete: npt.NDArray[np.float64] = matrix[np.isfinite(matrix).all(axis=1)]
    return complete


def _fit(derived: MultivariateConfig, moments: Moments) -> PcaModel:
    try:
        return PcaModel.fit(derived, moments)
    except ValueError as exc:
        raise DataError(str(exc)) from None


def _chunks(
    files: Sequence[Path],
    names: Sequence[str],
    config: Config,
    chunk_rows: int,
    progress: Progress,
    sizes: int,
) -> Iterator[Chunk]:
    """The chunks of ``files`` holding just the features ``names``, with progress."""
    specs = [spec for spec in config.features if spec.name in names]
    offset = 0
    for path in files:
        for chunk in read_chunks(path, specs, chunk_rows):
            yield chunk
            progress("pass 1b: multivariate", offset + chunk.bytes_read, sizes)
        offset += path.stat().st_size


class SegmentCrosstab:
    """Exact counts of each prediction's bins within each top value of each segment feature.

    Segments are the segment feature's ``segments.top`` most frequent baseline
    categories plus ``__other__``; the live side uses the same, so per-segment
    prediction drift compares like with like.
    """

    def __init__(
        self, config: Config, binnings: dict[str, NumericBinning | CategoricalBinning]
    ) -> None:
        self.binnings = binnings
        self.segments = {
            name: segment_binning(binnings[name], config.segments.top)
            for name in config.segments.features
        }
        self.predictions = list(config.predictions)
        self.columns = (
            set(self.segments) | {p.name for p in self.predictions} if self.segments else set()
        )
        self.counts: dict[str, dict[str, npt.NDArray[np.int64]]] = {
            s: {
                p.name: np.zeros((b.size - 1, binnings[p.name].size), dtype=np.int64)
                for p in self.predictions
            }
            for s, b in self.segments.items()
        }

    def add(self, chunk: Chunk) -> None:
        for name, binning in self.segments.items():
            segment = chunk.columns[name].aligned_indexes(binning)
            for spec in self.predictions:
                target = self.counts[name][spec.name]
                column = chunk.columns[spec.name]
                predicted = self.binnings[spec.name]
                if isinstance(predicted, NumericBinning):
                    slots = predicted.slots(column.values)
                else:
                    slots = column.aligned_indexes(predicted)
                keep = (segment >= 0) & (slots >= 0)
                flat = segment[keep] * target.shape[1] + slots[keep]
                target += np.bincount(flat, minlength=target.size).reshape(target.shape)


def segment_binning(binning: NumericBinning | CategoricalBinning, top: int) -> CategoricalBinning:
    """A segment feature's bounded values: its top baseline categories, the rest ``__other__``.

    Its ``__unseen__`` bucket is never used (no ``known`` set), so there are
    ``top + 1`` segments at most.
    """
    assert isinstance(binning, CategoricalBinning)
    return CategoricalBinning(binning.categories[:top], None)


def _finish(
    config: Config,
    rows: int,
    fields: dict[str, FieldBaseline],
    segments: dict[str, dict[str, npt.NDArray[np.int64]]] | None = None,
    multivariate: PcaModel | None = None,
) -> Baseline:
    draft = Baseline(
        "",
        time.time(),
        rows,
        config.schema_hash(),
        __version__,
        config.sketch.kll_k,
        fields,
        segments or {},
        multivariate,
    )
    identity: list[Any] = _fields_payload(draft)
    if multivariate is not None:
        identity.append(multivariate.payload())
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return replace(draft, id=digest[:12])


def _equal_mass_edges(summary: NumericSummary, bins: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    return equal_mass_edges(summary.kll, bins, summary.minimum, summary.maximum)


def _rank_error(sketch: Any) -> float:
    """The normalized rank error of ``sketch``'s quantiles: 0 while it still holds every value."""
    if sketch.is_empty() or not sketch.is_estimation_mode():
        return 0.0
    return float(sketch.normalized_rank_error(False))


def _reduced(sketch: Any, k: int) -> Any:
    """``sketch`` merged into an empty sketch of accuracy ``k`` (what live windows use)."""
    reduced = ds.kll_doubles_sketch(k)
    reduced.merge(sketch)
    return reduced


def _category_binning(
    summary: CategoricalSummary, tally: Counter[str] | None, top: int
) -> CategoricalBinning:
    if tally is not None:
        ranked = sorted(tally.items(), key=lambda item: (-item[1], item[0]))
        return CategoricalBinning(tuple(c for c, _ in ranked[:top]), frozenset(tally))
    items = summary.frequent.get_frequent_items(ds.frequent_items_error_type.NO_FALSE_POSITIVES)
    ranked = sorted(items, key=lambda item: (-item[1], item[0]))
    return CategoricalBinning(tuple(item[0] for item in ranked[:top]), None)


def check_against(baseline: Baseline, config: Config, path: Path) -> None:
    """Raise BaselineError naming each field where ``baseline`` and ``config`` disagree."""
    problems = []
    for spec in config.fields:
        held = baseline.fields.get(spec.name)
        if held is None:
            problems.append(f"{spec.role} {spec.name!r} is in the config but not in the baseline")
        elif held.spec.type != spec.type:
            problems.append(
                f"{spec.name!r} is {spec.type} in the config but {held.spec.type} in the baseline"
            )
    if config.multivariate is not None and (
        baseline.multivariate is None
        or baseline.multivariate.features != config.multivariate.features
    ):
        problems.append("built without the config's multivariate features; rebuild it")
    extra = sorted(set(baseline.fields) - {f.name for f in config.fields})
    if extra:
        problems.append(f"the baseline holds fields the config lacks: {', '.join(extra)}")
    if not problems and baseline.schema_hash != config.schema_hash():
        problems.append(
            "built with other sketch settings (kll_k, bins or top_categories) than the config's; rebuild it"
        )
    if problems:
        raise BaselineError(f"{path}: does not match the config: {'; '.join(problems)}")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _finite_or_none(value: float) -> float | None:
    return value if np.isfinite(value) else None


def _field_payload(held: FieldBaseline) -> dict[str, Any]:
    spec, summary = held.spec, held.summary
    payload = {"name": spec.name, "role": spec.role, "type": spec.type, "exact": held.exact}
    payload |= encode_summary(summary)
    if isinstance(summary, NumericSummary):
        return payload | {
            "edges": [float(e) for e in summary.binning.edges],
            "edge_rank_error": held.edge_rank_error,
        }
    return payload | {
        "categories": list(summary.binning.categories),
        "category_counts": held.category_counts,
    }


def _fields_payload(baseline: Baseline) -> list[dict[str, Any]]:
    return [_field_payload(held) for held in baseline.fields.values()]


def save_baseline(baseline: Baseline, path: Path) -> None:
    """Write atomically and durably (:func:`driftgauge.atomic.write_atomically`)."""
    document: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "driftgauge_version": baseline.driftgauge_version,
        "id": baseline.id,
        "created": dt.datetime.fromtimestamp(baseline.created, dt.UTC).isoformat(),
        "rows": baseline.rows,
        "schema_hash": baseline.schema_hash,
        "kll_k": baseline.kll_k,
        "fields": _fields_payload(baseline),
        "segments": {
            s: {p: counts.tolist() for p, counts in per.items()}
            for s, per in baseline.segments.items()
        },
    }
    if baseline.multivariate is not None:
        document["multivariate"] = baseline.multivariate.payload()
    data = gzip.compress(json.dumps(document, allow_nan=False).encode("utf-8"), mtime=0)
    try:
        write_atomically(path, data)
    except OSError as exc:
        raise BaselineError(f"{path}: cannot write the baseline: {exc.strerror or exc}") from None


def _field_from_payload(item: dict[str, Any], kll_k: int) -> FieldBaseline:
    kind: FieldType = item["type"]
    role: Role = item["role"]
    name = item["name"]
    if not isinstance(name, str) or not name:
        raise ValueError("a field without a name")
    if kind not in ("numeric", "categorical") or role not in (
        "input",
        "prediction",
        "multivariate",
    ):
        raise ValueError(f"field {name!r} has an unknown type or role")
    spec = FieldSpec(name=name, type=kind, role=role)
    size = len(item["bin_counts"])
    counts = None
    summary: Summary
    if kind == "numeric":
        summary = NumericSummary(
            NumericBinning(np.asarray(item["edges"], dtype=np.float64)), k=kll_k
        )
    else:
        counts = item["category_counts"]
        known = frozenset(counts) if counts is not None else None
        binning = CategoricalBinning(tuple(item["categories"]), known)
        summary = CategoricalSummary(binning, hll_lg_k=int(item["hll_lg_k"]))
    if summary.binning.size != size:
        raise ValueError(f"{spec.name}: {size} bin counts for {summary.binning.size} bins")
    decode_summary(summary, item)
    rank_error = item.get("edge_rank_error")
    return FieldBaseline(
        spec,
        summary,
        bool(item["exact"]),
        counts,
        None if rank_error is None else float(rank_error),
    )


def load_baseline(path: Path) -> Baseline:
    """Read a baseline file; any problem is a one-line BaselineError naming the file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise BaselineError(
            f"{path}: no baseline file here; build one with `driftgauge baseline`"
        ) from None
    except OSError as exc:
        raise BaselineError(f"{path}: cannot read the baseline: {exc.strerror or exc}") from None
    if not raw.startswith(_GZIP_MAGIC):
        raise BaselineError(f"{path}: not a driftgauge baseline (not gzip-compressed)")
    try:
        document = json.loads(gzip.decompress(raw))
    except (OSError, EOFError, ValueError) as exc:
        raise BaselineError(
            f"{path}: the baseline is corrupt or truncated ({type(exc).__name__})"
        ) from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise BaselineError(f"{path}: not a driftgauge baseline (no format marker {FORMAT!r})")
    version = document.get("format_version")
    if version != FORMAT_VERSION:
        raise BaselineError(
            f"{path}: baseline format version {version!r}, this driftgauge reads version {FORMAT_VERSION}; rebuild it"
        )
    try:
        kll_k = int(document["kll_k"])
        fields = [_field_from_payload(item, kll_k) for item in document["fields"]]
        created = dt.datetime.fromisoformat(document["created"]).timestamp()
        return Baseline(
            id=str(document["id"]),
            created=created,
            rows=int(document["rows"]),
            schema_hash=str(document["schema_hash"]),
            driftgauge_version=str(document["driftgauge_version"]),
            kll_k=kll_k,
            fields={f.spec.name: f for f in fields},
            segments={
                s: {p: np.asarray(c, dtype=np.int64) for p, c in per.items()}
                for s, per in document.get("segments", {}).items()
            },
            multivariate=(
                PcaModel.from_payload(document["multivariate"])
                if document.get("multivariate") is not None
                else None
            ),
        )
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, OverflowError) as exc:
        detail = f"missing key {exc}" if isinstance(exc, KeyError) else type(exc).__name__
        raise BaselineError(f"{path}: the baseline is malformed ({detail})") from None


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
    return _finish(config, sum(p.rows for p in parts), fields, segments)


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
        shared = first.binning.edges
        same = all(np.array_equal(h.summary.binning.edges, shared) for h in held)  # type: ignore[union-attr]
        edges = shared if same else _equal_mass_edges(merged, config.sketch.bins)
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
        rank_error = (
            (None if None in errors else max(e or 0.0 for e in errors))
            if same
            else _rank_error(merged.kll)
        )
        return FieldBaseline(
            spec, replace(merged, binning=binning, bins=bins), exact, None, rank_error
        )
    merged_cat = CategoricalSummary(CategoricalBinning(()), hll_lg_k=first.hll_lg_k)
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
            binning_cat = _category_binning(merged_cat, total, config.sketch.top_categories)
            bins = binning_cat.count_table(total)
            return FieldBaseline(
                spec, replace(merged_cat, binning=binning_cat, bins=bins), True, dict(total)
            )
    binning_cat = _category_binning(merged_cat, None, config.sketch.top_categories)
    estimates = [int(merged_cat.frequent.get_estimate(c)) for c in binning_cat.categories]
    other = max(0, merged_cat.count - sum(estimates))
    bins = np.asarray([*estimates, other, 0], dtype=np.int64)
    return FieldBaseline(spec, replace(merged_cat, binning=binning_cat, bins=bins), False)


def _edge_accuracy(held: FieldBaseline) -> str:
    error = held.edge_rank_error
    if error is None:
        return "edges from an older baseline, rank error not recorded"
    if error == 0:
        return "edges at exact quantiles"
    return f"edges within ±{error:.2%} rank of the exact quantiles"


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
            f"  multivariate: PCA of {', '.join(pca.features)}: {pca.components.shape[1]} of "
            f"{len(pca.features)} components, {pca.explained:.1%} of the variance"
        ]
    for held in baseline.fields.values():
        spec, summary = held.spec, held.summary
        exactness = "exact bins" if held.exact else "estimated bins (merged)"
        lines.append(f"{spec.name}  ({spec.type} {spec.role}; {exactness})")
        lines.append(f"  count {summary.count:,}  missing {summary.missing:,}")
        if isinstance(summary, NumericSummary):
            if summary.count:
                qs = summary.kll.get_quantiles([0.01, 0.25, 0.5, 0.75, 0.99])
                mean = summary.total / summary.count
                lines.append(
                    f"  min {summary.minimum:.6g}  p1 {qs[0]:.6g}  p25 {qs[1]:.6g}  p50 {qs[2]:.6g}  "
                    f"p75 {qs[3]:.6g}  p99 {qs[4]:.6g}  max {summary.maximum:.6g}  mean {mean:.6g}"
                )
            if summary.wrong_type or summary.nan or summary.inf:
                lines.append(
                    f"  not numbers {summary.wrong_type:,}  nan {summary.nan:,}  inf {summary.inf:,}"
                )
            lines.append(f"  {summary.binning.size} bins ({_edge_accuracy(held)}):")
            ranges = bin_ranges(summary.binning.edges, summary.minimum, summary.maximum)
            for index, (text, ratio) in enumerate(zip(ranges, held.ratios, strict=True)):
                lines.append(f"    bin {index:<3} {text:<32} share {ratio:.4f}")
        else:
            cardinality = summary.hll.get_estimate()
            lines.append(
                f"  distinct ≈ {cardinality:,.0f}  top categories kept {len(summary.binning.categories)}"
            )
            shown = list(zip(held.bin_labels, held.ratios, strict=True))[:10]
            lines.append("  " + "  ".join(f"{label} {ratio:.3f}" for label, ratio in shown))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
