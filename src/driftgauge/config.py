"""The config file: YAML, validated once at start into frozen dataclasses.

``load_config(path)`` raises :class:`ConfigError` naming every problem with
its key path (``features[2].type: 'numerc' is not one of numeric, categorical``).
Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import hashlib
import json
import re
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, cast, get_args

import yaml

from driftgauge.exceptions import ConfigError

__all__ = [
    "DEFAULT_METRICS_PORT",
    "DEFAULT_PROXY_PORT",
    "Config",
    "FeedbackConfig",
    "FieldSpec",
    "FieldType",
    "LogConfig",
    "MetricsConfig",
    "ProtocolName",
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
]

# 9100-9999 of Prometheus' default port allocations is taken in full; see README.
DEFAULT_METRICS_PORT = 10117
DEFAULT_PROXY_PORT = 8080

ProtocolName = Literal["kserve-v1", "kserve-v2", "tfserving", "mlflow", "seldon", "jsonpath"]
FieldType = Literal["numeric", "categorical"]
Role = Literal["input", "prediction"]

_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d)$")
_DURATION_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]*$")


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus-style duration such as ``30s``, ``5m``, ``1h``."""
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration like 30s, 5m or 1h")
    return int(match.group(1)) * _DURATION_SECONDS[match.group(2)]


def format_duration(seconds: float) -> str:
    """The shortest exact Prometheus-style spelling of ``seconds``."""
    for unit in ("d", "h", "m", "s"):
        size = _DURATION_SECONDS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{round(seconds * 1000)}ms"


def parse_listen(text: str, default_port: int) -> tuple[str, int]:
    """``host:port`` (``[::1]:port`` for IPv6, ``:port`` for all addresses) as a pair."""
    text = text.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = text, str(default_port)
    host = host.strip("[]") or "0.0.0.0"
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r} is not host:port with a port from 0 to 65535")
    return host, int(port_text)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One monitored column: a model input (feature) or a model output (prediction)."""

    name: str
    type: FieldType
    role: Role
    path: str | None = None


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
class TlsConfig:
    """A listener's certificate chain and private key (PEM files)."""

    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    listen: tuple[str, int] = ("0.0.0.0", DEFAULT_PROXY_PORT)
    upstream: str = "http://127.0.0.1:9000"
    timeout: float = 60.0
    connect_timeout: float = 5.0
    readiness_path: str | None = None
    max_body_bytes: int = 4 * 1024 * 1024
    queue_size: int = 10_000
    request_id_header: str = "X-Request-ID"
    shutdown_grace: float = 10.0
    ca_file: Path | None = None  # trust this CA (PEM) for an https:// upstream
    tls: TlsConfig | None = None  # serve the proxy listener over TLS


@dataclass(frozen=True, slots=True)
class TailConfig:
    path: Path
    state_file: Path | None = None
    poll_interval: float = 0.25
    start_at: Literal["beginning", "end"] = "beginning"


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
class FeedbackConfig:
    """Delayed ground truth: which prediction labels are compared with, and how ids are found."""

    prediction: str
    task: Literal["classification", "regression"]
    probability: str | None = None
    positive_class: str | None = None
    id_path: str | None = None
    max_pending: int = 100_000
    ttl: float = 3600.0
    token: str | None = None
    tail: Path | None = None
    tail_state_file: Path | None = None


