"""The starter config: fields planned from a data sample and/or model metadata, then YAML.

Model metadata types tensors by datatype (FP*, INT*, UINT* numeric; BYTES,
BOOL categorical); where the training file holds the column too, its values
decide.  Tensors holding one value per row are matched by name; once any
holds several, every value is matched by position (see ``_tensor_fields``).
With ``jsonpath``, each field reads its name in the rows of the bodies
(:data:`JSONPATH_ROWS`), bracket-quoted where JSONPath's ``.name`` cannot
hold it.  The YAML says in comments what to review, and is checked to load
before it is written.
"""

from __future__ import annotations

import io
import json
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import yaml

from driftgauge.baseline.inputs import split_credentials
from driftgauge.config import (
    DEFAULT_METRICS_PORT,
    DEFAULT_PROXY_PORT,
    AlertThresholds,
    FieldType,
    ProtocolName,
    config_from_mapping,
)
from driftgauge.config.validation import label_value
from driftgauge.exceptions import ConfigError, DataError
from driftgauge.starter.data import CATEGORICAL_MAX_DISTINCT, ColumnProfile, DataSample
from driftgauge.starter.errors import StarterError
from driftgauge.starter.metadata import ModelMetadata, Tensor

__all__ = [
    "Starter",
    "StarterField",
    "plan_starter",
    "refuse_output",
    "render_starter",
    "write_starter",
]

PLACEHOLDER_UPSTREAM = "http://127.0.0.1:9000"
_NUMERIC_DATATYPES = frozenset(
    {"FP16", "BF16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64"}
    | {"UINT8", "UINT16", "UINT32", "UINT64"}
)
_CATEGORICAL_DATATYPES = frozenset({"BYTES", "BOOL"})
# The rows of the bodies a jsonpath starter assumes, each an object keyed by the field names;
# the config's comments ask for the server's own paths.
JSONPATH_ROWS = {"feature": "$.rows[*]", "prediction": "$.predictions[*]"}
_SHORTHAND = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # a member name JSONPath's .name takes


@dataclass(frozen=True, slots=True)
class StarterField:
    """A field of the starter config and the note written beside it."""

    name: str
    type: FieldType
    note: str
    path: str | None = None  # jsonpath: where in the body


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
    try:
        label_value(name)
    except ValueError as exc:  # a line break would also end the YAML line it is written on
        raise StarterError(f"tensor {tensor.name!r}: {name!r} cannot name a field: {exc}") from None
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


def member_path(rows: str, name: str) -> str:
    """The JSONPath of member ``name`` of each row ``rows`` selects: ``.name`` for a plain
    ASCII identifier, else quoted in brackets (``['sepal length (cm)']``, ``['it\\'s']``),
    which any label value may be (spaces, dots, quotes, brackets, non-ASCII)."""
    if _SHORTHAND.fullmatch(name):
        return f"{rows}.{name}"
    quoted = name.replace("\\", "\\\\").replace("'", "\\'")
    return f"{rows}['{quoted}']"


def _with_paths(fields: list[StarterField], role: str) -> list[StarterField]:
    return [replace(f, path=member_path(JSONPATH_ROWS[role], f.name)) for f in fields]


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
    single = all(t.width == 1 for t in tensors)
    if single and names is not None and list(names) == [t.name for t in tensors]:
        names = None  # the given names are the tensors' own: matched by name
    if single and names is None:
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
        spaced = [c.name for c in sample.columns if c.name != c.name.strip()]
        if spaced:  # a CSV written with ", " between columns: its text values have them too
            notes.append(
                f"REVIEW: {len(spaced)} column name{'s' if len(spaced) > 1 else ''} start or "
                f"end with a space, such as {spaced[0]!r}: fields, and the baseline's text "
                "values, keep such spaces (' a' is not 'a' to the sidecar); if the file was "
                "written with ', ' between columns, save it without them and run init again."
            )
        if predictions:
            _require_columns(sample, predictions, "--predictions")
            bad = [p for p in predictions if p in {c.name for c in unusable}]
            if bad:
                note = next(c.note for c in unusable if c.name == bad[0])
                raise StarterError(f"--predictions {bad[0]!r}: the column {note}")
    if metadata is not None and protocol not in (None, "kserve-v2"):
        raise StarterError(
            f"--protocol {protocol}: model metadata comes from an Open Inference Protocol "
            "server, whose requests are kserve-v2"
        )
    if metadata is not None and not metadata.inputs:
        if sample is None:
            raise StarterError(
                f"{metadata.url}: the metadata lists no inputs (MLServer lists only those its "
                "model-settings.json declares): give --data FILE to take the features from the "
                "training file's columns"
            )
        notes.append(
            f"The metadata at {metadata.url} lists no inputs: the fields come from the "
            "training file's columns (protocol kserve-v2, as the server speaks it)."
        )
        protocol, model = "kserve-v2", model or metadata.name
        metadata = None
    if metadata is None:
        assert sample is not None
        if not sample.rows:  # every type would be a guess, and no baseline can be built
            raise DataError(
                f"{sample.path}: holds no rows (no config written): init reads each column's "
                "type from its values"
            )
        usable = {c.name: c for c in sample.columns if c.type is not None}
        features = [_from_data(c) for c in usable.values() if c.name not in predictions]
        outputs = [_from_data(usable[p]) for p in predictions]
        if not features:
            raise StarterError(f"{sample.path}: no feature columns besides the predictions")
        if protocol == "jsonpath":
            features = _with_paths(features, "feature")
            outputs = _with_paths(outputs, "prediction")
            notes.append(
                "protocol jsonpath: each field's path is a guess, for a request "
                '{"rows": [{"<feature>": value, ...}, ...]} and a response '
                '{"predictions": [{"<prediction>": value, ...}, ...]}. REVIEW: write '
                "where your server's bodies hold each field (JSONPath: .name, ['any key'], "
                "[0], one [*] for the rows of a batch); the training file's columns keep "
                "the names."
            )
        name = model or _model_name(sample.path)
        return Starter(
            name, protocol or "kserve-v2", server, features, outputs, sample, None, notes
        )
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


