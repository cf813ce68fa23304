# aipic on a single-GPU host. Build: docker build -t aipic .   Run: see compose.yaml (with the registry database).
# Not built in CI (no Docker there): tests/test_packaging.py checks this file's structure instead.
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860 \
    AIPIC_HOME=/data \
    GRADIO_ANALYTICS_ENABLED=False

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml requirements.txt README.md ./
COPY aipic ./aipic
COPY audits ./audits
COPY models ./models
COPY app.py ./
RUN python3.11 -m venv /venv && /venv/bin/pip install --no-cache-dir ".[postgres]"

# Keys, outputs and the SQLite registry (when no database URL is given) live here: keep it on a volume.
VOLUME /data
EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s CMD /venv/bin/python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/metrics', timeout=4)"
CMD ["/venv/bin/python", "app.py"]