@dataclass(frozen=True, slots=True)
class SegmentsConfig:
    """Categorical features whose top values split prediction drift, performance and fairness."""

    features: tuple[str, ...] = ()
    top: int = 10


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
    protocol: ProtocolName
    source: ProxyConfig | TailConfig
    metrics: MetricsConfig
    baseline: Path
    features: tuple[FieldSpec, ...]
    predictions: tuple[FieldSpec, ...]
    windows: tuple[Window, ...]
    min_observations: int = 100
    sketch: SketchConfig = field(default_factory=SketchConfig)
    feedback: FeedbackConfig | None = None
    segments: SegmentsConfig = field(default_factory=SegmentsConfig)
    range_tolerance: float = 0.0
    state: StateConfig = field(default_factory=StateConfig)
    log: LogConfig = field(default_factory=LogConfig)
    path: Path | None = None

    @property
    def fields(self) -> tuple[FieldSpec, ...]:
        """Features then predictions, the order in which metrics list them."""
        return self.features + self.predictions

    def schema_hash(self) -> str:
        """A hash of what a baseline must agree with: fields, types, roles and sketch settings."""
        payload: dict[str, Any] = {
            "fields": [[f.name, f.type, f.role] for f in self.fields],
            "sketch": [self.sketch.kll_k, self.sketch.bins, self.sketch.top_categories],
        }
        if self.segments.features:  # the baseline holds per-segment prediction counts
            payload["segments"] = [list(self.segments.features), self.segments.top]
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        return digest[:16]


