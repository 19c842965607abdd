"""Config of the sources and listeners: the proxy, the tail, the CloudEvents receiver, TLS."""

from __future__ import annotations

import importlib.util
import ssl
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast, get_args
from urllib.parse import urlsplit

from driftgauge.config.validation import (
    Errors,
    choice,
    cores,
    existing_file,
    get_value,
    header_name,
    listen_address,
    not_a_file,
    positive_float,
    positive_int,
    section,
    string,
    url,
)

__all__ = [
    "DEFAULT_CPU_BUDGET",
    "DEFAULT_PROXY_PORT",
    "CloudEventsConfig",
    "HostHeader",
    "ProxyConfig",
    "ProxyEngine",
    "SourceConfig",
    "TailConfig",
    "TlsConfig",
    "native_problem",
    "parse_source",
    "parse_tls",
    "proxy_engine",
]

DEFAULT_PROXY_PORT = 8080
HostHeader = Literal["client", "upstream"]
ProxyEngine = Literal["auto", "python", "native"]
# Monitoring's CPU per wall second (cores) beyond which it samples requests (see sources.sampling).
DEFAULT_CPU_BUDGET = 0.5


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
    # A client reading none of its response, or not sending its request, this long is dropped.
    client_timeout: float = 60.0
    # A keep-alive connection without a request this long is closed (None: never); as long as
    # the longest idle timeout of the usual clients' pools (Envoy's), so that they close first.
    idle_timeout: float | None = 3600.0
    readiness_path: str | None = None
    max_body_bytes: int = 4 * 1024 * 1024
    queue_size: int = 10_000
    queue_bytes: int = 16 * 1024 * 1024
    request_id_header: str = "X-Request-ID"
    host_header: HostHeader = "client"  # the Host sent upstream: the client's, or the upstream's
    shutdown_grace: float = 10.0
    cpu_budget: float = DEFAULT_CPU_BUDGET  # cores monitoring may use before it samples requests
    ca_file: Path | None = None  # trust this CA (PEM) for an https:// upstream
    tls: TlsConfig | None = None  # serve the proxy listener over TLS
    # Who forwards: the native core (sources/proxy/native.py), which hands the Python proxy
    # every connection whose next request is not plain HTTP/1.1, or the Python proxy alone;
    # auto: native where it can serve this config (native_problem), else python.
    engine: ProxyEngine = "auto"


@dataclass(frozen=True, slots=True)
class TailConfig:
    path: Path
    state_file: Path | None = None
    poll_interval: float = 0.25
    start_at: Literal["beginning", "end"] = "beginning"


@dataclass(frozen=True, slots=True)
class CloudEventsConfig:
    """The CloudEvents receiver (KServe's payload logger posts here)."""

    listen: tuple[str, int] = ("0.0.0.0", DEFAULT_PROXY_PORT)
    forward: str | None = None  # also post every event received, unchanged, to this URL
    forward_timeout: float = 5.0
    forward_queue_size: int = 1000  # events waiting to be forwarded; beyond it, dropped (counted)
    max_pending: int = 10_000  # events waiting for their other half; beyond it, oldest evicted
    ttl: float = 60.0  # how long an event waits for its other half
    max_body_bytes: int = 4 * 1024 * 1024
    cpu_budget: float = DEFAULT_CPU_BUDGET  # cores monitoring may use before it samples pairs
    ca_file: Path | None = None  # trust this CA (PEM) for an https:// forward target
    tls: TlsConfig | None = None  # serve the listener over TLS (an https:// logger URL)


SourceConfig = ProxyConfig | TailConfig | CloudEventsConfig

_SOURCES = ("proxy", "tail", "cloudevents")


