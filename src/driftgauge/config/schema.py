"""The config file: YAML, validated once at start into frozen dataclasses.

``load_config(path)`` raises :class:`ConfigError` naming every problem with
its key path (``features[2].type: 'numerc' is not one of numeric, categorical``).
Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, cast

import yaml

from driftgauge.config.alerting import AlertingConfig, AlertThresholds, parse_alerting
from driftgauge.config.fields import FieldSpec, FieldType, Role
from driftgauge.config.models import MODEL_KEYS, SHARED_KEYS, several_models
from driftgauge.config.protocols import (
    ProtocolList,
    ProtocolName,
    ProtocolSetting,
    parse_protocol,
    protocol_names,
)
from driftgauge.config.sections import (
    FeedbackConfig,
    MultivariateConfig,
    SegmentsConfig,
    check_body_names,
    feedback_section,
    fields_section,
    multivariate_section,
    segments_section,
)
from driftgauge.config.sources import (
    DEFAULT_PROXY_PORT,
    CloudEventsConfig,
    ProxyConfig,
    SourceConfig,
    TailConfig,
    TlsConfig,
    parse_source,
    parse_tls,
)
from driftgauge.config.validation import (
    Errors,
    choice,
    file_in_the_way,
    format_duration,
    fraction,
    get_value,
    label_value,
    listen_address,
    parse_duration,
    parse_listen,
    positive_float,
    positive_int,
    section,
    string,
    whole_number,
)
from driftgauge.exceptions import ConfigError

__all__ = [
    "DEFAULT_METRICS_PORT",
    "DEFAULT_PROXY_PORT",
    "AlertThresholds",
    "AlertingConfig",
    "CloudEventsConfig",
    "Config",
    "FeedbackConfig",
    "FieldSpec",
    "FieldType",
    "LogConfig",
    "MetricsConfig",
    "MultivariateConfig",
    "ProtocolList",
    "ProtocolName",
    "ProtocolSetting",
    "ProxyConfig",
    "Role",
    "SegmentsConfig",
    "SketchConfig",
    "StateConfig",
    "TailConfig",
    "TlsConfig",
    "Window",
    "config_from_mapping",
    "format_duration",
    "load_config",
    "parse_duration",
    "parse_listen",
    "protocol_names",
]

# 9100-9999 of Prometheus' default port allocations is taken in full; see README.
DEFAULT_METRICS_PORT = 10117


@dataclass(frozen=True, slots=True)
class Window:
    """A live window compared with the baseline, kept as ``slices`` tumbling sub-windows."""

    seconds: float
    slices: int

    @property
    def label(self) -> str:
        return format_duration(self.seconds)

    @property
    def slice_seconds(self) -> float:
        return self.seconds / self.slices


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    listen: tuple[str, int] = ("0.0.0.0", DEFAULT_METRICS_PORT)
    recompute_interval: float = 10.0
    tls: TlsConfig | None = None


@dataclass(frozen=True, slots=True)
class SketchConfig:
    """How baselines and live windows summarise values."""

    kll_k: int = 200
    bins: int = 10
    top_categories: int = 50
    hll_lg_k: int = 12


@dataclass(frozen=True, slots=True)
class StateConfig:
    """Where and how often live state is snapshotted (None directory: not at all)."""

    directory: Path | None = None
    interval: float = 30.0


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


@dataclass(frozen=True, slots=True)
class Config:
    model: str
    protocol: ProtocolSetting
    source: SourceConfig
    metrics: MetricsConfig
    baseline: Path
    features: tuple[FieldSpec, ...]
    predictions: tuple[FieldSpec, ...]
    windows: tuple[Window, ...]
    min_observations: int = 100
    # "independent": the rows of one request are independent draws (a batch of unrelated
    # records), so the noise floor counts rows; "alike" (the default): it counts requests,
    # through each window's design effect (docs/statistics.md, "Requests of many alike rows").
    request_rows: Literal["alike", "independent"] = "alike"
    # Model versions with a monitor (and a `version` label) each; 0 (the default) turns versions off.
    versions: int = 0
    sketch: SketchConfig = field(default_factory=SketchConfig)
    feedback: FeedbackConfig | None = None
    segments: SegmentsConfig = field(default_factory=SegmentsConfig)
    multivariate: MultivariateConfig | None = None
    range_tolerance: float = 0.0
    state: StateConfig = field(default_factory=StateConfig)
    log: LogConfig = field(default_factory=LogConfig)
    alerting: AlertingConfig = field(default_factory=AlertingConfig)
    path: Path | None = None
    # Several models behind one sidecar: every model's config (this one first), and the
    # regular expression routing requests to this one where the path carries no model name.
    models: tuple[Config, ...] = ()
    route: str | None = None
    # ... and the CloudEvents routed to this one: the InferenceService (None: the model's
    # name), the KServe component (None: any) and the namespace (None: any) they come from.
    service: str | None = None
    component: str | None = None
    namespace: str | None = None

    @property
    def all_models(self) -> tuple[Config, ...]:
        """Every model this sidecar monitors: ``models``, or this config alone."""
        return self.models or (self,)

    @property
    def origin(self) -> tuple[str, str | None]:
        """The InferenceService and component (None: any) whose CloudEvents are this model's."""
        return (self.service or self.model, self.component)

    @property
    def fields(self) -> tuple[FieldSpec, ...]:
        """Features, predictions, then the multivariate field: the order metrics list them in."""
        derived = (self.multivariate.spec,) if self.multivariate is not None else ()
        return self.features + self.predictions + derived

    @property
    def columns(self) -> tuple[FieldSpec, ...]:
        """The fields a training file holds a column of (all but the derived multivariate one)."""
        return self.features + self.predictions

    def schema_hash(self) -> str:
        """A hash of what a baseline must agree with: fields, types, roles and sketch settings."""
        payload: dict[str, Any] = {
            "fields": [[f.name, f.type, f.role] for f in self.fields],
            "sketch": [self.sketch.kll_k, self.sketch.bins, self.sketch.top_categories],
        }
        if self.multivariate is not None:  # the baseline holds the fitted PCA
            payload["multivariate"] = [
                list(self.multivariate.features),
                self.multivariate.components,
            ]
        if self.segments.features:  # the baseline holds per-segment prediction counts
            payload["segments"] = [list(self.segments.features), self.segments.top]
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        return digest[:16]


