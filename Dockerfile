# The vad image: `vad serve` workers, `vad publish`, `vad fit` and the dashboard (compose.yaml).
FROM python:3.11-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# CPU-only torch first, from PyTorch's index (the PyPI wheel carries CUDA libraries).
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY vad vad
COPY streams streams
COPY models models
COPY reasoning reasoning
COPY dashboard dashboard
RUN pip install --no-cache-dir .

# Workers stop gracefully on SIGTERM (docker stop): in-flight frames, commit, leave the group.
STOPSIGNAL SIGTERM
CMD ["vad", "--help"]
