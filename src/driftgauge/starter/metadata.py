"""Open Inference Protocol model metadata: ``GET {server}/v2/models/{model}``, read and checked.

Inputs and outputs are tensors (name, datatype, shape); a shape ``[-1, d]``
holds ``d`` values per row.  Every failure (unreachable server, unknown
model, a body that is not metadata) is one :class:`StarterError` line.
"""

from __future__ import annotations

import http.client
import json
import math
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from driftgauge.baseline.inputs import split_credentials
from driftgauge.starter.errors import StarterError

__all__ = ["ModelMetadata", "Tensor", "fetch_metadata", "metadata_url", "parse_metadata"]


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
    try:
        # A user and password go as HTTP Basic, and no message shows the password.
        bare, headers, url = split_credentials(metadata_url(server, model))
        shown = split_credentials(server)[2]
        parts = urllib.parse.urlsplit(bare)
        parts.port  # noqa: B018 - reading it validates it
    except ValueError as exc:  # a bracket left open, a port beyond 65535
        raise StarterError(f"--server {server!r}: not a URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise StarterError(f"--server {shown!r}: expected an http:// or https:// URL")
    request = urllib.request.Request(bare, headers={"Accept": "application/json", **headers})
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
    except http.client.InvalidURL as exc:  # a space or control character
        raise StarterError(f"--server {shown!r}: not a URL: {exc}") from None
    try:
        document = json.loads(body)
    except ValueError:
        raise StarterError(f"{url}: the answer is not JSON") from None
    return parse_metadata(document, url)


def _error_text(body: bytes) -> str:
    try:
        document = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace")
        if text.lstrip().startswith("<"):  # a gateway's or server's HTML error page
            return ""
        return " ".join(text.split())[:200]  # the message stays one line
    if isinstance(document, dict) and isinstance(document.get("error"), str):
        return str(document["error"])[:200]
    return json.dumps(document)[:200]
