"""The JSONPath subset driftgauge reads, compiled without reference to any body.

Kept apart from the jsonpath protocol adapter (which evaluates compiled
paths) so that config validation can compile every configured path at load
time: a bad path is then a config error in every command, not a failure when
the sidecar starts.  The syntax is described in
:mod:`driftgauge.protocols.jsonpath`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["JsonPath", "Step", "compile_path"]

# RFC 9535 member-name-shorthand (plus ``-``): ASCII letters, ``_`` and any non-ASCII
# character first, then digits and ``-`` too.
_NAME = re.compile("[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_\\-\u0080-\U0010ffff]*")
_INDEX = re.compile(r"\[(-?[0-9]+)\]")

Step = str | int
"""A member name (str) or an array index (int)."""


@dataclass(frozen=True, slots=True)
class JsonPath:
    """A compiled path: steps before ``[*]``, and (when there is one) the steps after it."""

    text: str
    head: tuple[Step, ...]
    tail: tuple[Step, ...] | None = None

    @property
    def per_row(self) -> bool:
        """True when the path has ``[*]``: one value per array element."""
        return self.tail is not None


def _quoted(path: str, start: int) -> tuple[str, int]:
    """The quoted member name opening at ``path[start]`` (a quote) and the index after it."""
    quote, chars, index = path[start], [], start + 1
    while index < len(path):
        char = path[index]
        if char == "\\" and index + 1 < len(path):
            chars.append(path[index + 1])
            index += 2
        elif char == quote:
            return "".join(chars), index + 1
        else:
            chars.append(char)
            index += 1
    raise ValueError(f"invalid JSONPath {path!r}: unterminated quoted name at position {start}")


def compile_path(path: str) -> JsonPath:
    """Parse ``path`` (the subset in the module docstring); ValueError names the bad path."""

    def bad(problem: str, position: int) -> ValueError:
        return ValueError(f"invalid JSONPath {path!r}: {problem} at position {position}")

    if not path.startswith("$"):
        raise bad("a path must start with '$'", 0)
    steps: list[Step] = []
    head: tuple[Step, ...] | None = None
    index = 1
    while index < len(path):
        char = path[index]
        if char == ".":
            match = _NAME.match(path, index + 1)
            if match is None:
                raise bad("expected a member name after '.'", index)
            steps.append(match.group())
            index = match.end()
        elif path.startswith("[*]", index):
            if head is not None:
                raise bad("only one [*] is supported", index)
            head, steps = tuple(steps), []
            index += 3
        elif char == "[" and path[index + 1 : index + 2] in ("'", '"'):
            name, index = _quoted(path, index + 1)
            if not path.startswith("]", index):
                raise bad("expected ']' after a quoted name", index)
            steps.append(name)
            index += 1
        elif (match := _INDEX.match(path, index)) is not None:
            steps.append(int(match.group(1)))
            index = match.end()
        else:
            raise bad(f"unexpected {path[index]!r}", index)
    if head is None:
        return JsonPath(path, tuple(steps))
    return JsonPath(path, head, tuple(steps))
