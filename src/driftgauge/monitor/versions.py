"""Model versions: a monitor per version of a model, so a canary's drift shows apart from stable's.

KServe canaries and MLServer versions carry the version in the path
(``/v2/models/NAME/versions/V/infer``, TF Serving's ``/v1/models/NAME/versions/V:predict``)
or in every Open Inference Protocol response (``model_version``); KServe's payload logger
names the predictor endpoint an event comes from (``ce-endpoint``: ``default``, or ``canary``
during a canary rollout), which is the version of a record naming none otherwise, whatever
the protocol.  The first
``versions.top`` versions a model's traffic shows get a monitor each (their
metrics carry ``version="V"``); later ones share one ``version="__other__"``,
so the label stays bounded.  Records without a version go to the model's own
monitor, whose metrics have no version label.

Drift, data quality and segments are tracked per version; delayed labels
join predictions of every version in the model's own monitor (one
``/feedback`` per model), so performance is per model, not per version.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote

from driftgauge.config import CloudEventsConfig
from driftgauge.config.protocols import protocol_names
from driftgauge.monitor.model import Monitor
from driftgauge.monitor.tracker import Observation

__all__ = [
    "ENDPOINT_HEADER",
    "OTHER_VERSION",
    "VERSIONED_PROTOCOLS",
    "ModelVersions",
    "percent_decoded",
    "record_version",
]

OTHER_VERSION = "__other__"
# Protocols whose paths or responses name a model version.
VERSIONED_PROTOCOLS = frozenset({"kserve-v2", "kserve", "tfserving"})
# The segment after the model's name: "versions" may itself be a model's name or in a prefix.
# TF Serving also serves a version by its label (/labels/canary:predict), its canary's route.
_PATH_VERSION = re.compile(r"/models/[^/]+/(?:versions|labels)/([^/:?]+)")
ENDPOINT_HEADER = "ce-endpoint"
"""The record header naming the KServe predictor endpoint a CloudEvents record came from."""
_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


def percent_decoded(text: str) -> str:
    """``text`` (a path segment) with its percent-escapes decoded as UTF-8; as it is when
    they are no UTF-8."""
    if "%" not in text:
        return text
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        return text


def record_version(path: str, response: Any, headers: Mapping[str, str] = _NO_HEADERS) -> str:
    """The model version a record names: in its path (percent-escapes decoded), else the
    response's ``model_version``, else the KServe endpoint its ``headers`` name."""
    if path:
        found = _PATH_VERSION.search(path)
        if found:
            return percent_decoded(found.group(1))
    if isinstance(response, dict):
        version = response.get("model_version")
        if isinstance(version, str | int) and not isinstance(version, bool):
            return str(version)
    return headers.get(ENDPOINT_HEADER) or ""


class ModelVersions:
    """A model's monitor and one monitor per version seen, bounded to ``top`` versions."""

    def __init__(self, model: Monitor, top: int) -> None:
        self.model = model
        self.top = top  # at least 1: see of()
        self._lock = threading.Lock()
        self._by_version: dict[str, Monitor] = {}
        # Called with each new version monitor (the sidecar starts recomputing and exposing it).
        self.on_new: list[Callable[[Monitor], None]] = []

    @classmethod
    def of(cls, model: Monitor) -> ModelVersions | None:
        """The versions of ``model`` when its config turns them on and its protocol or its
        source (the CloudEvents source: the endpoint) names them."""
        config = model.config
        named = bool(VERSIONED_PROTOCOLS & set(protocol_names(config.protocol)))
        named = named or isinstance(config.source, CloudEventsConfig)
        return cls(model, config.versions) if config.versions > 0 and named else None

    @property
    def monitors(self) -> list[Monitor]:
        """The model's monitor, then its versions' in the order they appeared."""
        return [self.model, *self._by_version.values()]

    def monitor_for(self, version: str) -> Monitor:
        """The monitor of ``version`` ("": the model's own)."""
        if not version:
            return self.model
        found = self._by_version.get(version)
        if found is not None:
            return found
        with self._lock:
            label = version if len(self._by_version) < self.top else OTHER_VERSION
            found = self._by_version.get(label)
            if found is None:
                model = self.model
                # Labels join predictions in the model's own monitor: no outcomes per version
                # (the feedback config stays: it names the segments' positive class).
                found = Monitor(
                    model.config, model.baseline, model.clock, version=label, outcomes=False
                )
                self._by_version = {**self._by_version, label: found}
                for listener in self.on_new:
                    listener(found)
        return found

    def observe(self, batch: Sequence[Observation], versions: Sequence[str]) -> None:
        """Hand each observation to its version's monitor (predictions to the model's outcomes)."""
        groups: dict[Monitor, list[Observation]] = {}
        for observation, version in zip(batch, versions, strict=True):
            groups.setdefault(self.monitor_for(version), []).append(observation)
        now = self.model.clock()
        outcomes = self.model.outcomes
        for monitor, group in groups.items():
            monitor.observe(group, now)
            if monitor is not self.model and outcomes is not None:
                outcomes.ingest(group, now)
