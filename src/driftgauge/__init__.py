"""driftgauge: a Prometheus-native ML model monitoring sidecar."""

from importlib.metadata import PackageNotFoundError, version

from driftgauge.cpu import prefer_avx2_sort

prefer_avx2_sort()  # before numpy is imported: its AVX-512 sort is slow on AMD Zen 4

try:
    __version__ = version("driftgauge")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
