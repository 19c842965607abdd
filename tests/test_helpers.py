"""The test helpers' own promises."""

from __future__ import annotations

from tests.helpers import free_port


def test_free_ports_handed_out_one_after_another_all_differ() -> None:
    """A config takes several ports from consecutive calls: none may be given twice."""
    ports = [free_port() for _ in range(500)]
    assert len(set(ports)) == len(ports)
