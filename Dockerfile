# ferry: one image for the Cloud Run service and the Cloud Run Job.
#   service: the default command serves HTTP on $PORT        (python main.py serve)
#   job:     pass the CLI as args, e.g. --args=run,orders    (python main.py run orders)
# tests/deploy/test_image_smoke.py replays this file without Docker: keep COPY/ENV simple.
FROM python:3.11.14-slim-bookworm

# FERRY_DATA_DIR is on /tmp, which Cloud Run keeps in memory: it counts against the memory limit.
# RUNTIME__DLTHUB_TELEMETRY: dlt would otherwise send usage telemetry from the customer's project.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FERRY_DATA_DIR=/tmp/ferry \
    FERRY_PIPELINES_FILE=/app/examples/pipelines.yaml \
    FERRY_LOG_FORMAT=json \
    RUNTIME__DLTHUB_TELEMETRY=false

WORKDIR /app

# Dependencies first: this layer stays cached until requirements.txt changes.
# Runtime pins only; requirements-dev.txt (pytest, mypy, ruff, emulators) never enters the image.
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

COPY main.py ./
COPY app/ app/
COPY core/ core/
COPY sources/ sources/
COPY examples/ examples/

# Bytecode compiled at build time: the non-root user cannot write __pycache__ under /app,
# and compiling on every cold start would cost time.
RUN python -m compileall -q core app sources examples \
    && useradd --system --uid 10001 --user-group --create-home --home-dir /home/ferry ferry

USER 10001:10001

EXPOSE 8080

ENTRYPOINT ["python", "main.py"]
CMD ["serve"]
