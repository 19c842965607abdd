"""``driftgauge init``: a starter config from a training file and/or a v2 server's model metadata.

Three steps, each testable alone: :func:`sample_data` reads the first rows of
a training file (CSV, JSON Lines, Parquet) and profiles each column;
:func:`fetch_metadata` reads ``GET {server}/v2/models/{model}`` (Open
Inference Protocol); :func:`plan_starter` turns either or both into fields
with a type and a note saying where the type came from; :func:`render_starter`
writes the YAML, with comments on what to review, and checks that it loads.

Type rules (also written into the config): text and booleans are categorical;
numbers are numeric, except whole numbers with at most
:data:`CATEGORICAL_MAX_DISTINCT` distinct values in the sample (0/1 flags,
small codes), which are categorical: their drift is then measured per value,
not over quantile bins that ties would make degenerate.  Model metadata types
tensors by datatype (FP*, INT*, UINT* numeric; BYTES, BOOL categorical); when
the training file holds the column too, its values decide.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml

from driftgauge.baseline.datafiles import file_format
from driftgauge.config import (
    DEFAULT_METRICS_PORT,
    DEFAULT_PROXY_PORT,
    FieldType,
    ProtocolName,
    config_from_mapping,
)
from driftgauge.config.validation import label_value
from driftgauge.exceptions import DataError, DriftgaugeError

__all__ = [
    "CATEGORICAL_MAX_DISTINCT",
    "SAMPLE_ROWS",
    "ColumnProfile",
    "DataSample",
    "ModelMetadata",
    "Starter",
    "StarterError",
    "StarterField",
    "Tensor",
    "fetch_metadata",
    "parse_metadata",
    "plan_starter",
    "render_starter",
    "sample_data",
    "write_starter",
]

SAMPLE_ROWS = 10_000
CATEGORICAL_MAX_DISTINCT = 10
# Text categories beyond this many distinct values in the sample are flagged: an identifier?
MANY_CATEGORIES = 50
PLACEHOLDER_UPSTREAM = "http://127.0.0.1:9000"
# Cells pyarrow's CSV reader (the baseline build) reads as missing.
_CSV_NULLS = frozenset(
    {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN"}
    | {"N/A", "NA", "NULL", "NaN", "n/a", "nan", "null"}
)
_NUMERIC_DATATYPES = frozenset(
    {"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64"}
    | {"UINT8", "UINT16", "UINT32", "UINT64"}
)
_CATEGORICAL_DATATYPES = frozenset({"BYTES", "BOOL"})

Kind = Literal["missing", "bool", "int", "float", "text", "other"]


class StarterError(DriftgaugeError):
    """``driftgauge init`` cannot write a config from what it was given (exit code 1)."""


# -- the training file -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ColumnProfile:
    """What the sampled values of one column look like, and the type they suggest."""

    name: str
    type: FieldType | None  # None: not a type driftgauge monitors (skipped)
    note: str
    present: int = 0
    distinct: int = 0


@dataclass(frozen=True, slots=True)
class DataSample:
    """The profiled columns of a training file's first rows, in file order."""

    path: Path
    rows: int
    columns: tuple[ColumnProfile, ...]
    skipped: tuple[str, ...] = ()  # columns without a usable name, as notes

    def column(self, name: str) -> ColumnProfile | None:
        return next((c for c in self.columns if c.name == name), None)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


def _kind(value: Any) -> Kind:
    if value is None:
        return "missing"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float | Decimal):
        return "missing" if isinstance(value, float) and math.isnan(value) else "float"
    if isinstance(value, str):
        return "text"
    return "other"


def _type_name(value: Any) -> str:
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return "dates or times"
    if isinstance(value, bytes):
        return "binary values"
    if isinstance(value, list | tuple):
        return "lists"
    if isinstance(value, dict):
        return "objects"
    return type(value).__name__ + " values"


