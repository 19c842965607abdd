# syntax=docker/dockerfile:1
#
# driftgauge sidecar image.
#
# Build (from the repository root; needs Docker Hub for the python base image
# and PyPI for the dependencies):
#
#   docker build -t driftgauge:0.1.0 .
#
# Run: mount the config at /etc/driftgauge/config.yaml and the baseline where
# the config's `baseline:` key points, by convention
# /var/lib/driftgauge/baseline.dgb:
#
#   docker run --rm -p 8080:8080 -p 10117:10117 \
#     -v "$PWD/config.yaml:/etc/driftgauge/config.yaml:ro" \
#     -v "$PWD/baseline.dgb:/var/lib/driftgauge/baseline.dgb:ro" \
#     driftgauge:0.1.0
#
# Ports: 8080 is the proxy listener (source.proxy.listen), 10117 the metrics
# listener (metrics.listen: /metrics, /healthz, /readyz). Both must listen on
# 0.0.0.0 in the config to be reachable from outside the container. The
# HEALTHCHECK probes http://127.0.0.1:10117/healthz; change it if you move
# metrics.listen or set metrics.tls (https).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# -- build: a virtual environment holding driftgauge and its dependencies --------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# gcc compiles the proxy's native engine (source.proxy.engine, README "The proxy"); only this
# stage has it: the image copies the built environment.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/driftgauge
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY src ./src
# `fast` adds orjson and uvloop. pyarrow (about 100 MB), a dependency for
# `driftgauge baseline`, is removed: the sidecar never imports it.
# `--build-arg BASELINE=1` keeps it, to build baselines with the image.
ARG EXTRAS=fast
ARG BASELINE=0
RUN /opt/driftgauge/bin/pip install ".[${EXTRAS}]" \
    && if [ "${BASELINE}" != 1 ]; then /opt/driftgauge/bin/pip uninstall -y pyarrow; fi \
    && /opt/driftgauge/bin/pip uninstall -y pip setuptools

# -- runtime: the same slim base, the venv, nothing else ---------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="driftgauge" \
      org.opencontainers.image.description="Prometheus-native ML model monitoring sidecar" \
      org.opencontainers.image.licenses="Apache-2.0"
# The base image's own pip/setuptools/wheel go too: nothing installs at run time.
RUN python -m pip uninstall -y pip setuptools wheel \
    && groupadd --system --gid 10001 driftgauge \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin driftgauge \
    && mkdir -p /etc/driftgauge /var/lib/driftgauge \
    && chown 10001:10001 /var/lib/driftgauge
COPY --from=build /opt/driftgauge /opt/driftgauge
ENV PATH=/opt/driftgauge/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /var/lib/driftgauge
EXPOSE 8080 10117
# No curl in a slim image: the interpreter does the probe (exit 1 on any error or non-2xx).
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:10117/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["driftgauge"]
CMD ["serve", "-c", "/etc/driftgauge/config.yaml"]