class _Errors:
    """Collects every problem in one pass so `driftgauge check` can list them all."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.items.append(f"{key}: {message}" if key else message)


_T = TypeVar("_T")


def _table(value: Any, key: str, allowed: Sequence[str], errors: _Errors) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        errors.add(key, f"expected a mapping, got {type(value).__name__} {value!r}")
        return {}
    for name in value:
        if name not in allowed:
            where = f"{key}.{name}" if key else str(name)
            errors.add(where, f"unknown key (allowed: {', '.join(allowed)})")
    return value


def _get(
    table: Mapping[str, Any],
    key: str,
    prefix: str,
    convert: Callable[[Any], _T],
    default: _T,
    errors: _Errors,
) -> _T:
    if key not in table or table[key] is None:
        return default
    try:
        return convert(table[key])
    except (TypeError, ValueError) as exc:
        errors.add(f"{prefix}{key}", f"{exc}")
        return default


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{value!r} is not a positive whole number")
    return value


def _positive_float(value: Any) -> float:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"{value!r} is not a positive number of seconds or a duration like 5s")
    return float(value)


def _fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 10:
        raise ValueError(
            f"{value!r} is not a number from 0 to 10 (a share of the baseline's range)"
        )
    return float(value)


def _string(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{value!r} is not a non-empty string")
    return value


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if value not in options:
            raise ValueError(f"{value!r} is not one of {', '.join(options)}")
        return cast(str, value)

    return convert


def _url(value: Any) -> str:
    text = _string(value)
    if not re.match(r"^https?://[^/\s]+", text):
        raise ValueError(f"{text!r} is not an http:// or https:// URL")
    return text.rstrip("/")


def _fields(value: Any, key: str, role: Role, protocol: str, errors: _Errors) -> list[FieldSpec]:
    if value is None:
        return []
    if not isinstance(value, list):
        errors.add(key, f"expected a list of {{name, type}} entries, got {value!r}")
        return []
    specs = []
    for index, item in enumerate(value):
        where = f"{key}[{index}]"
        table = _table(item, where, ("name", "type", "path"), errors)
        if not isinstance(item, Mapping):
            continue
        name = _get(table, "name", f"{where}.", _string, "", errors)
        if "name" not in table:
            errors.add(f"{where}.name", "missing")
        elif name and not _NAME.match(name):
            errors.add(
                f"{where}.name", f"{name!r} must start with a letter or _ and hold no spaces"
            )
        kind = _get(table, "type", f"{where}.", _choice(get_args(FieldType)), "numeric", errors)
        if "type" not in table:
            errors.add(f"{where}.type", "missing (numeric or categorical)")
        path = _get(table, "path", f"{where}.", _string, None, errors)
        if protocol == "jsonpath" and path is None:
            errors.add(
                f"{where}.path", "missing: the jsonpath protocol needs a path for each field"
            )
        specs.append(FieldSpec(name=name, type=cast(FieldType, kind), role=role, path=path))
    return specs


def _windows(value: Any, slices: int, errors: _Errors) -> list[Window]:
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


def _source(value: Any, base: Path, errors: _Errors) -> ProxyConfig | TailConfig:
    table = _table(value, "source", ("proxy", "tail"), errors)
    if ("proxy" in table) == ("tail" in table):
        errors.add("source", "set exactly one of source.proxy or source.tail")
    if "tail" in table:
        tail = _table(
            table["tail"],
            "source.tail",
            ("path", "state_file", "poll_interval", "start_at"),
            errors,
        )
        path = _get(tail, "path", "source.tail.", _string, "", errors)
        if not path:
            errors.add("source.tail.path", "missing: the JSON Lines file to follow")
        state = _get(tail, "state_file", "source.tail.", _string, None, errors)
        return TailConfig(
            path=base / path,
            state_file=base / state if state else None,
            poll_interval=_get(
                tail, "poll_interval", "source.tail.", _positive_float, 0.25, errors
            ),
            start_at=cast(
                Literal["beginning", "end"],
                _get(
                    tail,
                    "start_at",
                    "source.tail.",
                    _choice(("beginning", "end")),
                    "beginning",
                    errors,
                ),
            ),
        )
    proxy = _table(
        table.get("proxy"),
        "source.proxy",
        (
            "listen",
            "upstream",
            "timeout",
            "connect_timeout",
            "readiness_path",
            "max_body_bytes",
            "queue_size",
            "request_id_header",
            "shutdown_grace",
            "ca_file",
            "tls",
        ),
        errors,
    )
    defaults = ProxyConfig()
    prefix = "source.proxy."

    def listen(value: Any) -> tuple[str, int]:
        return parse_listen(str(value), DEFAULT_PROXY_PORT)

    def url_path(value: Any) -> str:
        text = _string(value)
        if not text.startswith("/"):
            raise ValueError(f"{text!r} must start with /")
        return text

    return ProxyConfig(
        listen=_get(proxy, "listen", prefix, listen, defaults.listen, errors),
        upstream=_get(proxy, "upstream", prefix, _url, defaults.upstream, errors),
        timeout=_get(proxy, "timeout", prefix, _positive_float, defaults.timeout, errors),
        connect_timeout=_get(
            proxy, "connect_timeout", prefix, _positive_float, defaults.connect_timeout, errors
        ),
        readiness_path=_get(proxy, "readiness_path", prefix, url_path, None, errors),
        max_body_bytes=_get(
            proxy, "max_body_bytes", prefix, _positive_int, defaults.max_body_bytes, errors
        ),
        queue_size=_get(proxy, "queue_size", prefix, _positive_int, defaults.queue_size, errors),
        request_id_header=_get(
            proxy, "request_id_header", prefix, _string, defaults.request_id_header, errors
        ),
        shutdown_grace=_get(
            proxy, "shutdown_grace", prefix, _positive_float, defaults.shutdown_grace, errors
        ),
        ca_file=_existing_file(proxy, "ca_file", prefix, base, errors),
        tls=_tls(proxy.get("tls"), "source.proxy.tls", base, errors),
    )


def _existing_file(
    table: Mapping[str, Any], key: str, prefix: str, base: Path, errors: _Errors
) -> Path | None:
    name = _get(table, key, prefix, _string, None, errors)
    if name is None:
        return None
    path = base / name
    if not path.is_file():
        errors.add(f"{prefix}{key}", f"no such file {str(path)!r}")
    return path


def _tls(value: Any, key: str, base: Path, errors: _Errors) -> TlsConfig | None:
    table = _table(value, key, ("cert_file", "key_file"), errors)
    if not table:
        return None
    cert = _existing_file(table, "cert_file", f"{key}.", base, errors)
    private = _existing_file(table, "key_file", f"{key}.", base, errors)
    if cert is None or private is None:
        errors.add(key, "needs both cert_file and key_file")
        return None
    return TlsConfig(cert, private)


_TOP_KEYS = (
    "model",
    "protocol",
    "source",
    "metrics",
    "baseline",
    "features",
    "predictions",
    "windows",
    "window_slices",
    "min_observations",
    "sketch",
    "feedback",
    "segments",
    "data_quality",
    "state",
    "log",
)


def _feedback(
    value: Any, base: Path, predictions: list[FieldSpec], errors: _Errors
) -> FeedbackConfig | None:
    keys = (
        "prediction",
        "task",
        "probability",
        "positive_class",
        "id_path",
        "max_pending",
        "ttl",
        "token",
        "token_file",
        "tail",
    )
    table = _table(value, "feedback", keys, errors)
    if not table:
        return None
    by_name = {p.name: p for p in predictions}
    prefix = "feedback."
    default = predictions[0].name if predictions else ""
    prediction = _get(table, "prediction", prefix, _string, default, errors)
    spec = by_name.get(prediction)
    if spec is None:
        errors.add(
            "feedback.prediction", f"{prediction!r} is not one of the configured predictions"
        )
    kind = "classification" if spec is None or spec.type == "categorical" else "regression"
    task = _get(table, "task", prefix, _choice(("classification", "regression")), kind, errors)
    if spec is not None and task == "classification" and spec.type != "categorical":
        errors.add(
            "feedback.task",
            f"classification needs a categorical prediction, {prediction!r} is numeric",
        )
    probability = _get(table, "probability", prefix, _string, None, errors)
    if probability is not None and (
        probability not in by_name or by_name[probability].type != "numeric"
    ):
        errors.add("feedback.probability", f"{probability!r} is not a numeric prediction")
    positive = table.get("positive_class")
    if positive is not None and not isinstance(positive, str | int | bool):
        errors.add("feedback.positive_class", f"{positive!r} is not a class value")
    if probability is not None and positive is None:
        errors.add("feedback.positive_class", "missing: probability is P(positive_class)")
    token = _get(table, "token", prefix, _string, None, errors)
    token_file = _get(table, "token_file", prefix, _string, None, errors)
    if token_file is not None:
        try:
            token = (base / token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            errors.add("feedback.token_file", f"cannot read {token_file!r}: {exc.strerror or exc}")
    tail = _get(table, "tail", prefix, _string, None, errors)
    return FeedbackConfig(
        prediction=prediction,
        task=cast(Literal["classification", "regression"], task),
        probability=probability,
        positive_class=None if positive is None else _label_text(positive),
        id_path=_get(table, "id_path", prefix, _string, None, errors),
        max_pending=_get(table, "max_pending", prefix, _positive_int, 100_000, errors),
        ttl=_get(table, "ttl", prefix, _positive_float, 3600.0, errors),
        token=token,
        tail=base / tail if tail else None,
        tail_state_file=base / f"{tail}.offset" if tail else None,
    )


def _label_text(value: Any) -> str:
    """Class values as the strings categorical fields use (true/false for booleans)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _segments(value: Any, features: list[FieldSpec], errors: _Errors) -> SegmentsConfig:
    table = _table(value, "segments", ("features", "top"), errors)
    names = table.get("features", [])
    categorical = {f.name for f in features if f.type == "categorical"}
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        errors.add("segments.features", f"expected a list of feature names, got {names!r}")
        names = []
    for index, name in enumerate(names):
        if name not in categorical:
            errors.add(f"segments.features[{index}]", f"{name!r} is not a categorical feature")
    if len(names) > 5:
        errors.add("segments.features", "at most 5 segment features (each multiplies series)")
    top = _get(table, "top", "segments.", _positive_int, 10, errors)
    if top > 50:
        errors.add("segments.top", f"{top} is above 50 (it bounds label values)")
    return SegmentsConfig(tuple(names), top)