def _model_name(path: str) -> str:
    stem = path.rstrip("/").rsplit("/", 1)[-1].split(".")[0]  # a path's or a URL's
    try:
        return label_value(stem)
    except ValueError:  # empty, or a control character no label value may hold
        return "model"


# -- the YAML -------------------------------------------------------------------------


def _scalar(value: str) -> str:
    """``value`` as a YAML scalar fit for a flow mapping, quoted where YAML needs it.

    PyYAML decides, dumping a one-item flow sequence: inside ``[...]`` it
    quotes what a plain scalar may not hold in flow context (``,[]{}``).
    """
    text = yaml.safe_dump([value], allow_unicode=True, width=1 << 30, default_flow_style=True)
    return text.strip().removeprefix("[").removesuffix("]")


def _field_line(spec: StarterField) -> str:
    # A JSON string is a YAML double-quoted scalar: the path's single quotes stay single.
    path = f", path: {json.dumps(spec.path, ensure_ascii=False)}" if spec.path else ""
    return f"  - {{name: {_scalar(spec.name)}, type: {spec.type}{path}}}  # {spec.note}"


def _comment(lines: Iterable[str], indent: str = "") -> list[str]:
    # Every physical line: a file name may hold a line break, which would end the comment.
    return [f"{indent}# {part}".rstrip() for line in lines for part in line.splitlines() or [""]]


def render_starter(starter: Starter, baseline: str, command: str = "driftgauge init") -> str:
    """The starter config's YAML text; ``baseline`` is its path relative to the config."""
    sources = []
    if starter.sample is not None:
        of = f"; --data {starter.sample.source}" if starter.sample.source else ""
        if starter.sample.files > 1:
            of += f", the first of its {starter.sample.files:,} files"
        sources.append(
            f"training data: {starter.sample.path} (first {starter.sample.rows:,} rows read{of})"
        )
    if starter.metadata is not None:
        versions = ", ".join(starter.metadata.versions) or "none listed"
        platform = starter.metadata.platform or "not given"
        sources.append(
            f"model metadata: GET {starter.metadata.url} (platform {platform}, versions {versions})"
        )
    sample = starter.sample
    data_hint = shlex.quote(sample.source or sample.path) if sample is not None else "TRAINING_FILE"
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
    # Only the server's origin: the proxy forwards each request's own path (a prefix too).
    upstream = (
        urlunsplit((*urlsplit(split_credentials(starter.upstream)[0])[:2], "", "", ""))
        if starter.upstream
        else PLACEHOLDER_UPSTREAM
    )
    alert = AlertThresholds()  # the defaults, written out for review
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
        f"  psi: {{warning: {alert.psi_warning:g}, critical: {alert.psi_critical:g}}}",
        f"  significance: {{warning: {alert.significance_warning:g}, "
        f"critical: {alert.significance_critical:g}}}",
        f"  noise_floor: {{warning: {alert.noise_floor_warning:g}, critical: {alert.noise_floor_critical:g}}}",
        f"  ks: {{statistic: {alert.ks_statistic:g}, pvalue: {alert.ks_pvalue:g}}}",
        "  # for: the shortest window clamped to [1m, 15m] (5m here) unless set",
        f"  page: {str(alert.page).lower()}",
    ]
    return "\n".join(lines) + "\n"


def refuse_output(path: Path, *, force: bool = False) -> None:
    """StarterError when ``path`` cannot take the config: a folder, a baseline's name (init
    names the baseline after the config: the two would be one file), or a file without
    ``force``."""
    if path.suffix.lower() == ".dgb":
        raise StarterError(
            f"{path}: .dgb names a baseline (init names it after the config: {path.stem}.dgb);"
            f" name the config .yaml, such as {path.with_suffix('.yaml')}"
        )
    if path.is_dir():
        raise StarterError(
            f"{path}: is a folder; name the config file to write in it,"
            f" such as {path / 'config.yaml'}"
        )
    if path.exists() and not force:
        raise StarterError(f"{path}: the file exists; use --force to overwrite it")


def write_starter(text: str, path: Path, *, force: bool = False) -> None:
    """Check that ``text`` is a valid config, then write it to ``path`` (not over a file unless
    ``force``)."""
    try:
        config_from_mapping(yaml.safe_load(io.StringIO(text)), base=path.parent)
    except ConfigError as exc:  # e.g. metadata naming a tensor twice: not the user's config
        raise StarterError(
            f"{path}: not written, init's fields make no valid config: {exc}"
        ) from None
    refuse_output(path, force=force)
    path.parent.mkdir(parents=True, exist_ok=True)  # as `baseline -o` and `rules -o` do
    path.write_text(text, encoding="utf-8")
