# One image for every part of Cairn. The entry point is the `cairn` command line, so the
# command picks the part:
#
#   docker run --rm cairn:0.1.0                          # prints `cairn --help`
#   docker run cairn:0.1.0 serve catalogue               # or: serve featurestore | serve ui
#   docker run -v /srv/lake:/volumes/lake:ro cairn:0.1.0 crawl /volumes/lake --every 15m
#
# Build: docker build -t cairn:0.1.0 .   (BuildKit: the default since Docker 23; on Docker 20.10
# set DOCKER_BUILDKIT=1, or build with `docker compose build`). Another Python 3.11 base, such as
# a mirror's copy or Debian's own python3: --build-arg PYTHON_IMAGE=<image>.
# Settings come from CAIRN_* environment variables (see the README). The image sets only the
# ones a container needs: listen on every interface, keep data under /data.

# The Python image; pin a patch release here and update it on purpose. Any Debian-based image
# with python3 (3.11+) and its venv module works.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# ---- builder: wheels for Cairn and all its dependencies (nothing compiled from source) ----
FROM ${PYTHON_IMAGE} AS builder

# PIP_USE_PEP517: the pure-Python sdists (hdfs, docopt) are built in an isolated build
# environment, which does not depend on the base image shipping `wheel` (Debian's does not).
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_USE_PEP517=1

# A virtual environment at a fixed path, first on PATH: `pip` and `cairn` are the venv's on any
# base (Debian's own python3 refuses system-wide pip installs, PEP 668).
ENV VIRTUAL_ENV=/opt/cairn \
    PATH=/opt/cairn/bin:$PATH
RUN python3 -m venv /opt/cairn

WORKDIR /src
# Dependencies come from the lock (hash-checked): the extras mongo (PyMongo + Elasticsearch
# client), hdfs (WebHDFS volumes), adls (Azure volumes), kafka (Kafka topics) and metastore
# (Hive Metastore tables). `make lock` regenerates it.
# They are fetched before the source is copied, so a change to Cairn's code reuses this layer.
COPY requirements/docker.txt ./requirements/docker.txt
RUN pip wheel --require-hashes --wheel-dir /wheels -r requirements/docker.txt

# Only what the wheel is built from; see .dockerignore for what never enters the context.
COPY pyproject.toml README.md ./
COPY cairn ./cairn
COPY catalogue_service ./catalogue_service
COPY featurestore_service ./featurestore_service
COPY crawler ./crawler
COPY connectors ./connectors
COPY ui ./ui
RUN pip wheel --no-deps --wheel-dir /wheels .

# ---- runtime: Python, tini and the installed wheels; no compiler, no source tree ----
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="cairn" \
      org.opencontainers.image.description="Cairn data catalogue and feature store" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CAIRN_DATA_DIR=/data \
    CAIRN_CATALOGUE_HOST=0.0.0.0 \
    CAIRN_FEATURESTORE_HOST=0.0.0.0 \
    CAIRN_UI_HOST=0.0.0.0

# A virtual environment at a fixed path, first on PATH: `pip` and `cairn` are the venv's on any
# base (Debian's own python3 refuses system-wide pip installs, PEP 668).
ENV VIRTUAL_ENV=/opt/cairn \
    PATH=/opt/cairn/bin:$PATH
RUN python3 -m venv /opt/cairn

# tini as PID 1 forwards SIGTERM and reaps children, so `docker stop` and Kubernetes stop a
# scheduled crawl at once instead of after the grace period.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 cairn \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/cairn --create-home \
       --shell /usr/sbin/nologin cairn \
    && mkdir -p /data \
    && chown 10001:10001 /data

# The wheels are mounted from the builder for this one step, so they take no layer here.
# They are exactly the lock's set, each download hash-checked by the builder. The lock's hashes
# are not checked again here: for the packages PyPI has only as sources (docopt, hdfs) the lock
# holds the hash of the sdist, never of the wheel the builder made from it.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --no-deps /wheels/*.whl \
    && pip check \
    && cairn --version

WORKDIR /home/cairn
USER 10001:10001

# catalogue, feature store, web UI
EXPOSE 8001 8002 8080

ENTRYPOINT ["/usr/bin/tini", "--", "cairn"]
CMD ["--help"]
