"""Label values and numbers written into PromQL, YAML rules and Go templates, escaped."""

from __future__ import annotations

__all__ = ["go_template_text", "matchers", "num", "promql_string"]


def promql_string(value: str) -> str:
    """``value`` as a double-quoted PromQL string literal.

    Backslash and quote are escaped, control characters written as ``\\xHH``,
    and ``$`` and ``[`` as ``\\x24`` and ``\\x5b`` so Grafana's variable
    interpolation (``$var``, ``[[var]]``) never touches a label value.
    """
    out = ['"']
    for char in value:
        if char in '\\"':
            out.append("\\" + char)
        elif char in "$[" or ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def go_template_text(value: str) -> str:
    """``value`` as Go template text that expands to itself (``{{`` would start an action)."""
    return value.replace("{{", '{{ "{{" }}')


def matchers(*pairs: tuple[str, str, str]) -> str:
    return ", ".join(f"{name}{op}{promql_string(value)}" for name, op, value in pairs)


def num(value: float) -> str:
    """A threshold as PromQL reads it, shortest exact form (0.1, 4, 1e-05)."""
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
