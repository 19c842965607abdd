"""The model-level sections of the config: fields, feedback, segments and multivariate drift."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast, get_args

from driftgauge.canonical import canonical_category
from driftgauge.config.fields import FieldSpec, FieldType, Role
from driftgauge.config.protocols import (
    ProtocolSetting,
)
from driftgauge.config.validation import (
    Errors,
    choice,
    get_value,
    label_value,
    not_a_file,
    positive_float,
    positive_int,
    section,
    string,
)
from driftgauge.jsonpath_syntax import compile_path

__all__ = [
    "FeedbackConfig",
    "MultivariateConfig",
    "SegmentsConfig",
    "check_body_names",
    "feedback_section",
    "fields_section",
    "multivariate_section",
    "segments_section",
]


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
class MultivariateConfig:
    """Multivariate drift: the PCA reconstruction error of some numeric features, as one more field.

    ``components`` is a whole number of principal components, or a share of
    the variance in (0, 1) to keep (the fewest components reaching it, and
    never all of them: a full reconstruction has no error to watch).
    """

    features: tuple[str, ...]
    components: int | float = 0.95
    name: str = "reconstruction_error"

    @property
    def spec(self) -> FieldSpec:
        return FieldSpec(name=self.name, type="numeric", role="multivariate")


def fields_section(
    value: Any,
    key: str,
    role: Role,
    protocol: ProtocolSetting,
    seen: dict[str, str],
    errors: Errors,
) -> list[FieldSpec]:
    """The field list under ``key``; ``seen`` maps names already taken to where (shared by
    features and predictions: a name is unique within a model)."""
    if value is None:
        return []
    if not isinstance(value, list):
        errors.add(key, f"expected a list of {{name, type}} entries, got {value!r}")
        return []
    specs = []
    for index, item in enumerate(value):
        where = f"{key}[{index}]"
        table = section(item, where, ("name", "type", "path"), errors)
        if not isinstance(item, Mapping):
            continue
        name = get_value(table, "name", f"{where}.", label_value, "", errors)
        if table.get("name") is None:
            errors.add(f"{where}.name", "missing")
        elif name in seen:
            errors.add(f"{where}.name", f"{name!r} is already the name of {seen[name]}")
        elif name:
            seen[name] = where
        kind = get_value(table, "type", f"{where}.", choice(get_args(FieldType)), "numeric", errors)
        if "type" not in table:
            errors.add(f"{where}.type", "missing (numeric or categorical)")
        # jsonpath: where in the body; any other protocol: the body's name for the column.
        reader = _json_path if protocol == "jsonpath" else label_value
        path = get_value(table, "path", f"{where}.", reader, None, errors)
        if protocol == "jsonpath" and table.get("path") is None:
            errors.add(
                f"{where}.path", "missing: the jsonpath protocol needs a path for each field"
            )
        specs.append(FieldSpec(name=name, type=cast(FieldType, kind), role=role, path=path))
    return specs


def check_body_names(fields: list[tuple[str, FieldSpec]], errors: Errors) -> None:
    """Two fields must not read the same body column (``path``, else ``name``).

    Features and predictions share one namespace, as their names do: the
    adapters hand both sides' columns over in one mapping.
    """
    taken: dict[str, tuple[str, bool]] = {}
    for where, spec in fields:
        body_name = spec.path or spec.name
        if not body_name:
            continue
        if body_name not in taken:
            taken[body_name] = (where, spec.path is not None)
        elif spec.path is not None or taken[body_name][1]:  # else a duplicate name, told already
            key = f"{where}.path" if spec.path else f"{where}.name"
            errors.add(key, f"{body_name!r} is already read by {taken[body_name][0]}")


def _json_path(value: Any) -> str:
    """A JSONPath of the supported subset, compiled now so a bad one is a config error."""
    text = string(value)
    compile_path(text)
    return text


def feedback_section(
    value: Any, base: Path, predictions: list[FieldSpec], errors: Errors
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
    table = section(value, "feedback", keys, errors)
    if not table:
        return None
    by_name = {p.name: p for p in predictions}
    prefix = "feedback."
    default = predictions[0].name if predictions else ""
    prediction = get_value(table, "prediction", prefix, string, default, errors)
    spec = by_name.get(prediction)
    if spec is None:
        errors.add(
            "feedback.prediction", f"{prediction!r} is not one of the configured predictions"
        )
    kind = "classification" if spec is None or spec.type == "categorical" else "regression"
    task = get_value(table, "task", prefix, choice(("classification", "regression")), kind, errors)
    if spec is not None and task == "classification" and spec.type != "categorical":
        errors.add(
            "feedback.task",
            f"classification needs a categorical prediction, {prediction!r} is numeric",
        )
    if spec is not None and task == "regression" and spec.type != "numeric":
        errors.add(
            "feedback.task",
            f"regression needs a numeric prediction, {prediction!r} is categorical",
        )
    probability = get_value(table, "probability", prefix, string, None, errors)
    if probability is not None and (
        probability not in by_name or by_name[probability].type != "numeric"
    ):
        errors.add("feedback.probability", f"{probability!r} is not a numeric prediction")
    positive = table.get("positive_class")
    if positive is not None and not isinstance(positive, str | int | float | bool):
        errors.add("feedback.positive_class", f"{positive!r} is not a class value")
    if probability is not None and positive is None:
        errors.add("feedback.positive_class", "missing: probability is P(positive_class)")
    token = get_value(table, "token", prefix, string, None, errors)
    token_file = get_value(table, "token_file", prefix, string, None, errors)
    if token_file is not None:
        try:
            token = (base / token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            errors.add("feedback.token_file", f"cannot read {token_file!r}: {exc.strerror or exc}")
        else:
            if not token:  # else /feedback would take labels without a token
                errors.add("feedback.token_file", f"{token_file!r} holds no token")
    tail = get_value(table, "tail", prefix, string, None, errors)
    if tail and (problem := not_a_file(base, tail, "the label file to follow", made=False)):
        errors.add(f"{prefix}tail", problem)
    elif tail and (base / (offset := f"{tail}.offset")).is_dir():
        errors.add(f"{prefix}tail", f"{offset!r}, where its offset is kept, is a directory")
    return FeedbackConfig(
        prediction=prediction,
        task=cast(Literal["classification", "regression"], task),
        probability=probability,
        positive_class=None if positive is None else _label_text(positive),
        id_path=get_value(table, "id_path", prefix, _json_path, None, errors),
        max_pending=get_value(table, "max_pending", prefix, positive_int, 100_000, errors),
        ttl=get_value(table, "ttl", prefix, positive_float, 3600.0, errors),
        token=token,
        tail=base / tail if tail else None,
        tail_state_file=base / f"{tail}.offset" if tail else None,
    )


def _label_text(value: Any) -> str:
    """Class values as the strings categorical fields use (see driftgauge.canonical)."""
    return canonical_category(value)


def segments_section(value: Any, features: list[FieldSpec], errors: Errors) -> SegmentsConfig:
    table = section(value, "segments", ("features", "top"), errors)
    names = table.get("features", [])
    categorical = {f.name for f in features if f.type == "categorical"}
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        errors.add("segments.features", f"expected a list of feature names, got {names!r}")
        names = []
    for index, name in enumerate(names):
        if name not in categorical:
            errors.add(f"segments.features[{index}]", f"{name!r} is not a categorical feature")
        elif name in names[:index]:
            errors.add(f"segments.features[{index}]", f"{name!r} is listed twice")
    if len(names) > 5:
        errors.add("segments.features", "at most 5 segment features (each multiplies series)")
    top = get_value(table, "top", "segments.", positive_int, 10, errors)
    if top > 50:
        errors.add("segments.top", f"{top} is above 50 (it bounds label values)")
    return SegmentsConfig(tuple(names), top)


def multivariate_section(
    value: Any, features: list[FieldSpec], predictions: list[FieldSpec], errors: Errors
) -> MultivariateConfig | None:
    if value is None:
        return None
    table = section(value, "multivariate", ("features", "components", "name"), errors)
    numeric = {f.name for f in features if f.type == "numeric"}
    names = table.get("features")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        errors.add("multivariate.features", f"expected a list of feature names, got {names!r}")
        names = []
    for index, name in enumerate(names):
        if name not in numeric:
            errors.add(f"multivariate.features[{index}]", f"{name!r} is not a numeric feature")
        elif name in names[:index]:
            errors.add(f"multivariate.features[{index}]", f"{name!r} is listed twice")
    if len(set(names)) < 2:
        errors.add("multivariate.features", "expected at least two distinct numeric features")
    components = table.get("components", 0.95)
    whole = isinstance(components, int) and not isinstance(components, bool)
    if whole and not 1 <= components < max(2, len(set(names))):
        errors.add(
            "multivariate.components",
            f"{components!r} must be from 1 to one less than the number of features",
        )
    elif not whole and not (isinstance(components, float) and 0 < components < 1):
        errors.add(
            "multivariate.components",
            f"{components!r} is neither a whole number of components nor a variance share in (0, 1)",
        )
    name = get_value(table, "name", "multivariate.", string, "reconstruction_error", errors)
    if name in {f.name for f in features + predictions}:
        errors.add("multivariate.name", f"{name!r} is already a feature or prediction name")
    return MultivariateConfig(tuple(names), components, name)
