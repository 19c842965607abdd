"""Validation helpers for the config: durations, addresses, and typed getters that collect
every problem with its key path."""

from __future__ import annotations

import datetime
import math
import os
import re
import stat
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

__all__ = [
    "Errors",
    "choice",
    "cores",
    "existing_file",
    "file_in_the_way",
    "format_duration",
    "fraction",
    "get_value",
    "header_name",
    "label_value",
    "listen_address",
    "not_a_file",
    "parse_duration",
    "parse_listen",
    "positive_float",
    "positive_int",
    "section",
    "string",
    "url",
    "whole_number",
]


# Prometheus's duration syntax: units from years down to milliseconds, each at most once, in order.
_DURATION_SECONDS = {
    "y": 365 * 86400.0,
    "w": 7 * 86400.0,
    "d": 86400.0,
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 0.001,
}
_DURATION = re.compile("".join(f"(?:(\\d+){unit})?" for unit in _DURATION_SECONDS))


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration such as ``30s``, ``5m``, ``1h30m`` or ``1w``."""
    match = _DURATION.fullmatch(text.strip())
    amounts = [int(amount or 0) for amount in match.groups()] if match else []
    if not any(amounts):
        zero = match is not None and text.strip() != ""
        raise ValueError(
            f"{text!r} is zero: not a duration above 0, like 30s"
            if zero
            else f"{text!r} is not a duration like 30s, 5m, 1h or 1h30m"
        )
    return sum(
        amount * size for amount, size in zip(amounts, _DURATION_SECONDS.values(), strict=True)
    )


def format_duration(seconds: float) -> str:
    """``seconds`` in the largest of d, h, m and s that holds it exactly (else ms): ``1h``, ``90m``, ``7d``."""
    for unit in ("d", "h", "m", "s"):
        size = _DURATION_SECONDS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{round(seconds * 1000)}ms"


def parse_listen(text: str, default_port: int) -> tuple[str, int]:
    """``host:port`` (``[::1]:port`` for IPv6, ``:port`` or ``port`` for all addresses) as a pair."""
    text = text.strip()
    if text.isdigit():  # a bare port number, not a host named "8080"
        text = f":{text}"
    if text.count(":") > 1 and not text.startswith("["):
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, as in [::1]:{default_port}")
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = text, str(default_port)
    host = host.strip("[]") or "0.0.0.0"
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r} is not host:port with a port from 0 to 65535")
    return host, int(port_text)


class Errors:
    """Collects every problem in one pass so `driftgauge check` can list them all."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.entries: list[tuple[str, str]] = []  # (key path, message) of each item

    def add(self, key: str, message: str) -> None:
        self.items.append(f"{key}: {message}" if key else message)
        self.entries.append((key, message))


T = TypeVar("T")


def section(value: Any, key: str, allowed: Sequence[str], errors: Errors) -> Mapping[str, Any]:
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


def get_value(
    table: Mapping[str, Any],
    key: str,
    prefix: str,
    convert: Callable[[Any], T],
    default: T,
    errors: Errors,
) -> T:
    if key not in table or table[key] is None:
        return default
    try:
        return convert(table[key])
    except (TypeError, ValueError) as exc:
        errors.add(f"{prefix}{key}", f"{exc}")
        return default


