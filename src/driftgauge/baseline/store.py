"""The baseline file: gzip-compressed JSON, written atomically, read with one-line errors.

File format (version 1): a ``format`` marker, the format version, the
driftgauge version, the config's schema hash, creation time, row count and
one entry per field whose sketches are DataSketches' own ``serialize()``
bytes in base64, plus the segment crosstab and the multivariate PCA.
``zcat baseline.dgb | jq`` shows it.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from driftgauge import __version__
from driftgauge.atomic import write_atomically
from driftgauge.baseline.model import Baseline, FieldBaseline
from driftgauge.baseline.multivariate import PcaModel
from driftgauge.canonical import canonical_category
from driftgauge.config import Config, FieldSpec, FieldType, Role
from driftgauge.exceptions import BaselineError
from driftgauge.sketches.codec import decode_summary, encode_summary
from driftgauge.sketches.summary import (
    CategoricalBinning,
    CategoricalSummary,
    NumericBinning,
    NumericSummary,
    Summary,
)

__all__ = ["FORMAT", "FORMAT_VERSION", "check_against", "finish", "load_baseline", "save_baseline"]


FORMAT = "driftgauge-baseline"
FORMAT_VERSION = 1
_GZIP_MAGIC = b"\x1f\x8b"
# The multivariate field's errors come from PCAs fitted without each row (d9d44cf, 72543b1);
# a file without this mark holds the training rows' own errors, smaller than a new row's.
_HELD_OUT = {"errors": "held-out"}


def finish(
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
    feedback = config.feedback
    target = baseline.fields.get(feedback.prediction) if feedback is not None else None
    if feedback is not None and feedback.positive_class is not None and target is not None:
        binning = target.summary.binning
        # Outside the top categories it would be __other__ or __unseen__: no class of its own.
        if (
            isinstance(binning, CategoricalBinning)
            and binning.class_of(feedback.positive_class) not in binning.index
        ):
            classes = ", ".join(map(repr, binning.categories))
            problems.append(
                f"feedback.positive_class {feedback.positive_class!r} is not among the classes "
                f"of {feedback.prediction!r} the baseline keeps ({classes})"
            )
    extra = sorted(set(baseline.fields) - {f.name for f in config.fields})
    if extra:
        problems.append(f"the baseline holds fields the config lacks: {', '.join(extra)}")
    segments = config.segments
    if sorted(baseline.segments) != sorted(segments.features):
        problems.append(
            f"built for segments.features {sorted(baseline.segments)}, the config has "
            f"{list(segments.features)}; rebuild it"
        )
    elif not problems and any(
        counts.shape[0] != _segment_rows(baseline, name, segments.top)
        for name, per in baseline.segments.items()
        for counts in per.values()
    ):
        problems.append(
            f"built for another segments.top than the config's {segments.top}; rebuild it"
        )
    if not problems and baseline.schema_hash != config.schema_hash():
        problems.append(
            "built with other sketch settings (kll_k, bins or top_categories) or segments.top "
            "than the config's; rebuild it"
        )
    if problems:
        raise BaselineError(f"{path}: does not match the config: {'; '.join(problems)}")


def _segment_rows(baseline: Baseline, name: str, top: int) -> int:
    """The segments of ``name`` with ``segments.top`` = ``top``: its top categories, then __other__."""
    binning = baseline.fields[name].summary.binning
    categories = binning.categories if isinstance(binning, CategoricalBinning) else ()
    return min(top, len(categories)) + 1


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _finite_or_none(value: float) -> float | None:
    return value if np.isfinite(value) else None


def _field_payload(held: FieldBaseline) -> dict[str, Any]:
    spec, summary = held.spec, held.summary
    payload = {"name": spec.name, "role": spec.role, "type": spec.type, "exact": held.exact}
    payload |= encode_summary(summary)
    if isinstance(summary, NumericSummary):
        # Marked only when float64: a field without the mark (and every field of a baseline
        # written before fields could need float64) keeps float32 live sketches.
        return (
            payload
            | {
                "edges": [float(e) for e in summary.binning.edges],
                "edge_rank_error": held.edge_rank_error,
            }
            | ({"live_items": "float64"} if held.live_items == "float64" else {})
        )
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
        document["multivariate"] = baseline.multivariate.payload() | _HELD_OUT
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
    live_items = item.get("live_items", "float32")
    if live_items not in ("float32", "float64"):
        raise ValueError(f"field {name!r} has live items {live_items!r}")
    return FieldBaseline(
        spec,
        summary,
        bool(item["exact"]),
        counts,
        None if rank_error is None else float(rank_error),
        live_items,
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
        baseline = Baseline(
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
    except (
        KeyError,
        IndexError,  # DataSketches' deserialize on cut or altered bytes
        TypeError,
        ValueError,
        RuntimeError,
        AttributeError,
        OverflowError,
    ) as exc:
        detail = f"missing key {exc}" if isinstance(exc, KeyError) else type(exc).__name__
        raise BaselineError(f"{path}: the baseline is malformed ({detail})") from None
    _refuse_earlier_builds(baseline, document, path)
    return baseline


def _refuse_earlier_builds(baseline: Baseline, document: dict[str, Any], path: Path) -> None:
    """Raise BaselineError for what an earlier driftgauge built otherwise than this one.

    The format is unchanged, so these are told apart by their content: a category spelled
    otherwise than today's :func:`canonical_category` spells live values (an integral float
    from 1e16 on, ``1e+16`` before 348f50f) would meet none of them, every one unseen; a
    multivariate field of the training rows' own errors reads undrifted traffic as drift.
    Either would raise the drift alerts until the baseline is rebuilt.
    """
    if baseline.multivariate is not None and not (
        _HELD_OUT.items() <= document["multivariate"].items()
    ):
        raise BaselineError(
            f"{path}: its multivariate field holds the training rows' own reconstruction "
            "errors (a baseline built by an earlier version), which read undrifted traffic as "
            "drift; rebuild it"
        )
    for name, held in baseline.fields.items():
        binning = held.summary.binning
        if not isinstance(binning, CategoricalBinning):
            continue
        for category in held.category_counts or binning.categories:
            spelled = canonical_category(category)
            if spelled != category:
                raise BaselineError(
                    f"{path}: {name!r} holds the category {category!r}, which this driftgauge "
                    f"spells {spelled!r} (a baseline built by an earlier version); rebuild it"
                )
