# CarSpot worker/ingest image. Detector weights are mounted (see docker-compose.yml), never downloaded.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY carspot ./carspot
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT ["carspot"]
