"""The proxy's native forwarding core (`source.proxy.engine: native`; Linux, epoll), the one
compiled part; everything else is in pyproject.toml.  Optional: an install that cannot compile it
still works, and the config check says the engine is missing."""

import sys

from setuptools import Extension, setup

native = Extension(
    "driftgauge.sources.proxy._native",
    ["src/driftgauge/sources/proxy/_native.c"],
    extra_compile_args=["-O2", "-std=gnu11"],
    optional=True,
)
setup(ext_modules=[native] if sys.platform == "linux" else [])