def profile_column(name: str, values: Sequence[Any]) -> ColumnProfile:
    """The type ``values`` (Python values, None for missing) suggest, and why, as a note."""
    kinds: dict[Kind, int] = {}
    for value in values:
        kind = _kind(value)
        kinds[kind] = kinds.get(kind, 0) + 1
    present = len(values) - kinds.get("missing", 0)
    if present == 0:
        return ColumnProfile(name, "numeric", "REVIEW: no values in the sample; guessed numeric")
    if "other" in kinds:
        sample = next(v for v in values if _kind(v) == "other")
        return ColumnProfile(name, None, f"holds {_type_name(sample)}", present)
    distinct = len({_hashable(v) for v in values if _kind(v) != "missing"})
    counted = f"{distinct:,} distinct in {present:,} values"
    if "text" in kinds:
        what = "text" if len(kinds.keys() - {"missing"}) == 1 else "numbers mixed with text"
        note = f"{what}, {counted}"
        if distinct > MANY_CATEGORIES:
            note += (
                f"; REVIEW: more than {MANY_CATEGORIES} categories (only the top "
                "sketch.top_categories are tracked): an identifier? remove it if so"
            )
        return ColumnProfile(name, "categorical", note, present, distinct)
    if "bool" in kinds:
        return ColumnProfile(name, "categorical", f"booleans, {counted}", present, distinct)
    whole = all(
        float(v).is_integer() for v in values if _kind(v) in ("int", "float") and _finite(v)
    )
    if whole and distinct <= CATEGORICAL_MAX_DISTINCT:
        return ColumnProfile(
            name,
            "categorical",
            f"whole numbers, only {counted}: a flag or a code; REVIEW: numeric if it is a count",
            present,
            distinct,
        )
    what = "whole numbers" if whole else "numbers"
    return ColumnProfile(name, "numeric", f"{what}, {counted}", present, distinct)


def _finite(value: Any) -> bool:
    return math.isfinite(float(value))


