"""Several models behind one sidecar: the ``models:`` list of model blocks.

Each block holds the keys of a single-model config that belong to a model
(``MODEL_KEYS``) plus the optional routing keys (``ROUTING_KEYS``): a
``path`` regular expression, and for the CloudEvents source the
``inferenceservice`` the model's events come from (its ``model`` name when
unset), the KServe ``component`` (predictor, transformer...; any when
unset) and the Kubernetes ``namespace`` (any when unset); every other
key (source, metrics, windows, sketch, state, log...) is the sidecar's and
stays at the top, shared by all models.  Each block is validated as the
single-model config it amounts to, its problems reported under
``models[i].``, the shared keys' problems once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftgauge.config.protocols import PROTOCOL_ROUTES, protocol_names
from driftgauge.config.sources import CloudEventsConfig
from driftgauge.config.validation import Errors
from driftgauge.exceptions import ConfigError

if TYPE_CHECKING:
    from driftgauge.config.schema import Config

__all__ = ["MODEL_KEYS", "ROUTING_KEYS", "SHARED_KEYS", "several_models"]

MODEL_KEYS = (
    "model",
    "protocol",
    "baseline",
    "features",
    "predictions",
    "feedback",
    "segments",
    "multivariate",
    "alerting",
    "request_rows",
)
ROUTING_KEYS = ("path", "inferenceservice", "component", "namespace")
# The sidecar's keys: at the top of the file, shared by every model.
SHARED_KEYS = (
    "source",
    "metrics",
    "windows",
    "window_slices",
    "min_observations",
    "sketch",
    "versions",
    "data_quality",
    "state",
    "log",
)
_BLOCK_KEYS = (*MODEL_KEYS, *ROUTING_KEYS)

# A Kubernetes namespace name (an RFC 1123 label): an event's ce-namespace is never another.
_NAMESPACE = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")

OneModel = Callable[[Mapping[str, Any], Path, Errors], "Config | None"]


def _scope(key: str) -> str:
    return re.split(r"[.\[]", key, maxsplit=1)[0]


def _unreachable(config: Config) -> str:
    """Why no request reaches ``config``, one of several models ("" when some can): of a
    protocol whose routes name no model (MLflow's /invocations), without a ``path`` pattern,
    behind a proxy or a log, whose records are routed by the model their path names
    (CloudEvents name their InferenceService)."""
    if config.route is not None or isinstance(config.source, CloudEventsConfig):
        return ""
    nameless = [
        name
        for name in protocol_names(config.protocol)
        if not all("NAME" in route for route in PROTOCOL_ROUTES[name])
    ]
    if not nameless:
        return ""
    routes = ", ".join(route for name in nameless for route in PROTOCOL_ROUTES[name])
    return (
        f"missing: protocol {config.protocol} has routes naming no model ({routes}), so with "
        f"several models no request reaches {config.model!r} but by a path regular "
        "expression (such as ^/prefix/)"
    )


# What makes a pattern's match depend on the text after it: a pattern without any of them
# that is found in the start of a path is found in every path starting so.
_LOOKING_AHEAD = ("$", "\\Z", "\\b", "\\B", "(?=", "(?!")


def _named_by(model: str) -> tuple[str, ...]:
    """The starts of every path the router takes for ``model`` by the name in it (V1's
    name ends at a colon), or none when not every such path is one of them (a name holding
    '/', '?' or '%')."""
    if any(char in model for char in "/?%"):
        return ()
    v2 = f"/v2/models/{model}"
    return (v2,) if ":" in model else (f"/v1/models/{model}", v2)


def _shadowed(config: Config, routed: list[Config]) -> str:
    """Why no request reaches ``config``, routed by the model its path names ("" when some
    may): the ``path`` pattern of a model of ``routed`` (those with one, in order) is found
    in every path naming it, and the router tries patterns before names."""
    starts = _named_by(config.model)
    if config.route is not None or isinstance(config.source, CloudEventsConfig) or not starts:
        return ""
    for other in routed:
        route = other.route or ""
        if not route or any(construct in route for construct in _LOOKING_AHEAD):
            continue
        try:
            found = all(re.search(route, start) for start in starts)
        except re.error:  # said as its block's problem
            continue
        if found:
            shown = ", ".join(f"{start}..." for start in starts)
            return (
                f"no request reaches {config.model!r}: model {other.model!r}'s path pattern "
                f"{route!r} is found in every path naming it ({shown}), and patterns are "
                "tried before names: narrow that pattern (such as ^/prefix/)"
            )
    return ""


def several_models(raw: Mapping[str, Any], base: Path, path: Path | None, one: OneModel) -> Config:
    """The first model's config, with ``models`` holding every model's (``one`` parses a model)."""
    problems: list[str] = []
    blocks = raw["models"]
    if not isinstance(blocks, list) or not blocks:
        problems.append("models: expected a non-empty list of model blocks")
        blocks = []
    for key in MODEL_KEYS:
        if key in raw:
            problems.append(f"{key}: with `models:` this key belongs in each model block")
    shared = {key: value for key, value in raw.items() if key not in MODEL_KEYS and key != "models"}
    configs: list[Config] = []
    positions: list[int] = []  # each config's block
    for index, block in enumerate(blocks):
        prefix = f"models[{index}]"
        if not isinstance(block, Mapping):
            problems.append(f"{prefix}: expected a mapping, got {type(block).__name__}")
            continue
        for key in block:
            if key in SHARED_KEYS:
                problems.append(
                    f"{prefix}.{key}: this key is the sidecar's, shared by every model:"
                    " put it at the top of the file, beside `models:`"
                )
            elif key not in _BLOCK_KEYS:
                problems.append(f"{prefix}.{key}: unknown key (allowed: {', '.join(_BLOCK_KEYS)})")
        route = block.get("path")
        if route is not None:
            try:
                re.compile(route) if isinstance(route, str) else None
            except re.error as exc:
                problems.append(f"{prefix}.path: {route!r} is not a regular expression ({exc})")
            if not isinstance(route, str) or not route:
                problems.append(f"{prefix}.path: {route!r} is not a regular expression")
        origin = {key: block.get(key) for key in ("inferenceservice", "component", "namespace")}
        for key, value in origin.items():
            if value is not None and (not isinstance(value, str) or not value.strip()):
                problems.append(f"{prefix}.{key}: expected a non-empty string, got {value!r}")
                origin[key] = None
        namespace = origin["namespace"]
        if namespace is not None and not _NAMESPACE.fullmatch(namespace):
            problems.append(
                f"{prefix}.namespace: {namespace!r} is not a Kubernetes namespace name (at most "
                "63 lower-case letters, digits and '-', starting and ending with a letter or digit)"
            )
        errors = Errors()
        model = {key: value for key, value in block.items() if key in MODEL_KEYS}
        config = one({**shared, **model}, base, errors)
        for key, message in errors.entries:
            scoped = _scope(key) in MODEL_KEYS
            item = f"{prefix}.{key}: {message}" if scoped else f"{key}: {message}"
            if item not in problems:
                problems.append(item)
        if config is None:
            continue
        clash = [c for c in configs if c.model == config.model]
        if clash:
            problems.append(f"{prefix}.model: {config.model!r} is configured more than once")
        config = replace(
            config,
            route=route if isinstance(route, str) else None,
            service=origin["inferenceservice"],
            component=origin["component"],
            namespace=namespace,
        )
        tail = config.feedback.tail if config.feedback is not None else None
        reading = [c.model for c in configs if c.feedback is not None and c.feedback.tail == tail]
        if tail is not None and reading:
            problems.append(
                f"{prefix}.feedback.tail: {str(tail)!r} is also the feedback.tail of model "
                f"{reading[0]!r} (a model reads every line of its file and keeps its offset "
                "beside it): give each model its own file"
            )
        same = [
            c.model
            for c in configs
            if c.origin == config.origin and c.namespace == config.namespace
        ]
        if same and not clash:  # a name given twice is said once, above
            service, component = config.origin
            which = f"component {component!r} of " if component else ""
            where = f" in namespace {config.namespace!r}" if config.namespace else ""
            problems.append(
                f"{prefix}.inferenceservice: the events of {which}InferenceService "
                f"{service!r}{where} already go to model {same[0]!r} (set `component` to tell "
                "them apart)"
            )
        if len(blocks) > 1 and (unreachable := _unreachable(config)):
            problems.append(f"{prefix}.path: {unreachable}")
        configs.append(config)
        positions.append(index)
    routed = [config for config in configs if config.route is not None]
    for index, config in zip(positions, configs, strict=True):
        if shadowed := _shadowed(config, routed):
            problems.append(f"models[{index}].path: {shadowed}")
    if problems or not configs:
        where = f"{path}: " if path else ""
        raise ConfigError(where + "; ".join(problems or ["models: no model configured"]))
    every = tuple(replace(config, path=path) for config in configs)
    return replace(every[0], models=every)
