# The driftline image: `docker build -t driftline .` (CPU torch) or, for the GPU retrainer,
# `docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 -t driftline:cuda .`
FROM python:3.11-slim

# torch is installed first, pinned, from the index the build arg names: the CPU wheels by
# default (an unpinned torch would pull the CUDA build, several GB).
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"

WORKDIR /opt/driftline
COPY pyproject.toml README.md ./
COPY driftline driftline
COPY schemas schemas
COPY detectors detectors
COPY streams streams
COPY retrainer retrainer
RUN pip install ".[train,fast]"

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin driftline \
    && mkdir -p /data /artifacts /monitors \
    && chown driftline:driftline /data /artifacts
USER driftline
WORKDIR /home/driftline
ENV DRIFTLINE_DATA_DIR=/data \
    DRIFTLINE_ARTIFACT_ROOT=/artifacts
VOLUME ["/data", "/artifacts"]
# worker web server (/health, /metrics), retrainer /metrics
EXPOSE 6066 9108

ENTRYPOINT ["driftline"]
CMD ["--help"]
