# A Prefect process worker with nst-video installed, for the `gpu` work pool: non-root, the
# VGG19 weights baked in. Steps, variants and why: docs/deployment.md "A worker image".
#   docker build -t nst-video-worker .
#   docker build -t nst-video-worker:cuda --build-arg EXTRAS=cpu,dask,jax-cuda \
#       --build-arg KERAS_BACKEND=jax .
#   docker run -d --gpus device=0 -e PREFECT_API_URL=http://server:4300/api nst-video-worker:cuda
FROM python:3.11-slim-bookworm

ARG EXTRAS=cpu,dask
ARG KERAS_BACKEND=tensorflow
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    KERAS_BACKEND=${KERAS_BACKEND} \
    NST_REPO=/opt/nst-video \
    PREFECT_WORKER_QUERY_SECONDS=2

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin nst
WORKDIR /opt/nst-video

# The package folders (pyproject maps the repository root to nst_video); flows/ is also
# where the worker loads the deployments' entrypoints from ($NST_REPO).
COPY pyproject.toml README.md ./
COPY assets/ assets/
COPY nst_core/ nst_core/
COPY nst_cli/ nst_cli/
COPY tasks/ tasks/
COPY flows/ flows/
COPY deployments/ deployments/
# ffmpeg is the imageio-ffmpeg wheel's binary (a dependency): no system packages needed.
RUN pip install ".[${EXTRAS}]" && rm -rf build ./*.egg-info

USER nst
# Into ~/.cache/nst-video with its sha256 sidecar (README "Weights"): workers need no network.
RUN nst weights --verify

CMD ["prefect", "worker", "start", "--pool", "gpu", "--type", "process", "--limit", "1"]
