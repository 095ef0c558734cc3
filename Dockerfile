# The worker image used by docker-compose.temporal.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY contract contract
COPY workflows workflows
COPY activities activities
COPY backends backends
COPY runtime runtime
COPY client client
COPY cli cli
COPY integrations integrations
COPY http_api http_api
COPY worker.py ./
# The worker's extras: the vm backend (Pillow) and the rag backend (bm25s); no HTTP API, MCP
# or agent SDKs, which run elsewhere.
RUN pip install --no-cache-dir ".[vm,rag]" && apt-get update \
    && apt-get install -y --no-install-recommends procps bubblewrap slirp4netns xvfb xdotool xterm \
    && rm -rf /var/lib/apt/lists/*
# SIGTERM lets in-flight calls finish and releases instances before the container stops.
STOPSIGNAL SIGTERM
CMD ["python", "worker.py"]
