"""Events as KServe's payload logger sends them, built with the CloudEvents Python SDK.

The attribute set follows kserve/kserve ``pkg/logger/worker.go`` (``sendHttpCloudEvent``):
id, type, source, the extensions inferenceservicename, namespace, component, endpoint and
metadata (a JSON object of the logged request headers), binary mode, and the inference
request's Content-Type as the data content type.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from aiohttp import ClientSession

try:  # cloudevents >= 2 keeps the 1.x API under cloudevents.v1
    from cloudevents.v1.conversion import to_binary, to_structured
    from cloudevents.v1.http import CloudEvent
except ImportError:  # pragma: no cover - cloudevents 1.x
    from cloudevents.conversion import to_binary, to_structured  # type: ignore[no-redef]
    from cloudevents.http import CloudEvent  # type: ignore[no-redef]

from driftgauge.sources.cloudevents import REQUEST_TYPE, RESPONSE_TYPE

__all__ = ["CloudEvent", "Message", "binary", "encode", "kserve_event", "send", "structured"]

Kind = Literal["request", "response"]
Message = tuple[dict[str, str], bytes]


def encode(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def kserve_event(
    kind: Kind, event_id: str, body: Any, *, content_type: str = "application/json"
) -> CloudEvent:
    """One logger event: ``body`` (bytes as they are, anything else JSON-encoded) as its data."""
    attributes = {
        "specversion": "1.0",
        "id": event_id,
        "type": REQUEST_TYPE if kind == "request" else RESPONSE_TYPE,
        "source": "http://localhost:9081/",
        "inferenceservicename": "wine",
        "namespace": "models",
        "component": "predictor",
        "endpoint": "default",
        "metadata": "{}",
        "datacontenttype": content_type,
    }
    return CloudEvent(attributes, body if isinstance(body, bytes) else encode(body))


def binary(event: CloudEvent) -> Message:
    headers, body = to_binary(event)
    return dict(headers), bytes(body)


def structured(event: CloudEvent) -> Message:
    headers, body = to_structured(event)
    return dict(headers), bytes(body)


async def send(session: ClientSession, url: str, message: Message) -> int:
    """POST one HTTP message; returns the status."""
    headers, body = message
    async with session.post(url, data=body, headers=headers) as response:
        await response.read()
        return response.status
