# syntax=docker/dockerfile:1.7
# Agnes image: `agnes serve` (default) or `agnes worker`, data in the /data volume.
#   docker build --build-arg AGNES_VERSION=2026.04.3 --build-arg AGNES_CHANNEL=stable \
#     --build-arg AGNES_COMMIT=$(git rev-parse --short=7 HEAD) -t agnes .
# Checked by tests/deploy (hadolint, the entrypoint run on the host); see docs/releases.md.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: a virtualenv with Agnes and its pinned dependencies --------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml README.md ./
COPY src ./src
COPY contract_tests ./contract_tests
COPY connectors ./connectors
# Editable, so the built-in connectors stay beside the package (/app/connectors), as in a checkout.
RUN pip install --no-cache-dir -e . \
 && mkdir -p /app/connectors/custom \
 && python -c "import agnes.app, duckdb_extension_postgres, duckdb_extension_sqlite; \
from agnes.settings import BUILTIN_CONNECTORS_DIR as d; assert str(d) == '/app/connectors', d"

# ---- runtime -----------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG AGNES_VERSION=""
ARG AGNES_CHANNEL=dev
ARG AGNES_COMMIT=unknown
LABEL org.opencontainers.image.title="Agnes" \
      org.opencontainers.image.source="https://github.com/keboola/agnes-the-ai-analyst" \
      org.opencontainers.image.version="${AGNES_VERSION}" \
      org.opencontainers.image.revision="${AGNES_COMMIT}"

# tini is PID 1: it forwards SIGTERM to agnes and reaps connector subprocesses.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 agnes \
 && useradd --system --uid 10001 --gid agnes --home-dir /home/agnes --create-home --shell /usr/sbin/nologin agnes \
 && mkdir -p /data \
 && chown agnes:agnes /data

COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
COPY config/instance.yaml.example /app/config/instance.yaml.example
COPY --chmod=0755 deploy/docker/entrypoint.sh /usr/local/bin/agnes-entrypoint
COPY --chmod=0755 deploy/docker/healthcheck.py /usr/local/bin/agnes-healthcheck

# Baked in and shown by GET /api/health (agnes.version reads them).
ENV AGNES_VERSION=${AGNES_VERSION} \
    AGNES_CHANNEL=${AGNES_CHANNEL} \
    AGNES_COMMIT=${AGNES_COMMIT} \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOME=/home/agnes \
    DATA_DIR=/data \
    AGNES_HOST=0.0.0.0 \
    AGNES_PORT=8000 \
    AGNES_RELEASE_MANIFEST_URL=https://github.com/keboola/agnes-the-ai-analyst/releases/download/release-manifest/releases.json

USER 10001:10001
WORKDIR /app
# DuckDB extensions the connectors need ship inside the pinned duckdb-extension-* wheels
# installed above. Prove now, with no network, that each installs and loads from them;
# at run time the engine installs from the same local files (autoinstall off), never
# from the network. A connector needing another extension adds it here and in pyproject.
RUN --network=none python -c "import duckdb; from agnes.engine.connection import load_extension; \
con = duckdb.connect(); [load_extension(con, n) for n in ('postgres', 'sqlite')]; print('extensions ok')"

VOLUME ["/data"]
EXPOSE 8000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 CMD ["/usr/local/bin/agnes-healthcheck"]
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/agnes-entrypoint"]
CMD ["serve"]