def parse_source(value: Any, base: Path, errors: Errors) -> SourceConfig:
    table = section(value, "source", _SOURCES, errors)
    if sum(name in table for name in _SOURCES) != 1:
        errors.add("source", "set exactly one of source.proxy, source.tail or source.cloudevents")
    if "cloudevents" in table:
        return _parse_cloudevents(table["cloudevents"], base, errors)
    if "tail" in table:
        tail = section(
            table["tail"],
            "source.tail",
            ("path", "state_file", "poll_interval", "start_at"),
            errors,
        )
        path = get_value(tail, "path", "source.tail.", string, "", errors)
        if not path:
            errors.add("source.tail.path", "missing: the JSON Lines file to follow")
        elif problem := not_a_file(base, path, "the file to follow", made=False):
            errors.add("source.tail.path", problem)
        state = get_value(tail, "state_file", "source.tail.", string, None, errors)
        if state and (problem := not_a_file(base, state, "the offset file")):
            errors.add("source.tail.state_file", problem)
        return TailConfig(
            path=base / path,
            state_file=base / state if state else None,
            poll_interval=get_value(
                tail, "poll_interval", "source.tail.", positive_float, 0.25, errors
            ),
            start_at=cast(
                Literal["beginning", "end"],
                get_value(
                    tail,
                    "start_at",
                    "source.tail.",
                    choice(("beginning", "end")),
                    "beginning",
                    errors,
                ),
            ),
        )
    proxy = section(
        table.get("proxy"),
        "source.proxy",
        (
            "listen",
            "upstream",
            "timeout",
            "connect_timeout",
            "client_timeout",
            "idle_timeout",
            "readiness_path",
            "max_body_bytes",
            "queue_size",
            "queue_bytes",
            "request_id_header",
            "host_header",
            "shutdown_grace",
            "cpu_budget",
            "ca_file",
            "tls",
            "engine",
        ),
        errors,
    )
    defaults = ProxyConfig()
    prefix = "source.proxy."

    listen = listen_address(DEFAULT_PROXY_PORT)

    def upstream_url(value: Any) -> str:
        text = url(value)
        if urlsplit(text)[2:] != ("", "", ""):
            raise ValueError(
                f"{text!r} has a path or query, which the proxy would ignore: it forwards each "
                "request's own; give the scheme, host and port only"
            )
        return text

    def url_path(value: Any) -> str:
        text = string(value)
        if not text.startswith("/"):
            raise ValueError(f"{text!r} must start with /")
        return text

    config = ProxyConfig(
        listen=get_value(proxy, "listen", prefix, listen, defaults.listen, errors),
        upstream=get_value(proxy, "upstream", prefix, upstream_url, defaults.upstream, errors),
        timeout=get_value(proxy, "timeout", prefix, positive_float, defaults.timeout, errors),
        connect_timeout=get_value(
            proxy, "connect_timeout", prefix, positive_float, defaults.connect_timeout, errors
        ),
        client_timeout=get_value(
            proxy, "client_timeout", prefix, positive_float, defaults.client_timeout, errors
        ),
        idle_timeout=get_value(
            proxy, "idle_timeout", prefix, _duration_or_none, defaults.idle_timeout, errors
        ),
        readiness_path=get_value(proxy, "readiness_path", prefix, url_path, None, errors),
        max_body_bytes=get_value(
            proxy, "max_body_bytes", prefix, positive_int, defaults.max_body_bytes, errors
        ),
        queue_size=get_value(
            proxy, "queue_size", prefix, positive_int, defaults.queue_size, errors
        ),
        queue_bytes=get_value(
            proxy, "queue_bytes", prefix, positive_int, defaults.queue_bytes, errors
        ),
        request_id_header=get_value(
            proxy, "request_id_header", prefix, header_name, defaults.request_id_header, errors
        ),
        host_header=cast(
            HostHeader,
            get_value(proxy, "host_header", prefix, choice(get_args(HostHeader)), "client", errors),
        ),
        shutdown_grace=get_value(
            proxy, "shutdown_grace", prefix, positive_float, defaults.shutdown_grace, errors
        ),
        cpu_budget=get_value(proxy, "cpu_budget", prefix, cores, defaults.cpu_budget, errors),
        ca_file=_ca_file(proxy, prefix, base, errors),
        tls=parse_tls(proxy.get("tls"), "source.proxy.tls", base, errors),
        engine=cast(
            ProxyEngine,
            get_value(proxy, "engine", prefix, choice(get_args(ProxyEngine)), "auto", errors),
        ),
    )
    if config.engine == "native" and (problem := native_problem(config)):
        errors.add(f"{prefix}engine", problem)
    return config


