"""Benchmarks (``python -m bench.NAME``).

``driftgauge`` is imported first, before any benchmark imports numpy, so that numpy runs as it
does under the ``driftgauge`` command (on AMD Zen 4 without its slow AVX-512 sort:
:mod:`driftgauge.cpu`).
"""

import driftgauge  # noqa: F401
