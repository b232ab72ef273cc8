# ferry: one image for the Cloud Run service (default) and the Cloud Run Job (args: run PIPELINE).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FERRY_DATA_DIR=/tmp/ferry \
    FERRY_PIPELINES_FILE=/app/examples/pipelines.yaml

WORKDIR /app

# dependencies first: this layer is cached until requirements.txt changes
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY main.py ./
COPY app/ app/
COPY sources/ sources/
COPY examples/ examples/

RUN useradd --system --uid 10001 --no-create-home ferry
USER 10001

ENTRYPOINT ["python", "main.py"]
CMD ["serve"]