def config_from_mapping(raw: Any, base: Path = Path("."), path: Path | None = None) -> Config:
    """Validate an already-loaded YAML document; relative paths resolve against ``base``."""
    errors = _Errors()
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{path or 'config'}: expected a mapping of keys at the top, got {type(raw).__name__}"
        )
    top = _table(raw, "", _TOP_KEYS, errors)
    model = _get(top, "model", "", _string, "", errors)
    if "model" not in top:
        errors.add("model", "missing: the value of the `model` label")
    elif model and not _NAME.match(model):
        errors.add("model", f"{model!r} must start with a letter or _ and hold no spaces")
    protocol = _get(top, "protocol", "", _choice(get_args(ProtocolName)), "kserve-v2", errors)
    source = _source(top.get("source"), base, errors)
    metrics_table = _table(
        top.get("metrics"), "metrics", ("listen", "recompute_interval", "tls"), errors
    )
    metrics = MetricsConfig(
        listen=_get(
            metrics_table,
            "listen",
            "metrics.",
            lambda v: parse_listen(str(v), DEFAULT_METRICS_PORT),
            MetricsConfig().listen,
            errors,
        ),
        recompute_interval=_get(
            metrics_table, "recompute_interval", "metrics.", _positive_float, 10.0, errors
        ),
        tls=_tls(metrics_table.get("tls"), "metrics.tls", base, errors),
    )
    baseline = _get(top, "baseline", "", _string, "", errors)
    if "baseline" not in top:
        errors.add("baseline", "missing: the file written by `driftgauge baseline`")
    features = _fields(top.get("features"), "features", "input", protocol, errors)
    predictions = _fields(top.get("predictions"), "predictions", "prediction", protocol, errors)
    if not features and "features" in top:
        errors.add("features", "expected at least one feature")
    elif "features" not in top:
        errors.add("features", "missing: the model inputs to monitor, in column order")
    names = [f.name for f in features + predictions if f.name]
    for name in sorted({n for n in names if names.count(n) > 1}):
        errors.add(
            "features", f"the name {name!r} is used more than once across features and predictions"
        )
    slices = _get(top, "window_slices", "", _positive_int, 10, errors)
    windows = _windows(top.get("windows"), slices, errors)
    min_obs = _get(top, "min_observations", "", _positive_int, 100, errors)
    sketch_table = _table(
        top.get("sketch"), "sketch", ("kll_k", "bins", "top_categories", "hll_lg_k"), errors
    )
    sketch = SketchConfig(
        kll_k=_get(sketch_table, "kll_k", "sketch.", _positive_int, 200, errors),
        bins=_get(sketch_table, "bins", "sketch.", _positive_int, 10, errors),
        top_categories=_get(sketch_table, "top_categories", "sketch.", _positive_int, 50, errors),
        hll_lg_k=_get(sketch_table, "hll_lg_k", "sketch.", _positive_int, 12, errors),
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
    feedback = _feedback(top.get("feedback"), base, predictions, errors)
    segments = _segments(top.get("segments"), features, errors)
    quality = _table(top.get("data_quality"), "data_quality", ("range_tolerance",), errors)
    tolerance = _get(quality, "range_tolerance", "data_quality.", _fraction, 0.0, errors)
    state_table = _table(top.get("state"), "state", ("directory", "interval"), errors)
    directory = _get(state_table, "directory", "state.", _string, None, errors)
    state = StateConfig(
        directory=base / directory if directory else None,
        interval=_get(state_table, "interval", "state.", _positive_float, 30.0, errors),
    )
    log_table = _table(top.get("log"), "log", ("level", "format"), errors)
    log = LogConfig(
        level=cast(
            Literal["DEBUG", "INFO", "WARNING", "ERROR"],
            _get(
                log_table,
                "level",
                "log.",
                _choice(("DEBUG", "INFO", "WARNING", "ERROR")),
                "INFO",
                errors,
            ),
        ),
        format=cast(
            Literal["text", "json"],
            _get(log_table, "format", "log.", _choice(("text", "json")), "text", errors),
        ),
    )
    if errors.items:
        where = f"{path}: " if path else ""
        raise ConfigError(where + "; ".join(errors.items))
    return Config(
        model=model,
        protocol=cast(ProtocolName, protocol),
        source=source,
        metrics=metrics,
        baseline=base / baseline,
        features=tuple(features),
        predictions=tuple(predictions),
        windows=tuple(windows),
        min_observations=min_obs,
        sketch=sketch,
        feedback=feedback,
        segments=segments,
        range_tolerance=tolerance,
        state=state,
        log=log,
        path=path,
    )


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
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    return config_from_mapping(raw, base=path.parent, path=path)
