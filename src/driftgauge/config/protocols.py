"""The ``protocol:`` key: one request format, ``kserve`` (both KServe protocols), or a list.

A model server may answer several protocols at once (a KServe server serves
``/v1/models/NAME:predict`` and ``/v2/models/NAME/infer`` side by side), so
``protocol:`` takes a list of protocols whose routes do not overlap; each
request is then read by the protocol whose route its path is.  Which routes
each protocol claims is written down here, as route patterns, so the config
can refuse two protocols that would both claim a path (``kserve-v1`` and
``tfserving`` both read ``/v1/models/NAME:predict``) without importing the
adapters, which sit in a layer above.  ``tests/protocols`` checks this table
against the adapters' own route expressions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, cast, get_args

from driftgauge.config.validation import Errors

__all__ = [
    "ANY_ROUTE",
    "PROTOCOL_ROUTES",
    "ProtocolList",
    "ProtocolName",
    "ProtocolSetting",
    "parse_protocol",
    "protocol_names",
]

ProtocolName = Literal[
    "kserve-v1", "kserve-v2", "kserve", "tfserving", "mlflow", "seldon", "jsonpath"
]

ANY_ROUTE = "*"
"""The route pattern of a protocol that reads any path (jsonpath)."""

_V1_PREDICT = "/v1/models/NAME:predict"
_V2_INFER = ("/v2/models/NAME/infer", "/v2/models/NAME/versions/VERSION/infer")

PROTOCOL_ROUTES: dict[ProtocolName, tuple[str, ...]] = {
    "kserve-v1": (_V1_PREDICT,),
    "kserve-v2": _V2_INFER,
    "kserve": (_V1_PREDICT, *_V2_INFER),
    "tfserving": (
        _V1_PREDICT,
        "/v1/models/NAME/versions/NUMBER:predict",
        "/v1/models/NAME/labels/LABEL:predict",
    ),
    "mlflow": ("/invocations",),
    "seldon": (
        "/api/v1.0/predictions",
        "/api/v0.1/predictions",
        "/seldon/NAMESPACE/DEPLOYMENT/api/v1.0/predictions",
        "/seldon/NAMESPACE/DEPLOYMENT/api/v0.1/predictions",
        "/predict",
    ),
    "jsonpath": (ANY_ROUTE,),
}
"""The prediction routes each protocol reads (upper-case words stand for any path segment)."""


class ProtocolList(tuple[ProtocolName, ...]):
    """Several protocols on one sidecar, in the order given; printed as the YAML list."""

    __slots__ = ()

    def __str__(self) -> str:
        return "[" + ", ".join(self) + "]"


ProtocolSetting = ProtocolName | ProtocolList
"""The value of ``protocol:``: one protocol name, or several."""


def protocol_names(setting: ProtocolSetting | Sequence[ProtocolName]) -> tuple[ProtocolName, ...]:
    """The protocols of a setting, as a tuple (one name is a tuple of one)."""
    return (setting,) if isinstance(setting, str) else tuple(setting)


def _name(value: Any, key: str, errors: Errors) -> ProtocolName | None:
    known = get_args(ProtocolName)
    if value not in known:
        errors.add(key, f"{value!r} is not one of {', '.join(known)}")
        return None
    return cast(ProtocolName, value)


def parse_protocol(value: Any, errors: Errors) -> ProtocolSetting:
    """``protocol:`` as a name, or a list of names whose routes do not overlap.

    A list of one name is that name.  Errors name ``protocol`` (or
    ``protocol[i]``) and, for an overlap, the route both protocols claim.
    """
    if value is None:
        return "kserve-v2"
    if not isinstance(value, list):
        found = _name(value, "protocol", errors)
        return "kserve-v2" if found is None else found
    if not value:
        errors.add("protocol", "an empty list: name at least one protocol")
        return "kserve-v2"
    names: list[ProtocolName] = []
    claimed: dict[str, tuple[int, str]] = {}
    for index, item in enumerate(value):
        key = f"protocol[{index}]"
        name = _name(item, key, errors)
        if name is None:
            continue
        names.append(name)
        routes = PROTOCOL_ROUTES[name]
        if len(value) > 1 and ANY_ROUTE in routes:
            errors.add(key, f"{name!r} reads every path, so it cannot share a sidecar with others")
            continue
        for route in routes:
            if route in claimed:
                other, other_name = claimed[route]
                errors.add(
                    key,
                    f"{name!r} and {other_name!r} (protocol[{other}]) both read {route}:"
                    " list protocols whose routes do not overlap",
                )
                break
        else:
            claimed.update((route, (index, name)) for route in routes)
    if len(names) == 1:
        return names[0]
    return ProtocolList(names) if names else "kserve-v2"