def whole_number(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{value!r} is not a whole number (0 or more)")
    return value


def positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{value!r} is not a positive whole number")
    return value


def positive_float(value: Any) -> float:
    if isinstance(value, str):
        return parse_duration(value)
    # NaN fails the comparison too (and broke asyncio.sleep in the recompute loop).
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValueError(f"{value!r} is not a positive number of seconds or a duration like 5s")
    return float(value)


def cores(value: Any) -> float:
    """A CPU budget in cores (CPU seconds per wall second): 0.5 is half a core."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1024:
        raise ValueError(f"{value!r} is not a number of cores above 0 (0.5 is half a core)")
    return float(value)


def fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 10:
        raise ValueError(
            f"{value!r} is not a number from 0 to 10 (a share of the baseline's range)"
        )
    return float(value)


# What YAML makes of unquoted text that looks like another type (yes, 1.50, 2024-01-01).
_YAML_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "a boolean"),
    (int, "a number"),
    (float, "a number"),
    (datetime.date, "a date"),  # a datetime too
)


def string(value: Any) -> str:
    if isinstance(value, str) and value:
        return value
    read = next((what for kind, what in _YAML_TYPES if isinstance(value, kind)), None)
    if read is None:
        raise ValueError(f"{value!r} is not a non-empty string")
    shown = value.isoformat() if isinstance(value, datetime.date) else repr(value)
    raise ValueError(f"{shown} is not a non-empty string: YAML read {read}; put it in quotes")


# RFC 9110 token characters: what a header field name may hold.
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def header_name(value: Any) -> str:
    """An HTTP header field name (a token: no spaces, colons or non-ASCII)."""
    text = string(value)
    if not _HEADER_NAME.match(text):
        raise ValueError(
            f"{text!r} is not an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)"
        )
    return text


# Control characters (C0, DEL, C1), lone surrogates (not encodable as UTF-8) and the
# Unicode line and paragraph separators, which line-based readers may split on.
_REFUSED = {
    "Cc": "a control character",
    "Cs": "a lone surrogate (not UTF-8)",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}


def label_value(value: Any) -> str:
    """A name used as a Prometheus label value: non-empty UTF-8 text without control characters.

    Label values may hold any UTF-8; the exposition escapes backslash, double
    quote and newline.  Control characters and line separators are refused
    all the same: they break logs, terminals and line-based tools downstream.
    """
    text = string(value)
    for position, char in enumerate(text):
        kind = _REFUSED.get(unicodedata.category(char))
        if kind is not None:
            raise ValueError(
                f"{text!r} holds U+{ord(char):04X}, {kind}, at position {position}"
                " (names may hold any other UTF-8 character)"
            )
    return text


def choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if value not in options:
            raise ValueError(f"{value!r} is not one of {', '.join(options)}")
        return cast(str, value)

    return convert


def url(value: Any) -> str:
    text = string(value)
    # The host and port end at the path (which may hold template text, spaces and all).
    if not re.match(r"^https?://[^/?#\s]+(?:[/?#]|$)", text):
        raise ValueError(f"{text!r} is not an http:// or https:// URL")
    try:
        urlsplit(text).port  # noqa: B018 - reading it validates it
    except ValueError as exc:  # a port beyond 65535, a bracket left open, a bad IPv6 address
        raise ValueError(f"{text!r} is not a URL: {exc}") from None
    return text.rstrip("/")


def listen_address(default_port: int) -> Callable[[Any], tuple[str, int]]:
    """A converter for ``host:port`` keys (a bare port number is accepted too)."""

    def convert(value: Any) -> tuple[str, int]:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError(f"{value!r} is not host:port")
        return parse_listen(str(value), default_port)

    return convert


def existing_file(
    table: Mapping[str, Any], key: str, prefix: str, base: Path, errors: Errors
) -> Path | None:
    name = get_value(table, key, prefix, string, None, errors)
    if name is None:
        return None
    path = base / name
    if not path.is_file():
        errors.add(f"{prefix}{key}", f"no such file {str(path)!r}")
    return path


def file_in_the_way(folder: Path, made: bool = True) -> str | None:
    """What stands where ``folder`` or a parent of it should be, if anything: a file, or,
    when the sidecar is to make ``folder``, a link to nothing (no folder can be made there;
    a folder only read from may yet appear at the link's target).

    The sidecar creates the folders it writes in (state snapshots, offsets),
    but with a file there every write would fail.  A folder that cannot be
    looked into is not reported: the sidecar's own user may be allowed to.
    """
    for path in (folder, *folder.parents):
        try:
            if path.exists():
                return None if path.is_dir() else f"{path} is a file, not a folder"
            if made and path.is_symlink():
                return f"{path} is a link to nothing ({os.readlink(path)}), not a folder"
        except OSError:
            return None
    return None


def not_a_file(base: Path, name: str, what: str, made: bool = True) -> str | None:
    """Why ``base / name`` cannot be ``what`` (the file a key names), or None: it is a
    directory, or something stands where a folder above it should be (:func:`file_in_the_way`,
    ``made`` as there), or it is there but no regular file (a FIFO: serve would wait on it
    for a writer)."""
    path = base / name
    blocking = file_in_the_way(path.parent, made=made)
    if blocking:
        return f"{name!r}: {blocking}"
    try:
        mode = path.stat().st_mode
    except OSError:  # not there yet, or not to be read now (a permission): serve waits, unready
        return None
    if stat.S_ISDIR(mode):
        return f"{name!r} is a directory, not {what}"
    if not stat.S_ISREG(mode):
        return f"{name!r} is no regular file (a FIFO, socket or device), not {what}"
    return None