def _windows(value: Any, slices: int, errors: Errors) -> list[Window]:
    if value is None:
        value = ["5m", "1h"]
    if not isinstance(value, list) or not value:
        errors.add(
            "windows", f"expected a non-empty list of durations like [5m, 1h], got {value!r}"
        )
        return []
    windows = []
    for index, item in enumerate(value):
        try:
            seconds = parse_duration(str(item))
        except ValueError as exc:
            errors.add(f"windows[{index}]", str(exc))
            continue
        windows.append(Window(seconds=seconds, slices=slices))
    labels = [w.label for w in windows]
    if len(set(labels)) != len(labels):
        errors.add("windows", f"{value!r} names the same window twice")
    return windows


_ANY_ADDRESS = frozenset({"0.0.0.0", "::"})


def _same_listener(one: tuple[str, int], other: tuple[str, int]) -> bool:
    """Whether two listen addresses would take the same port (0: a free one, never the same)."""
    (host, port), (other_host, other_port) = one, other
    overlap = host == other_host or bool({host, other_host} & _ANY_ADDRESS)
    return port == other_port != 0 and overlap


_TOP_KEYS = (*MODEL_KEYS, *SHARED_KEYS)
_REQUEST_ROWS = ("alike", "independent")


def config_from_mapping(raw: Any, base: Path = Path("."), path: Path | None = None) -> Config:
    """Validate an already-loaded YAML document; relative paths resolve against ``base``.

    A document with ``models:`` describes several models behind one sidecar
    (:mod:`driftgauge.config.models`): the result is the first model's config,
    and its ``models`` holds every model's.
    """
    if raw is None:
        raise ConfigError(
            f"{path or 'config'}: the file holds no settings (it is empty or only comments)"
        )
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{path or 'config'}: expected a mapping of keys at the top, got {type(raw).__name__}"
        )
    if "models" in raw:
        return several_models(raw, base, path, one_model)
    errors = Errors()
    config = one_model(raw, base, errors)
    if config is None:
        where = f"{path}: " if path else ""
        raise ConfigError(where + "; ".join(errors.items))
    return replace(config, path=path)


