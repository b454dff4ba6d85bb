# syntax=docker/dockerfile:1
# The provisioning worker: `provisioner run` under tini, as a numeric non-root user.
# Build:  docker build -t registry.example.com/provisioner:0.1.0 .
# Pin the base further by digest for reproducible builds:
#   docker buildx imagetools inspect python:3.11.11-slim-bookworm

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# --- build: a virtual environment with the pinned dependencies and the package ---
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Dependencies first: their layer is reused until requirements.txt changes.
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

COPY pyproject.toml README.md LICENSE ./
COPY contracts ./contracts
COPY worker ./worker
# --no-deps: everything it needs is already pinned above, nothing unpinned sneaks in.
RUN pip install --no-cache-dir --no-deps . \
    && pip check

# --- runtime: the interpreter, tini and the venv, nothing else ---
FROM ${PYTHON_IMAGE} AS runtime

# tini is PID 1: it forwards SIGTERM to the worker (which then drains) and reaps zombies.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini=0.19.0-1+b3 \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 provisioner \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /var/lib/provisioner --shell /usr/sbin/nologin provisioner \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/provisioner

COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PROVISIONER_HTTP_PORT=9191

# The default SQLite store (sqlite:///provisioner.db) lands here, the one writable place
# (Kubernetes mounts an emptyDir over it, the root filesystem being read-only).
WORKDIR /var/lib/provisioner

USER 10001:10001

# Metrics, /healthz and /readyz.
EXPOSE 9191

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["provisioner", "run"]