def _hashable(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


def _usable_name(name: Any) -> str | None:
    """``name`` when it can name a field (a non-empty label value), else None."""
    try:
        return label_value(name)
    except ValueError:
        return None


def _profiles(
    path: Path, header: Sequence[Any], columns: Sequence[Sequence[Any]], rows: int
) -> DataSample:
    profiles, skipped, seen = [], [], set()
    for position, (name, values) in enumerate(zip(header, columns, strict=True), start=1):
        usable = _usable_name(name)
        if usable is None:
            skipped.append(f"column {position} ({name!r}): not a usable name (a saved index?)")
            continue
        if usable in seen:
            raise DataError(f"{path}: two columns are named {usable!r}")
        seen.add(usable)
        profiles.append(profile_column(usable, values))
    return DataSample(path, rows, tuple(profiles), tuple(skipped))


def _csv_cell(cell: str) -> Any:
    """A CSV cell as the baseline build reads it: missing, a number, a boolean or text."""
    if cell in _CSV_NULLS:
        return None
    lowered = cell.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return int(cell)
    except ValueError:
        pass
    try:
        number = float(cell)
    except ValueError:
        return cell
    return number if "_" not in cell else cell


def _sample_csv(path: Path, limit: int) -> DataSample:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with path.open(newline="", encoding="utf-8-sig") as text:
        reader = csv.reader(text, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: the file is empty (no header row)")
        columns: list[list[Any]] = [[] for _ in header]
        rows = 0
        for row in reader:
            if rows >= limit:
                break
            rows += 1
            for index, values in enumerate(columns):
                values.append(_csv_cell(row[index]) if index < len(row) else None)
    return _profiles(path, header, columns, rows)


def _sample_jsonl(path: Path, limit: int) -> DataSample:
    records: list[dict[str, Any]] = []
    names: dict[str, None] = {}  # first appearance order
    with path.open("rb") as raw:
        for number, line in enumerate(raw, start=1):
            if len(records) >= limit:
                break
            if not line.strip():
                continue
            record = json.loads(line)
            if not isinstance(record, dict):
                raise DataError(f"{path}: line {number} is not a JSON object")
            records.append(record)
            names.update(dict.fromkeys(record))
    header = list(names)
    columns = [[r.get(name) for r in records] for name in header]
    return _profiles(path, header, columns, len(records))


def _sample_parquet(path: Path, limit: int) -> DataSample:
    try:
        import pyarrow.parquet as pa_parquet
    except ImportError:
        raise DataError(
            f"{path}: reading Parquet needs pyarrow: pip install 'driftgauge[parquet]'"
        ) from None
    parquet = pa_parquet.ParquetFile(path)
    try:
        header = list(parquet.schema_arrow.names)
        batch = next(parquet.iter_batches(batch_size=limit), None)
    finally:
        parquet.close()
    if batch is None:
        return _profiles(path, header, [[] for _ in header], 0)
    columns = [batch.column(index).to_pylist() for index in range(len(header))]
    return _profiles(path, header, columns, batch.num_rows)


def sample_data(path: Path, rows: int = SAMPLE_ROWS) -> DataSample:
    """Profile the columns of the first ``rows`` rows of a CSV, JSON Lines or Parquet file."""
    fmt = file_format(path)
    if not path.is_file():
        raise DataError(f"{path}: no such data file")
    try:
        if fmt == "csv":
            return _sample_csv(path, rows)
        if fmt == "jsonl":
            return _sample_jsonl(path, rows)
        return _sample_parquet(path, rows)
    except DataError:
        raise
    except (OSError, ValueError) as exc:  # UnicodeDecodeError, JSONDecodeError, ArrowInvalid
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot read {fmt.upper()} data: {message}") from None


# -- the model metadata ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tensor:
    """An input or output of a model's metadata: name, datatype, shape (-1: any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    @property
    def width(self) -> int:
        """Values per row: the product of the dimensions after the first (the batch)."""
        return math.prod(self.shape[1:])


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    """``GET /v2/models/{model}``: the model's name, platform, versions, inputs and outputs."""

    url: str
    name: str
    platform: str
    versions: tuple[str, ...]
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]


def metadata_url(server: str, model: str) -> str:
    return f"{server.rstrip('/')}/v2/models/{urllib.parse.quote(model, safe='')}"


def _tensors(value: Any, key: str, url: str) -> tuple[Tensor, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise StarterError(f"{url}: {key!r} is not a list of tensors")
    tensors = []
    for index, item in enumerate(value):
        where = f"{url}: {key}[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise StarterError(f"{where} has no string 'name'")
        datatype, shape = item.get("datatype"), item.get("shape")
        if not isinstance(datatype, str):
            raise StarterError(f"{where} ({item['name']!r}) has no string 'datatype'")
        if not isinstance(shape, list) or not all(type(d) is int for d in shape):
            raise StarterError(f"{where} ({item['name']!r}) has no 'shape' list of sizes")
        tensor = Tensor(item["name"], datatype.upper(), tuple(shape) or (-1,))
        if any(d < 0 for d in tensor.shape[1:]):
            raise StarterError(
                f"{where} ({tensor.name!r}) has shape {list(tensor.shape)}: a variable number "
                "of values per row cannot be mapped onto features; list them by hand"
            )
        tensors.append(tensor)
    return tuple(tensors)


def parse_metadata(document: Any, url: str) -> ModelMetadata:
    """A model metadata response body (already decoded JSON) as :class:`ModelMetadata`."""
    if not isinstance(document, dict) or not isinstance(document.get("name"), str):
        raise StarterError(f"{url}: not Open Inference Protocol model metadata (no 'name')")
    versions = document.get("versions") or []
    return ModelMetadata(
        url=url,
        name=document["name"],
        platform=str(document.get("platform") or ""),
        versions=tuple(str(v) for v in versions) if isinstance(versions, list) else (),
        inputs=_tensors(document.get("inputs"), "inputs", url),
        outputs=_tensors(document.get("outputs"), "outputs", url),
    )


def fetch_metadata(server: str, model: str, timeout: float = 10.0) -> ModelMetadata:
    """Read ``GET {server}/v2/models/{model}``; every failure is one :class:`StarterError` line."""
    url = metadata_url(server, model)
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise StarterError(f"--server {server!r}: expected an http:// or https:// URL")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        detail = _error_text(exc.read())
        raise StarterError(
            f"{url}: the server answered {exc.code}{': ' + detail if detail else ''}"
        ) from None
    except urllib.error.URLError as exc:
        reason = getattr(exc.reason, "strerror", None) or exc.reason
        raise StarterError(f"{url}: cannot reach the model server: {reason}") from None
    except (OSError, TimeoutError) as exc:
        raise StarterError(f"{url}: cannot read the model metadata: {exc}") from None
    try:
        document = json.loads(body)
    except ValueError:
        raise StarterError(f"{url}: the answer is not JSON") from None
    return parse_metadata(document, url)


def _error_text(body: bytes) -> str:
    try:
        document = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip()[:200]
    if isinstance(document, dict) and isinstance(document.get("error"), str):
        return str(document["error"])[:200]
    return json.dumps(document)[:200]


# -- the plan -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StarterField:
    """A field of the starter config and the note written beside it."""

    name: str
    type: FieldType
    note: str


@dataclass(slots=True)
class Starter:
    """Everything the starter config says, before it is YAML."""

    model: str
    protocol: ProtocolName
    upstream: str | None
    features: list[StarterField]
    predictions: list[StarterField]
    sample: DataSample | None = None
    metadata: ModelMetadata | None = None
    notes: list[str] = field(default_factory=list)  # header comments: matching, skipped columns


def _datatype_type(datatype: str) -> FieldType:
    return "categorical" if datatype in _CATEGORICAL_DATATYPES else "numeric"


def _from_data(profile: ColumnProfile, where: str = "") -> StarterField:
    assert profile.type is not None
    prefix = f"{where}; " if where else ""
    return StarterField(profile.name, profile.type, f"{prefix}data: {profile.note}")


def _from_tensor(
    name: str, tensor: Tensor, position: int | None, sample: DataSample | None
) -> StarterField:
    where = tensor.name if position is None else f"{tensor.name}[{position}]"
    where = f"{where} {tensor.datatype}"
    if tensor.datatype not in _NUMERIC_DATATYPES | _CATEGORICAL_DATATYPES:
        raise StarterError(f"tensor {tensor.name!r} has datatype {tensor.datatype!r}: unknown")
    profile = sample.column(name) if sample is not None else None
    if profile is not None and profile.type is not None:
        return _from_data(profile, where)
    kind = _datatype_type(tensor.datatype)
    note = f"{where}"
    if kind == "numeric" and tensor.datatype.startswith(("INT", "UINT")):
        note += "; REVIEW: categorical if these are class labels or codes"
    return StarterField(name, kind, note)


def _require_columns(sample: DataSample, names: Iterable[str], what: str, hint: str = "") -> None:
    missing = [n for n in names if sample.column(n) is None]
    if missing:
        shown = ", ".join(map(repr, sample.names[:20])) + (" ..." if len(sample.names) > 20 else "")
        raise StarterError(
            f"{sample.path}: no column named {', '.join(map(repr, missing))} ({what}); "
            f"the training file must hold every feature and prediction (its columns: {shown})"
            + (f"; {hint}" if hint else "")
        )


def _tensor_fields(
    tensors: Sequence[Tensor],
    role: str,
    names: Sequence[str] | None,
    sample: DataSample | None,
    notes: list[str],
) -> list[StarterField]:
    """Fields for the ``role`` tensors: one per value of a row, named, typed and noted.

    Tensors holding one value per row become a field named after the tensor,
    matched by name; once any tensor holds several, every value is matched
    by position (value i of a row onto field i), so names may be anything
    but a tensor's name (``names`` when given, else ``<tensor>_<i>``).
    """
    total = sum(t.width for t in tensors)
    by_position = names is not None or any(t.width != 1 for t in tensors)
    if not by_position:
        return [_from_tensor(t.name, t, None, sample) for t in tensors]
    if names is None:
        names = [f"{t.name}_{i}" for t in tensors for i in range(t.width)]
    if len(names) != total:
        shapes = ", ".join(f"{t.name} {list(t.shape)}" for t in tensors)
        raise StarterError(
            f"the model's {role} tensors ({shapes}) hold {total} values per row, "
            f"but {len(names)} {role} names were given"
        )
    tensor_names = {t.name for t in tensors}
    clash = [n for n in names if n in tensor_names]
    if clash:
        raise StarterError(
            f"{role} name {clash[0]!r} is also the name of a tensor: with several values per "
            "row fields are matched by position, and a field named after a tensor would switch "
            "the kserve-v2 adapter to matching by name; rename the column"
        )
    notes.append(
        f"The {role} tensors ({', '.join(f'{t.name} {list(t.shape)}' for t in tensors)}) hold "
        f"{total} values per row: driftgauge maps them onto the {role}s below BY POSITION "
        "(value i of a row, tensor after tensor, is field i): keep this order."
    )
    fields, index = [], 0
    for tensor in tensors:
        for position in range(tensor.width):
            fields.append(_from_tensor(names[index], tensor, position, sample))
            index += 1
    return fields


def plan_starter(
    sample: DataSample | None,
    metadata: ModelMetadata | None,
    *,
    predictions: Sequence[str] = (),
    model: str | None = None,
    protocol: ProtocolName | None = None,
    server: str | None = None,
) -> Starter:
    """The fields of the starter config from a training file's sample and/or model metadata."""
    if sample is None and metadata is None:
        raise StarterError("give a training file (--data), a server (--server, --model), or both")
    if len(set(predictions)) != len(predictions):
        raise StarterError("--predictions names a column twice")
    notes: list[str] = []
    if sample is not None:
        notes.extend(f"skipped {s}" for s in sample.skipped)
        unusable = [c for c in sample.columns if c.type is None]
        notes.extend(f"skipped column {c.name!r}: {c.note}" for c in unusable)
        if predictions:
            _require_columns(sample, predictions, "--predictions")
            bad = [p for p in predictions if p in {c.name for c in unusable}]
            if bad:
                note = next(c.note for c in unusable if c.name == bad[0])
                raise StarterError(f"--predictions {bad[0]!r}: the column {note}")
    if metadata is None:
        assert sample is not None
        if protocol == "jsonpath":
            raise StarterError(
                "--protocol jsonpath: init cannot guess each field's JSON path; "
                "write the config with another protocol and add the paths by hand"
            )
        usable = [c for c in sample.columns if c.type is not None]
        features = [_from_data(c) for c in usable if c.name not in predictions]
        outputs = [_from_data(sample.column(p)) for p in predictions]  # type: ignore[arg-type]
        if not features:
            raise StarterError(f"{sample.path}: no feature columns besides the predictions")
        name = model or _model_name(sample.path)
        return Starter(
            name, protocol or "kserve-v2", server, features, outputs, sample, None, notes
        )
    if protocol not in (None, "kserve-v2"):
        raise StarterError(
            f"--protocol {protocol}: model metadata comes from an Open Inference Protocol "
            "server, whose requests are kserve-v2"
        )
    if not metadata.inputs:
        raise StarterError(f"{metadata.url}: the metadata lists no inputs (tensors to monitor)")
    feature_names = None
    if sample is not None and any(t.width != 1 for t in metadata.inputs):
        # Several values per row: the training file's columns name them, in file order.
        feature_names = [
            c.name for c in sample.columns if c.type is not None and c.name not in predictions
        ]
        total = sum(t.width for t in metadata.inputs)
        if len(feature_names) != total:
            raise StarterError(
                f"{sample.path}: the model's inputs hold {total} values per row, the file has "
                f"{len(feature_names)} feature columns besides the predictions "
                f"({', '.join(map(repr, feature_names[:10]))}{' ...' if len(feature_names) > 10 else ''}); "
                "they are matched by position, so the counts must agree"
            )
    features = _tensor_fields(metadata.inputs, "feature", feature_names, sample, notes)
    outputs = _tensor_fields(
        metadata.outputs, "prediction", list(predictions) or None, sample, notes
    )
    if sample is not None:
        _require_columns(sample, [f.name for f in features], "a model input")
        _require_columns(
            sample,
            [p.name for p in outputs],
            "a model output",
            "name the columns holding the model's outputs with --predictions",
        )
    name = model or metadata.name
    return Starter(name, "kserve-v2", server, features, outputs, sample, metadata, notes)


def _model_name(path: Path) -> str:
    stem = path.name.split(".")[0]
    return stem or "model"


# -- the YAML -------------------------------------------------------------------------


def _scalar(value: str) -> str:
    """``value`` as a YAML scalar fit for a flow mapping, quoted where YAML needs it.

    PyYAML decides, dumping a one-item flow sequence: inside ``[...]`` it
    quotes what a plain scalar may not hold in flow context (``,[]{}``).
    """
    text = yaml.safe_dump([value], allow_unicode=True, width=1 << 30, default_flow_style=True)
    return text.strip().removeprefix("[").removesuffix("]")


def _field_line(spec: StarterField) -> str:
    return f"  - {{name: {_scalar(spec.name)}, type: {spec.type}}}  # {spec.note}"


def _comment(lines: Iterable[str], indent: str = "") -> list[str]:
    return [f"{indent}# {line}".rstrip() for line in lines]


def render_starter(starter: Starter, baseline: str, command: str = "driftgauge init") -> str:
    """The starter config's YAML text; ``baseline`` is its path relative to the config."""
    sources = []
    if starter.sample is not None:
        sources.append(
            f"training data: {starter.sample.path} (first {starter.sample.rows:,} rows read)"
        )
    if starter.metadata is not None:
        versions = ", ".join(starter.metadata.versions) or "none listed"
        platform = starter.metadata.platform or "not given"
        sources.append(
            f"model metadata: GET {starter.metadata.url} (platform {platform}, versions {versions})"
        )
    data_hint = str(starter.sample.path) if starter.sample is not None else "TRAINING_FILE"
    lines = _comment(
        [
            f"Starter config written by `{command}` from",
            *(f"  {s}" for s in sources),
            "",
            "REVIEW before use:",
            "1. Field types were inferred: the comment on each field says from what. Rules:",
            "   text and booleans -> categorical; numbers -> numeric, except whole numbers with",
            f"   at most {CATEGORICAL_MAX_DISTINCT} distinct values in the sample (0/1 flags, small codes) ->",
            "   categorical, so their drift is measured per value instead of over quantile bins",
            "   that the ties would make degenerate.  Model metadata: FP*/INT*/UINT* tensors ->",
            "   numeric, BYTES/BOOL -> categorical; the training data's values win where both exist.",
            "   Flip `type:` where the meaning says otherwise (a count of children is numeric, a",
            "   postcode categorical). Changing a type or a name means rebuilding the baseline.",
            "2. source.proxy.upstream: the model server the proxy forwards to.",
            "3. windows and min_observations: the live windows compared with the baseline, and",
            "   the observations a window needs before its drift gauges appear; at low traffic",
            "   use longer windows (e.g. [1h, 1d]) or a smaller minimum.",
            "4. alerting: the drift thresholds of `driftgauge rules` (the defaults below).",
            "The training file for `driftgauge baseline` must hold one column per feature and",
            "prediction, named as below. Build the baseline, then check:",
            f"  driftgauge baseline -c CONFIG --data {data_hint} -o BASELINE  (BASELINE: {baseline},",
            "    relative to this file)",
            "  driftgauge check -c CONFIG",
        ]
    )
    if starter.notes:
        lines += ["#", *_comment(starter.notes)]
    upstream = starter.upstream or PLACEHOLDER_UPSTREAM
    upstream_note = (
        "the server the metadata came from"
        if starter.upstream
        else "REVIEW: a placeholder: your model server's URL"
    )
    lines += [
        f"model: {_scalar(starter.model)}",
        f"protocol: {starter.protocol}",
        "source:",
        "  proxy:",
        f"    listen: 0.0.0.0:{DEFAULT_PROXY_PORT}  # clients send their requests here",
        f"    upstream: {_scalar(upstream)}  # {upstream_note}",
        "metrics:",
        f"  listen: 0.0.0.0:{DEFAULT_METRICS_PORT}  # /metrics, /healthz, /readyz",
        f"baseline: {_scalar(baseline)}  # written by `driftgauge baseline`",
        "features:  # model inputs, in column order",
        *map(_field_line, starter.features),
    ]
    if starter.predictions:
        lines += ["predictions:  # model outputs", *map(_field_line, starter.predictions)]
    else:
        lines += [
            "# predictions: none (give --predictions NAME..., or a server whose metadata lists outputs)"
        ]
    lines += [
        "windows: [5m, 1h]  # REVIEW: live windows compared with the baseline",
        "min_observations: 100  # REVIEW: drift gauges appear once a window holds this many",
        "alerting:  # REVIEW: the defaults; per-field overrides go under alerting.features",
        "  psi: {warning: 0.1, critical: 0.25}",
        "  noise_floor: {warning: 4, critical: 10}",
        "  ks: {statistic: 0.1, pvalue: 0.001}",
        "  for: 15m",
        "  page: true",
    ]
    return "\n".join(lines) + "\n"


def write_starter(text: str, path: Path, *, force: bool = False) -> None:
    """Check that ``text`` is a valid config, then write it to ``path`` (not over a file unless
    ``force``)."""
    config_from_mapping(yaml.safe_load(io.StringIO(text)), base=path.parent, path=path)
    if path.exists() and not force:
        raise StarterError(f"{path}: the file exists; use --force to overwrite it")
    if path.is_dir():
        raise StarterError(f"{path}: is a directory")
    path.write_text(text, encoding="utf-8")