def one_model(raw: Mapping[str, Any], base: Path, errors: Errors) -> Config | None:
    """One model's config from its keys and the sidecar's; None after adding its problems."""
    known = len(errors.items)
    top = section(raw, "", _TOP_KEYS, errors)
    model = get_value(top, "model", "", label_value, "", errors)
    if top.get("model") is None:
        errors.add("model", "missing: the value of the `model` label")
    protocol = parse_protocol(top.get("protocol"), errors)
    source = parse_source(top.get("source"), base, errors)
    metrics_table = section(
        top.get("metrics"), "metrics", ("listen", "recompute_interval", "tls"), errors
    )
    metrics = MetricsConfig(
        listen=get_value(
            metrics_table,
            "listen",
            "metrics.",
            listen_address(DEFAULT_METRICS_PORT),
            MetricsConfig().listen,
            errors,
        ),
        recompute_interval=get_value(
            metrics_table, "recompute_interval", "metrics.", positive_float, 10.0, errors
        ),
        tls=parse_tls(metrics_table.get("tls"), "metrics.tls", base, errors),
    )
    if not isinstance(source, TailConfig) and _same_listener(source.listen, metrics.listen):
        kind = "proxy" if isinstance(source, ProxyConfig) else "cloudevents"
        host, port = metrics.listen
        errors.add(
            "metrics.listen",
            f"{host}:{port} is the port of source.{kind}.listen too: give each listener its own",
        )
    baseline = get_value(top, "baseline", "", string, "", errors)
    if "baseline" not in top:
        errors.add("baseline", "missing: the file written by `driftgauge baseline`")
    seen: dict[str, str] = {}
    features = fields_section(top.get("features"), "features", "input", protocol, seen, errors)
    predictions = fields_section(
        top.get("predictions"), "predictions", "prediction", protocol, seen, errors
    )
    if protocol != "jsonpath":
        check_body_names(
            [(f"features[{i}]", spec) for i, spec in enumerate(features)]
            + [(f"predictions[{i}]", spec) for i, spec in enumerate(predictions)],
            errors,
        )
    if "features" not in top:
        errors.add("features", "missing: the model inputs to monitor, in column order")
    elif top["features"] in (None, []):  # a list of bad entries has its own errors
        errors.add("features", "expected at least one feature")
    slices = get_value(top, "window_slices", "", positive_int, 10, errors)
    windows = _windows(top.get("windows"), slices, errors)
    min_obs = get_value(top, "min_observations", "", positive_int, 100, errors)
    request_rows = get_value(top, "request_rows", "", choice(_REQUEST_ROWS), "alike", errors)
    versions_table = section(top.get("versions"), "versions", ("top",), errors)
    versions = get_value(versions_table, "top", "versions.", whole_number, 0, errors)
    if versions > 20:
        errors.add("versions.top", f"{versions} is above 20 (it bounds label values)")
    sketch_table = section(
        top.get("sketch"), "sketch", ("kll_k", "bins", "top_categories", "hll_lg_k"), errors
    )
    sketch = SketchConfig(
        kll_k=get_value(sketch_table, "kll_k", "sketch.", positive_int, 200, errors),
        bins=get_value(sketch_table, "bins", "sketch.", positive_int, 10, errors),
        top_categories=get_value(
            sketch_table, "top_categories", "sketch.", positive_int, 50, errors
        ),
        hll_lg_k=get_value(sketch_table, "hll_lg_k", "sketch.", positive_int, 12, errors),
    )
    if not 8 <= sketch.kll_k <= 65535:
        errors.add("sketch.kll_k", f"{sketch.kll_k} is outside 8..65535")
    if not 2 <= sketch.bins <= 100:
        errors.add("sketch.bins", f"{sketch.bins} is outside 2..100")
    if not 4 <= sketch.hll_lg_k <= 21:
        errors.add("sketch.hll_lg_k", f"{sketch.hll_lg_k} is outside 4..21")
    if not 1 <= sketch.top_categories <= 1000:
        errors.add(
            "sketch.top_categories",
            f"{sketch.top_categories} is outside 1..1000 (it bounds label values)",
        )
    feedback = feedback_section(top.get("feedback"), base, predictions, errors)
    segments = segments_section(top.get("segments"), features, errors)
    if segments.features and segments.top > sketch.top_categories:
        errors.add(
            "segments.top",
            f"{segments.top} is above sketch.top_categories ({sketch.top_categories}): "
            "segments are the baseline's top categories",
        )
    multivariate = multivariate_section(top.get("multivariate"), features, predictions, errors)
    quality = section(top.get("data_quality"), "data_quality", ("range_tolerance",), errors)
    tolerance = get_value(quality, "range_tolerance", "data_quality.", fraction, 0.0, errors)
    state_table = section(top.get("state"), "state", ("directory", "interval"), errors)
    directory = get_value(state_table, "directory", "state.", string, None, errors)
    state = StateConfig(
        directory=base / directory if directory else None,
        interval=get_value(state_table, "interval", "state.", positive_float, 30.0, errors),
    )
    if state.directory is not None and (blocking := file_in_the_way(state.directory)):
        errors.add("state.directory", f"{directory!r}: {blocking}")
    if isinstance(source, TailConfig) and source.state_file is None and state.directory:
        # Restored windows already hold the log's lines: without an offset a restart
        # would read them from the start again and count each twice.
        # Named after the log, like feedback.tail's offset: not one name for every sidecar
        # that shares the directory (each model's snapshot has a name of its own too).
        offset = state.directory / f"{source.path.name}.offset"
        if offset.is_dir():
            errors.add(
                "state.directory", f"{directory!r}: {offset} (the tail's offset) is a folder"
            )
        source = replace(source, state_file=offset)
    log_table = section(top.get("log"), "log", ("level", "format"), errors)
    log = LogConfig(
        level=cast(
            Literal["DEBUG", "INFO", "WARNING", "ERROR"],
            get_value(
                log_table,
                "level",
                "log.",
                choice(("DEBUG", "INFO", "WARNING", "ERROR")),
                "INFO",
                errors,
            ),
        ),
        format=cast(
            Literal["text", "json"],
            get_value(log_table, "format", "log.", choice(("text", "json")), "text", errors),
        ),
    )
    alerting = parse_alerting(
        top.get("alerting"),
        [w.seconds for w in windows],
        [f.name for f in features + predictions],
        errors,
    )
    if len(errors.items) > known:
        return None
    return Config(
        model=model,
        protocol=protocol,
        source=source,
        metrics=metrics,
        baseline=base / baseline,
        features=tuple(features),
        predictions=tuple(predictions),
        windows=tuple(windows),
        min_observations=min_obs,
        request_rows=cast(Literal["alike", "independent"], request_rows),
        versions=versions,
        sketch=sketch,
        feedback=feedback,
        segments=segments,
        multivariate=multivariate,
        range_tolerance=tolerance,
        state=state,
        log=log,
        alerting=alerting,
    )


class _UniqueKeyLoader(yaml.SafeLoader):
    """The safe loader, refusing a key given twice in one mapping.

    YAML requires unique keys; PyYAML keeps the last one silently, so a
    second ``features:`` would replace the first without a word.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                line = first.get(key)
            except TypeError:  # an unhashable key: the base class says so
                continue
            if line is not None:
                where = f"first at line {line + 1}"
                raise yaml.constructor.ConstructorError(
                    None, None, f"{key!r} is given twice ({where})", key_node.start_mark
                )
            first[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def load_config(path: str | Path) -> Config:
    """Read and validate the YAML config at ``path`` (safe loader only)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the config file is not UTF-8 text") from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    return config_from_mapping(raw, base=path.parent, path=path)
