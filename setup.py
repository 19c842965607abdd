"""The proxy's native forwarding core (`source.proxy.engine: native`; Linux, epoll), the one
compiled part; everything else is in pyproject.toml.  Optional: an install that cannot compile it
still works, and the config check says the engine is missing."""

import glob
import sys

from setuptools import Extension, setup

PROXY = "src/driftgauge/sources/proxy"
native = Extension(
    "driftgauge.sources.proxy._native",
    [f"{PROXY}/_native.c"],  # one translation unit: it includes its parts in core/
    depends=sorted(glob.glob(f"{PROXY}/core/*")),
    extra_compile_args=["-O2", "-std=gnu11"],
    optional=True,
)
setup(ext_modules=[native] if sys.platform == "linux" else [])