def proxy_engine(config: ProxyConfig) -> Literal["python", "native"]:
    """The engine that serves ``config``: ``auto`` is native where it can be."""
    if config.engine == "auto":
        return "python" if native_problem(config) else "native"
    return config.engine


def native_problem(config: ProxyConfig) -> str | None:
    """Why the native engine cannot serve ``config``, or None."""
    if sys.platform != "linux":
        return "native forwards on Linux only (epoll); use engine: python"
    if importlib.util.find_spec("driftgauge.sources.proxy._native") is None:
        return (
            "native needs driftgauge's compiled core (driftgauge.sources.proxy._native), which "
            "this install lacks: reinstall driftgauge with a C compiler and the Python headers "
            "present, or use engine: python"
        )
    if config.tls is not None or urlsplit(config.upstream).scheme == "https":
        return "native forwards plain HTTP only: TLS (source.proxy.tls or an https:// upstream) needs engine: python"
    return None


def _duration_or_none(value: Any) -> float | None:
    """A positive duration, or ``none`` for no limit (0 is refused: nginx reads it as no
    keep-alive at all, the opposite)."""
    if value == "none":
        return None
    try:
        return positive_float(value)
    except ValueError as exc:
        raise ValueError(f"{exc}, or none for no limit") from None


def _ca_file(table: Mapping[str, Any], prefix: str, base: Path, errors: Errors) -> Path | None:
    """``ca_file``, loaded once now so that a file that is not PEM is a config error."""
    path = existing_file(table, "ca_file", prefix, base, errors)
    if path is not None and path.is_file():
        try:
            ssl.create_default_context(cafile=path)
        except (ssl.SSLError, OSError, ValueError) as exc:
            errors.add(f"{prefix}ca_file", f"cannot load {str(path)!r}: {_ssl_problem(exc)}")
    return path


def _ssl_problem(exc: Exception) -> str:
    reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None)
    return str(reason or exc).splitlines()[0]


def _parse_cloudevents(value: Any, base: Path, errors: Errors) -> CloudEventsConfig:
    table = section(
        value,
        "source.cloudevents",
        (
            "listen",
            "forward",
            "forward_timeout",
            "forward_queue_size",
            "max_pending",
            "ttl",
            "max_body_bytes",
            "cpu_budget",
            "ca_file",
            "tls",
        ),
        errors,
    )
    d, prefix = CloudEventsConfig(), "source.cloudevents."

    def get(key: str, convert: Any, default: Any) -> Any:
        return get_value(table, key, prefix, convert, default, errors)

    return CloudEventsConfig(
        listen=get("listen", listen_address(DEFAULT_PROXY_PORT), d.listen),
        forward=get("forward", url, None),
        forward_timeout=get("forward_timeout", positive_float, d.forward_timeout),
        forward_queue_size=get("forward_queue_size", positive_int, d.forward_queue_size),
        max_pending=get("max_pending", positive_int, d.max_pending),
        ttl=get("ttl", positive_float, d.ttl),
        max_body_bytes=get("max_body_bytes", positive_int, d.max_body_bytes),
        cpu_budget=get("cpu_budget", cores, d.cpu_budget),
        ca_file=existing_file(table, "ca_file", prefix, base, errors),
        tls=parse_tls(table.get("tls"), "source.cloudevents.tls", base, errors),
    )


def parse_tls(value: Any, key: str, base: Path, errors: Errors) -> TlsConfig | None:
    table = section(value, key, ("cert_file", "key_file"), errors)
    if not table:
        return None
    cert = existing_file(table, "cert_file", f"{key}.", base, errors)
    private = existing_file(table, "key_file", f"{key}.", base, errors)
    if cert is None or private is None:
        errors.add(key, "needs both cert_file and key_file")
        return None
    config = TlsConfig(cert, private)
    if cert.is_file() and private.is_file():
        try:  # loaded once now, so a bad certificate or key is a config error in every command
            config.server_context()
        except (ssl.SSLError, OSError, ValueError) as exc:
            errors.add(key, f"cannot load cert_file and key_file: {_ssl_problem(exc)}")
    return config
